"""Building blocks shared by the model families."""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax import ConfigError

Dtype = Any
# A nonlinearity: every model takes one as its ``act`` field (``nn.relu`` by default; LeNet-5's
# default is the one its ``activation`` names) and uses it for all of its activations, so a caller
# can swap them all at once (a different nonlinearity, a visualisation hook).
Activation = Callable[[jax.Array], jax.Array]

# He et al. 2015 ("Delving deep into rectifiers"): N(0, 2/fan_out) for convolutions, as the ResNet
# papers and torchvision initialise them.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# Flax's default kernel init of Conv and Dense: LeCun, a truncated normal of variance 1/fan_in.
lecun_normal = nn.initializers.lecun_normal()


class BatchNorm(nn.Module):
  """BatchNorm over the global batch (``group_size=None``) or over groups of ``group_size`` examples.

  Under ``jax.jit`` with the batch sharded over a mesh, a mean over the batch axis is a mean over
  the global batch: XLA inserts the all-reduce. ``group_size`` reproduces per-GPU statistics of the
  papers: the batch is split into consecutive groups, each normalised with its own statistics; the
  running averages take the mean of the groups' statistics. Parameters and state use the same names
  as ``flax.linen.BatchNorm`` (scale, bias; mean, var).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Optional[Dtype] = None
  group_size: Optional[int] = None
  scale_init: Any = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.group_size is not None:  # the models' bn_group_size
      check_positive_int('bn_group_size (None: statistics over the global batch)', self.group_size)
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if not train:
      mean, var = ra_mean.value, ra_var.value
    else:
      x32 = x.astype(jnp.float32)
      batch = x.shape[0]
      group = batch if self.group_size is None else self.group_size
      if batch % group:
        raise ValueError(f'BatchNorm group_size {group} does not divide the batch of {batch}')
      grouped = x32.reshape((batch // group, group) + x.shape[1:])
      axes = tuple(range(1, grouped.ndim - 1))
      mean = grouped.mean(axis=axes, keepdims=True)
      var = jnp.maximum((grouped * grouped).mean(axis=axes, keepdims=True) - mean * mean, 0.0)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean.mean(axis=0).reshape(-1)
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var.mean(axis=0).reshape(-1)
      return _normalize(grouped, mean, var, scale, bias, self.epsilon).reshape(x.shape).astype(
          self.dtype or x.dtype)
    return _normalize(x.astype(jnp.float32), mean, var, scale, bias, self.epsilon).astype(
        self.dtype or x.dtype)


def _normalize(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array,
               epsilon: float) -> jax.Array:
  """(x - mean) / sqrt(var + eps) * scale + bias as one multiply-add per element, as PyTorch's CPU
  kernel computes it: the per-channel factors are folded first. ResNet-20's train step at batch 128
  on this CPU: 690 ms against 800 ms for the four element-wise ops (two runs each)."""
  factor = jax.lax.rsqrt(var + epsilon) * scale
  return x * factor + (bias - mean * factor)


Padding = Union[str, Sequence[tuple[int, int]]]
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Padding, lhs_dilation: Optional[Sequence[int]] = None,
                         rhs_dilation: Optional[Sequence[int]] = None, dimension_numbers: Any = None,
                         feature_group_count: int = 1, precision: Any = None) -> jax.Array:
  """``lax.conv_general_dilated`` with kernel gradients that XLA:CPU runs fast; the models' convs use it.

  Pass it as ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``. The forward pass and the
  input gradient are lax's own everywhere. On one CPU device, for NHWC convolutions, the kernel
  gradient that autodiff derives is replaced by the same sums computed differently:

  - grouped convolutions: autodiff's is a ``batch_group_count`` convolution, which XLA:CPU runs
    about 30x slower than the input gradient for ResNeXt-50's 32 groups; it is computed instead as a
    ``feature_group_count`` convolution of the transposed input with the output gradient
    (``benchmarks/grouped_conv.py``: ResNeXt-50's step 11x faster);
  - other convolutions with large output maps: autodiff's is one convolution whose window is the
    whole output map, which XLA:CPU runs on one core at 5-10 GFLOP/s (a CIFAR ResNet's 32x32 stage:
    60-100 ms against PyTorch's 5.5 ms); summing the kernel gradients of chunks of
    ``kernel_grad_chunk`` examples is several times faster (``benchmarks/conv_kernels.py``).

  GPU and TPU, and meshes of several devices (a chunk would cut across the batch's sharding), keep
  the native gradient.
  """
  lhs_dilation = tuple(lhs_dilation or (1,) * (lhs.ndim - 2))
  rhs_dilation = tuple(rhs_dilation or (1,) * (lhs.ndim - 2))
  native = functools.partial(lax.conv_general_dilated, window_strides=window_strides,
                             padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                             dimension_numbers=dimension_numbers,
                             feature_group_count=feature_group_count, precision=precision)
  if (jax.default_backend() != 'cpu' or lhs.ndim != 4 or set(lhs_dilation) != {1}
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    return native(lhs, rhs)
  if isinstance(padding, str):
    dilated_kernel = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], rhs_dilation)]
    padding = lax.padtype_to_pads(lhs.shape[1:3], dilated_kernel, window_strides, padding)
  padding = tuple(map(tuple, padding))
  if feature_group_count > 1:
    return _grouped_conv_nhwc(lhs, rhs, tuple(window_strides), padding, rhs_dilation,
                              feature_group_count, precision)
  out_height, out_width = jax.eval_shape(native, lhs, rhs).shape[1:3]
  chunk = kernel_grad_chunk(lhs.shape, out_height * out_width)
  if chunk is None or jax.device_count() > 1:
    return native(lhs, rhs)
  return _chunked_conv_nhwc(lhs, rhs, tuple(window_strides), padding, rhs_dilation, chunk, precision)


# A chunk's input stays within this many bytes. Measured on this 2-core CPU, ResNet-20's and -56's
# steps at batch 128: 787 and 2315 ms at 1 MiB (16 examples of the 32x32x16 stage), 861 and 2429 ms
# at 256 KiB, 819 and 2607 ms at 2 MiB; smaller chunks also mean more convs to compile.
KERNEL_GRAD_CHUNK_BYTES = 1024 * 1024
# Below this many output pixels the native kernel gradient is as fast (CIFAR's 8x8 stage, ImageNet
# nets' 14x14 and 7x7 stages).
KERNEL_GRAD_CHUNK_MIN_PIXELS = 256


def kernel_grad_chunk(lhs_shape: Sequence[int], output_pixels: int) -> Optional[int]:
  """Examples per chunk of the CPU kernel gradient of an NHWC conv, or None for the native one."""
  batch, height, width, channels = lhs_shape
  if output_pixels < KERNEL_GRAD_CHUNK_MIN_PIXELS:
    return None
  limit = max(2, KERNEL_GRAD_CHUNK_BYTES // (height * width * channels * 4))
  chunk = max(d for d in range(1, batch + 1) if batch % d == 0 and d <= limit)
  return chunk if chunk < batch else None


def _plain_conv(x, kernel, strides, padding, rhs_dilation, precision):
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rhs_dilation,
                                  dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _chunked_conv_nhwc(x, kernel, strides, padding, rhs_dilation, chunk, precision):
  return _plain_conv(x, kernel, strides, padding, rhs_dilation, precision)


def _chunked_conv_nhwc_fwd(x, kernel, strides, padding, rhs_dilation, chunk, precision):
  return _chunked_conv_nhwc(x, kernel, strides, padding, rhs_dilation, chunk, precision), (x, kernel)


def _chunked_conv_nhwc_bwd(strides, padding, rhs_dilation, chunk, precision, residuals, dy):
  x, kernel = residuals
  conv = lambda x, kernel: _plain_conv(x, kernel, strides, padding, rhs_dilation, precision)
  dx, = jax.linear_transpose(lambda x: conv(x, kernel), x)(dy)
  dk = jnp.zeros(kernel.shape, jnp.float32)
  for start in range(0, x.shape[0], chunk):  # independent convs: XLA runs them on both cores
    part = slice(start, start + chunk)
    dk_part, = jax.linear_transpose(lambda k: conv(x[part], k), kernel)(dy[part])
    dk = dk + dk_part.astype(jnp.float32)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_chunked_conv_nhwc.defvjp(_chunked_conv_nhwc_fwd, _chunked_conv_nhwc_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _grouped_conv_nhwc(x, kernel, strides, padding, rhs_dilation, groups, precision):
  return lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rhs_dilation,
                                  dimension_numbers=_NHWC, feature_group_count=groups,
                                  precision=precision)


def _grouped_conv_nhwc_fwd(x, kernel, strides, padding, rhs_dilation, groups, precision):
  y = _grouped_conv_nhwc(x, kernel, strides, padding, rhs_dilation, groups, precision)
  return y, (x, kernel)


def _grouped_conv_nhwc_bwd(strides, padding, rhs_dilation, groups, precision, residuals, dy):
  x, kernel = residuals
  conv_of_x = lambda x: _grouped_conv_nhwc.fun(x, kernel, strides, padding, rhs_dilation, groups,
                                               precision)
  dx, = jax.linear_transpose(conv_of_x, x)(dy)
  # dK[a, b, c, g*Co + o] = sum_{n,i,j} x[n, i*s + a*d, j*s + b*d, g*Ci + c] * dy[n, i, j, g*Co + o]:
  # a conv over the batch with the channels-in-group as its batch, one feature group per group.
  n, h, w, _ = x.shape
  kh, kw, per_group, _ = kernel.shape
  lhs = x.reshape(n, h, w, groups, per_group).transpose(4, 1, 2, 3, 0)
  lhs = lhs.reshape(per_group, h, w, groups * n)
  rhs = dy.transpose(1, 2, 0, 3)   # (H', W', N, G*Co): a kernel with N inputs per group
  dk = lax.conv_general_dilated(lhs, rhs, window_strides=rhs_dilation, padding=padding,
                                rhs_dilation=strides, dimension_numbers=_NHWC,
                                feature_group_count=groups, precision=precision,
                                preferred_element_type=jnp.float32)
  dk = dk[:, :kh, :kw, :].transpose(1, 2, 0, 3).astype(kernel.dtype)
  return dx.astype(x.dtype), dk


_grouped_conv_nhwc.defvjp(_grouped_conv_nhwc_fwd, _grouped_conv_nhwc_bwd)


# ----------------------------------------------------------------------------- shared layers
# Functions, not modules: called inside a compact method, the Conv, BatchNorm and Dense they create
# are submodules of the caller with the names given, so parameter paths (conv1, bn1, fc, ...) stay
# those of the papers' layer tables.


def conv(features: int, kernel: int, stride: int = 1, *, name: str, dtype: Any, groups: int = 1,
         use_bias: bool = False, kernel_init: Any = he_normal_fan_out) -> nn.Conv:
  """A square conv with 'same'-style symmetric padding (torchvision's padding = k // 2) and the fast
  CPU kernel gradient; by default bias-free with He fan-out init, the ResNet family's conv."""
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=kernel // 2,
                 feature_group_count=groups, use_bias=use_bias, dtype=dtype,
                 kernel_init=kernel_init, name=name, conv_general_dilated=conv_general_dilated)


def bn_act(x: jax.Array, train: bool, *, name: str, dtype: Any, bn_group_size: Optional[int],
           act: Activation) -> jax.Array:
  """BatchNorm (named ``name``) then the activation: the BN-ReLU of the residual and dense nets."""
  return act(BatchNorm(dtype=dtype, group_size=bn_group_size, name=name)(x, train))


def imagenet_stem(x: jax.Array, train: bool, *, features: int, dtype: Any,
                  bn_group_size: Optional[int], act: Activation) -> jax.Array:
  """ResNet's ImageNet stem, 7x7/2 conv (conv1) - BN (bn1) - act - 3x3/2 max-pool: 224 -> 56."""
  x = conv(features, 7, 2, name='conv1', dtype=dtype)(x)
  x = bn_act(x, train, name='bn1', dtype=dtype, bn_group_size=bn_group_size, act=act)
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


def classifier_head(x: jax.Array, num_classes: int, *, dtype: Any) -> jax.Array:
  """Global average pool, then the dense classifier ``fc``: float32 logits."""
  x = jnp.mean(x, axis=(1, 2))
  return nn.Dense(num_classes, dtype=dtype, name='fc')(x).astype(jnp.float32)


def checkpoint_block_output(x: jax.Array) -> jax.Array:
  """Marks a residual block's (or a dense layer's) output as a fusion boundary, on CPU.

  XLA:CPU otherwise re-fuses the whole chain of residual adds into every backward fusion, so a deep
  ResNet's step time grows quadratically with depth (``benchmarks/resnet_depth.py``: ResNet-110's
  step 1.96x and its compile 2.33x slower without it). The barrier survives only with
  ``--xla_disable_hlo_passes=cse_barrier_expander`` (set by :func:`cnn_jax.runtime.start`). GPU
  and TPU keep XLA's own fusion decisions: the barrier was never measured to help there, and it
  forbids fusions.
  """
  if jax.default_backend() != 'cpu':
    return x
  return jax.lax.optimization_barrier(x)


class StochasticDepth(nn.Module):
  """Huang et al. 2016: keeps a residual branch with probability ``survival_prob``.

  Training draws one Bernoulli per block per step (from the ``dropout`` RNG) and drops the whole
  branch, so the block is the identity; evaluation scales the branch by ``survival_prob``.
  """
  survival_prob: float

  @nn.compact
  def __call__(self, residual: jax.Array, train: bool) -> jax.Array:
    if self.survival_prob >= 1.0:
      return residual
    if not train:
      return residual * jnp.asarray(self.survival_prob, residual.dtype)
    keep = jax.random.bernoulli(self.make_rng('dropout'), self.survival_prob)
    return jnp.where(keep, residual, jnp.zeros_like(residual))


def survival_probs(num_blocks: int, last: float) -> list[float]:
  """The linear decay rule p_l = 1 - (l / L) (1 - p_L) for blocks l = 1..L."""
  check_survival_prob(last)
  return [1.0 - (l / num_blocks) * (1.0 - last) for l in range(1, num_blocks + 1)]


class LocalResponseNorm(nn.Module):
  """Krizhevsky et al. 2012, section 3.3: normalisation across adjacent channels.

  b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta, the sum clipped to the existing
  channels. The defaults are the paper's k=2, n=5, alpha=1e-4, beta=0.75, with alpha applied as is.
  PyTorch's ``nn.LocalResponseNorm`` (its documented formula has alpha/n) and Caffe's LRN divide
  alpha by n, so the same layer there is ``LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)``.
  ``groups`` > 1 normalises each group of channels on its own, as the two GPU towers of AlexNet did
  (a tower never saw the other's maps). Computed in float32 whatever the input dtype: with the 8-bit
  mantissa of bfloat16, k + alpha * sum would round the small alpha term away.
  """
  depth: int = 5          # n
  k: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75
  groups: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    if channels % self.groups:
      raise ValueError(f'LocalResponseNorm groups={self.groups} does not divide {channels} channels')
    x32 = x.astype(jnp.float32)
    squares = (x32 * x32).reshape(x.shape[:-1] + (self.groups, channels // self.groups))
    before = self.depth // 2
    window = (1,) * (squares.ndim - 1) + (self.depth,)
    padding = ((0, 0),) * (squares.ndim - 1) + ((before, self.depth - 1 - before),)
    summed = jax.lax.reduce_window(squares, 0.0, jax.lax.add, window, (1,) * squares.ndim, padding)
    y = x32 / (self.k + self.alpha * summed.reshape(x.shape)) ** self.beta
    return y.astype(x.dtype)


def units_for_depth(depth: Any, *, per_unit: int, fixed: int, net: str, counted: str,
                    examples: str) -> int:
  """n for a net whose depth is ``per_unit * n + fixed`` (n >= 1, three equal stages), or a
  :class:`ConfigError` that states the rule and the two valid depths nearest to ``depth``."""
  if (not isinstance(depth, int) or isinstance(depth, bool) or depth < per_unit + fixed
      or (depth - fixed) % per_unit):
    n = max(1, int((depth - fixed) // per_unit)) if isinstance(depth, (int, float)) else 1
    raise ConfigError(f'the depth of {net} must be {per_unit}n+{fixed} ({counted}): {depth!r} is '
                      f'not. Nearest valid depths: {per_unit * n + fixed} and '
                      f'{per_unit * (n + 1) + fixed} (e.g. {examples}).')
  return (depth - fixed) // per_unit


# ----------------------------------------------------------------------------- validation helpers


def check_choice(what: str, value: Any, valid: Sequence[Any]) -> None:
  if value not in valid:
    raise ConfigError(f'{what} must be one of {", ".join(map(repr, valid))}; got {value!r}.')


def check_positive_int(what: str, value: Any) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ConfigError(f'{what} must be a positive integer; got {value!r}.')


def check_survival_prob(last: float, residual: bool = True) -> None:
  """Stochastic depth needs a residual branch to drop and a probability in (0, 1]."""
  if not 0.0 < last <= 1.0:
    raise ConfigError(f'survival_prob_last (stochastic depth, probability that the last block '
                      f'survives) must be in (0, 1], 1 disabling it; got {last}.')
  if last < 1.0 and not residual:
    raise ConfigError('stochastic depth drops residual branches; a plain net (residual=False) has '
                      'none: use survival_prob_last=1.0 or residual=True.')


def check_dropout_rate(rate: float, what: str = 'dropout_rate') -> None:
  if not 0.0 <= rate < 1.0:
    raise ConfigError(f'{what} must be in [0, 1); got {rate}.')


def _pool_matrix(size_in: int, size_out: int) -> np.ndarray:
  """Row i averages inputs [floor(i*in/out), ceil((i+1)*in/out)), PyTorch's adaptive pooling bins."""
  matrix = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -(-((i + 1) * size_in) // size_out)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


class AdaptiveAvgPool(nn.Module):
  """Average pooling to a fixed ``output_size`` from any input size (``torch.nn.AdaptiveAvgPool2d``).

  The bins of PyTorch may overlap and differ in size, so the pool is two small averaging matrices
  (one per spatial axis) applied with an einsum; an input smaller than the output repeats values.
  """
  output_size: tuple[int, int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    height, width = x.shape[1:3]
    if (height, width) == tuple(self.output_size):
      return x
    if not height or not width:
      raise ConfigError(f'the feature map reaching the {self.output_size[0]}x{self.output_size[1]} '
                        f'adaptive pool is empty ({height}x{width}); use a larger input size.')
    rows = jnp.asarray(_pool_matrix(height, self.output_size[0]), x.dtype)
    cols = jnp.asarray(_pool_matrix(width, self.output_size[1]), x.dtype)
    return jnp.einsum('ph,qw,nhwc->npqc', rows, cols, x)
