"""Model registry: every architecture is looked up here by a short name.

A model is a Flax linen module called as ``model.apply(variables, images, train=bool)``. Every model
returns logits of shape ``[batch, num_classes]``, in every mode. Auxiliary heads (GoogLeNet) sow
their logits into the :data:`AUX_LOGITS` collection in training, which a caller reads by making it
mutable (the trainer adds their weighted losses). BatchNorm statistics live in the ``batch_stats``
collection and dropout (and stochastic depth) draw from the ``dropout`` RNG.

Families register their variants with :func:`register`; a variant is a name plus fixed
constructor arguments, never a copy of code, and its facts (:class:`ModelInfo`: input shape, paper,
published figures, a small instance for the tests), which ``summary``, the tests and the README's
model table read from :func:`info`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import pkgutil
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ConfigError

# The input (H, W, C) of the two benchmark families of papers; a variant with another states it.
IMAGENET_INPUT = (224, 224, 3)
CIFAR_INPUT = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class Published:
  """Figures a source prints for a registered variant; ``tests/models/test_registry.py`` checks the
  model against each one at the variant's ``input_shape``.

  ``params`` is an exact count (torchvision's, or a paper that gives one); ``params_m`` a count in
  millions as printed, matched at its printed precision or within ``tolerance``; ``gmacs`` the
  multiply-adds of one image in billions, likewise. ``built_with`` holds constructor arguments
  the figure assumes (GoogLeNet's table counts the net without its training-only heads).
  """
  source: str
  params: Optional[int] = None
  params_m: Optional[float] = None
  gmacs: Optional[float] = None
  tolerance: float = 0.01
  built_with: dict[str, Any] = dataclasses.field(default_factory=dict)  # arguments the figure assumes

  def __post_init__(self):
    if self.params is None and self.params_m is None and self.gmacs is None:
      raise ValueError(f'Published({self.source!r}) gives no figure: set params, params_m or gmacs')


@dataclasses.dataclass(frozen=True)
class Smoke:
  """A small instance of a variant (its own constructor arguments and an input it accepts) that
  ``tests/test_models_train.py`` trains through the real train step: one per family file."""
  kwargs: dict[str, Any]
  input_shape: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What the registry knows about a variant besides how to build it (timm's ``default_cfgs``).

  ``published`` is empty only where no source prints a figure for exactly this variant (the
  generic ``resnet``, ``wrn``, ``densenet``, most CIFAR nets): it is always given, never defaulted.
  """
  name: str
  family: str     # the file that registers it (resnext.py registers ResNets), e.g. 'resnext'
  input_shape: tuple[int, int, int]
  paper: str
  published: tuple[Published, ...]
  smoke: Optional[Smoke] = None

  @property
  def num_classes(self) -> int:
    """The registered default, read from the model itself (never a second copy)."""
    return get_model(self.name).num_classes


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}

# Auxiliary classifiers sow their logits here, in training: {head: {'logits': (logits,)}}.
AUX_LOGITS = 'aux_logits'


def register(name: str, factory: Callable[..., nn.Module], *, input_shape: Sequence[int],
             paper: str, published: Sequence[Published], smoke: Optional[Smoke] = None,
             **fixed: Any) -> None:
  """Registers ``name`` as ``factory(**fixed, **user_kwargs)`` with its facts (:class:`ModelInfo`)."""
  if name in _REGISTRY:
    raise ValueError(f'model {name!r} is registered twice')
  if len(input_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in input_shape):
    raise ValueError(f'model {name!r}: input_shape must be (H, W, C), got {input_shape!r}')
  if not paper:
    raise ValueError(f'model {name!r}: name the paper it comes from')
  if not all(isinstance(p, Published) for p in published):
    raise ValueError(f'model {name!r}: published must be Published figures (or empty), got '
                     f'{published!r}')
  _REGISTRY[name] = functools.partial(factory, **fixed) if fixed else factory
  family = sys._getframe(1).f_globals['__name__'].rsplit('.', 1)[-1]   # the registering file
  _INFO[name] = ModelInfo(name, family, tuple(input_shape), paper, tuple(published), smoke)


def info(name: str) -> ModelInfo:
  """The facts registered with ``name``; an unknown name raises :class:`ConfigError`."""
  _check_name(name)
  return _INFO[name]


def names() -> list[str]:
  return sorted(_REGISTRY)


def _accepted_kwargs(factory: Callable[..., nn.Module]) -> set[str] | None:
  target = factory.func if isinstance(factory, functools.partial) else factory
  if isinstance(target, type) and dataclasses.is_dataclass(target):
    return {f.name for f in dataclasses.fields(target) if f.init and f.name not in ('parent', 'name')}
  return None


def _check_name(name: str) -> None:
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise ConfigError(f'unknown model {name!r}.{hint} Valid names: {", ".join(names())}.')


def get_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds the registered model ``name``; unknown names or arguments raise :class:`ConfigError`."""
  _check_name(name)
  factory = _REGISTRY[name]
  accepted = _accepted_kwargs(factory)
  if accepted is not None:
    fixed = set(factory.keywords) if isinstance(factory, functools.partial) else set()
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
      # A registered variant's fixed arguments are not listed but may still be overridden (e.g.
      # base_width of resnet_cifar, formerly its width), so the close matches come from all of them.
      close = sorted({m for u in unknown for m in difflib.get_close_matches(u, accepted, n=1)})
      hint = f' Did you mean {", ".join(close)}?' if close else ''
      raise ConfigError(f'model {name!r} takes no argument(s) {", ".join(unknown)}; '
                        f'it takes: {", ".join(sorted(accepted - fixed))}.{hint}')
  return factory(**kwargs)


def config_arguments(model_config: Mapping[str, Any],
                     num_classes: Optional[int]) -> tuple[str, dict[str, Any]]:
  """``(name, kwargs)`` for :func:`get_model` from a config's ``model`` section: its fields, the data
  set's ``num_classes`` unless the section fixes it (None: neither), a dtype saved by name as a
  dtype."""
  kwargs = dict(model_config)
  name = kwargs.pop('name')
  if num_classes is not None:
    kwargs.setdefault('num_classes', num_classes)
  if isinstance(kwargs.get('dtype'), str):
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  return name, kwargs


# Importing a family module registers its variants; every module of this package is imported, so a
# new family is one new file.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f'{__name__}.{_module.name}')
