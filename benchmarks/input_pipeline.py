"""The train loop fed by the real tf.data pipeline against the same step on device-resident batches.

  python benchmarks/input_pipeline.py [--recipes=default:resnet20_cifar,fashion_mnist.py:resnet20]
      [--steps=8] [--repeats=3] [--tf_threads=1]

For each recipe (a config file and its argument; ``default:MODEL`` is configs/default.py with that
model) the same compiled train step runs ``--steps`` steps twice over, alternating ``--repeats``
times in one process: once as ``train._train`` feeds it (``pipeline.train_batches`` through
``parallel.device_batches``), once on batches that were all made global arrays beforehand. The table gives the median time a step of each and their ratio
(the input is not the bottleneck when it is within 1.05), and what the pipeline alone takes to
produce a batch. ``--tf_threads`` bounds
TensorFlow's thread pools (tf.data's map and prefetch run on them), so that the pipeline competes
with XLA for the same cores as it would on a small machine; 0 leaves TensorFlow's defaults.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def recipe_config(recipe: str):
  path, _, arg = recipe.partition(':')
  if path == 'default':
    from configs import default
    config = default.get_config()
    config.model.name = arg
    return config
  module = importlib.import_module('configs.' + path.removesuffix('.py'))
  return module.get_config(arg) if arg else module.get_config()


def measure(recipe: str, steps: int, repeats: int) -> tuple[float, float, float]:
  import jax
  from cnn_jax import parallel, train
  from cnn_jax.data import pipeline
  config = recipe_config(recipe)
  setup = train.build(config)
  state = train.init_state(setup, config.seed)
  sums = parallel.replicate(train.zero_train_sums(), setup.mesh)
  train_step = train.make_train_step(setup, config)
  local_batches = pipeline.train_batches(config.data, seed=config.seed, layout=setup.layout)
  batches = parallel.device_batches(local_batches, setup.mesh)
  state, sums = train_step(state, sums, next(batches))
  jax.block_until_ready(state)  # compiled, and the pipeline's first buffers filled
  fed, resident = [], []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):  # as train._train does it
      state, sums = train_step(state, sums, next(batches))
    jax.block_until_ready(state)
    fed.append((time.perf_counter() - start) / steps)
    ready = [next(batches) for _ in range(steps)]
    jax.block_until_ready(ready)
    start = time.perf_counter()
    for batch in ready:
      state, sums = train_step(state, sums, batch)
    jax.block_until_ready(state)
    resident.append((time.perf_counter() - start) / steps)
  drained = max(64, 4 * steps)  # well past what tf.data and device_batches hold ready
  start = time.perf_counter()
  for _ in range(drained):
    next(local_batches)
  alone = (time.perf_counter() - start) / drained
  return statistics.median(fed), statistics.median(resident), alone


def main() -> None:
  from cnn_jax import runtime
  runtime.start()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--recipes', default='default:resnet20_cifar,fashion_mnist.py:resnet20')
  parser.add_argument('--steps', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--tf_threads', type=int, default=1)
  args = parser.parse_args()
  import tensorflow as tf
  if args.tf_threads:
    tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
  print(f'{len(os.sched_getaffinity(0))} cores, TensorFlow threads {args.tf_threads or "default"}, '
        f'{args.steps} steps, median of {args.repeats} alternations')
  print('| recipe | batch | pipeline-fed step | device-resident step | ratio | a batch, pipeline alone |')
  print('|---|---|---|---|---|---|')
  for recipe in args.recipes.split(','):
    fed, resident, alone = measure(recipe, args.steps, args.repeats)
    batch = recipe_config(recipe).batch_size
    print(f'| {recipe} | {batch} | {1000 * fed:.1f} ms | {1000 * resident:.1f} ms | '
          f'{fed / resident:.3f} | {1000 * alone:.1f} ms |', flush=True)


if __name__ == '__main__':
  main()
