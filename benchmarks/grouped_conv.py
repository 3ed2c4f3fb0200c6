"""Train-step time of the grouped-conv nets with layers.conv_general_dilated's grouped kernel gradient
against lax's own.

ResNeXt's 3x3 convs and AlexNet's two towers are grouped convolutions. Autodiff gives their kernel
gradient as a ``batch_group_count`` convolution, which XLA:CPU runs tens of times slower than the
forward conv; ``layers.conv_general_dilated`` computes the same gradient as a ``feature_group_count``
convolution. This script times one SGD step (``jax.jit`` of ``value_and_grad`` plus momentum SGD)
of each net both ways, in the same run, and prints the ratio.

  python benchmarks/grouped_conv.py [--steps 2] [--models resnext50_32x4d,resnext29_8x64d,alexnet]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from typing import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

from cnn_jax import runtime  # noqa: E402
from cnn_jax.models import get_model, layers  # noqa: E402

# name -> (input size, batch): the papers' input sizes, batches small enough for 2 CPU cores.
CASES = {'resnext50_32x4d': (224, 4), 'resnext29_8x64d': (32, 16), 'alexnet': (227, 16)}


@contextlib.contextmanager
def kernel_gradient(ours: bool) -> Iterator[None]:
  """Swaps the grouped conv's custom gradient for lax's while the step is traced (looked up per call)."""
  original = layers._grouped_conv_nhwc
  if not ours:
    layers._grouped_conv_nhwc = lambda x, kernel, strides, padding, rhs_dilation, groups, precision: (
        lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=rhs_dilation,
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                 feature_group_count=groups, precision=precision))
  try:
    yield
  finally:
    layers._grouped_conv_nhwc = original


def step_times(name: str, size: int, batch: int, steps: int, ours: bool) -> tuple[float, float]:
  """(compile seconds, median step seconds) of one SGD step of ``name``."""
  model = get_model(name, num_classes=10)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch, size, size, 3)), jnp.float32)
  labels = jnp.asarray(np.arange(batch) % 10, jnp.int32)
  with kernel_gradient(ours):
    variables = jax.jit(lambda key: model.init(key, images[:1]))(jax.random.PRNGKey(0))
    params, state = variables['params'], variables.get('batch_stats', {})
    tx = optax.sgd(0.01, momentum=0.9)

    def loss_fn(params, state):
      logits, updates = model.apply({'params': params, 'batch_stats': state}, images, train=True,
                                    mutable=['batch_stats'], rngs={'dropout': jax.random.PRNGKey(1)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    @jax.jit
    def step(params, state, opt_state):
      (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state)
      changes, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, changes), updates.get('batch_stats', {}), opt_state, loss

    opt_state = tx.init(params)
    start = time.perf_counter()
    compiled = step.lower(params, state, opt_state).compile()
    compile_time = time.perf_counter() - start
  times = []
  for _ in range(steps + 1):  # the first call also allocates; it is not counted
    start = time.perf_counter()
    params, state, opt_state, loss = jax.block_until_ready(compiled(params, state, opt_state))
    times.append(time.perf_counter() - start)
  return compile_time, statistics.median(times[1:])


def main() -> None:
  runtime.start()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--models', default=','.join(CASES))
  args = parser.parse_args()
  print(f'backend {jax.default_backend()}, {jax.device_count()} device(s), median of {args.steps} '
        f'steps after one warm-up step')
  print(f'{"net":18s} {"input":>9s} {"lax step s":>11s} {"ours step s":>12s} {"speed-up":>9s} '
        f'{"lax compile s":>14s} {"ours compile s":>15s}')
  for name in args.models.split(','):
    size, batch = CASES[name]
    native_compile, native_step = step_times(name, size, batch, args.steps, ours=False)
    ours_compile, ours_step = step_times(name, size, batch, args.steps, ours=True)
    print(f'{name:18s} {f"{batch}x{size}":>9s} {native_step:11.2f} {ours_step:12.2f} '
          f'{native_step / ours_step:8.1f}x {native_compile:14.1f} {ours_compile:15.1f}', flush=True)


if __name__ == '__main__':
  main()
