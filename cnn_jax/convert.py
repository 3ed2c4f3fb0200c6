"""torchvision's ImageNet weights as a cnn_jax workdir.

  python -m cnn_jax.convert --from=torchvision --model=resnet50 --weights=resnet50-11ad3fa6.pth --out=DIR
  python -m cnn_jax.evaluate --workdir=DIR --config.data.manual_dir=DIR_WITH_THE_ILSVRC2012_TARS

The weights are a torchvision state dict: a ``.pth`` file (read with PyTorch) or a ``.safetensors``
file with torchvision's tensor names (read with the ``safetensors`` package, no PyTorch needed).
Every variable of the registry model is filled from exactly one tensor, and every tensor is used
(``num_batches_tracked`` aside); anything else is one ConfigError naming the key or shape. Convs are
transposed from OIHW to HWIO, dense layers from (out, in) to (in, out), and the dense layer that reads
VGG's and AlexNet's flattened pool is permuted from torchvision's (C, H, W) order to our (H, W, C).

The output is a cnn_jax workdir: ``config.json`` (the model, ImageNet, and the evaluation transform
the weights were published with, :data:`TORCHVISION_WEIGHTS`) and ``checkpoints/0`` holding a whole
step-0 TrainState (the config's optimiser state is freshly initialised), so that evaluation,
``checkpoint.load_variables``, ``summary --workdir`` and ``config.init_from`` read it as a run.

The registry entries converted into are those whose ``published`` figures include torchvision's and
that compute torchvision's network (:func:`torchvision_models`).
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import os
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf

import cnn_jax
from cnn_jax import ConfigError, checkpoint, models, run_files
from cnn_jax import workdir as workdir_lib
from cnn_jax.data import DATASETS
from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.densenet import DenseNet
from cnn_jax.models.resnet import ResNet
from cnn_jax.models.vgg import CONFIGS as VGG_CONFIGS, VGG

TORCHVISION = 'torchvision'
SOURCES = (TORCHVISION,)  # where --from may read weights


# ---------------------------------------------------------------------------------------------
# torchvision's weights and the transforms they were evaluated with


@dataclasses.dataclass(frozen=True)
class Weights:
  """One of torchvision's ImageNet weights (a member of its ``*_Weights`` enum): the file its URL
  downloads and the evaluation transform of its ``transforms()`` (bilinear, antialiased resize of
  the shorter side to ``resize_size``, centre crop, ImageNet mean and std)."""
  model: str          # torchvision's builder name
  version: str        # the enum member
  file: str           # the downloaded file's name, less '.pth' (torchvision names it by its hash)
  resize_size: int
  crop_size: int = 224

  @property
  def eval_ops(self) -> str:
    """The transform as cnn_jax ops (cnn_jax/data/ops.py), with PIL's JPEG decoding and
    torchvision's arithmetic for the resized size and the crop's offsets; normalize('imagenet') is
    torchvision's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)."""
    return (f"decode(dct_method='INTEGER_ACCURATE') | resize_small({self.resize_size}, "
            f"method='bilinear', antialias=True, long_side='floor') | "
            f"central_crop({self.crop_size}, offset='round') | normalize('imagenet')")

  @property
  def train_ops(self) -> str:
    """torchvision's reference training crop, for fine-tuning from the converted weights."""
    return f"decode_inception_crop({self.crop_size}) | flip_lr | normalize('imagenet')"


# torchvision 0.29's IMAGENET1K weights of the models below (tests/test_convert.py checks every
# entry against torchvision's enums). V2 are the weights of its 2021 recipe, evaluated at 232.
TORCHVISION_WEIGHTS = (
    Weights('alexnet', 'IMAGENET1K_V1', 'alexnet-owt-7be5be79', 256),
    Weights('vgg11', 'IMAGENET1K_V1', 'vgg11-8a719046', 256),
    Weights('vgg11_bn', 'IMAGENET1K_V1', 'vgg11_bn-6002323d', 256),
    Weights('vgg13', 'IMAGENET1K_V1', 'vgg13-19584684', 256),
    Weights('vgg13_bn', 'IMAGENET1K_V1', 'vgg13_bn-abd245e5', 256),
    Weights('vgg16', 'IMAGENET1K_V1', 'vgg16-397923af', 256),
    Weights('vgg16_bn', 'IMAGENET1K_V1', 'vgg16_bn-6c64b313', 256),
    Weights('vgg19', 'IMAGENET1K_V1', 'vgg19-dcbb9e9d', 256),
    Weights('vgg19_bn', 'IMAGENET1K_V1', 'vgg19_bn-c79401a0', 256),
    Weights('resnet18', 'IMAGENET1K_V1', 'resnet18-f37072fd', 256),
    Weights('resnet34', 'IMAGENET1K_V1', 'resnet34-b627a593', 256),
    Weights('resnet50', 'IMAGENET1K_V1', 'resnet50-0676ba61', 256),
    Weights('resnet50', 'IMAGENET1K_V2', 'resnet50-11ad3fa6', 232),
    Weights('resnet101', 'IMAGENET1K_V1', 'resnet101-63fe2227', 256),
    Weights('resnet101', 'IMAGENET1K_V2', 'resnet101-cd907fc2', 232),
    Weights('resnet152', 'IMAGENET1K_V1', 'resnet152-394f9c45', 256),
    Weights('resnet152', 'IMAGENET1K_V2', 'resnet152-f82ba261', 232),
    Weights('densenet121', 'IMAGENET1K_V1', 'densenet121-a639ec97', 256),
    Weights('densenet169', 'IMAGENET1K_V1', 'densenet169-b2777c0a', 256),
    Weights('densenet201', 'IMAGENET1K_V1', 'densenet201-c1103571', 256),
    Weights('resnext50_32x4d', 'IMAGENET1K_V1', 'resnext50_32x4d-7cdf4587', 256),
    Weights('resnext50_32x4d', 'IMAGENET1K_V2', 'resnext50_32x4d-1a0047aa', 232),
    Weights('resnext101_32x8d', 'IMAGENET1K_V1', 'resnext101_32x8d-8ba56ff5', 256),
    Weights('resnext101_32x8d', 'IMAGENET1K_V2', 'resnext101_32x8d-110c445d', 232),
    Weights('resnext101_64x4d', 'IMAGENET1K_V1', 'resnext101_64x4d-173b62eb', 232),
    Weights('wide_resnet50_2', 'IMAGENET1K_V1', 'wide_resnet50_2-95faca4d', 256),
    Weights('wide_resnet50_2', 'IMAGENET1K_V2', 'wide_resnet50_2-9ba9bcbe', 232),
    Weights('wide_resnet101_2', 'IMAGENET1K_V1', 'wide_resnet101_2-32ee1156', 256),
    Weights('wide_resnet101_2', 'IMAGENET1K_V2', 'wide_resnet101_2-d733dc28', 232),
)
WEIGHTS_VERSIONS = ('IMAGENET1K_V1', 'IMAGENET1K_V2')

# Registry names that are not torchvision's builder names (the others are the same).
_TORCHVISION_NAMES = {'alexnet_tv': 'alexnet'}


def torchvision_name(name: str) -> str:
  """torchvision's builder name for the registry entry ``name`` (``alexnet_tv`` -> ``alexnet``)."""
  return _TORCHVISION_NAMES.get(name, name)


def find_weights(name: str, path: str, version: Optional[str] = None) -> Weights:
  """Which of torchvision's weights ``path`` holds for the registry model ``name``: the file name
  torchvision downloads tells (``resnet50-11ad3fa6.pth`` is resnet50's V2), else ``version``, else
  the model's only weights. ConfigError for a file of another model, a version the model does not
  have, or a choice left open."""
  tv_name = torchvision_name(name)
  available = [w for w in TORCHVISION_WEIGHTS if w.model == tv_name]
  versions = ', '.join(w.version for w in available)
  stem = os.path.basename(path).split('.')[0]
  named = next((w for w in TORCHVISION_WEIGHTS if w.file == stem), None)
  if named is not None and named.model != tv_name:
    ours = next((n for n in torchvision_models() if torchvision_name(n) == named.model), named.model)
    raise ConfigError(f'{path} is torchvision\'s {named.model} {named.version} file, not '
                      f'{tv_name}\'s: pass --model={ours} (or the file of {name}).')
  if version is not None and version not in WEIGHTS_VERSIONS:
    raise ConfigError(f'--weights_version={version} is not one of torchvision\'s ImageNet weights '
                      f'this converts: {", ".join(WEIGHTS_VERSIONS)}.')
  if named is not None:
    if version is not None and version != named.version:
      raise ConfigError(f'{path} is torchvision\'s {named.version} file of {tv_name}, but '
                        f'--weights_version={version}: drop the flag or pass the other file.')
    return named
  if version is not None:
    found = next((w for w in available if w.version == version), None)
    if found is None:
      raise ConfigError(f'torchvision has no {version} weights of {tv_name}; it has {versions}: '
                        'pass that --weights_version.')
    return found
  if len(available) == 1:
    return available[0]
  raise ConfigError(f'the name of {path} does not say which of torchvision\'s {tv_name} weights it '
                    f'holds ({versions}, preprocessed differently): pass --weights_version.')


# ---------------------------------------------------------------------------------------------
# The layouts: which torchvision module holds each module's variables


@dataclasses.dataclass(frozen=True)
class _Layout:
  """How a family's module paths map to torchvision's module names.

  ``torchvision_fields`` are the constructor fields that change what the net computes but not its
  variables' shapes (those :func:`plan` checks), at torchvision's values: a registry entry with other
  values (the paper's v1 ResNets) has torchvision's counts but not its network. ``flatten``: the dense layer that reads
  the flattened pool and the conv whose channels it flattens, or None.
  """
  module_name: Callable[[Any, tuple[str, ...]], Optional[str]]
  torchvision_fields: dict[str, Any]
  flatten: Optional[Callable[[Any], tuple[str, str]]] = None


def _resnet_module(model: ResNet, path: tuple[str, ...]) -> Optional[str]:
  """conv1, bn1, fc; stage{s}_block{b}/X -> layer{s}.{b-1}.X (the projection is 'downsample')."""
  if len(path) == 1 and path[0] in ('conv1', 'bn1', 'fc'):
    return path[0]
  found = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  if not found or len(path) != 2:
    return None
  inner = {'proj_conv': 'downsample.0', 'proj_bn': 'downsample.1'}.get(path[1], path[1])
  return f'layer{found.group(1)}.{int(found.group(2)) - 1}.{inner}'


def _vgg_convs(model: VGG) -> int:
  return sum(len(block) for block in VGG_CONFIGS[model.config])


def _vgg_module(model: VGG, path: tuple[str, ...]) -> Optional[str]:
  """conv{i} and bn{i} -> their index in torchvision's ``features`` (conv, [BN,] ReLU per conv, a
  max-pool per block); fc1-3 -> classifier.0, .3 and .6 (ReLU and dropout between)."""
  index, names = 0, {}
  block_ends = np.cumsum([len(block) for block in VGG_CONFIGS[model.config]])
  for conv in range(1, _vgg_convs(model) + 1):
    names[f'conv{conv}'] = f'features.{index}'
    index += 1
    if model.batch_norm:
      names[f'bn{conv}'] = f'features.{index}'
      index += 1
    index += 1 + (conv in block_ends)  # the ReLU, and the block's max-pool after its last conv
  names.update({'fc1': 'classifier.0', 'fc2': 'classifier.3', 'fc3': 'classifier.6'})
  return names.get(path[0]) if len(path) == 1 else None


_ALEXNET_MODULES = {'conv1': 'features.0', 'conv2': 'features.3', 'conv3': 'features.6',
                    'conv4': 'features.8', 'conv5': 'features.10', 'fc6': 'classifier.1',
                    'fc7': 'classifier.4', 'fc8': 'classifier.6'}


def _alexnet_module(model: AlexNet, path: tuple[str, ...]) -> Optional[str]:
  return _ALEXNET_MODULES.get(path[0]) if len(path) == 1 else None


def _densenet_module(model: DenseNet, path: tuple[str, ...]) -> Optional[str]:
  """The stem conv1/bn1 are conv0/norm0, block{b}_layer{i} denseblock{b}.denselayer{i}, BN 'norm'."""
  top = {'conv1': 'features.conv0', 'bn1': 'features.norm0', 'final_bn': 'features.norm5',
         'fc': 'classifier'}
  if len(path) == 1:
    return top.get(path[0])
  inner = {'bn1': 'norm1', 'bn2': 'norm2', 'conv1': 'conv1', 'conv2': 'conv2', 'bn': 'norm',
           'conv': 'conv'}.get(path[1])
  layer = re.fullmatch(r'block(\d+)_layer(\d+)', path[0])
  transition = re.fullmatch(r'transition(\d+)', path[0])
  if len(path) != 2 or inner is None:
    return None
  if layer:
    return f'features.denseblock{layer.group(1)}.denselayer{layer.group(2)}.{inner}'
  return f'features.transition{transition.group(1)}.{inner}' if transition else None


_LAYOUTS: dict[type, _Layout] = {
    ResNet: _Layout(_resnet_module, dict(stride_on_3x3=True, residual=True, survival_prob_last=1.0)),
    VGG: _Layout(_vgg_module, dict(lrn=False), flatten=lambda m: ('fc1', f'conv{_vgg_convs(m)}')),
    AlexNet: _Layout(_alexnet_module, dict(lrn=False, conv1_stride=4, conv1_padding=2,
                                           conv2_stride=1, conv2_padding=2, early_pool_padding=0),
                     flatten=lambda m: ('fc6', 'conv5')),
    DenseNet: _Layout(_densenet_module, {}),
}


def _publishes(name: str) -> bool:
  return any(p.source == TORCHVISION for p in models.info(name).published)


def _fields(model: Any) -> dict[str, Any]:
  return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
          if f.name not in ('parent', 'name')}


def _differences(model: Any) -> dict[str, Any]:
  """The fields of ``model`` that differ from torchvision's network: {field: torchvision's value}."""
  fields = _LAYOUTS[type(model)].torchvision_fields
  return {k: v for k, v in fields.items() if getattr(model, k) != v}


def torchvision_models() -> list[str]:
  """The registry entries torchvision's weights convert into: torchvision publishes their figures
  (``Published('torchvision', ...)``) and they compute its network (the paper's v1 ResNets share
  torchvision's counts, not its strides)."""
  return [n for n in models.names() if _publishes(n) and _computes_torchvisions(models.get_model(n))]


def _computes_torchvisions(model: Any) -> bool:
  return type(model) in _LAYOUTS and not _differences(model)


def check_model(name: str) -> Any:
  """The registry model ``name``, or a ConfigError if torchvision's weights do not fit it."""
  model = models.get_model(name)
  if not _publishes(name) or type(model) not in _LAYOUTS:
    raise ConfigError(f'{name} is not one of torchvision\'s networks that cnn_jax.convert knows; '
                      f'torchvision\'s weights convert into {", ".join(torchvision_models())}.')
  differences = _differences(model)
  if differences:
    twin = _fields(model) | differences
    same = [n for n in torchvision_models() if _fields(models.get_model(n)) == twin]
    fix = f'convert into {same[0]}' if same else 'convert into one of ' + ', '.join(torchvision_models())
    listed = ', '.join(f'{k}={getattr(model, k)!r} (torchvision: {v!r})' for k, v in differences.items())
    raise ConfigError(f'{name} has torchvision\'s parameter count but not its network ({listed}): '
                      f'{fix}.')
  return model


# ---------------------------------------------------------------------------------------------
# The mapping: every variable from one tensor, every tensor used

# Variable leaf names -> the tensor names of torchvision's Conv2d, Linear and BatchNorm2d.
_LEAVES = {('params', 'kernel'): 'weight', ('params', 'bias'): 'bias', ('params', 'scale'): 'weight',
           ('batch_stats', 'mean'): 'running_mean', ('batch_stats', 'var'): 'running_var'}
# Tensors torchvision saves that hold no variable: BatchNorm's update counter.
IGNORED_SUFFIXES = ('.num_batches_tracked',)
# The DenseNet files torchvision publishes name a layer's modules 'norm.1', 'conv.2', ...; its own
# loader renames them to 'norm1', 'conv2' (torchvision.models.densenet._load_state_dict).
_LEGACY_DENSENET_KEY = re.compile(
    r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$')


@dataclasses.dataclass(frozen=True)
class Assignment:
  """One variable of ours (``collection``, module ``path`` and leaf) and the tensor that fills it.

  ``layout``: 'conv' (OIHW -> HWIO), 'dense' ((out, in) -> (in, out)), 'flat_dense' (a dense layer
  reading a flattened (C, H, W) map, ``chw``), or 'vector'."""
  collection: str
  path: tuple[str, ...]
  key: str
  layout: str
  chw: Optional[tuple[int, int, int]] = None

  @property
  def variable(self) -> str:
    return '/'.join((self.collection,) + self.path)

  def torch_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape torchvision's tensor has for our variable of ``shape``."""
    if self.layout == 'conv':
      height, width, inputs, outputs = shape
      return (outputs, inputs, height, width)
    if self.layout in ('dense', 'flat_dense'):
      return (shape[1], shape[0])
    return tuple(shape)

  def convert(self, tensor: np.ndarray) -> np.ndarray:
    """torchvision's tensor in our layout, float32."""
    tensor = np.asarray(tensor, np.float32)
    if self.layout == 'conv':
      tensor = tensor.transpose(2, 3, 1, 0)
    elif self.layout == 'dense':
      tensor = tensor.T
    elif self.layout == 'flat_dense':
      channels, height, width = self.chw
      tensor = tensor.reshape(-1, channels, height, width).transpose(2, 3, 1, 0)
      tensor = tensor.reshape(height * width * channels, -1)
    return np.ascontiguousarray(tensor)


def normalized_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """The state dict without the tensors that hold no variable, DenseNet's legacy names renamed."""
  return {_LEGACY_DENSENET_KEY.sub(r'\1\2', key): value for key, value in state_dict.items()
          if not key.endswith(IGNORED_SUFFIXES)}


def variable_shapes(model: Any, input_shape: Sequence[int]) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, *path, leaf): shape} of the model's variables, traced (nothing allocated)."""
  from cnn_jax import train  # pylint: disable=g-import-not-at-top (after runtime.start)
  gc.disable()  # tracing a deep net makes many short-lived objects (see tests/models/test_registry.py)
  try:
    variables = train.variable_shapes(model, input_shape)
  finally:
    gc.enable()
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  return {tuple(str(p.key) for p in path): tuple(leaf.shape) for path, leaf in flat}


@functools.lru_cache(maxsize=None)
def registry_variable_shapes(name: str) -> dict[tuple[str, ...], tuple[int, ...]]:
  """:func:`variable_shapes` of the registry model ``name`` at its registered input shape."""
  return variable_shapes(models.get_model(name), models.info(name).input_shape)


def plan(name: str, shapes: Mapping[str, Sequence[int]],
         source: str = 'the state dict') -> list[Assignment]:
  """Which tensor of a torchvision state dict (given by its ``shapes``) fills each variable of the
  registry model ``name``; ConfigError naming the first missing tensor, unused tensor or shape that
  does not fit. Nothing is allocated: the model's variables are traced."""
  model = check_model(name)
  layout = _LAYOUTS[type(model)]
  ours = registry_variable_shapes(name)
  shapes = normalized_keys(shapes)
  flat_dense, flat_conv = layout.flatten(model) if layout.flatten else (None, None)
  assignments = []
  # params first: a file of another model is named by a weight it lacks, not a BatchNorm statistic
  for (collection, *path, leaf) in sorted(ours, key=lambda variable: variable[0] != 'params'):
    shape = ours[(collection, *path, leaf)]
    module = layout.module_name(model, tuple(path))
    if module is None or (collection, leaf) not in _LEAVES:
      raise ValueError(f'{name}: no torchvision name for the variable {collection}/{"/".join(path)}'
                       f'/{leaf}')  # a module the layout above does not know: a cnn_jax bug
    kind = 'vector'
    chw = None
    if leaf == 'kernel':
      kind = 'conv' if len(shape) == 4 else 'dense'
      if tuple(path) == (flat_dense,):
        channels = ours[('params', flat_conv, 'kernel')][-1]
        side = int(round((shape[0] / channels) ** 0.5))  # the adaptive pool's square output
        kind, chw = 'flat_dense', (channels, side, side)
    assignments.append(Assignment(collection, (*path, leaf), f'{module}.{_LEAVES[collection, leaf]}',
                                  kind, chw))
  wanted = {a.key: a for a in assignments}
  if len(wanted) != len(assignments):  # two variables named alike by the layout: a cnn_jax bug
    raise ValueError(f'{name}: the layout gives two variables the same torchvision tensor')
  missing = [a for a in assignments if a.key not in shapes]
  if missing:
    first = missing[0]
    raise ConfigError(f'{source} has no tensor {first.key!r} for {name}\'s {first.variable} '
                      f'({len(missing)} of the {len(wanted)} tensors {name} needs are missing): is '
                      f'it a torchvision {torchvision_name(name)} state dict?')
  unused = [key for key in shapes if key not in wanted]
  if unused:
    raise ConfigError(f'{source} has {len(unused)} tensor(s) that {name} has no variable for, e.g. '
                      f'{unused[0]!r}: is it a torchvision {torchvision_name(name)} state dict?')
  for a in assignments:
    needed = a.torch_shape(ours[(a.collection, *a.path)])
    if tuple(shapes[a.key]) != needed:
      raise ConfigError(f'{source}: tensor {a.key!r} has shape {tuple(shapes[a.key])}, {name}\'s '
                        f'{a.variable} needs {needed}: is it a torchvision '
                        f'{torchvision_name(name)} state dict of 1000 ImageNet classes?')
  return assignments


def convert_state_dict(name: str, state_dict: Mapping[str, Any],
                       source: str = 'the state dict') -> dict[str, Any]:
  """``{'params': ..., 'batch_stats': ...}`` of the registry model ``name`` (nested dicts of
  float32 numpy arrays) from a torchvision state dict of numpy arrays; ConfigError as :func:`plan`."""
  state_dict = normalized_keys(state_dict)
  variables: dict[str, Any] = {'params': {}, 'batch_stats': {}}
  assignments = plan(name, {k: np.shape(v) for k, v in state_dict.items()}, source)
  untrained = [a.key for a in assignments if not np.all(np.isfinite(state_dict[a.key]))]
  if untrained:
    raise ConfigError(
        f'{source}: {len(untrained)} tensor(s) hold NaN or infinite values, e.g. '
        f'{untrained[0]!r}: these are not trained weights (torchvision\'s vgg16 '
        'IMAGENET1K_FEATURES file trains only the features and leaves the classifier NaN): pass '
        'the IMAGENET1K_V1 file.')
  for a in assignments:
    node = variables[a.collection]
    for part in a.path[:-1]:
      node = node.setdefault(part, {})
    node[a.path[-1]] = a.convert(state_dict[a.key])
  return variables


# ---------------------------------------------------------------------------------------------
# Reading a state dict


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a torchvision state dict file as numpy arrays: ``.safetensors`` through the
  safetensors package (no PyTorch), anything else with ``torch.load`` (weights only)."""
  if not os.path.isfile(path):
    raise ConfigError(f'--weights={path} is not a file: pass a torchvision state dict (.pth or '
                      '.safetensors).')
  if path.endswith('.safetensors'):
    from safetensors import SafetensorError  # pylint: disable=g-import-not-at-top
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as e:
      raise ConfigError(f'cannot read {path} as safetensors: {str(e).splitlines()[0]}') from None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f'reading {path} needs PyTorch (pip install -r requirements-torch.txt); or '
                      'save the state dict as .safetensors (safetensors.torch.save_file) on a '
                      'machine that has it.') from None
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # noqa: BLE001 (pickle, zip and torch errors of a file that is no state dict)
    raise ConfigError(f'cannot read {path} with torch.load(weights_only=True): '
                      f'{str(e).strip().splitlines()[0]}; pass a state dict '
                      '(torch.save(model.state_dict(), path)).') from None
  if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
    raise ConfigError(f'{path} holds a {type(loaded).__name__}, not a state dict of tensors: save '
                      'torch.save(model.state_dict(), path).')
  return {key: (value.float() if value.is_floating_point() else value).numpy()
          for key, value in loaded.items()}


# ---------------------------------------------------------------------------------------------
# The workdir


def make_config(name: str, weights: Weights) -> ml_collections.ConfigDict:
  """configs/default.py for the model on ImageNet, evaluated as ``weights`` were published; the
  training fields stay the defaults (override them to fine-tune)."""
  from configs import default  # pylint: disable=g-import-not-at-top (the repository's configs)
  config = default.get_config()
  config.data.name = 'imagenet2012'
  config.data.eval_ops = weights.eval_ops
  config.data.train_ops = weights.train_ops
  config.data.cache = False  # 1.28M photos
  # The classifier's size is the weights', whatever data set the config is later pointed at.
  config.model = ml_collections.ConfigDict({'name': name,
                                            'num_classes': DATASETS['imagenet2012'].num_classes})
  return config


def _check_new(out: str) -> None:
  for entry in (run_files.CONFIG, run_files.CHECKPOINTS):
    if tf.io.gfile.exists(os.path.join(out, entry)):
      raise ConfigError(f'--out={out} already holds a cnn_jax run ({entry}): pass a new directory.')


def write_workdir(config: ml_collections.ConfigDict, variables: Mapping[str, Any], out: str,
                  image_shape: Sequence[int]) -> None:
  """``out/config.json`` and ``out/checkpoints/0``: a step-0 TrainState holding ``variables``, its
  optimiser (and plateau) state initialised from the config, as a run of ``config`` would save.
  ``image_shape`` is what the eval ops give; the data set itself is not read."""
  from cnn_jax import parallel, train, transfer  # pylint: disable=g-import-not-at-top (after runtime.start)
  from cnn_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  _check_new(out)
  workdir_lib.check_writable(out)
  # The optimiser's state has the parameters' structure whatever the schedule: one step per epoch
  # stands in for the data set's size, which is not read here.
  info = pipeline.DatasetInfo(num_classes=config.model.num_classes, image_shape=tuple(image_shape),
                              num_train=config.batch_size, num_eval=0)
  setup = train.build(config, info=info)
  # The state a fresh run of the config makes, with every variable loaded (as config.init_from does)
  every_variable = transfer.Loaded(
      arrays={(collection, path): array for collection in ('params', 'batch_stats')
              for path, array in transfer.flatten(variables[collection]).items()},
      initialised=(), table='')
  state = train.init_state(setup, config.seed, every_variable)
  manager = checkpoint.make_manager(out, config)
  checkpoint.save(manager, 0, state, parallel.replicate(train.zero_train_sums(), setup.mesh),
                  force=True)
  checkpoint.wait(manager)
  manager.close()
  workdir_lib.save_config(config, out, resumed_step=None, changes=[])


def convert(name: str, weights_path: str, out: str,
            weights_version: Optional[str] = None) -> tuple[Weights, dict[str, Any]]:
  """Converts torchvision's weights in ``weights_path`` for the registry model ``name`` into the
  workdir ``out``; returns which weights they are and the variables written. Every mistake is a
  ConfigError before anything is written."""
  check_model(name)
  weights = find_weights(name, weights_path, weights_version)
  _check_new(out)
  variables = convert_state_dict(name, read_state_dict(weights_path), source=weights_path)
  config = make_config(name, weights)
  write_workdir(config, variables, out, (weights.crop_size, weights.crop_size, 3))
  return weights, variables


# ---------------------------------------------------------------------------------------------
# Command line


def _count(tree: Any) -> int:
  return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(tree))


def main(argv: Sequence[str]) -> None:
  from cnn_jax import runtime  # pylint: disable=g-import-not-at-top
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  with cnn_jax.one_line_errors():
    # orbax logs every write, and its handler set-up, as news
    runtime.start_program(argv, log_level=logging.ERROR)
    weights, variables = convert(args.model, args.weights, args.out, args.weights_version)
  print(f'{args.model}: torchvision\'s {weights.model} {weights.version} weights '
        f'({weights.file}): {len(jax.tree.leaves(variables["params"]))} params and '
        f'{len(jax.tree.leaves(variables["batch_stats"]))} batch_stats tensors, '
        f'{_count(variables["params"]):,} parameters\n'
        f'wrote {args.out}: {run_files.CONFIG} and {run_files.CHECKPOINTS}/0\n'
        f'eval preprocessing: {weights.eval_ops}\n'
        f'evaluate on ImageNet: python -m cnn_jax.evaluate --workdir={args.out} '
        '--config.data.manual_dir=DIR_WITH_THE_ILSVRC2012_TARS', flush=True)


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum('from', None, list(SOURCES), 'Where the weights come from.', required=True)
  flags.DEFINE_string('model', None, 'The registry model to convert into: '
                      + ', '.join(torchvision_models()), required=True)
  flags.DEFINE_string('weights', None, 'A torchvision state dict: .pth (needs PyTorch) or '
                      '.safetensors with torchvision\'s tensor names.', required=True)
  flags.DEFINE_string('out', None, 'The workdir to write (new).', required=True)
  flags.DEFINE_enum('weights_version', None, list(WEIGHTS_VERSIONS),
                    'Which torchvision weights the file holds, when its name does not say '
                    '(torchvision names its downloads, e.g. resnet50-11ad3fa6.pth is V2).')
  app.run(main)
