"""Ablation sweeps: one training run per grid point, then a table of the results.

  python experiments/sweep.py --sweep=degradation --base_workdir=/tmp/cnn_jax/sweeps
  python experiments/sweep.py --sweep=stochastic_depth --dry_run   # print the commands only

Each run is a plain `python -m cnn_jax.main` with its own workdir, so an interrupted sweep resumes
where it stopped (finished runs only report again). The table reads each workdir's metrics.jsonl.
The sweeps use digits so that they run on a CPU; point them at CIFAR with
--extra="--config.data.name=cifar10" on an accelerator.
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys

from absl import app, flags

SWEEPS = {
    # He et al. 2015, Fig. 6: plain nets degrade with depth, residual nets do not.
    'degradation': ('configs/resnet_cifar.py', {'config.model.depth': [20, 32, 56],
                                                'config.model.residual': [True, False]}),
    # Huang et al. 2016: survival probability of the last block, on a deep residual net.
    'stochastic_depth': ('configs/resnet_cifar.py:56', {'config.model.survival_prob_last': [1.0, 0.8, 0.5]}),
    # Width against depth at a similar budget: WRN-d-k on digits.
    'depth_vs_width': ('configs/resnet_cifar.py', {'config.model.depth': [20, 44],
                                                   'config.model.width': [16, 32]}),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum('sweep', None, sorted(SWEEPS), 'Which sweep to run.', required=True)
flags.DEFINE_string('base_workdir', '/tmp/cnn_jax/sweeps', 'One sub-directory per run goes here.')
flags.DEFINE_string('extra', '', 'Extra flags for every run, e.g. "--config.num_epochs=5".')
flags.DEFINE_bool('dry_run', False, 'Print the commands, run nothing.')


def grid(axes: dict[str, list]) -> list[dict]:
  keys = list(axes)
  return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def run_name(point: dict) -> str:
  return '_'.join(f'{k.rsplit(".", 1)[-1]}={v}' for k, v in point.items())


def command(config: str, point: dict, workdir: str, extra: str) -> list[str]:
  return ([sys.executable, '-m', 'cnn_jax.main', f'--config={config}', f'--workdir={workdir}']
          + [f'--{k}={v}' for k, v in point.items()] + shlex.split(extra))


def final_metrics(workdir: str) -> dict:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    records = [json.loads(line) for line in f]
  train = [r for r in records if r['split'] == 'train']
  evals = [r for r in records if r['split'] == 'eval']
  return {'train_loss': train[-1]['loss'] if train else float('nan'),
          'eval_accuracy': evals[-1]['accuracy'] if evals else float('nan')}


def main(argv):
  del argv
  config, axes = SWEEPS[FLAGS.sweep]
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = []
  for point in grid(axes):
    workdir = os.path.join(FLAGS.base_workdir, FLAGS.sweep, run_name(point))
    cmd = command(config, point, workdir, FLAGS.extra)
    print(shlex.join(cmd), flush=True)
    if not FLAGS.dry_run:
      subprocess.run(cmd, cwd=repo, check=True)
      rows.append((run_name(point), final_metrics(workdir)))
  if rows:
    print(f'\n{"run":40s} {"train loss":>10s} {"eval acc":>9s}')
    for name, m in rows:
      print(f'{name:40s} {m["train_loss"]:10.4f} {m["eval_accuracy"]:9.4f}')


if __name__ == '__main__':
  app.run(main)
