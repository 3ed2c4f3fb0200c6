"""GoogLeNet / Inception v1 (Szegedy et al. 2014), as the paper's table 1 and figure 3.

Stem: 7x7/2 conv 64 -> 3x3/2 max-pool -> LRN -> 1x1 conv 64 -> 3x3 conv 192 -> LRN -> 3x3/2 max-pool;
inception 3a, 3b -> max-pool -> 4a..4e -> max-pool -> 5a, 5b -> average pool -> dropout 0.4 -> linear.
Every convolution, including the reductions inside the modules, is followed by ReLU. The 5x5
branches are real 5x5 convolutions (torchvision's port uses 3x3 there and adds BatchNorm: 6,624,904
parameters; this is the paper's network).

Choices the paper leaves open: the 3x3/2 max-pools use 'SAME' padding, which gives the table's
112 -> 56 -> 28 -> 14 -> 7 maps (the Caffe reference model's ceil-mode pooling does the same); the
7x7 average pool is a global average pool, identical at 224x224 and defined for other sizes; the LRN
uses the AlexNet constants; weights use Flax's default fan-in scaling (the variance of the Caffe
reference model's "xavier" filler), biases 0.

Auxiliary classifiers on the outputs of 4a and 4d (5x5/3 average pool -> 1x1 conv 128 + ReLU ->
fc 1024 + ReLU -> dropout 0.7 -> linear) run in training only, sowing their logits into the
``models.AUX_LOGITS`` collection (``{'aux1': {'logits': (logits,)}, 'aux2': ...}``); the model
returns the main logits in every mode. Their parameters are created by ``init`` whatever its
``train`` flag, so an evaluation-mode init can be trained later.

Parameters, by hand from the table (weights + biases of each convolution; the table's own column
rounds differently and sums to 6.8M):
  stem  conv1 9,472 + conv2_reduce 4,160 + conv2 110,784                              =   124,416
  3a 163,696   3b 388,736                                                               =   552,432
  4a 376,176   4b 449,160   4c 510,104   4d 605,376   4e 868,352                        = 2,809,168
  5a 1,043,456   5b 1,444,080                                                           = 2,487,536
  linear 1024*1000 + 1000                                                               = 1,025,000
  total without auxiliary heads                                                         = 6,998,552
  aux1: conv 512*128+128 = 65,664, fc 2048*1024+1024 = 2,098,176, linear 1,025,000     = 3,188,840
  aux2: conv 528*128+128 = 67,712, the same fc and linear                              = 3,190,888
  total with auxiliary heads                                                            = 13,378,280
e.g. 3a on 192 maps: 1x1 192*64+64, reduce 192*96+96, 3x3 9*96*128+128, reduce 192*16+16,
5x5 25*16*32+32, pool projection 192*32+32 = 12,352+18,528+110,720+3,088+12,832+6,176 = 163,696.
The sheet's "about 5M" is the paper's text; its table gives 6.8M, the auxiliary heads add 6.4M.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import AUX_LOGITS, IMAGENET_INPUT, Published, Smoke, layers, register

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) of each module, the paper's table 1.
MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    '3a': (64, 96, 128, 16, 32, 32),
    '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64),
    '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}
_POOL_BEFORE = ('4a', '5a')      # a 3x3/2 max-pool precedes these modules
_AUX_AFTER = ('4a', '4d')


def conv_act(x: jax.Array, features: int, kernel: int, name: str, dtype: Any,
             act: layers.Activation, stride: int = 1) -> jax.Array:
  """A 'same'-padded convolution with bias followed by ``act`` (the paper's ReLU), created inside
  the calling module."""
  x = layers.conv(features, kernel, stride, name=name, dtype=dtype, use_bias=True,
                  kernel_init=layers.lecun_normal)(x)
  return act(x)


class Inception(nn.Module):
  """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max -> 1x1."""
  widths: tuple[int, int, int, int, int, int]
  dtype: Any = jnp.float32
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w1, w3_reduce, w3, w5_reduce, w5, pool_proj = self.widths
    conv = functools.partial(conv_act, dtype=self.dtype, act=self.act)
    branch1 = conv(x, w1, 1, 'branch1x1')
    branch3 = conv(conv(x, w3_reduce, 1, 'branch3x3_reduce'), w3, 3, 'branch3x3')
    branch5 = conv(conv(x, w5_reduce, 1, 'branch5x5_reduce'), w5, 5, 'branch5x5')
    pooled = nn.max_pool(x, (3, 3), (1, 1), padding='SAME')
    branch_pool = conv(pooled, pool_proj, 1, 'pool_proj')
    return jnp.concatenate([branch1, branch3, branch5, branch_pool], axis=-1)


class AuxHead(nn.Module):
  """5x5/3 average pool -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> linear; in training its logits
  are sown into the AUX_LOGITS collection."""
  num_classes: int
  dropout_rate: float = 0.7
  dtype: Any = jnp.float32
  act: layers.Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if min(x.shape[1:3]) < 5:
      raise ConfigError(f'GoogLeNet auxiliary heads pool 5x5 windows of the 14x14 maps of 4a/4d; '
                        f'this input gives {x.shape[1]}x{x.shape[2]}. Use inputs of at least 65x65 '
                        f'(224x224 in the paper) or aux_heads=False.')
    x = nn.avg_pool(x, (5, 5), (3, 3))
    x = conv_act(x, 128, 1, 'conv', self.dtype, self.act)
    x = x.reshape(x.shape[0], -1)
    x = self.act(nn.Dense(1024, dtype=self.dtype, name='fc1')(x))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x).astype(jnp.float32)
    if train and not self.is_initializing():  # init's variables get no logits collection
      self.sow(AUX_LOGITS, 'logits', logits)
    return logits


class GoogLeNet(nn.Module):
  """GoogLeNet; see the module docstring for the layout and the parameter count."""
  num_classes: int = 1000
  aux_heads: bool = True
  dropout_rate: float = 0.4
  aux_dropout_rate: float = 0.7
  dtype: Any = jnp.float32
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    for field in ('dropout_rate', 'aux_dropout_rate'):
      layers.check_dropout_rate(getattr(self, field), f'GoogLeNet {field}')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = functools.partial(conv_act, dtype=self.dtype, act=self.act)
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2), padding='SAME')
    x = x.astype(self.dtype)
    x = pool(conv(x, 64, 7, 'conv1', stride=2))
    x = layers.LocalResponseNorm(name='lrn1')(x)
    x = conv(conv(x, 64, 1, 'conv2_reduce'), 192, 3, 'conv2')
    x = pool(layers.LocalResponseNorm(name='lrn2')(x))

    # The heads run at init whatever ``train`` is, so that their parameters always exist.
    run_aux = self.aux_heads and (train or self.is_initializing())
    for module, widths in MODULES.items():
      if module in _POOL_BEFORE:
        x = pool(x)
      x = Inception(widths, dtype=self.dtype, act=self.act, name=f'inception{module}')(x)
      if run_aux and module in _AUX_AFTER:
        AuxHead(self.num_classes, self.aux_dropout_rate, dtype=self.dtype, act=self.act,
                name=f'aux{_AUX_AFTER.index(module) + 1}')(x, train)

    x = nn.avg_pool(x, x.shape[1:3])  # the paper's 7x7 average pool, for any map size
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)


register('googlenet', GoogLeNet, input_shape=IMAGENET_INPUT,
         paper='Szegedy et al. 2014, "Going deeper with convolutions"',
         # The table's column rounds the exact 6,998,552 (without the training-only heads) to 6.8M;
         # the text's "1.5 billion multiply-adds" is 1.58 here.
         published=(Published('Szegedy et al. 2014, Table 1 (without the auxiliary heads)',
                              params_m=6.8, tolerance=0.03, built_with={'aux_heads': False}),
                    Published('Szegedy et al. 2014, section 5', gmacs=1.5, tolerance=0.06)),
         smoke=Smoke(dict(aux_heads=False), (64, 64, 3)))
