"""ResNet (He et al. 2015): the CIFAR nets (depth 6n+2) and the ImageNet nets (18 to 200 layers).

One module, :class:`ResNet`, builds both. CIFAR (``stem='cifar'``, registered as ``resnet*_cifar``
and ``plain*_cifar``): 3x3 conv 16-BN-ReLU, three stages of n basic blocks at 16/32/64 filters with
option-A shortcuts (identity, with stride-2 subsampling and zero-padded channels where the shape
changes), so the residual net and its plain twin have identical parameter counts.

ImageNet: stem 7x7/2 conv 64-BN-ReLU-3x3/2 max-pool, four stages at 64/128/256/512 planes (x4
output channels for bottlenecks), global average pooling, fc. Defaults are torchvision's (v1.5 with
option-B shortcuts), whose parameter counts it matches exactly. ``stride_on_3x3=False``
is the paper's v1 (stride 2 on the first 1x1 of a downsampling bottleneck); ``shortcut`` selects
option A, B or C; ``residual=False`` is the plain twin of any depth. ``groups``/``width_per_group``
give ResNeXt and wide ResNets (registered in resnext.py and wide_resnet.py) and ``stem='cifar'``
the CIFAR ResNeXt-29.

Stochastic depth (Huang et al. 2016) is an option of every residual net: ``survival_prob_last`` < 1
enables the linear decay rule over all blocks of the net.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import CIFAR_INPUT, IMAGENET_INPUT, Published, Smoke, layers, register
from cnn_jax.models.layers import conv

# Blocks per stage of the ImageNet nets (He et al. 2015, Table 1; ResNet-200 from He et al. 2016).
IMAGENET_LAYOUTS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}
WEIGHT_LAYERS_PER_BLOCK = {'basic': 2, 'bottleneck': 3}
BOTTLENECK_EXPANSION = 4
STEMS = ('imagenet', 'cifar')
SHORTCUTS = ('A', 'B', 'C')


def stage_layout(family: str, depth: int, stem: str, block: Optional[str]) -> tuple[str, tuple[int, ...]]:
  """The block type and blocks per stage of a residual net, or a :class:`ConfigError`.

  ImageNet depths come from the papers' table; a CIFAR net has three equal stages, so its depth is
  6n+2 (basic blocks, two weight layers each) or 9n+2 (bottlenecks, three), counting the first
  conv and the classifier. A CIFAR net defaults to bottlenecks (ResNeXt-29, pre-act ResNet-164).
  """
  layers.check_choice(f'{family} stem', stem, STEMS)
  if block is not None:
    layers.check_choice(f'{family} block', block, tuple(WEIGHT_LAYERS_PER_BLOCK))
  if stem == 'imagenet':
    if depth not in IMAGENET_LAYOUTS:
      raise ConfigError(f'{family} depth {depth!r} has no ImageNet layout; valid depths: '
                        f'{", ".join(map(str, IMAGENET_LAYOUTS))}.')
    table_block, stage_sizes = IMAGENET_LAYOUTS[depth]
    if block not in (None, table_block):
      raise ConfigError(f'ImageNet {family}-{depth} is built from {table_block} blocks (got '
                        f'block={block!r}); basic: depths 18, 34; bottleneck: 50, 101, 152, 200.')
    return table_block, stage_sizes
  block = block or 'bottleneck'
  per_block = WEIGHT_LAYERS_PER_BLOCK[block]
  n = layers.units_for_depth(depth, per_unit=3 * per_block, fixed=2,
                             net=f'a CIFAR {family} of {block} blocks',
                             counted=f'three stages of n blocks of {per_block} weight layers, plus '
                                     'the first conv and the classifier',
                             examples='29, 164, 1001' if block == 'bottleneck'
                             else '20, 32, 44, 56, 110, 1202')
  return block, (n, n, n)


# ----------------------------------------------------------------------------- building blocks


def shortcut_option_a(x: jax.Array, features: int, stride: int) -> jax.Array:
  """Identity shortcut; subsamples by ``stride`` and zero-pads the new channels."""
  if stride > 1:
    x = x[:, ::stride, ::stride, :]
  extra = features - x.shape[-1]
  if extra:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  return x


def shortcut(x: jax.Array, features: int, stride: int, option: str, train: bool, *, dtype: Any,
             bn_group_size: Optional[int], norm: bool = True) -> jax.Array:
  """He et al. 2015 shortcuts: A parameter-free, B projection where the shape changes, C always.

  Call from a compact method: the projection (``proj_conv``, then ``proj_bn`` if ``norm``, as
  torchvision; pre-activation nets project without BN) becomes a submodule of the caller.
  """
  reshapes = stride != 1 or x.shape[-1] != features
  if option == 'C' or (option == 'B' and reshapes):
    x = conv(features, 1, stride, name='proj_conv', dtype=dtype)(x)
    if norm:
      x = layers.BatchNorm(dtype=dtype, group_size=bn_group_size, name='proj_bn')(x, train)
    return x
  return shortcut_option_a(x, features, stride)


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, added to the shortcut, then ReLU (v1 ordering); ReLU is ``act``."""
  features: int
  stride: int = 1
  residual: bool = True
  survival_prob: float = 1.0
  shortcut: str = 'A'
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda name: layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size, name=name)
    bn_act = functools.partial(layers.bn_act, train=train, dtype=self.dtype,
                               bn_group_size=self.bn_group_size, act=self.act)
    y = conv(self.features, 3, self.stride, name='conv1', dtype=self.dtype)(x)
    y = bn_act(y, name='bn1')
    y = norm('bn2')(conv(self.features, 3, name='conv2', dtype=self.dtype)(y), train)
    if self.residual:
      y = layers.StochasticDepth(self.survival_prob)(y, train)
      y = y + shortcut(x, self.features, self.stride, self.shortcut, train, dtype=self.dtype,
                       bn_group_size=self.bn_group_size)
    return layers.checkpoint_block_output(self.act(y))


class Bottleneck(nn.Module):
  """1x1 reduce - 3x3 - 1x1 expand (x4), each followed by BN, ReLU after the add (v1 ordering).

  The inner width is torchvision's ``planes * width_per_group / 64 * groups``; ``groups`` > 1 makes
  the 3x3 a grouped conv, the ResNeXt block (Xie et al. 2016, form (c) of their Fig. 3).
  """
  planes: int
  stride: int = 1
  groups: int = 1
  width_per_group: int = 64
  stride_on_3x3: bool = True
  residual: bool = True
  survival_prob: float = 1.0
  shortcut: str = 'B'
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu

  expansion: ClassVar[int] = BOTTLENECK_EXPANSION

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = lambda name: layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size, name=name)
    bn_act = functools.partial(layers.bn_act, train=train, dtype=self.dtype,
                               bn_group_size=self.bn_group_size, act=self.act)
    width = int(self.planes * (self.width_per_group / 64.0)) * self.groups
    out_features = self.planes * self.expansion
    stride_1x1, stride_3x3 = (1, self.stride) if self.stride_on_3x3 else (self.stride, 1)
    y = bn_act(conv(width, 1, stride_1x1, name='conv1', dtype=self.dtype)(x), name='bn1')
    y = conv(width, 3, stride_3x3, name='conv2', dtype=self.dtype, groups=self.groups)(y)
    y = bn_act(y, name='bn2')
    y = norm('bn3')(conv(out_features, 1, name='conv3', dtype=self.dtype)(y), train)
    if self.residual:
      y = layers.StochasticDepth(self.survival_prob)(y, train)
      y = y + shortcut(x, out_features, self.stride, self.shortcut, train, dtype=self.dtype,
                       bn_group_size=self.bn_group_size)
    return layers.checkpoint_block_output(self.act(y))


# ----------------------------------------------------------------------------- networks


class ResNet(nn.Module):
  """A ResNet (v1 blocks): any depth of the paper's ImageNet table with torchvision's defaults.

  ``stem='cifar'`` replaces the 7x7/2 conv and max-pool by a 3x3 conv-BN-ReLU and uses three stages
  (strides 1, 2, 2): of (depth-2)/9 bottlenecks by default (the CIFAR ResNeXt-29 of Xie et al.), or
  with ``block='basic'``, ``base_width=16`` and ``shortcut='A'`` of (depth-2)/6 basic blocks, the
  CIFAR ResNets of He et al. (``CIFAR``).
  """
  depth: int = 50
  num_classes: int = 1000
  stem: str = 'imagenet'
  block: Optional[str] = None  # None: basic below 50 layers, bottleneck from 50 (and on CIFAR)
  base_width: int = 64  # stem filters and stage-1 planes; planes double at every stage
  groups: int = 1
  width_per_group: int = 64
  stride_on_3x3: bool = True
  shortcut: str = 'B'
  residual: bool = True
  survival_prob_last: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    block, _ = stage_layout('ResNet', self.depth, self.stem, self.block)
    layers.check_choice('shortcut option', self.shortcut, SHORTCUTS)
    for what in ('base_width', 'groups', 'width_per_group', 'num_classes'):
      layers.check_positive_int(what, getattr(self, what))
    if block == 'basic' and (self.groups, self.width_per_group) != (1, 64):
      raise ConfigError(f'groups and width_per_group widen the 3x3 of a bottleneck; a basic-block '
                        f'ResNet (depth {self.depth}) needs groups=1 and width_per_group=64, got '
                        f'{self.groups} and {self.width_per_group}.')
    if block == 'bottleneck' and self.base_width * self.width_per_group < 64:
      raise ConfigError(f'a bottleneck\'s 3x3 has int(planes * width_per_group / 64) channels per '
                        f'group; base_width * width_per_group must be at least 64 for stage 1 to '
                        f'have any, got {self.base_width} * {self.width_per_group}.')
    layers.check_survival_prob(self.survival_prob_last, self.residual)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    block, stage_sizes = stage_layout('ResNet', self.depth, self.stem, self.block)
    probs = iter(layers.survival_probs(sum(stage_sizes), self.survival_prob_last))
    x = x.astype(self.dtype)
    norm_act = dict(dtype=self.dtype, bn_group_size=self.bn_group_size, act=self.act)
    if self.stem == 'imagenet':
      x = layers.imagenet_stem(x, train, features=self.base_width, **norm_act)
    else:
      x = conv(self.base_width, 3, name='conv1', dtype=self.dtype)(x)
      x = layers.bn_act(x, train, name='bn1', **norm_act)
    common = dict(residual=self.residual, shortcut=self.shortcut, **norm_act)
    for stage, count in enumerate(stage_sizes):
      planes = self.base_width * 2 ** stage
      for i in range(count):
        stride = 2 if stage and i == 0 else 1
        name = f'stage{stage + 1}_block{i + 1}'
        if block == 'basic':
          unit = BasicBlock(planes, stride, survival_prob=next(probs), name=name, **common)
        else:
          unit = Bottleneck(planes, stride, groups=self.groups, width_per_group=self.width_per_group,
                            stride_on_3x3=self.stride_on_3x3, survival_prob=next(probs), name=name,
                            **common)
        x = unit(x, train)
    return layers.classifier_head(x, self.num_classes, dtype=self.dtype)


PAPER = 'He et al. 2015, "Deep residual learning for image recognition"'
# CIFAR-10 nets, Table 6 (millions); the plain twins have the same counts (option A is parameter-free).
_CIFAR_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
# ImageNet: torchvision's exact counts and multiply-adds (v1.5), the paper's Table 1 FLOPs (v1).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                      152: 60_192_808}
_TORCHVISION_GMACS = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.80, 152: 11.51}
_PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}


def _cifar(depth: int) -> tuple[Published, ...]:
  return (Published('He et al. 2015, Table 6', params_m=_CIFAR_MILLIONS[depth]),)


def _paper_table_1(depth: int) -> Published:
  # The table truncates: ResNet-50's 3.86 G prints as 3.8, ResNet-34's 3.66 as 3.6.
  return Published('He et al. 2015, Table 1', gmacs=_PAPER_GMACS[depth], tolerance=0.02)


# The CIFAR nets of the paper (section 4.2): ResNet-(6n+2) and its plain twin.
CIFAR = dict(stem='cifar', block='basic', base_width=16, shortcut='A', num_classes=10)
for _depth in (20, 32, 44, 56, 110, 1202):
  register(f'resnet{_depth}_cifar', ResNet, depth=_depth, **CIFAR, input_shape=CIFAR_INPUT,
           paper=PAPER, published=_cifar(_depth))
for _depth in (20, 32, 44, 56, 110):
  register(f'plain{_depth}_cifar', ResNet, depth=_depth, residual=False, **CIFAR,
           input_shape=CIFAR_INPUT, paper=PAPER, published=_cifar(_depth),
           smoke=Smoke({}, CIFAR_INPUT) if _depth == 20 else None)
register('resnet_cifar', ResNet, depth=20, **CIFAR, input_shape=CIFAR_INPUT, paper=PAPER,
         published=())

register('resnet', ResNet, input_shape=IMAGENET_INPUT, paper=PAPER, published=())
for _depth in (18, 34, 50, 101, 152):  # torchvision's depths; depth=200 is an argument away
  register(f'resnet{_depth}', ResNet, depth=_depth, input_shape=IMAGENET_INPUT, paper=PAPER,
           published=(Published('torchvision', params=TORCHVISION_PARAMS[_depth],
                                gmacs=_TORCHVISION_GMACS[_depth]),)
           + ((_paper_table_1(_depth),) if _depth in (18, 34) else ()),
           smoke=Smoke(dict(base_width=8, survival_prob_last=0.5), CIFAR_INPUT)
           if _depth == 18 else None)
for _depth in (50, 101, 152):  # the paper's v1 bottlenecks (v1 moves a stride, not a weight)
  register(f'resnet{_depth}_v1', ResNet, depth=_depth, stride_on_3x3=False,
           input_shape=IMAGENET_INPUT, paper=PAPER,
           published=(Published('torchvision', params=TORCHVISION_PARAMS[_depth]),
                      _paper_table_1(_depth)))
for _depth in (18, 34):  # the paper's degradation experiment; residual=False works at any depth
  register(f'plain{_depth}', ResNet, depth=_depth, residual=False, input_shape=IMAGENET_INPUT,
           paper=PAPER, published=())
# The shortcut ablation of the paper (Table 3, on ResNet-34); B is resnet34 itself.
register('resnet34_a', ResNet, depth=34, shortcut='A', input_shape=IMAGENET_INPUT, paper=PAPER,
         published=())
register('resnet34_c', ResNet, depth=34, shortcut='C', input_shape=IMAGENET_INPUT, paper=PAPER,
         published=())
