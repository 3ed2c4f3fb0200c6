"""The train loop: state, one jitted train step, one jitted eval step, and the loop around them.

It knows no model or data set by name: the registry builds the model, the pipeline the batches, and
:mod:`cnn_jax.parallel` decides how arrays are laid out over devices.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf
from absl import logging
from jax.experimental import multihost_utils

from cnn_jax import checkpoint, models, optim, parallel, reporting, run_files
from cnn_jax.data import pipeline


# ---------------------------------------------------------------------------------------------
# State


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  plateau: Any    # reduce_on_plateau state (its scale multiplies the updates), or () without it
  rng: jax.Array  # raw uint32 key; the step's dropout key is fold_in(rng, step)


def _zero_metrics(names: tuple[str, ...]) -> dict[str, jax.Array]:
  return {name: jnp.zeros((), jnp.float32) for name in names}


TRAIN_SUMS = ('loss', 'correct', 'count')
RESULT_FILE = run_files.RESULT
EVAL_SUMS = ('loss', 'correct', 'correct_top5', 'count')


# ---------------------------------------------------------------------------------------------
# Setup: everything a user can get wrong is checked here, before anything compiles.


@flax.struct.dataclass
class Setup:
  model: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  plateau: Any = flax.struct.field(pytree_node=False)
  schedule: Callable[[int], Any] = flax.struct.field(pytree_node=False)
  info: pipeline.DatasetInfo = flax.struct.field(pytree_node=False)
  mesh: Any = flax.struct.field(pytree_node=False)
  local_batch: int = flax.struct.field(pytree_node=False)
  layout: pipeline.ShardLayout = flax.struct.field(pytree_node=False)
  total_steps: int = flax.struct.field(pytree_node=False)


def build(config: ml_collections.ConfigDict) -> Setup:
  """Validates the config and builds model, optimiser and data facts; raises ConfigError."""
  mesh = parallel.make_mesh()
  local_batch = parallel.local_batch_size(config.batch_size, mesh)
  info = pipeline.dataset_info(config.data)
  model_kwargs = dict(config.model)
  name = model_kwargs.pop('name')
  model_kwargs.setdefault('num_classes', info.num_classes)
  if isinstance(model_kwargs.get('dtype'), str):
    model_kwargs['dtype'] = jnp.dtype(model_kwargs['dtype'])
  if config.mixed_precision:  # parameters stay float32: the models cast inputs to dtype
    model_kwargs['dtype'] = jnp.bfloat16
  model = models.get_model(name, **model_kwargs)
  layout = pipeline.shard_layout(config.data, num_examples=info.num_train,
                                 global_batch=config.batch_size, process_index=jax.process_index(),
                                 process_count=jax.process_count())
  steps_per_epoch = layout.steps_per_epoch
  total_steps = config.num_train_steps or int(config.num_epochs * steps_per_epoch)
  schedule = optim.make_schedule(config, steps_per_epoch, total_steps)
  tx = optim.make_optimizer(config, schedule)
  return Setup(model, tx, optim.make_plateau(config), schedule, info, mesh, local_batch, layout,
               total_steps)


def init_state(setup: Setup, seed: int) -> TrainState:
  """Initialises the state directly in its replicated layout."""
  def init(rng):
    params_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    dummy = jnp.zeros((1,) + setup.info.image_shape, jnp.float32)
    variables = setup.model.init({'params': params_rng, 'dropout': dropout_rng}, dummy, train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=setup.tx.init(params),
                      plateau=setup.plateau.init(params) if setup.plateau else (), rng=state_rng)
  return jax.jit(init, out_shardings=parallel.replicated(setup.mesh))(jax.random.PRNGKey(seed))


# ---------------------------------------------------------------------------------------------
# Steps


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing) \
      if label_smoothing else jax.nn.one_hot(labels, logits.shape[-1])
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(setup: Setup, config: ml_collections.ConfigDict):
  """Returns the jitted ``(state, sums, batch) -> (state, sums)``; state and sums are donated."""
  aux_weight = config.loss.aux_weight
  smoothing = config.loss.label_smoothing

  def train_step(state: TrainState, sums: dict, batch: dict):
    dropout_rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      outputs, new_vars = setup.model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
          mutable=['batch_stats'], rngs={'dropout': dropout_rng})
      logits, aux_logits = outputs if isinstance(outputs, tuple) else (outputs, ())
      main_loss = cross_entropy(logits, batch['label'], smoothing).mean()
      # Auxiliary classifiers (GoogLeNet) add their weighted losses during training only.
      aux_loss = sum(cross_entropy(a, batch['label'], smoothing).mean() for a in aux_logits)
      return main_loss + aux_weight * aux_loss, (main_loss, logits, new_vars.get('batch_stats', {}))

    grads, (main_loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
    if setup.plateau:
      updates = jax.tree.map(lambda u: u * state.plateau.scale, updates)
    params = optax.apply_updates(state.params, updates)
    n = jnp.asarray(logits.shape[0], jnp.float32)
    sums = {'loss': sums['loss'] + main_loss * n,
            'correct': sums['correct'] + jnp.sum(jnp.argmax(logits, -1) == batch['label']),
            'count': sums['count'] + n}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state), sums

  repl, data = parallel.replicated(setup.mesh), parallel.batch_sharded(setup.mesh)
  return jax.jit(train_step, in_shardings=(repl, repl, data), out_shardings=(repl, repl),
                 donate_argnums=(0, 1))


def make_eval_step(setup: Setup):
  """Returns the jitted ``(state, sums, batch) -> sums``; padded examples (mask 0) count nothing."""
  top_k = min(5, setup.info.num_classes)

  def eval_step(state: TrainState, sums: dict, batch: dict):
    images = batch['image']
    views = images.shape[1] if images.ndim == 5 else 0  # multi-crop: [batch, views, H, W, C]
    if views:
      images = images.reshape((-1,) + images.shape[2:])
    logits = setup.model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                               images, train=False)
    if views:  # ten-crop evaluation averages the views' logits
      logits = logits.reshape((-1, views, logits.shape[-1])).mean(axis=1)
    mask, labels = batch['mask'], batch['label']
    loss = cross_entropy(logits, labels)
    in_top_k = jnp.any(jax.lax.top_k(logits, top_k)[1] == labels[:, None], axis=-1)
    return {'loss': sums['loss'] + jnp.sum(loss * mask),
            'correct': sums['correct'] + jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            'correct_top5': sums['correct_top5'] + jnp.sum(in_top_k * mask),
            'count': sums['count'] + jnp.sum(mask)}

  repl, data = parallel.replicated(setup.mesh), parallel.batch_sharded(setup.mesh)
  return jax.jit(eval_step, in_shardings=(repl, repl, data), out_shardings=repl, donate_argnums=(1,))


def make_plateau_step(setup: Setup):
  """Returns the jitted ``(state, validation_error) -> state`` that feeds reduce_on_plateau."""
  def plateau_step(state: TrainState, error: jax.Array) -> TrainState:
    _, plateau = setup.plateau.update(jax.tree.map(jnp.zeros_like, state.params), state.plateau,
                                      value=error)
    return state.replace(plateau=plateau)
  repl = parallel.replicated(setup.mesh)
  return jax.jit(plateau_step, in_shardings=(repl, None), out_shardings=repl, donate_argnums=(0,))


def learning_rate(setup: Setup, state: TrainState, step: int) -> float:
  scale = float(state.plateau.scale) if setup.plateau else 1.0
  return float(setup.schedule(step)) * scale


def evaluate(setup: Setup, config: ml_collections.ConfigDict, eval_step, state: TrainState,
             role: str = 'eval') -> dict:
  """Metrics over the whole ``role`` split: 'eval' (the test split) or 'validation'."""
  sums = parallel.replicate(_zero_metrics(EVAL_SUMS), setup.mesh)
  for local in pipeline.eval_batches(config.data, local_batch=setup.local_batch, role=role,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    sums = eval_step(state, sums, parallel.global_batch(local, setup.mesh))
  sums = jax.device_get(sums)
  count = sums['count']
  return {'loss': sums['loss'] / count, 'accuracy': sums['correct'] / count,
          'top5_accuracy': sums['correct_top5'] / count, 'num_examples': count}


# ---------------------------------------------------------------------------------------------
# The loop


def eval_roles(setup: Setup, config: ml_collections.ConfigDict, final: bool) -> tuple[str, ...]:
  """The splits an evaluation covers; the first one selects models and drives plateau. With
  ``config.final_test_only`` and a validation split, the test split waits for the last step."""
  if not setup.info.num_validation:
    return ('eval',)
  return ('validation', 'eval') if final or not config.final_test_only else ('validation',)


def save_result(workdir: str, step: int, results: dict[str, dict]) -> None:
  """``workdir/result.json``: the final metrics per split; its presence marks a finished run."""
  if jax.process_index() == 0:
    record = {'step': step, **{role: {k: float(v) for k, v in m.items()} for role, m in results.items()}}
    with tf.io.gfile.GFile(os.path.join(workdir, RESULT_FILE), 'w') as f:
      f.write(json.dumps(record, indent=2, sort_keys=True))


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() == 0:
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(os.path.join(workdir, run_files.CONFIG), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns the final eval
  metrics (of the eval split; result.json also has the validation split's)."""
  setup = build(config)
  save_config(config, workdir)
  state = init_state(setup, config.seed)
  manager = checkpoint.make_manager(workdir, config)
  restored = checkpoint.restore_latest(manager, state)
  reporter = reporting.Reporter(workdir, setup.total_steps, setup.layout.steps_per_epoch)
  if restored is not None:
    state = restored
    reporter.message(f'resumed from step {int(state.step)} in {workdir}')
  step = int(state.step)
  result_path = os.path.join(workdir, RESULT_FILE)
  if step < setup.total_steps and jax.process_index() == 0 and tf.io.gfile.exists(result_path):
    tf.io.gfile.remove(result_path)  # a finished run given more steps is unfinished again
  if jax.process_count() > 1:  # a process that saw another checkpoint would desynchronise the run
    multihost_utils.assert_equal(np.int64(step), 'processes disagree on the step to resume from')
  logging.info('%s: %d steps (%d per epoch), global batch %d over %d devices',
               config.model.name, setup.total_steps, setup.layout.steps_per_epoch, config.batch_size,
               setup.mesh.devices.size)

  train_step, eval_step = make_train_step(setup, config), make_eval_step(setup)
  plateau_step = make_plateau_step(setup) if setup.plateau else None
  batches = pipeline.train_batches(config.data, seed=config.seed, layout=setup.layout,
                                   start_step=step)
  eval_every = max(1, int(config.eval_every_epochs * setup.layout.steps_per_epoch))
  sums = parallel.replicate(_zero_metrics(TRAIN_SUMS), setup.mesh)
  results: dict[str, dict] = {}
  reporter.start(step)
  last_log_time, last_log_step = time.time(), step
  try:
    while step < setup.total_steps:
      state, sums = train_step(state, sums, parallel.global_batch(next(batches), setup.mesh))
      step += 1
      if step % config.log_every_steps == 0 or step == setup.total_steps:
        host = jax.device_get(sums)  # the only host sync of the training phase
        now = time.time()
        metrics = {'loss': host['loss'] / host['count'], 'accuracy': host['correct'] / host['count'],
                   'learning_rate': learning_rate(setup, state, step - 1),
                   'images_per_sec': (step - last_log_step) * config.batch_size / (now - last_log_time)}
        reporter.write(step, 'train', metrics)
        reporter.progress(step, metrics)
        sums = parallel.replicate(_zero_metrics(TRAIN_SUMS), setup.mesh)
        last_log_time, last_log_step = time.time(), step
      if step % eval_every == 0 or step == setup.total_steps:
        eval_start = time.time()
        roles = eval_roles(setup, config, final=step == setup.total_steps)
        results = {role: evaluate(setup, config, eval_step, state, role) for role in roles}
        if setup.plateau:  # model selection reads the validation split when there is one
          state = plateau_step(state, jnp.float32(1.0 - results[roles[0]]['accuracy']))
        for role, metrics in results.items():
          reporter.write(step, role, metrics)
          reporter.message(f'{role} step {step} epoch {step / setup.layout.steps_per_epoch:.1f}: '
                           f'loss {metrics["loss"]:.4f} top-1 {metrics["accuracy"]:.4f} '
                           f'top-5 {metrics["top5_accuracy"]:.4f} '
                           f'({int(metrics["num_examples"])} examples)')
        last_log_time += time.time() - eval_start  # evaluation time is not training throughput
      checkpoint.save(manager, step, state, force=step == setup.total_steps)
  finally:
    # An interrupted run (Ctrl-C, preemption) still completes the checkpoint it was writing.
    manager.wait_until_finished()
  if not results:  # resumed at the end: report the result again
    results = {role: evaluate(setup, config, eval_step, state, role)
               for role in eval_roles(setup, config, final=True)}
  manager.close()
  save_result(workdir, step, results)
  eval_metrics = results['eval']
  also = (f'; validation accuracy {results["validation"]["accuracy"]:.4f}'
          if 'validation' in results else '')
  reporter.message(f'final eval accuracy: {eval_metrics["accuracy"]:.4f} '
                   f'(top-5 {eval_metrics["top5_accuracy"]:.4f}, step {step}){also}')
  reporter.close()
  return eval_metrics
