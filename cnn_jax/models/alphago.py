"""AlphaGo's supervised-learning policy network (Silver et al. 2016, Methods, "Neural network architecture").

Input: the 19x19x48 feature planes. Layer 1 zero-pads to 23x23 and applies ``filters`` 5x5 stride-1
kernels, then ReLU; layers 2-12 each zero-pad to 21x21 and apply ``filters`` 3x3 kernels, then ReLU;
the final layer is one 1x1 kernel with a separate bias for every board point. Its 361 outputs are
the logits of the move distribution (the paper's softmax), so ``num_classes`` is fixed by the board.
The paper's match network has k=192 filters; it also reports k=128, 256 and 384.

Parameters for k filters and L layers: 5*5*48*k + k + (L-2)*(9*k*k + k) + k + 361;
k=192, L=13: 230,592 + 11*331,968 + 192 + 361 = 3,882,793.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import layers, register, Smoke

BOARD = 19


class PositionBias(nn.Module):
  """Adds a separate learned bias to each board point of a single-channel map."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    bias = self.param('bias', nn.initializers.zeros, x.shape[1:3], jnp.float32)
    return x + bias[..., None].astype(x.dtype)


class AlphaGoPolicy(nn.Module):
  """The SL policy network: ``num_layers`` convolutions of ``filters`` maps, logits over 361 points."""
  filters: int = 192
  num_layers: int = 13          # the 5x5 layer, the 3x3 layers and the final 1x1 layer
  num_classes: int = BOARD * BOARD
  dtype: Any = jnp.float32
  act: layers.Activation = nn.relu  # every nonlinearity of the net

  def __post_init__(self):
    if self.num_classes != BOARD * BOARD:
      raise ConfigError(f'the AlphaGo policy network predicts one of the {BOARD * BOARD} board points; '
                        f'num_classes must be {BOARD * BOARD}, got {self.num_classes}.')
    if self.num_layers < 2:
      raise ConfigError(f'the AlphaGo policy network needs num_layers >= 2 (the 5x5 input layer and '
                        f'the 1x1 output layer), got {self.num_layers}; the paper uses 13.')
    if self.filters < 1:
      raise ConfigError(f'AlphaGo policy filters must be >= 1, got {self.filters}; the paper uses '
                        f'128, 192, 256 or 384.')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.shape[1:3] != (BOARD, BOARD):
      raise ConfigError(f'the AlphaGo policy network reads {BOARD}x{BOARD} boards (19x19x48 feature '
                        f'planes); got a {x.shape[1]}x{x.shape[2]} input.')
    x = x.astype(self.dtype)
    conv = functools.partial(layers.conv, dtype=self.dtype, kernel_init=layers.lecun_normal)
    # Padding 2 around 19x19 is the paper's "zero pads the input into a 23x23 image".
    x = self.act(conv(self.filters, 5, name='conv1', use_bias=True)(x))
    for layer in range(2, self.num_layers):
      # Padding 1 is "zero pads the previous hidden layer into a 21x21 image".
      x = self.act(conv(self.filters, 3, name=f'conv{layer}', use_bias=True)(x))
    x = conv(1, 1, name=f'conv{self.num_layers}')(x)
    x = PositionBias(name='position_bias')(x)
    return x.reshape(x.shape[0], BOARD * BOARD).astype(jnp.float32)


_PAPER = 'Silver et al. 2016, "Mastering the game of Go with deep neural networks and tree search"'
_PLANES = (BOARD, BOARD, 48)
register('alphago_policy', AlphaGoPolicy, input_shape=_PLANES, paper=_PAPER, published=(),
         smoke=Smoke(dict(filters=16), _PLANES))
for _filters in (128, 256, 384):
  register(f'alphago_policy_k{_filters}', AlphaGoPolicy, filters=_filters, input_shape=_PLANES,
           paper=_PAPER, published=())
