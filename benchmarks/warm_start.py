"""Cold against warm start: time to the end of the first training step, with an empty and a filled
compilation cache (``config.compilation_cache_dir``).

Each start is a fresh process that trains a recipe for two steps in a new workdir; the first and
second start share one new cache directory, so the first compiles everything and the second loads
what the first wrote. Printed per config: imports, time from ``train_and_evaluate``'s start to the
end of its first training step, the whole process's wall time, and the cold/warm ratios.

  python benchmarks/warm_start.py [--configs resnet_cifar10.py:110,runlocal ...] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
DEFAULT_CONFIGS = ('resnet_cifar10.py:runlocal', 'resnet_cifar10.py:110,runlocal',
                   'resnet_cifar10.py:1202,runlocal')
# ResNet-1202 at the batch of 32 instead of runlocal's 2.
OVERRIDES = {'resnet_cifar10.py:1202,runlocal': ['--config.batch_size=32']}

# One start, in its own process: what it prints last is a JSON line of its timings.
_START = r'''
import json, sys, time
t0 = time.time()
from absl import flags
from ml_collections import config_flags
from cnn_jax import runtime, train
runtime.start()
import jax
imported = time.time()
config_flags.DEFINE_config_file('config')
flags.FLAGS(['start', *sys.argv[3:]])
config = flags.FLAGS.config
config.compilation_cache_dir = sys.argv[1]
make_steps, marks = train.make_steps, {}

def timed_make_steps(*args, **kwargs):
  train_step, *others = make_steps(*args, **kwargs)
  def first_timed(*a):
    out = train_step(*a)
    if 'first_step' not in marks:
      jax.block_until_ready(out)
      marks['first_step'] = time.time()
    return out
  return (first_timed, *others)

train.make_steps = timed_make_steps
start = time.time()
train.train_and_evaluate(config, sys.argv[2])
print(json.dumps({'imports': imported - t0, 'first_step': marks['first_step'] - start}))
'''


def start(config: str, cache: str, workdir: str) -> dict:
  args = [f'--config={os.path.join(REPO, "configs", config)}', *OVERRIDES.get(config, [])]
  began = time.time()
  result = subprocess.run([sys.executable, '-c', _START, cache, workdir, *args], cwd=REPO,
                          capture_output=True, text=True)
  if result.returncode:
    sys.exit(f'{config} failed:\n{result.stderr[-3000:]}')
  timings = json.loads(result.stdout.strip().splitlines()[-1])
  timings['process'] = time.time() - began
  return timings


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--configs', nargs='+', default=DEFAULT_CONFIGS, help='config files in configs/ with\n                      their arguments')
  parser.add_argument('--repeats', type=int, default=1, help='cold/warm pairs per config')
  args = parser.parse_args()
  print(f'{"config":34s} {"imports s":>9s} {"cold s":>8s} {"warm s":>8s} {"ratio":>6s} '
        f'{"cold proc s":>11s} {"warm proc s":>11s} {"ratio":>6s}')
  for config in args.configs:
    pairs = []
    for _ in range(args.repeats):
      with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, 'cache')
        pairs.append([start(config, cache, os.path.join(tmp, name)) for name in ('cold', 'warm')])
    cold = {k: statistics.median(p[0][k] for p in pairs) for k in ('first_step', 'process')}
    warm = {k: statistics.median(p[1][k] for p in pairs) for k in ('first_step', 'process')}
    imports = statistics.median(p[1]['imports'] for p in pairs)
    print(f'{config:34s} {imports:9.1f} {cold["first_step"]:8.1f} {warm["first_step"]:8.1f} '
          f'{cold["first_step"] / warm["first_step"]:6.1f} {cold["process"]:11.1f} '
          f'{warm["process"]:11.1f} {cold["process"] / warm["process"]:6.1f}', flush=True)


if __name__ == '__main__':
  main()
