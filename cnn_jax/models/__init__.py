"""Model registry: every architecture is looked up here by a short name.

A model is a Flax linen module called as ``model.apply(variables, images, train=bool)``. It returns
logits of shape ``[batch, num_classes]``; a model with auxiliary heads (GoogLeNet) returns
``(logits, (aux_logits, ...))`` in training mode only. BatchNorm statistics live in the
``batch_stats`` collection and dropout (and stochastic depth) draw from the ``dropout`` RNG.

Families register their variants with :func:`register`; a variant is a name plus fixed
constructor arguments, never a copy of code.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable

import flax.linen as nn

from cnn_jax import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module], **fixed: Any) -> None:
  """Registers ``name`` as ``factory(**fixed, **user_kwargs)``."""
  if name in _REGISTRY:
    raise ValueError(f'model {name!r} is registered twice')
  _REGISTRY[name] = functools.partial(factory, **fixed) if fixed else factory


def names() -> list[str]:
  return sorted(_REGISTRY)


def _accepted_kwargs(factory: Callable[..., nn.Module]) -> set[str] | None:
  target = factory.func if isinstance(factory, functools.partial) else factory
  if isinstance(target, type) and dataclasses.is_dataclass(target):
    return {f.name for f in dataclasses.fields(target) if f.init and f.name not in ('parent', 'name')}
  return None


def get_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds the registered model ``name``; unknown names or arguments raise :class:`ConfigError`."""
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise ConfigError(f'unknown model {name!r}.{hint} Valid names: {", ".join(names())}.')
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


# Importing a family module registers its variants.
from cnn_jax.models import lenet  # noqa: E402,F401
from cnn_jax.models import alexnet  # noqa: E402,F401
from cnn_jax.models import vgg  # noqa: E402,F401
from cnn_jax.models import googlenet  # noqa: E402,F401
from cnn_jax.models import resnet  # noqa: E402,F401
from cnn_jax.models import preact_resnet  # noqa: E402,F401
from cnn_jax.models import wide_resnet  # noqa: E402,F401
from cnn_jax.models import resnext  # noqa: E402,F401
from cnn_jax.models import densenet  # noqa: E402,F401
from cnn_jax.models import alphago  # noqa: E402,F401
