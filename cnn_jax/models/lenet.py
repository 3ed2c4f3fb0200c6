"""LeNet-5 (LeCun et al. 1998), as published and in its modern form.

The 1998 layout is C1-S2-C3-S4-C5-F6 on a 32x32 input with the scaled tanh squash
f(a) = 1.7159 tanh(2a/3). Options reproduce the paper's details: the sparse C3 connection table
(1,516 parameters), trainable subsampling (sum of 2x2, times a coefficient, plus a bias, per map) and
the Euclidean RBF output with fixed prototypes. With all three, the network has the paper's 60,000
trainable parameters. The modern variant uses ReLU, max-pooling and a dense output layer.

``activation`` names the nonlinearity of every layer, ReLU or the paper's squash; ``act``, the
argument every model takes, replaces it by any function when given (in ``lenet5_1998`` too).
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.models import Published, Smoke, layers, register

# Table I of the paper: the S2 maps (rows) that each C3 map (columns) reads.
_C3_TABLE = [
    [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0], [5, 0, 1],
    [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0], [4, 5, 0, 1], [5, 0, 1, 2],
    [0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5],
    [0, 1, 2, 3, 4, 5],
]


def squash(x: jax.Array) -> jax.Array:
  return 1.7159 * jnp.tanh(2.0 * x / 3.0)


ACTIVATIONS: dict[str, layers.Activation] = {'relu': nn.relu, 'squash': squash}


class SparseConv(nn.Module):
  """A 5x5 valid convolution whose output maps read only the inputs named in ``table``.

  Only the connected weights are parameters (a flat vector scattered into a dense kernel), so the
  parameter count is the paper's.
  """
  table: tuple[tuple[int, ...], ...]
  in_features: int
  kernel_size: int = 5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    rows = [(i, o) for o, ins in enumerate(self.table) for i in ins]
    fan_in = np.array([len(self.table[o]) * k * k for _, o in rows], np.float32)
    weights = self.param('kernel', nn.initializers.lecun_normal(), (k * k, len(rows)))
    weights = weights * np.sqrt((k * k * self.in_features) / fan_in)  # lecun scale per map
    bias = self.param('bias', nn.initializers.zeros, (len(self.table),))
    kernel = jnp.zeros((k * k, self.in_features, len(self.table)), weights.dtype)
    kernel = kernel.at[:, [i for i, _ in rows], [o for _, o in rows]].set(weights)
    kernel = kernel.reshape(k, k, self.in_features, len(self.table))
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias.astype(x.dtype)


class Subsample(nn.Module):
  """The paper's trainable 2x2 subsampling: sum of four inputs, times a coefficient, plus a bias."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    coeff = self.param('coefficient', nn.initializers.constant(0.25), (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    summed = nn.avg_pool(x, (2, 2), (2, 2)) * 4.0
    return summed * coeff.astype(x.dtype) + bias.astype(x.dtype)


class RBFOutput(nn.Module):
  """Euclidean RBF units: logit_i = -||x - w_i||^2 with fixed +-1 prototypes (not trained).

  The paper drew the prototypes as stylised 7x12 bitmaps of the digits; here they are fixed random
  +-1 codes, which keeps the property that matters (fixed, well separated targets in F6 space).
  """
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    rng = np.random.default_rng(1998)
    prototypes = jnp.asarray(rng.choice([-1.0, 1.0], size=(self.num_classes, x.shape[-1])), x.dtype)
    return -jnp.sum((x[:, None, :] - prototypes[None]) ** 2, axis=-1)


class LeNet5(nn.Module):
  """LeNet-5; the defaults are the modern variant, ``lenet5_1998`` sets the paper's options."""
  num_classes: int = 10
  activation: str = 'relu'           # 'relu' or 'squash' (1.7159 tanh(2a/3))
  pooling: str = 'max'               # 'max', 'avg' or 'trainable' (the paper's subsampling)
  sparse_c3: bool = False            # the paper's C3 connection table
  output: str = 'dense'              # 'dense' or 'rbf'
  dtype: Any = jnp.float32
  act: Optional[layers.Activation] = None  # None: the one ``activation`` names

  def __post_init__(self):
    layers.check_choice('LeNet-5 activation', self.activation, tuple(ACTIVATIONS))
    layers.check_choice('LeNet-5 pooling', self.pooling, ('max', 'avg', 'trainable'))
    layers.check_choice('LeNet-5 output', self.output, ('dense', 'rbf'))
    layers.check_positive_int('num_classes', self.num_classes)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = self.act or ACTIVATIONS[self.activation]
    def pool(y, name):
      if self.pooling == 'trainable':
        return Subsample(name=name)(y)
      fn = nn.max_pool if self.pooling == 'max' else nn.avg_pool
      return fn(y, (2, 2), (2, 2))

    x = x.astype(self.dtype)
    x = act(nn.Conv(6, (5, 5), padding='VALID', dtype=self.dtype, name='C1',
                    conv_general_dilated=layers.conv_general_dilated)(x))
    x = act(pool(x, 'S2'))  if self.pooling == 'trainable' else pool(x, 'S2')
    if self.sparse_c3:
      x = SparseConv(tuple(map(tuple, _C3_TABLE)), in_features=6, name='C3')(x)
    else:
      x = nn.Conv(16, (5, 5), padding='VALID', dtype=self.dtype, name='C3',
                  conv_general_dilated=layers.conv_general_dilated)(x)
    x = act(x)
    x = act(pool(x, 'S4')) if self.pooling == 'trainable' else pool(x, 'S4')
    # C5 is a 5x5 convolution over the 5x5 S4 maps, i.e. a dense layer over them; flattening keeps
    # the same parameters and also accepts other input sizes.
    x = act(nn.Dense(120, dtype=self.dtype, name='C5')(x.reshape(x.shape[0], -1)))
    x = act(nn.Dense(84, dtype=self.dtype, name='F6')(x))
    if self.output == 'rbf':
      return RBFOutput(self.num_classes, name='output')(x).astype(jnp.float32)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='output')(x).astype(jnp.float32)


_PAPER = 'LeCun et al. 1998, "Gradient-based learning applied to document recognition"'
_INPUT = (32, 32, 1)   # MNIST's 28x28 digits padded to 32x32, as the paper's input layer
register('lenet5', LeNet5, input_shape=_INPUT, paper=_PAPER, published=(),
         smoke=Smoke({}, _INPUT))
register('lenet5_1998', LeNet5, activation='squash', pooling='trainable', sparse_c3=True, output='rbf',
         input_shape=_INPUT, paper=_PAPER, smoke=Smoke({}, _INPUT),
         published=(Published('LeCun et al. 1998, section II.B', params=60_000),))
