"""Pre-activation ResNet (He et al. 2016, "Identity mappings in deep residual networks").

A unit is BN-ReLU-conv-BN-ReLU-conv (basic) or BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1
(bottleneck, x4 output channels) added to the shortcut, with nothing after the add; the net ends in
BN-ReLU before global average pooling and the classifier.

Where the shortcut reads the activations follows the authors' code (fb.resnet.torch preresnet.lua,
resnet-1k-layers): the first unit of every stage applies its BN-ReLU *before* splitting into the
two paths, so its (projection) shortcut sees the pre-activated input, as the paper states for the
unit after conv1; the other units pre-activate the residual path only and keep a pure identity.
On ImageNet the stem (7x7/2 conv-BN-ReLU-max-pool) already ends in BN-ReLU, so the first unit of
stage 1 has no pre-activation. Projection shortcuts are a 1x1 conv without BN.

CIFAR nets (``stem='cifar'``): 3x3 conv 16, three stages at 16/32/64 planes, depth 9n+2 with
bottlenecks or 6n+2 with basic units. ResNet-164 has 1.70M parameters (paper: 1.7M). ResNet-1001
has 10.33M where the paper (and the reference sheet) print 10.2M: the printed figure is the conv
and fc weights alone (10.19M); BatchNorm's scale and bias add the rest. ``preact_resnet110`` uses
option-A shortcuts, so it has exactly the parameters of the original ResNet-110 (1.7M), the pairing
of the paper's Table 3.

The pre-activation trunk (:func:`preact_trunk`) is shared with the Wide ResNet (wide_resnet.py).
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.models import CIFAR_INPUT, IMAGENET_INPUT, Published, Smoke, layers, register
from cnn_jax.models import resnet
from cnn_jax.models.layers import conv

class PreActUnit(nn.Module):
  """One pre-activation residual unit; ``features`` is its output width.

  ``preact``: 'shared' (BN-ReLU before the split; the shortcut reads the activations), 'residual'
  (BN-ReLU on the residual path only; identity shortcut) or 'none' (the input is already activated).
  ``dropout_rate`` drops activations before the last conv of the branch (the Wide ResNet's dropout
  between the two 3x3 convs).
  """
  features: int
  block: str = 'basic'
  stride: int = 1
  preact: str = 'residual'
  shortcut: str = 'B'
  stride_on_3x3: bool = True
  dropout_rate: float = 0.0
  survival_prob: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn_act = functools.partial(layers.bn_act, train=train, dtype=self.dtype,
                               bn_group_size=self.bn_group_size, act=self.act)
    activated = x if self.preact == 'none' else bn_act(x, name='bn1')
    shortcut_input = x if self.preact == 'residual' else activated
    if self.block == 'basic':
      y = conv(self.features, 3, self.stride, name='conv1', dtype=self.dtype)(activated)
      y = bn_act(y, name='bn2')
      last_conv = conv(self.features, 3, name='conv2', dtype=self.dtype)
    else:
      planes = self.features // resnet.BOTTLENECK_EXPANSION
      stride_1x1, stride_3x3 = (1, self.stride) if self.stride_on_3x3 else (self.stride, 1)
      y = bn_act(conv(planes, 1, stride_1x1, name='conv1', dtype=self.dtype)(activated), name='bn2')
      y = bn_act(conv(planes, 3, stride_3x3, name='conv2', dtype=self.dtype)(y), name='bn3')
      last_conv = conv(self.features, 1, name='conv3', dtype=self.dtype)
    if self.dropout_rate > 0:
      y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = layers.StochasticDepth(self.survival_prob)(last_conv(y), train)
    y = y + resnet.shortcut(shortcut_input, self.features, self.stride, self.shortcut, train,
                            dtype=self.dtype, bn_group_size=self.bn_group_size, norm=False)
    return layers.checkpoint_block_output(y)


def preact_trunk(x: jax.Array, train: bool, *, block: str, stage_sizes: Sequence[int],
                 stage_features: Sequence[int], stem_activated: bool, num_classes: int,
                 shortcut: str = 'B', stride_on_3x3: bool = True, dropout_rate: float = 0.0,
                 survival_prob_last: float = 1.0, dtype: Any = jnp.float32,
                 bn_group_size: Optional[int] = None, act: layers.Activation) -> jax.Array:
  """Stages of pre-activation units, final BN-ReLU, global average pool, fc: float32 logits.

  Call from a compact method after the stem; the units become submodules of the caller. Stage s
  has ``stage_sizes[s]`` units of ``stage_features[s]`` output channels; every stage but the first
  halves the resolution. ``stem_activated``: the stem ended in BN-ReLU (ImageNet).
  """
  probs = iter(layers.survival_probs(sum(stage_sizes), survival_prob_last))
  for stage, (count, features) in enumerate(zip(stage_sizes, stage_features)):
    for i in range(count):
      if i:
        preact = 'residual'
      else:
        preact = 'none' if stage == 0 and stem_activated else 'shared'
      x = PreActUnit(features, block, stride=2 if stage and i == 0 else 1, preact=preact,
                     shortcut=shortcut, stride_on_3x3=stride_on_3x3, dropout_rate=dropout_rate,
                     survival_prob=next(probs), dtype=dtype, bn_group_size=bn_group_size, act=act,
                     name=f'stage{stage + 1}_block{i + 1}')(x, train)
  x = layers.bn_act(x, train, name='final_bn', dtype=dtype, bn_group_size=bn_group_size, act=act)
  return layers.classifier_head(x, num_classes, dtype=dtype)


class PreActResNet(nn.Module):
  """Pre-activation ResNet for ImageNet (depths 18..200) or CIFAR (``stem='cifar'``)."""
  depth: int = 50
  num_classes: int = 1000
  stem: str = 'imagenet'
  block: Optional[str] = None  # None: ImageNet as the table, CIFAR bottleneck (9n+2)
  base_width: Optional[int] = None  # stem filters and stage-1 planes; None: 64 ImageNet, 16 CIFAR
  shortcut: str = 'B'
  stride_on_3x3: bool = True
  dropout_rate: float = 0.0
  survival_prob_last: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    resnet.stage_layout('pre-activation ResNet', self.depth, self.stem, self.block)
    layers.check_choice('shortcut option', self.shortcut, resnet.SHORTCUTS)
    layers.check_positive_int('num_classes', self.num_classes)
    if self.base_width is not None:
      layers.check_positive_int('base_width', self.base_width)
    layers.check_dropout_rate(self.dropout_rate)
    layers.check_survival_prob(self.survival_prob_last)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    block, stage_sizes = resnet.stage_layout('pre-activation ResNet', self.depth, self.stem, self.block)
    imagenet = self.stem == 'imagenet'
    width = self.base_width or (64 if imagenet else 16)
    x = x.astype(self.dtype)
    if imagenet:
      x = layers.imagenet_stem(x, train, features=width, dtype=self.dtype,
                               bn_group_size=self.bn_group_size, act=self.act)
    else:
      x = conv(width, 3, name='conv1', dtype=self.dtype)(x)
    expansion = resnet.BOTTLENECK_EXPANSION if block == 'bottleneck' else 1
    return preact_trunk(
        x, train, block=block, stage_sizes=stage_sizes,
        stage_features=[width * 2 ** s * expansion for s in range(len(stage_sizes))],
        stem_activated=imagenet, num_classes=self.num_classes, shortcut=self.shortcut,
        stride_on_3x3=self.stride_on_3x3, dropout_rate=self.dropout_rate,
        survival_prob_last=self.survival_prob_last, dtype=self.dtype, bn_group_size=self.bn_group_size,
        act=self.act)


_PAPER = 'He et al. 2016, "Identity mappings in deep residual networks"'
# Millions, Tables 2 and 3; ResNet-1001's 10.2M counts its weights only (10.33M with BatchNorm).
_PUBLISHED = {164: Published('He et al. 2016, Table 2', params_m=1.7),
              1001: Published('He et al. 2016, Table 2 (weights only)', params_m=10.2,
                              tolerance=0.015)}
register('preact_resnet', PreActResNet, input_shape=IMAGENET_INPUT, paper=_PAPER, published=(),
         smoke=Smoke(dict(depth=18, base_width=8), CIFAR_INPUT))
register('preact_resnet_cifar', PreActResNet, stem='cifar', depth=164, num_classes=10,
         input_shape=CIFAR_INPUT, paper=_PAPER, published=(_PUBLISHED[164],),
         smoke=Smoke(dict(depth=11, block='bottleneck', base_width=4), (16, 16, 3)))
for _depth in resnet.IMAGENET_LAYOUTS:
  register(f'preact_resnet{_depth}', PreActResNet, depth=_depth, input_shape=IMAGENET_INPUT,
           paper=_PAPER, published=())
for _depth in (164, 1001):
  register(f'preact_resnet{_depth}', PreActResNet, stem='cifar', depth=_depth, num_classes=10,
           input_shape=CIFAR_INPUT, paper=_PAPER, published=(_PUBLISHED[_depth],))
# The pre-activation twin of the original ResNet-110 (the paper's Table 3).
register('preact_resnet110', PreActResNet, stem='cifar', depth=110, block='basic', shortcut='A',
         num_classes=10, input_shape=CIFAR_INPUT, paper=_PAPER,
         published=(Published('He et al. 2016, Table 3', params_m=1.7),))
