"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-d-k for CIFAR and torchvision's wide_resnet50_2.

WRN-d-k: 3x3 conv 16, three stages of n = (d-4)/6 pre-activation basic units at 16k/32k/64k
channels (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, 1x1 projection shortcut where the width changes),
final BN-ReLU, global average pool, fc. The depth d counts the two 3x3 convs per unit, the first
conv, the classifier and two of the projection shortcuts, hence 6n+4. The units are those of the
pre-activation ResNet (preact_resnet.py) with its rule for where the shortcut reads: the first unit
of every stage pre-activates before the split. (The authors' code does so only when the width
changes, which differs from this for k = 1 only.)

wide_resnet50_2 / wide_resnet101_2 (the ImageNet "WRN-50-2") are v1.5 bottleneck ResNets with the
3x3 (and the 1x1s around it) twice as wide, torchvision's definition.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.models import CIFAR_INPUT, IMAGENET_INPUT, Published, Smoke, layers, register, resnet
from cnn_jax.models.preact_resnet import preact_trunk
from cnn_jax.models.layers import conv

STEM_FEATURES = 16


class WideResNet(nn.Module):
  """WRN-``depth``-``widen_factor`` for 32x32 inputs; ``dropout_rate`` between the two convs."""
  depth: int = 28
  widen_factor: int = 10
  dropout_rate: float = 0.0
  num_classes: int = 10
  survival_prob_last: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    layers.units_for_depth(self.depth, per_unit=6, fixed=4, net='a Wide ResNet',
                           counted='three stages of n two-conv units, the first conv, the '
                                   'classifier and two projection shortcuts',
                           examples='16, 22, 28, 40')
    layers.check_positive_int('Wide ResNet widen_factor k', self.widen_factor)
    layers.check_positive_int('num_classes', self.num_classes)
    layers.check_dropout_rate(self.dropout_rate)
    layers.check_survival_prob(self.survival_prob_last)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n = (self.depth - 4) // 6
    x = conv(STEM_FEATURES, 3, name='conv1', dtype=self.dtype)(x.astype(self.dtype))
    return preact_trunk(
        x, train, block='basic', stage_sizes=(n, n, n),
        stage_features=[STEM_FEATURES * self.widen_factor * 2 ** s for s in range(3)],
        stem_activated=False, num_classes=self.num_classes, shortcut='B',
        dropout_rate=self.dropout_rate, survival_prob_last=self.survival_prob_last,
        dtype=self.dtype, bn_group_size=self.bn_group_size, act=self.act)


_PAPER = 'Zagoruyko & Komodakis 2016, "Wide residual networks"'
_PAPER_MILLIONS = {(16, 8): 11.0, (28, 10): 36.5, (40, 4): 8.9}   # Table 4
register('wrn', WideResNet, input_shape=CIFAR_INPUT, paper=_PAPER, published=(),
         smoke=Smoke(dict(depth=10, widen_factor=2, dropout_rate=0.3), CIFAR_INPUT))
# Nets of the paper's CIFAR tables (Zagoruyko & Komodakis, Tables 4 and 5).
for _depth, _k in ((16, 4), (16, 8), (22, 8), (28, 10), (40, 4)):
  register(f'wrn{_depth}_{_k}', WideResNet, depth=_depth, widen_factor=_k, input_shape=CIFAR_INPUT,
           paper=_PAPER,
           published=(Published('Zagoruyko & Komodakis 2016, Table 4',
                                params_m=_PAPER_MILLIONS[_depth, _k]),)
           if (_depth, _k) in _PAPER_MILLIONS else ())
for _depth, _count in ((50, 68_883_240), (101, 126_886_696)):
  register(f'wide_resnet{_depth}_2', resnet.ResNet, depth=_depth, width_per_group=128,
           input_shape=IMAGENET_INPUT, paper=_PAPER,
           published=(Published('torchvision', params=_count),))
