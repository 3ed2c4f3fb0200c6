"""Evaluates a run's newest checkpoint (or a converted model) without training; the workdir is only
read.

  python -m cnn_jax.evaluate --workdir=DIR
  python -m cnn_jax.evaluate --workdir=DIR --config.eval_symmetries=8   # AlphaGo's 8-fold evaluation
  python -m cnn_jax.evaluate --workdir=DIR --config.data.eval_split='test[:1000]' --output=m.json

The config is the workdir's ``config.json``. ``--config.X=...`` overrides the fields that say how to
evaluate (``data.*``, ``eval_symmetries``, ``batch_size``, ``mixed_precision``, ...), never the
model the checkpoint holds. Prints a line per split; ``--output`` also writes the metrics as JSON.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags

import cnn_jax
from cnn_jax import ConfigError, checkpoint, parallel, runtime
from cnn_jax import workdir as workdir_lib

# The fields an evaluation may change: how the data are read and scored, not what was trained.
EVAL_FIELDS = ('data.', 'eval_symmetries', 'batch_size', 'mixed_precision', 'compilation_cache_dir',
               'model.dtype')


def check_overrides(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> None:
  """ConfigError naming the overridden fields that would change the model's variables."""
  old = workdir_lib.flat_config(saved)
  new = workdir_lib.flat_config(config)
  changed = sorted(key for key in set(old) | set(new)
                   if old.get(key) != new.get(key) and not key.startswith(EVAL_FIELDS))
  if changed:
    raise ConfigError(f'evaluation cannot change {", ".join("config." + k for k in changed)}: they '
                      'are the trained run\'s recipe. Override only data.*, eval_symmetries, '
                      'batch_size or mixed_precision (or train a new run with --config.init_from).')


def restore(config: ml_collections.ConfigDict, workdir: str):
  """``(setup, state)``: the config built (train.build) and a TrainState holding the parameters
  and BatchNorm statistics of ``workdir``'s newest checkpoint, replicated over the mesh; its
  optimiser state is empty. ConfigError if they do not fit the config's model."""
  from cnn_jax import train  # pylint: disable=g-import-not-at-top (after runtime.start)
  setup = train.build(config)
  step, variables = checkpoint.load_variables(workdir)
  expected = train.variable_shapes(setup.model, setup.info.image_shape)
  for collection in ('params', 'batch_stats'):
    want = jax.tree_util.tree_flatten_with_path(expected.get(collection, {}))[0]
    have = dict(jax.tree_util.tree_flatten_with_path(variables[collection])[0])
    for path, leaf in want:
      found = have.get(path)
      if found is None or tuple(found.shape) != tuple(leaf.shape):
        name = '/'.join(str(getattr(p, 'key', p)) for p in path)
        got = 'missing' if found is None else f'shape {tuple(found.shape)}'
        raise ConfigError(f'the checkpoint in {workdir} does not fit config.model ({collection} '
                          f'{name}: {got}, the model needs {tuple(leaf.shape)}): evaluate it with '
                          'the config it was trained with.')
  state = train.TrainState(step=np.int32(step), params=variables['params'],
                           batch_stats=variables['batch_stats'], opt_state=(), plateau=(),
                           rng=np.zeros((2,), np.uint32))
  return setup, parallel.replicate(state, setup.mesh)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """``{'step': N, role: metrics, ...}`` of ``workdir``'s newest checkpoint over the config's
  evaluation splits (the test split, and the validation split when there is one)."""
  from cnn_jax import train  # pylint: disable=g-import-not-at-top
  setup, state = restore(config, workdir)
  eval_step = train.make_eval_step(setup)
  results = {role: train.evaluate(setup, config, eval_step, state, role)
             for role in train.eval_roles(setup, config, final=True)}
  return {'step': int(state.step), **{role: {k: float(v) for k, v in m.items()}
                                      for role, m in results.items()}}


def result_lines(results: dict[str, Any]) -> list[str]:
  lines = []
  for role, metrics in results.items():
    if role == 'step':
      continue
    masked = (f' masked top-1 {metrics["masked_accuracy"]:.4f} top-5 '
              f'{metrics["masked_top5_accuracy"]:.4f}' if 'masked_accuracy' in metrics else '')
    lines.append(f'{role} step {results["step"]}: loss {metrics["loss"]:.4f} top-1 '
                 f'{metrics["accuracy"]:.4f} top-5 {metrics["top5_accuracy"]:.4f}{masked} '
                 f'({int(metrics["num_examples"])} examples)')
  return lines


# ---------------------------------------------------------------------------------------------
# Command line: the config flag's default is the workdir's own config (workdir.define_config_flag).
# The flags are defined when the module runs as the program, so that other tools can import it.

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'The run (or converted model) to evaluate.', required=True)
  flags.DEFINE_string('output', None, 'Also write the metrics to this JSON file.')
  workdir_lib.define_config_flag(sys.argv)


def main(argv: list[str]) -> None:
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)
    check_overrides(workdir_lib.load_config(FLAGS.workdir), FLAGS.config)
    results = evaluate(FLAGS.config, FLAGS.workdir)
  print('\n'.join(result_lines(results)), flush=True)
  if FLAGS.output:
    with open(FLAGS.output, 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
