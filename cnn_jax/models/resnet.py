"""ResNet (He et al. 2015) for CIFAR: depth 6n+2, three stages of n basic blocks at 16/32/64 filters.

Option-A shortcuts (identity, with stride-2 subsampling and zero-padded channels where the shape
changes) give the residual net and its plain twin identical parameter counts. Stochastic depth
(Huang et al. 2016) is an option: ``survival_prob_last`` < 1 enables the linear decay rule.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ConfigError
from cnn_jax.models import layers, register


def shortcut_option_a(x: jax.Array, features: int, stride: int) -> jax.Array:
  """Identity shortcut; subsamples by ``stride`` and zero-pads the new channels."""
  if stride > 1:
    x = x[:, ::stride, ::stride, :]
  extra = features - x.shape[-1]
  if extra:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  return x


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, added to the shortcut, then ReLU (v1 ordering)."""
  features: int
  stride: int = 1
  residual: bool = True
  survival_prob: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda f, s, name: nn.Conv(f, (3, 3), (s, s), padding=1, use_bias=False, dtype=self.dtype,
                                      kernel_init=layers.he_normal_fan_out, name=name)
    norm = lambda name, **kw: layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size,
                                               name=name, **kw)
    y = nn.relu(norm('bn1')(conv(self.features, self.stride, 'conv1')(x), train))
    y = norm('bn2')(conv(self.features, 1, 'conv2')(y), train)
    if self.residual:
      y = layers.StochasticDepth(self.survival_prob)(y, train)
      y = y + shortcut_option_a(x, self.features, self.stride)
    return layers.checkpoint_block_output(nn.relu(y))


class CifarResNet(nn.Module):
  """ResNet-(6n+2) for 32x32 inputs; ``residual=False`` gives its plain twin."""
  depth: int = 20
  num_classes: int = 10
  width: int = 16
  residual: bool = True
  survival_prob_last: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None

  def __post_init__(self):
    if self.depth < 8 or (self.depth - 2) % 6:
      n = max(1, round((self.depth - 2) / 6))
      raise ConfigError(
          f'CIFAR ResNet depth must be 6n+2 (three stages of n two-layer blocks, plus the first conv '
          f'and the classifier): {self.depth} is not. Nearest valid depths: {6 * n + 2} and '
          f'{6 * (n + 1) + 2} (e.g. 20, 32, 44, 56, 110, 1202).')
    layers.survival_probs(1, self.survival_prob_last)  # validates the range
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n = (self.depth - 2) // 6
    probs = layers.survival_probs(3 * n, self.survival_prob_last)
    x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, dtype=self.dtype,
                kernel_init=layers.he_normal_fan_out, name='conv1')(x.astype(self.dtype))
    x = nn.relu(layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size, name='bn1')(x, train))
    for stage in range(3):
      for i in range(n):
        x = BasicBlock(self.width * 2 ** stage, stride=2 if stage and i == 0 else 1,
                       residual=self.residual, survival_prob=probs[stage * n + i], dtype=self.dtype,
                       bn_group_size=self.bn_group_size, name=f'stage{stage + 1}_block{i + 1}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)


for _depth in (20, 32, 44, 56, 110, 1202):
  register(f'resnet{_depth}_cifar', CifarResNet, depth=_depth)
for _depth in (20, 32, 44, 56, 110):
  register(f'plain{_depth}_cifar', CifarResNet, depth=_depth, residual=False)
register('resnet_cifar', CifarResNet)
