"""What the paper recipes share: their argument syntax, data presets and the ``runlocal`` shrink.

Arguments. ``--config=configs/X.py:ARGS`` hands get_config the text after ':' as one string:
comma-separated ``name=value`` pairs and flags, e.g. ``110,plain,runlocal`` or
``depth=110,runlocal``. The first item may omit its name (it then sets the recipe's positional
argument, e.g. the depth); a flag alone means True (``plain`` = ``plain=true``). Unknown names and
values raise a ValueError that lists what is valid.

``runlocal`` (every recipe) shrinks a recipe to a smoke run on this CPU, on the embedded ``digits``
data set, while keeping what defines the recipe: the model and its arguments, the optimiser,
the schedule and the input size. It only swaps the data (digits through the recipe's own
preprocessing, tiled to RGB when the recipe reads colour images, first resized to the paper data
set's image size), and the run's length: 2 training steps at a batch of 2, one evaluation at
the end on 2 test images, no intermediate checkpoints.

The paper's numbers. Each recipe file holds them once, as data: ``PAPER`` (a ``Paper``), whose
``recipe`` is the paper's recipe as resolved config fields, which get_config applies (``apply``),
and whose ``targets`` are the paper's errors, which the docstring states. tests/test_configs.py
checks the resolved configs, the docstrings and the README's recipe table against ``PAPER``.
``recipes()`` lists the recipe files.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Mapping, Optional, Sequence

import ml_collections

import configs
from cnn_jax import ConfigError
from cnn_jax.data import DATASETS
from configs import default

# Pixel-mean subtraction on the 0..255 scale, as the Caffe/cuda-convnet era nets were trained
# (AlexNet, ZFNet, GoogLeNet): normalize computes (x / 255 - mean) / std, so std = 1/255 gives
# x - 255 * mean. Their N(0, 0.01^2) / Xavier initial weights were chosen for that input scale.
MEAN_SUBTRACTION = "normalize(mean='imagenet', std=0.00392156862745098)"
# Per-channel mean and std (fb.resnet.torch, torchvision): the nets with BatchNorm or He init.
MEAN_STD = "normalize('imagenet')"

RUNLOCAL_BATCH = 2
RUNLOCAL_EVAL_SPLIT = 'test[:2]'
NEVER = 10 ** 9  # an interval that a 2-step run never reaches


@dataclasses.dataclass(frozen=True)
class Arg:
  """One recipe argument: its default, its valid values (None: any the parser accepts)."""
  default: Any
  choices: Optional[Sequence[Any]] = None
  parse: Callable[[str], Any] = str
  flag_value: Any = True   # the value of the name given alone (``plain``, ``dropout``)
  help: str = ''

  def convert(self, name: str, text: Optional[str]) -> Any:
    if text is None:
      if self.flag_value is None:
        raise ValueError(f'argument {name!r} needs a value: {name}=VALUE{self._valid()}.')
      return self.flag_value
    try:
      value = self.parse(text)
    except ValueError:
      raise ValueError(f'argument {name}={text!r} is not valid{self._valid()}.') from None
    if self.choices is not None and value not in self.choices:
      raise ValueError(f'argument {name}={text!r} is not valid{self._valid()}.')
    return value

  def _valid(self) -> str:
    if self.choices is not None:
      return '; valid values: ' + ', '.join(map(str, self.choices))
    return ''


def flag(help: str = '') -> Arg:
  return Arg(False, (True, False), parse_bool, True, help)


def parse_bool(text: str) -> bool:
  lowered = text.strip().lower()
  if lowered in ('1', 'true', 'yes', 'on'):
    return True
  if lowered in ('0', 'false', 'no', 'off'):
    return False
  raise ValueError(text)


COMMON_ARGS = {'runlocal': flag('smoke run on digits, 2 steps (see configs/common.py)')}


def parse_args(args: Optional[str], spec: dict[str, Arg], positional: Optional[str] = None,
               recipe: str = 'this recipe') -> ml_collections.ConfigDict:
  """Parses ``args`` ("110,plain,runlocal") against ``spec`` plus the common args."""
  spec = {**spec, **COMMON_ARGS}
  values = {name: arg.default for name, arg in spec.items()}
  seen = set()
  items = [item.strip() for item in (args or '').split(',')]
  for index, item in enumerate(i for i in items if i):
    name, sep, text = item.partition('=')
    name = name.strip()
    value_text = text.strip() if sep else None
    if not sep and name not in spec and index == 0 and positional:
      try:  # "110" = "depth=110"
        values[positional] = spec[positional].convert(positional, item)
      except ValueError:
        raise ValueError(
            f'unknown argument {item!r} for {recipe}: neither an argument name nor a valid '
            f'{positional}{spec[positional]._valid()}. Valid arguments: '
            f'{describe(spec, positional)}.') from None
      seen.add(positional)
      continue
    if name not in spec:
      raise ValueError(f'unknown argument {item!r} for {recipe}. Valid arguments: '
                       f'{describe(spec, positional)}.')
    if name in seen:
      raise ValueError(f'argument {name!r} is given twice in {args!r}.')
    seen.add(name)
    values[name] = spec[name].convert(name, value_text)
  return ml_collections.ConfigDict(values)


def describe(spec: dict[str, Arg], positional: Optional[str] = None) -> str:
  parts = []
  for name, arg in spec.items():
    if arg.choices == (True, False):
      text = f'{name} (flag)'
    elif arg.choices is not None:
      text = f'{name}=' + '|'.join(map(str, arg.choices))
    else:
      text = f'{name}=VALUE'
    if name == positional:
      text += ' (positional, first)'
    parts.append(text)
  return ', '.join(parts)


# ---------------------------------------------------------------------------------------------
# The paper's numbers, as data

Fields = Mapping[str, Any]  # flat config fields: {'optimizer.learning_rate': 0.1, ...}


@dataclasses.dataclass(frozen=True)
class Paper:
  """A recipe's paper numbers, written once, in its file.

  recipe: the paper's recipe as resolved config fields, the same for every variant; get_config
    applies it and the docstring states each of its numbers.
  targets: the paper's test/validation error %, label -> figure written as the docstring and the
    README's recipe table write it ('27.0/8.8' = top-1/top-5).
  variants: arguments -> the fields they resolve to beyond ``recipe``: '' is the default (its
    model and data set), every other entry what those arguments change in it (a variant that
    names another model.name keeps none of the default's model fields). get_config takes the
    variants' own numbers (warm-up, dropout) from the same module constants.
  """
  recipe: Fields
  targets: Mapping[str, str]
  variants: Mapping[str, Fields] = dataclasses.field(default_factory=dict)

  def fields(self, args: str = '') -> dict[str, Any]:
    """What ``get_config(args)`` resolves to (at least), for '' and the keys of ``variants``."""
    default = dict(self.variants.get('', {}))
    variant = self.variants[args] if args else {}
    if 'model.name' in variant:  # another model: the default's model fields are not its
      default = {k: v for k, v in default.items() if not k.startswith('model.')}
    return {**SHARED, **self.recipe, **default, **variant}


def apply(config: ml_collections.ConfigDict, fields: Fields) -> None:
  """Sets flat fields ({'optimizer.learning_rate': 0.1}) on ``config``.

  Only ``model.`` may gain fields (they are the model's constructor arguments): a new name
  anywhere else is a typo that nothing would read.
  """
  for key, value in fields.items():
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node[part]
    if path != ['model'] and leaf not in node:
      raise ConfigError(f'config field {key!r} does not exist; see configs/default.py for the '
                        'fields.')
    node[leaf] = value


def recipes() -> list[str]:
  """The paper recipes: the names of the modules in configs/ that define ``PAPER``, sorted."""
  names = []
  for info in pkgutil.iter_modules(configs.__path__):
    module = importlib.import_module(f'configs.{info.name}')
    if isinstance(getattr(module, 'PAPER', None), Paper):
      names.append(info.name)
  return sorted(names)


# ---------------------------------------------------------------------------------------------
# Building blocks of the recipes

# What every paper recipe here shares, unless its PAPER says otherwise.
SHARED = {
    'loss.label_smoothing': 0.0,
    'optimizer.name': 'sgd',
    'optimizer.weight_decay_mode': 'coupled',   # L2 in the gradient, as every paper here
    'optimizer.decay_all_params': False,
    'mixed_precision': False,
    'schedule.warmup': 0,
    'num_train_steps': 0,
    'eval_every_epochs': 1,
}
# Shared by the three papers that cut the rate "when the validation error stops improving": the
# rule made concrete (none of these numbers is in the papers), at most three cuts of /10.
PLATEAU = {
    'schedule.name': 'plateau',
    'schedule.decay_factor': 0.1,
    'schedule.patience': 5,            # evaluations (epochs) without improvement before a cut
    'schedule.cooldown': 0,
    'schedule.plateau_min_delta': 1e-3,  # an error decrease of 0.1% counts as improvement
    'schedule.min_scale': 1e-3,        # three cuts: base -> /10 -> /100 -> /1000
}


def base_config() -> ml_collections.ConfigDict:
  """default.get_config() with SHARED, the settings every paper recipe shares, stated explicitly."""
  config = default.get_config()
  apply(config, SHARED)
  config.log_every_steps = 100
  return config


def set_model(config: ml_collections.ConfigDict, name: str, **fields: Any) -> None:
  config.model = ml_collections.ConfigDict({'name': name, **fields})


def cifar_data(config: ml_collections.ConfigDict, dataset: str = 'cifar10') -> None:
  """The CIFAR augmentation of the ResNet era: 4-pixel zero pad, random 32 crop, flip."""
  config.data.name = dataset
  config.data.train_ops = f"pad_random_crop(4) | flip_lr | normalize('{dataset}')"
  config.data.eval_ops = f"normalize('{dataset}')"
  config.data.cache = True


def imagenet_data(config: ml_collections.ConfigDict, train_ops: str, eval_ops: str) -> None:
  config.data.name = 'imagenet2012'
  config.data.train_ops = train_ops
  config.data.eval_ops = eval_ops
  config.data.cache = False      # 1.28M photos: read them from disk every epoch


def ten_crop_eval(resize: str, crop: int, normalize: str) -> str:
  """AlexNet's 10-view test: the corners and centre of ``resize`` and their mirrors."""
  return f'{resize} | ten_crop({crop}) | {normalize}'


# ---------------------------------------------------------------------------------------------
# runlocal


def _split_ops(spec: str) -> list[str]:
  return [op.strip() for op in spec.split('|') if op.strip()]


def _op_name(op: str) -> str:
  return op.split('(', 1)[0].strip()


def local_ops(spec: str, source_size: int, rgb: bool) -> str:
  """The recipe's ops on digits: stand-in image of the paper's size first, then the recipe.

  digits are decoded 8x8 grey arrays (stored as PNG): the fused JPEG op becomes
  ``decode | inception_crop`` with the same arguments, ``decode`` (channels=3 gives RGB) stays.
  """
  ops = _split_ops(spec)
  resize = f'resize({source_size})'
  if ops and _op_name(ops[0]) == 'decode_inception_crop':
    ops = ['decode', resize, 'inception_crop' + ops[0][len('decode_inception_crop'):]] + ops[1:]
  elif ops and _op_name(ops[0]) == 'decode':
    ops = [ops[0], resize] + ops[1:]
  else:
    ops = (['to_rgb'] if rgb else []) + [resize] + ops
  return ' | '.join(ops)


def apply_runlocal(config: ml_collections.ConfigDict, rgb: bool = True,
                   local_data: Optional[Fields] = None) -> None:
  """Shrinks ``config`` in place to the runlocal smoke run (see the module docstring).

  ``local_data``: the fields of a small local copy of the recipe's own data set, for data that
  digits cannot stand in for (Go positions); by default the data become digits.
  """
  if local_data:
    apply(config, local_data)
  else:
    source = DATASETS[config.data.name].source_size  # the paper data set's image size
    config.data.name = 'digits'
    config.data.train_ops = local_ops(config.data.train_ops, source, rgb)
    config.data.eval_ops = local_ops(config.data.eval_ops, source, rgb)
  config.data.train_split = ''
  config.data.eval_split = RUNLOCAL_EVAL_SPLIT
  config.data.validation_size = 0
  config.data.train_size = 0
  config.data.cache = True
  config.data.shuffle_buffer = 64
  config.batch_size = RUNLOCAL_BATCH
  config.num_train_steps = 2
  config.eval_every_epochs = NEVER   # evaluate once, after the last step
  config.log_every_steps = 1
  config.checkpoint_every_steps = NEVER  # the final checkpoint is still written
  # Per-GPU BatchNorm groups larger than the tiny batch become one group (the whole batch).
  group = config.model.get('bn_group_size')
  if group and group > config.batch_size:
    config.model.bn_group_size = None


def finish(config: ml_collections.ConfigDict, args: ml_collections.ConfigDict,
           rgb: bool = True, local_data: Optional[Fields] = None) -> ml_collections.ConfigDict:
  """Applies runlocal when asked (:func:`apply_runlocal`); every recipe's get_config ends here."""
  if args.runlocal:
    apply_runlocal(config, rgb=rgb, local_data=local_data)
  return config
