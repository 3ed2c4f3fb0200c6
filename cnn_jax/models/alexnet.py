"""AlexNet (Krizhevsky et al. 2012), torchvision's single-tower AlexNet, and ZFNet (Zeiler & Fergus 2013).

All three are five convolutions, three overlapping 3x3/2 max-pools and three dense layers; one
module (and its ZFNet subclass, which only changes defaults) covers them:

* ``alexnet``: the paper's two-GPU network. conv2, conv4 and conv5 read only the maps of their own
  tower, which is a grouped convolution with ``feature_group_count=2``; conv1 (both towers see the
  whole image), conv3 and the dense layers read everything. ReLU -> LRN -> max-pool after conv1 and
  conv2, the LRN of each tower over its own 48/128 maps. On the 227x227 input that the arithmetic
  needs (the paper's "224" does not divide), conv1 gives 55x55x96 and conv5's pool 6x6x256.
  60,965,224 parameters.
* ``alexnet_tv``: torchvision's variant (64/192/384/256/256 filters, conv1 padded by 2, no LRN, no
  towers, dropout before fc6 and fc7): 61,100,840 parameters.
* ``zfnet``: 7x7/2 conv1 and 5x5/2 conv2 without towers, ReLU -> max-pool -> normalisation (the
  paper's figure 3 order). The paper does not give padding; conv1 pad 1 and padding 1 on the first
  two pools reproduce its 224 -> 110 -> 55 -> 26 -> 13 maps. ``zfnet_512`` has 512/1024/512 maps in
  conv3-5 (the paper's table 2 variant). The paper's "contrast normalisation across feature maps"
  is the AlexNet LRN here.

An adaptive average pool to 6x6 sits before fc6, as in torchvision: it is the identity at the native
input size (every variant ends in 6x6 there) and lets other input sizes reach the same dense layers.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import IMAGENET_INPUT, Published, Smoke, layers, register

_INITS = ('gaussian_unit_bias', 'gaussian', 'lecun')


def max_pool_checked(x: jax.Array, window: int, stride: int, padding: int, model: str) -> jax.Array:
  """A square max-pool that names the fix when the map has become smaller than the window."""
  size = min(x.shape[1:3]) + 2 * padding
  if size < window:
    raise ConfigError(f'{model}: a {x.shape[1]}x{x.shape[2]} feature map is too small for the '
                      f'{window}x{window} max-pool; use a larger input size.')
  pad = ((padding, padding), (padding, padding))
  return nn.max_pool(x, (window, window), (stride, stride), padding=pad)


class AlexNet(nn.Module):
  """AlexNet-style network: five convolutions, three max-pools, three dense layers (see module doc)."""
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)  # filters of conv1..conv5
  towers: int = 2                     # 2: conv2/4/5 grouped and LRN per tower, as the two GPUs
  conv1_kernel: int = 11
  conv1_stride: int = 4
  conv1_padding: int = 0
  conv2_stride: int = 1
  conv2_padding: int = 2
  early_pool_padding: int = 0         # padding of the pools after conv1 and conv2 (ZFNet: 1)
  lrn: bool = True                    # LRN after conv1 and conv2
  lrn_after_pool: bool = False        # ZFNet normalises the pooled maps, AlexNet before pooling
  fc_width: int = 4096
  dropout_rate: float = 0.5
  dropout_before_fc: bool = False     # torchvision drops the inputs of fc6/fc7, the paper their outputs
  pooled_size: int = 6                # adaptive average pool before fc6
  # 'gaussian_unit_bias': the AlexNet paper, N(0, 0.01^2) weights, bias 1 in conv2/4/5 and fc6/7 (to
  # give the ReLUs positive inputs early), 0 elsewhere. 'gaussian': ZFNet, N(0, 0.01^2), biases 0.
  # 'lecun': Flax's default, the fan-in scaling of PyTorch's default init used by torchvision.
  weight_init: str = 'gaussian_unit_bias'
  dtype: Any = jnp.float32
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    if len(self.widths) != 5:
      raise ConfigError(f'AlexNet widths must list the filters of its 5 convolutions, got {self.widths}.')
    if self.towers < 1 or any(w % self.towers for w in self.widths):
      raise ConfigError(f'AlexNet towers={self.towers} must be >= 1 and divide every conv width '
                        f'{tuple(self.widths)}; use towers=1 or widths divisible by {self.towers}.')
    if self.weight_init not in _INITS:
      raise ConfigError(f'AlexNet weight_init {self.weight_init!r} is unknown; '
                        f'use one of {", ".join(_INITS)}.')
    layers.check_dropout_rate(self.dropout_rate, 'AlexNet dropout_rate')
    super().__post_init__()

  def _inits(self, layer: str) -> dict[str, Any]:
    if self.weight_init == 'lecun':
      return {}
    unit_bias = (self.weight_init == 'gaussian_unit_bias'
                 and layer in ('conv2', 'conv4', 'conv5', 'fc6', 'fc7'))
    return {'kernel_init': nn.initializers.normal(0.01),
            'bias_init': nn.initializers.ones if unit_bias else nn.initializers.zeros}

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    name = type(self).__name__
    # Which convolutions stay inside their tower; conv1 and conv3 read all maps (paper, figure 2).
    groups = (1, self.towers, 1, self.towers, self.towers)
    kernels = (self.conv1_kernel, 5, 3, 3, 3)
    strides = (self.conv1_stride, self.conv2_stride, 1, 1, 1)
    paddings = (self.conv1_padding, self.conv2_padding, 1, 1, 1)

    x = x.astype(self.dtype)
    for i in range(5):
      layer = f'conv{i + 1}'
      x = nn.Conv(self.widths[i], (kernels[i], kernels[i]), strides[i], padding=paddings[i],
                  feature_group_count=groups[i], dtype=self.dtype, name=layer,
                  conv_general_dilated=layers.conv_general_dilated, **self._inits(layer))(x)
      x = self.act(x)
      if i < 2:
        normalise = (layers.LocalResponseNorm(groups=self.towers, name=f'lrn{i + 1}')
                     if self.lrn else None)
        if normalise and not self.lrn_after_pool:
          x = normalise(x)
        x = max_pool_checked(x, 3, 2, self.early_pool_padding, name)
        if normalise and self.lrn_after_pool:
          x = normalise(x)
    x = max_pool_checked(x, 3, 2, 0, name)
    x = layers.AdaptiveAvgPool((self.pooled_size, self.pooled_size), name='avgpool')(x)
    x = x.reshape(x.shape[0], -1)

    for layer in ('fc6', 'fc7'):
      if self.dropout_before_fc:
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
      x = self.act(nn.Dense(self.fc_width, dtype=self.dtype, name=layer, **self._inits(layer))(x))
      if not self.dropout_before_fc:
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc8', **self._inits('fc8'))(x)
    return x.astype(jnp.float32)


class ZFNet(AlexNet):
  """Zeiler & Fergus 2013: AlexNet with a 7x7/2 conv1, a 5x5/2 conv2, no towers, pool then normalise."""
  towers: int = 1
  conv1_kernel: int = 7
  conv1_stride: int = 2
  conv1_padding: int = 1              # 224 -> 110, as the paper's figure 3
  conv2_stride: int = 2
  conv2_padding: int = 0              # 55 -> 26
  early_pool_padding: int = 1         # 110 -> 55 and 26 -> 13
  lrn_after_pool: bool = True
  weight_init: str = 'gaussian'              # "weights initialized to 1e-2 and biases set to 0"


_ALEXNET = 'Krizhevsky et al. 2012, "ImageNet classification with deep convolutional neural networks"'
_ZFNET = 'Zeiler & Fergus 2013, "Visualizing and understanding convolutional networks"'
_TORCHVISION = Published('torchvision', params=61_100_840, gmacs=0.71)
# 227x227: the size the paper's arithmetic needs (its "224" does not divide).
register('alexnet', AlexNet, input_shape=(227, 227, 3), paper=_ALEXNET,
         published=(Published('Krizhevsky et al. 2012, section 1', params_m=60, tolerance=0.02),),
         smoke=Smoke(dict(fc_width=64), (99, 99, 3)))
register('alexnet_tv', AlexNet, widths=(64, 192, 384, 256, 256), towers=1, conv1_padding=2,
         lrn=False, dropout_before_fc=True, weight_init='lecun', input_shape=IMAGENET_INPUT,
         paper=_ALEXNET, published=(_TORCHVISION,), smoke=Smoke(dict(fc_width=64), (96, 96, 3)))
register('zfnet', ZFNet, input_shape=IMAGENET_INPUT, paper=_ZFNET, published=(),
         smoke=Smoke(dict(fc_width=64), (96, 96, 3)))
register('zfnet_512', ZFNet, widths=(96, 256, 512, 1024, 512), input_shape=IMAGENET_INPUT,
         paper=_ZFNET, published=())
