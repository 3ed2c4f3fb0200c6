"""Compile and step time of CIFAR ResNets against depth, with and without the block barrier.

Every residual block ends in ``layers.checkpoint_block_output`` (an optimization barrier). Without
it XLA:CPU re-fuses the chain of residual adds into the backward fusions, so the step time grows
faster than the depth. This script measures one SGD step (``jax.jit`` of ``value_and_grad`` plus
``optax.sgd`` with momentum) at batch 32 on 32x32x3 inputs for ResNet-20/56/110 (and 1202 with
``--include-1202``), once as the models are and once with the barrier replaced by the identity, and
prints ratios against ResNet-20 measured in the same run and mode.

  python benchmarks/resnet_depth.py [--include-1202] [--steps 5] [--modes barrier,no-barrier]
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

from cnn_jax import runtime  # noqa: E402
from cnn_jax.models import get_model, layers  # noqa: E402

MODES = ('barrier', 'no-barrier')


@contextlib.contextmanager
def block_barrier(enabled: bool) -> Iterator[None]:
  """Replaces the barrier by the identity while the step is traced (blocks look it up per call)."""
  original = layers.checkpoint_block_output
  if not enabled:
    layers.checkpoint_block_output = lambda x: x
  try:
    yield
  finally:
    layers.checkpoint_block_output = original


def random_variables(model, images: jax.Array, seed: int = 0):
  """He-scaled numpy weights: shapes from eval_shape, so no initialiser has to be compiled."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    kind, shape = path[-1].key, leaf.shape
    if kind == 'kernel':
      return jnp.asarray(rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1])), leaf.dtype)
    return jnp.ones(shape, leaf.dtype) if kind in ('scale', 'var') else jnp.zeros(shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def measure(depth: int, barrier: bool, batch: int, steps: int) -> dict[str, float]:
  model = get_model(f'resnet{depth}_cifar')
  images = jnp.asarray(np.random.default_rng(1).normal(size=(batch, 32, 32, 3)), jnp.float32)
  labels = jnp.asarray(np.random.default_rng(2).integers(0, 10, size=(batch,)), jnp.int32)
  variables = random_variables(model, images)
  tx = optax.sgd(0.1, momentum=0.9)
  opt_state = tx.init(variables['params'])

  def loss_fn(params, batch_stats, x, y):
    logits, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                  mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates['batch_stats']

  def train_step(params, batch_stats, opt_state, x, y):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  args = (variables['params'], variables['batch_stats'], opt_state, images, labels)
  with block_barrier(barrier):
    start = time.perf_counter()
    lowered = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(*args)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    step = lowered.compile()
    compile_s = time.perf_counter() - start
  state = args[:3]
  state = step(*state, images, labels)[:3]  # warm-up
  jax.block_until_ready(state)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    *state, loss = step(*state, images, labels)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - start)
  return {'trace': trace_s, 'compile': compile_s, 'step': statistics.median(times),
          'loss': float(loss)}


def main() -> None:
  runtime.start()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--include-1202', action='store_true', help='also ResNet-1202 (minutes)')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5, help='timed steps (median reported)')
  parser.add_argument('--modes', default=','.join(MODES), help=f'comma-separated subset of {MODES}')
  parser.add_argument('--no-barrier-max-depth', type=int, default=110,
                      help='skip deeper nets without the barrier (their step time explodes)')
  args = parser.parse_args()
  depths = [20, 56, 110] + ([1202] if args.include_1202 else [])
  modes = [m for m in args.modes.split(',') if m]
  for mode in modes:
    if mode not in MODES:
      parser.error(f'unknown mode {mode!r}; valid: {", ".join(MODES)}')

  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPUs), batch '
        f'{args.batch}, 32x32x3, SGD momentum step, median of {args.steps} steps')
  print(f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")}')
  results: dict[tuple[str, int], dict[str, float]] = {}
  for mode in modes:
    print(f'\n== {mode} ==')
    print(f'{"model":>12} {"blocks":>6} {"trace s":>8} {"compile s":>10} {"step ms":>9} '
          f'{"compile x":>10} {"step x":>7} {"step x / blocks x":>18}')
    for depth in depths:
      if mode == 'no-barrier' and depth > args.no_barrier_max_depth:
        print(f'{"resnet" + str(depth):>12}  skipped (--no-barrier-max-depth {args.no_barrier_max_depth})')
        continue
      r = results[mode, depth] = measure(depth, mode == 'barrier', args.batch, args.steps)
      base = results.get((mode, 20))
      blocks = 3 * (depth - 2) // 6
      compile_x = r['compile'] / base['compile'] if base else float('nan')
      step_x = r['step'] / base['step'] if base else float('nan')
      print(f'{"resnet" + str(depth):>12} {blocks:>6} {r["trace"]:>8.2f} {r["compile"]:>10.2f} '
            f'{1e3 * r["step"]:>9.1f} {compile_x:>10.2f} {step_x:>7.2f} {step_x / (blocks / 9):>18.2f}',
            flush=True)
  if set(modes) == set(MODES):
    print('\nno-barrier / barrier:')
    for depth in depths:
      if ('no-barrier', depth) in results:
        a, b = results['no-barrier', depth], results['barrier', depth]
        print(f'{"resnet" + str(depth):>12} compile {a["compile"] / b["compile"]:.2f}x, '
              f'step {a["step"] / b["step"]:.2f}x')


if __name__ == '__main__':
  main()
