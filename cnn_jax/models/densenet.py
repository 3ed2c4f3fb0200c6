"""DenseNet (Huang et al. 2017): every layer reads the concatenation of all earlier maps of its block.

A layer is BN-ReLU-conv3x3 producing ``growth_rate`` (k) maps; DenseNet-B puts BN-ReLU-conv1x1 with
4k maps first. Transitions between blocks are BN-ReLU-conv1x1-avgpool 2x2 and -C keeps
floor(compression * m) of the m maps. The paper's text describes the transition as BN-conv-pool;
the ReLU is the authors' code (and torchvision's), which produced the published numbers. With
``dropout_rate`` > 0, dropout follows every conv but the first (the paper's CIFAR runs without
augmentation).

ImageNet (DenseNet-BC, k=32): 7x7/2 conv 2k-BN-ReLU-3x3/2 max-pool, four blocks (121: 6/12/24/16,
169: 6/12/32/32, 201: 6/12/48/32, 264: 6/12/64/48), final BN-ReLU, global average pool, fc; the
counts equal torchvision's. CIFAR (``stem='cifar'``): 3x3 conv with 2k maps (BC) or 16 maps (plain
DenseNet), three blocks of (L-4)/6 bottleneck layers (BC) or (L-4)/3 layers, 8x8 global pool.

Not residual, so no stochastic depth here.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import CIFAR_INPUT, IMAGENET_INPUT, Published, Smoke, layers, register, resnet
from cnn_jax.models.layers import conv

IMAGENET_BLOCKS: dict[int, tuple[int, ...]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
BOTTLENECK_FACTOR = 4  # DenseNet-B's 1x1 produces 4k maps
PLAIN_CIFAR_STEM = 16


class DenseLayer(nn.Module):
  """[BN-ReLU-conv1x1(4k)-] BN-ReLU-conv3x3(k), concatenated to the input."""
  growth_rate: int
  bottleneck: bool = True
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=not train) if self.dropout_rate else y
    bn_act = functools.partial(layers.bn_act, train=train, dtype=self.dtype,
                               bn_group_size=self.bn_group_size, act=self.act)
    y = x
    if self.bottleneck:
      y = bn_act(y, name='bn1')
      y = drop(conv(BOTTLENECK_FACTOR * self.growth_rate, 1, name='conv1', dtype=self.dtype)(y))
    y = bn_act(y, name='bn2')
    y = drop(conv(self.growth_rate, 3, name='conv2', dtype=self.dtype)(y))
    # A fusion boundary, as at the end of a residual block: XLA:CPU otherwise fuses the chain of
    # concatenations into the backward pass (DenseNet-BC-100: compile 27 s -> 19 s, step 3.2 -> 3.1 s).
    return layers.checkpoint_block_output(jnp.concatenate([x, y], axis=-1))


class Transition(nn.Module):
  """BN-ReLU-conv1x1(``features``)-avgpool 2x2/2."""
  features: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = layers.bn_act(x, train, name='bn', dtype=self.dtype, bn_group_size=self.bn_group_size,
                      act=self.act)
    y = conv(self.features, 1, name='conv', dtype=self.dtype)(y)
    if self.dropout_rate:
      y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    return nn.avg_pool(y, (2, 2), (2, 2))


def block_sizes(depth: int, stem: str, bottleneck: bool) -> tuple[int, ...]:
  """Layers per dense block, or a :class:`ConfigError` naming the depth rule."""
  layers.check_choice('DenseNet stem', stem, resnet.STEMS)
  if stem == 'imagenet':
    if depth not in IMAGENET_BLOCKS:
      raise ConfigError(f'ImageNet DenseNet depth {depth!r} has no layout; valid depths: '
                        f'{", ".join(map(str, IMAGENET_BLOCKS))} (or stem="cifar" for L = 6n+4).')
    if not bottleneck:
      raise ConfigError('the ImageNet DenseNets (121/169/201/264) are DenseNet-BC: bottleneck=True.')
    return IMAGENET_BLOCKS[depth]
  # L counts the first conv, the layers' convs (2 per BC layer), the two transitions and the fc.
  per_block = 6 if bottleneck else 3
  kind = 'DenseNet-BC (bottleneck)' if bottleneck else 'DenseNet without bottlenecks'
  n = layers.units_for_depth(depth, per_unit=per_block, fixed=4, net=f'a CIFAR {kind}',
                             counted='three blocks of n layers',
                             examples='100, 190, 250' if bottleneck else '40, 100')
  return (n, n, n)


class DenseNet(nn.Module):
  """DenseNet-``depth`` with growth rate ``growth_rate``; ImageNet or CIFAR (``stem='cifar'``)."""
  depth: int = 121
  growth_rate: int = 32
  compression: float = 0.5  # theta; 1.0 without -C
  bottleneck: bool = True  # -B
  stem: str = 'imagenet'
  dropout_rate: float = 0.0
  num_classes: int = 1000
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    block_sizes(self.depth, self.stem, self.bottleneck)
    layers.check_positive_int('DenseNet growth_rate k', self.growth_rate)
    layers.check_positive_int('num_classes', self.num_classes)
    if not 0.0 < self.compression <= 1.0:
      raise ConfigError(f'DenseNet compression (theta, the fraction of maps a transition keeps) must '
                        f'be in (0, 1], 0.5 for DenseNet-C and 1 without; got {self.compression}.')
    layers.check_dropout_rate(self.dropout_rate)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    sizes = block_sizes(self.depth, self.stem, self.bottleneck)
    x = x.astype(self.dtype)
    stem_features = 2 * self.growth_rate if self.bottleneck else PLAIN_CIFAR_STEM
    norm_act = dict(dtype=self.dtype, bn_group_size=self.bn_group_size, act=self.act)
    if self.stem == 'imagenet':
      x = layers.imagenet_stem(x, train, features=stem_features, **norm_act)
    else:
      x = conv(stem_features, 3, name='conv1', dtype=self.dtype)(x)
    for b, count in enumerate(sizes):
      if b:
        x = Transition(math.floor(self.compression * x.shape[-1]), self.dropout_rate,
                       name=f'transition{b}', **norm_act)(x, train)
      for i in range(count):
        x = DenseLayer(self.growth_rate, self.bottleneck, self.dropout_rate,
                       name=f'block{b + 1}_layer{i + 1}', **norm_act)(x, train)
    x = layers.bn_act(x, train, name='final_bn', **norm_act)
    return layers.classifier_head(x, self.num_classes, dtype=self.dtype)


_PAPER = 'Huang et al. 2017, "Densely connected convolutional networks"'
_IMAGENET = {121: Published('torchvision', params=7_978_856),
             169: Published('torchvision', params=14_149_480),
             201: Published('torchvision', params=20_013_928),
             264: Published('Huang et al. 2017, Figure 3', params_m=33.3)}
_CIFAR_MILLIONS = {(100, 12): 0.8, (250, 24): 15.3, (190, 40): 25.6}   # Table 2, DenseNet-BC

register('densenet', DenseNet, input_shape=IMAGENET_INPUT, paper=_PAPER, published=())
for _depth in IMAGENET_BLOCKS:
  register(f'densenet{_depth}', DenseNet, depth=_depth, input_shape=IMAGENET_INPUT, paper=_PAPER,
           published=(_IMAGENET[_depth],))
register('densenet_cifar', DenseNet, stem='cifar', depth=100, growth_rate=12, num_classes=10,
         input_shape=CIFAR_INPUT, paper=_PAPER,
         published=(Published('Huang et al. 2017, Table 2', params_m=0.8),),
         smoke=Smoke(dict(depth=16, growth_rate=4), (16, 16, 3)))
# Table 2 of the paper: DenseNet-BC (L, k) and the basic DenseNet (no bottleneck, no compression).
for (_depth, _k), _millions in _CIFAR_MILLIONS.items():
  register(f'densenet_bc{_depth}_{_k}', DenseNet, stem='cifar', depth=_depth, growth_rate=_k,
           num_classes=10, input_shape=CIFAR_INPUT, paper=_PAPER,
           published=(Published('Huang et al. 2017, Table 2', params_m=_millions),))
register('densenet40_12', DenseNet, stem='cifar', depth=40, growth_rate=12, bottleneck=False,
         compression=1.0, num_classes=10, input_shape=CIFAR_INPUT, paper=_PAPER,
         published=(Published('Huang et al. 2017, Table 2', params_m=1.0),))
