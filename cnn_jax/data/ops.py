"""Preprocessing ops, named and composed in the config as a pipe-separated string.

``"resize(32) | pad_random_crop(4) | flip_lr | normalize(mean=0.5, std=0.25)"`` builds four ops; each
op maps ``(image, seed) -> image`` on one example inside tf.data. Random ops use stateless TF random
functions seeded per example, so a pipeline is a pure function of (seed, epoch, example): a resumed
run sees exactly the augmentation an uninterrupted run would have.
"""
from __future__ import annotations

import ast
import difflib
from typing import Any, Callable, Sequence

import tensorflow as tf

from cnn_jax import ConfigError

Op = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
_OPS: dict[str, Callable[..., Op]] = {}


def register_op(fn: Callable[..., Op]) -> Callable[..., Op]:
  _OPS[fn.__name__] = fn
  return fn


def op_names() -> list[str]:
  return sorted(_OPS)


def _per_channel(value: float | Sequence[float]) -> tf.Tensor:
  return tf.reshape(tf.constant(value, tf.float32), [-1])


@register_op
def resize(size: int | Sequence[int], method: str = 'bilinear') -> Op:
  """Resizes to ``size`` (an int for a square, or (height, width)); keeps uint8 values 0..255."""
  hw = [size, size] if isinstance(size, int) else list(size)
  def op(image, seed):
    del seed
    return tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, hw, method)), 0, 255), image.dtype)
  return op


@register_op
def pad_random_crop(pad: int) -> Op:
  """Zero-pads each side by ``pad`` pixels, then crops a random window of the original size."""
  def op(image, seed):
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, shape, seed=seed)
  return op


@register_op
def flip_lr() -> Op:
  """Random horizontal flip with probability 1/2."""
  def op(image, seed):
    return tf.image.stateless_random_flip_left_right(image, seed=seed)
  return op


@register_op
def normalize(mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.25) -> Op:
  """uint8 0..255 to float32 (x / 255 - mean) / std, per channel where mean/std are sequences."""
  mean_t, std_t = _per_channel(mean), _per_channel(std)
  def op(image, seed):
    del seed
    return (tf.cast(image, tf.float32) / 255.0 - mean_t) / std_t
  return op


def _parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
  try:
    node = ast.parse(text.strip(), mode='eval').body
  except SyntaxError as e:
    raise ConfigError(f'cannot parse preprocessing op {text!r}: write it as name(arg, key=value)') from e
  if isinstance(node, ast.Name):
    return node.id, [], {}
  if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
    raise ConfigError(f'cannot parse preprocessing op {text!r}: write it as name(arg, key=value)')
  try:
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
  except ValueError as e:
    raise ConfigError(f'preprocessing op {text!r}: arguments must be literals') from e
  return node.func.id, args, kwargs


def parse(spec: str) -> list[Op]:
  """Builds the ops of a pipe-separated spec; unknown names raise ConfigError listing valid ones."""
  ops = []
  for text in filter(str.strip, spec.split('|')):
    name, args, kwargs = _parse_call(text)
    if name not in _OPS:
      close = difflib.get_close_matches(name, _OPS, n=1)
      hint = f' Did you mean {close[0]}?' if close else ''
      raise ConfigError(f'unknown preprocessing op {name!r}.{hint} Valid ops: {", ".join(op_names())}.')
    try:
      ops.append(_OPS[name](*args, **kwargs))
    except TypeError as e:
      raise ConfigError(f'preprocessing op {text.strip()!r}: {e}') from e
  return ops


def apply(ops: Sequence[Op], image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Runs ``ops`` in order, giving each its own seed split from ``seed``."""
  seeds = tf.random.experimental.stateless_split(seed, num=max(len(ops), 1))
  for i, op in enumerate(ops):
    image = op(image, seeds[i])
  return image
