"""VGG (Simonyan & Zisserman 2014), configurations A to E of the paper's table 1.

Five blocks of 3x3 stride-1 pad-1 convolutions with ReLU at 64/128/256/512/512 filters, each block
closed by a 2x2/2 max-pool, then fc 4096-4096-classes with dropout 0.5 after the first two.

| name       | paper      | convs per block              |
|------------|------------|------------------------------|
| vgg11      | A          | 1-1-2-2-2                    |
| vgg11_lrn  | A-LRN      | A + LRN after conv1          |
| vgg13      | B          | 2-2-2-2-2                    |
| vgg16_c    | C          | B + a 1x1 conv closing 3-5   |
| vgg16      | D          | 2-2-3-3-3                    |
| vgg19      | E          | 2-2-4-4-4                    |

``*_bn`` variants insert BatchNorm between each convolution and its ReLU and keep the convolution
bias, as torchvision's ``vgg*_bn`` do, so that their counts are torchvision's. The published counts
(the paper's millions, torchvision's exact figures) are the registry entries' at the bottom.

As in torchvision, an adaptive average pool to 7x7 precedes fc6: the identity at the paper's 224x224
input, it lets any input of at least 32x32 reach the same dense layers. The A-LRN normalisation uses
the AlexNet parameters (the paper: "those of Krizhevsky et al."). Initialisation follows torchvision:
He (fan-out) normal convolutions, N(0, 0.01^2) dense layers, zero biases. The paper trained A from
N(0, 0.01^2) and initialised the deeper nets from A, noting afterwards that Glorot-style random
initialisation works without that pre-training; the fan-out He init is that kind of scaling.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import IMAGENET_INPUT, Published, Smoke, layers, register

_WIDTHS = (64, 128, 256, 512, 512)

# Kernel sizes of the convolutions of each block, per configuration of the paper's table 1.
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    'A': ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    'B': ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    'C': ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    'D': ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    'E': ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}


class VGG(nn.Module):
  """VGG configuration ``config`` ('A'..'E'); ``lrn`` adds A-LRN's LRN after conv1."""
  config: str = 'D'
  num_classes: int = 1000
  batch_norm: bool = False
  lrn: bool = False
  fc_width: int = 4096
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    if self.config not in CONFIGS:
      raise ConfigError(f'VGG config {self.config!r} is unknown; use one of {", ".join(CONFIGS)} '
                        f'(A-LRN is config A with lrn=True).')
    if self.bn_group_size is not None and not self.batch_norm:
      raise ConfigError('VGG bn_group_size needs batch_norm=True (use a vgg*_bn model).')
    if self.bn_group_size is not None:
      layers.check_positive_int('VGG bn_group_size', self.bn_group_size)
    layers.check_dropout_rate(self.dropout_rate, 'VGG dropout_rate')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if min(x.shape[1:3]) < 2 ** len(_WIDTHS):
      raise ConfigError(f'VGG halves the input {len(_WIDTHS)} times: a {x.shape[1]}x{x.shape[2]} input '
                        f'is too small, use at least 32x32.')
    x = x.astype(self.dtype)
    index = 0
    for block, (width, kernels) in enumerate(zip(_WIDTHS, CONFIGS[self.config])):
      for kernel in kernels:
        index += 1
        x = layers.conv(width, kernel, name=f'conv{index}', dtype=self.dtype, use_bias=True)(x)
        if self.batch_norm:
          x = layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size,
                               name=f'bn{index}')(x, train)
        x = self.act(x)
        if self.lrn and index == 1:
          x = layers.LocalResponseNorm(name='lrn1')(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    x = layers.AdaptiveAvgPool((7, 7), name='avgpool')(x)
    x = x.reshape(x.shape[0], -1)
    dense_init = nn.initializers.normal(0.01)
    for layer in ('fc1', 'fc2'):
      x = self.act(nn.Dense(self.fc_width, dtype=self.dtype, kernel_init=dense_init, name=layer)(x))
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init, name='fc3')(x)
    return x.astype(jnp.float32)


_PAPER = ('Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image '
          'recognition"')
# Table 2 of the paper, millions, and torchvision's exact counts (which have no configuration C).
_PAPER_MILLIONS = {'A': 133, 'A-LRN': 133, 'B': 133, 'C': 134, 'D': 138, 'E': 144}
_TORCHVISION = {'vgg11': 132_863_336, 'vgg13': 133_047_848, 'vgg16': 138_357_544,
                'vgg19': 143_667_240, 'vgg11_bn': 132_868_840, 'vgg13_bn': 133_053_736,
                'vgg16_bn': 138_365_992, 'vgg19_bn': 143_678_248}
_TORCHVISION_GMACS = {'vgg16': 15.47, 'vgg19': 19.63}


def _published(name: str, config: str) -> tuple[Published, ...]:
  figures = []
  if not name.endswith('_bn'):
    figures.append(Published('Simonyan & Zisserman 2014, Table 2', params_m=_PAPER_MILLIONS[config]))
  if name in _TORCHVISION:
    figures.append(Published('torchvision', params=_TORCHVISION[name],
                             gmacs=_TORCHVISION_GMACS.get(name)))
  return tuple(figures)


for _name, _config in (('vgg11', 'A'), ('vgg13', 'B'), ('vgg16_c', 'C'), ('vgg16', 'D'),
                       ('vgg19', 'E')):
  register(_name, VGG, config=_config, input_shape=IMAGENET_INPUT, paper=_PAPER,
           published=_published(_name, _config))
  # 48x48, not 32: at 32x32 the last block's 3x3 convs see 2x2 maps, which XLA:CPU runs through a
  # slow generic convolution (4 s a step at the tests' flags, against 0.9 s at 48x48).
  register(f'{_name}_bn', VGG, config=_config, batch_norm=True, input_shape=IMAGENET_INPUT,
           paper=_PAPER, published=_published(f'{_name}_bn', _config),
           smoke=Smoke(dict(fc_width=64), (48, 48, 3)) if _name == 'vgg11' else None)
register('vgg11_lrn', VGG, config='A', lrn=True, input_shape=IMAGENET_INPUT, paper=_PAPER,
         published=_published('vgg11_lrn', 'A-LRN'))
