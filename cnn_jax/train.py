"""The train loop: state, one jitted train step, one jitted eval step, and the loop around them.

It knows no model or data set by name: the registry builds the model, the pipeline the batches, and
:mod:`cnn_jax.parallel` decides how arrays are laid out over devices.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

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
from jax.experimental.compilation_cache import compilation_cache

from cnn_jax import ConfigError, RunError, checkpoint, models, optim, parallel, reporting
from cnn_jax import executables, op_by_op, run_files, transfer
from cnn_jax import workdir as workdir_lib
from cnn_jax.data import LABEL_MASK, pipeline, symmetry


# ---------------------------------------------------------------------------------------------
# State


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # TrainSetup.plateau_tx's state (its scale multiplies the updates), or (); the checkpoints name
  # the field, so it keeps its name
  plateau: Any
  rng: jax.Array  # raw uint32 key; the step's dropout key is fold_in(rng, step)


def _zero_metrics(names: tuple[str, ...]) -> dict[str, jax.Array]:
  return {name: jnp.zeros((), jnp.float32) for name in names}


def zero_train_sums() -> dict[str, jax.Array]:
  """The running sums of a log interval. ``count`` counts the finite steps' examples;
  ``nonfinite`` the steps whose loss or gradient norm was not finite, the first at ``first_nonfinite``
  (-1: none)."""
  return {**_zero_metrics(TRAIN_SUMS), 'nonfinite': jnp.zeros((), jnp.int32),
          'first_nonfinite': jnp.full((), -1, jnp.int32)}


TRAIN_SUMS = ('loss', 'correct', 'count')
EVAL_SUMS = ('loss', 'correct', 'correct_top5', 'count')
# Summed too when the eval batches carry a LABEL_MASK: the accuracies among the allowed classes.
MASKED_EVAL_SUMS = ('masked_correct', 'masked_correct_top5')


def zero_eval_sums(masked: bool = False) -> dict[str, jax.Array]:
  """The running sums of an evaluation; ``masked`` when its batches carry a LABEL_MASK."""
  return _zero_metrics(EVAL_SUMS + (MASKED_EVAL_SUMS if masked else ()))


# ---------------------------------------------------------------------------------------------
# Set-up: everything a user can get wrong is checked here, before anything compiles.


@dataclasses.dataclass(frozen=True)
class TrainSetup:
  """What :func:`build` makes of a config: the objects the steps close over (never traced)."""
  model: nn.Module
  tx: optax.GradientTransformation
  plateau_tx: Optional[optax.GradientTransformationExtraArgs]  # reduce_on_plateau, or None
  schedule: Callable[[int], Any]
  info: pipeline.DatasetInfo
  mesh: Any
  local_batch: int
  layout: pipeline.ShardLayout
  total_steps: int
  eval_symmetries: int = 1  # 8: evaluate the 8 symmetries of a board (config.eval_symmetries)
  # config.trainable: the parameters that train (None: all); the optimiser sees only them
  trainable: Optional[transfer.Trainable] = None


# (field, test, what it must be): the ranges a value out of which is a ConfigError.
_RANGES = (
    ('batch_size', lambda v: v >= 1, '>= 1'),
    ('num_train_steps', lambda v: v >= 0, '>= 0 (0: use num_epochs)'),
    ('log_every_steps', lambda v: v >= 1, '>= 1'),
    ('eval_every_epochs', lambda v: v > 0, '> 0'),
    ('checkpoint_every_steps', lambda v: v >= 1, '>= 1'),
    ('keep_checkpoints', lambda v: v >= 1, '>= 1'),
    ('optimizer.learning_rate', lambda v: v > 0, '> 0'),
    ('optimizer.momentum', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('optimizer.b1', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('optimizer.b2', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('optimizer.eps', lambda v: v > 0, '> 0'),
    ('optimizer.weight_decay', lambda v: v >= 0, '>= 0'),
    ('loss.label_smoothing', lambda v: 0 <= v < 1, 'in [0, 1)'),
    ('loss.aux_weight', lambda v: v >= 0, '>= 0'),
    ('schedule.warmup', lambda v: v >= 0, '>= 0'),
    ('schedule.decay_factor', lambda v: 0 < v <= 1, 'in (0, 1]'),
    ('schedule.final_fraction', lambda v: 0 <= v <= 1, 'in [0, 1]'),
    ('schedule.patience', lambda v: v >= 1, '>= 1'),
    ('schedule.cooldown', lambda v: v >= 0, '>= 0'),
    ('schedule.min_scale', lambda v: 0 < v <= 1, 'in (0, 1]'),
    ('data.shuffle_buffer', lambda v: v >= 1, '>= 1'),
    ('data.prefetch', lambda v: v >= 0, '>= 0 (0: autotune)'),
    ('eval_symmetries', lambda v: v in (1, symmetry.NUM_SYMMETRIES),
     f'1 (off) or {symmetry.NUM_SYMMETRIES} (every symmetry of a square board)'),
)


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Values no run can use (a negative learning rate, no steps at all) as one ConfigError."""
  for path, valid, must_be in _RANGES:
    node = config
    for part in path.split('.'):
      node = node.get(part) if node is not None else None
    if node is not None and not valid(node):
      raise ConfigError(f'config.{path}={node!r} must be {must_be}.')
  if not config.num_train_steps and not config.num_epochs > 0:
    raise ConfigError(f'config.num_epochs={config.num_epochs!r} trains nothing: set num_epochs > 0 '
                      'or num_train_steps > 0.')
  group = config.model.get('bn_group_size')  # None: BatchNorm over the global batch
  if group is not None and group < 1:
    # ml_collections cannot set None from a flag: one group of the whole batch is the same thing.
    raise ConfigError(f'config.model.bn_group_size={group} must be a positive divisor of the batch '
                      'size; BatchNorm over the global batch is None (the flag left out; in a '
                      'config file ml_collections.config_dict.placeholder(int)) or, as a flag, '
                      f'--config.model.bn_group_size={config.batch_size} (one group).')
  if group is not None and config.batch_size % group:
    raise ConfigError(f'config.model.bn_group_size={group} must divide the batch size '
                      f'{config.batch_size} (BatchNorm normalises groups of that many examples).')


# Programs that compile faster are not worth a file. JAX's default (1 s) would skip the
# initialisation's samplers, about 0.35 s each at the default flags.
COMPILATION_CACHE_MIN_SECONDS = 0.1


def use_compilation_cache(config: ml_collections.ConfigDict) -> Optional[str]:
  """Points JAX's persistent compilation cache at ``config.compilation_cache_dir`` (None:
  $JAX_COMPILATION_CACHE_DIR, else ~/.cache/cnn_jax/xla; '': off); returns the directory used.

  A second start of a config, in any workdir, then loads its train and eval steps instead of
  compiling them. A directory that cannot be written is a ConfigError when asked for, a warning
  (and no cache) when it is the default. $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, when set,
  wins over COMPILATION_CACHE_MIN_SECONDS.
  """
  path = config.get('compilation_cache_dir')
  asked = path is not None
  if path is None:
    path = os.environ.get('JAX_COMPILATION_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'cnn_jax', 'xla')
  path = os.path.expanduser(path) or None
  if path and '://' not in path:
    try:
      os.makedirs(path, exist_ok=True)
      if not os.access(path, os.W_OK):
        raise PermissionError(f'{path} is not writable')
    except OSError as e:
      if asked:
        raise ConfigError(f'config.compilation_cache_dir={path!r} cannot be used ({e}): set a '
                          "writable directory, or '' to compile without a cache.") from None
      logging.warning('compiling without a cache: %s (set config.compilation_cache_dir)', e)
      path = None
  if path != jax.config.jax_compilation_cache_dir:
    compilation_cache.reset_cache()
    jax.config.update('jax_compilation_cache_dir', path)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', COMPILATION_CACHE_MIN_SECONDS)
  return path


def build(config: ml_collections.ConfigDict,
          info: Optional[pipeline.DatasetInfo] = None) -> TrainSetup:
  """Validates the config and builds model, optimiser and data facts; raises ConfigError.

  ``info`` replaces the data set's facts for callers that bring their own batches (benchmarks);
  by default they are read from ``config.data``.
  """
  check_ranges(config)
  mesh = parallel.make_mesh()
  local_batch = parallel.local_batch_size(config.batch_size, mesh)
  info = info or pipeline.dataset_info(config.data)
  name, model_kwargs = models.config_arguments(config.model, info.num_classes)
  if config.mixed_precision:  # parameters stay float32: the models cast inputs to dtype
    model_kwargs['dtype'] = jnp.bfloat16
  model = models.get_model(name, **model_kwargs)
  eval_symmetries = config.get('eval_symmetries') or 1  # configs from before the field: off
  if eval_symmetries > 1:
    check_symmetric_eval(info, model_kwargs['num_classes'])
  layout = pipeline.shard_layout(config.data, num_examples=info.num_train,
                                 global_batch=config.batch_size, process_index=jax.process_index(),
                                 process_count=jax.process_count())
  steps_per_epoch = layout.steps_per_epoch
  total_steps = config.num_train_steps or int(config.num_epochs * steps_per_epoch)
  schedule = optim.make_schedule(config, steps_per_epoch, total_steps)
  tx = optim.make_optimizer(config, schedule)
  trainable = None
  if config.get('trainable'):  # the parameters' paths, from their shapes
    trainable = transfer.make_trainable(config.trainable, variable_shapes(model, info.image_shape)['params'],
                                        name)
  return TrainSetup(model, tx, optim.make_plateau_tx(config), schedule, info, mesh, local_batch,
                    layout, total_steps, eval_symmetries, trainable)


def variable_shapes(model: nn.Module, image_shape: tuple[int, ...]) -> dict:
  """The model's variables ({'params': ..., 'batch_stats': ...}) for one ``image_shape`` input, as
  shapes, computing nothing."""
  rngs = {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)}
  return jax.eval_shape(lambda: model.init(
      rngs, jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False))


def check_symmetric_eval(info: pipeline.DatasetInfo, num_classes: int) -> None:
  """8-fold evaluation needs what its back-mapping assumes: one square view, a class per point."""
  height, width, channels = info.image_shape
  if info.eval_views > 1 or height != width or num_classes != height * width:
    views = f' in {info.eval_views} views' if info.eval_views > 1 else ''
    raise ConfigError(f'config.eval_symmetries={symmetry.NUM_SYMMETRIES} needs single square '
                      f'eval images with one class per point (H*W == num_classes), got '
                      f'{height}x{width}x{channels}{views} and {num_classes} classes: set '
                      '--config.eval_symmetries=1.')


def init_state(setup: TrainSetup, seed: int,
               loaded: Optional[transfer.Loaded] = None) -> TrainState:
  """Initialises the state op by op (:mod:`op_by_op`), then replicates it over the mesh; with
  ``loaded`` (config.init_from), its arrays replace the initial ones before the optimiser's
  state is made from them (the initial values they replace are never computed).

  Not jitted: XLA inlines one threefry per parameter, so a jitted init of a deep net compiles for
  far longer than it runs (ResNet-110: 10-15 s against 4 s op by op, measured on one CPU core).
  """
  return parallel.replicate(op_by_op.run(functools.partial(_initial_state, setup, loaded=loaded),
                                         seed), setup.mesh)


def abstract_state(setup: TrainSetup, seed: int) -> TrainState:
  """The shapes, dtypes and shardings of :func:`init_state`'s result, without computing it: the
  target a checkpoint is restored into."""
  replicated = parallel.replicated(setup.mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      jax.eval_shape(functools.partial(_initial_state, setup), seed))


def _initial_state(setup: TrainSetup, seed: int,
                   loaded: Optional[transfer.Loaded] = None) -> TrainState:
  params_rng, dropout_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
  image = jnp.zeros((1,) + setup.info.image_shape, jnp.float32)
  variables = setup.model.init({'params': params_rng, 'dropout': dropout_rng}, image, train=False)
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  if loaded is not None:
    params = loaded.overlay('params', params)
    batch_stats = loaded.overlay('batch_stats', batch_stats)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=setup.tx.init(split_trainable(setup, params)[0]),
                    plateau=setup.plateau_tx.init(params) if setup.plateau_tx else (),
                    rng=state_rng)


def split_trainable(setup: TrainSetup, params: Any) -> tuple[Any, Any]:
  """``(trainable, frozen)`` parameters: what the optimiser sees, and what it never touches."""
  return setup.trainable.split(params) if setup.trainable else (params, {})


def merge_trainable(setup: TrainSetup, trainable: Any, frozen: Any) -> Any:
  return setup.trainable.merge(trainable, frozen) if setup.trainable else trainable


# ---------------------------------------------------------------------------------------------
# Steps


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing) \
      if label_smoothing else jax.nn.one_hot(labels, logits.shape[-1])
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def make_train_step(setup: TrainSetup, config: ml_collections.ConfigDict):
  """Returns the jitted ``(state, sums, batch) -> (state, sums)``; state and sums are donated."""
  aux_weight = config.loss.aux_weight
  smoothing = config.loss.label_smoothing
  skip_nonfinite = config.skip_nonfinite_steps

  def train_step(state: TrainState, sums: dict, batch: dict):
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    # With config.trainable, the gradient, the optimiser and its updates see the trainable
    # parameters alone; the frozen ones are passed through, bit for bit.
    trainable, frozen = split_trainable(setup, state.params)

    def loss_fn(trainable):
      params = merge_trainable(setup, trainable, frozen)
      # frozen layers run in inference mode (their BatchNorm keeps its statistics)
      with setup.trainable.forward() if setup.trainable else contextlib.nullcontext():
        logits, new_vars = setup.model.apply(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
            mutable=['batch_stats', models.AUX_LOGITS], rngs={'dropout': dropout_rng})
      main_loss = cross_entropy(logits, batch['label'], smoothing).mean()
      # Auxiliary classifiers (GoogLeNet) sow their logits in training; their weighted losses add.
      aux_logits = jax.tree.leaves(new_vars.get(models.AUX_LOGITS, {}))  # aux1, aux2, ...
      aux_loss = sum(cross_entropy(a, batch['label'], smoothing).mean() for a in aux_logits)
      return main_loss + aux_weight * aux_loss, (main_loss, logits, new_vars.get('batch_stats', {}))

    grads, (main_loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = setup.tx.update(grads, state.opt_state, trainable)
    if setup.plateau_tx:
      updates = jax.tree.map(lambda u: u * state.plateau.scale, updates)
    params = merge_trainable(setup, optax.apply_updates(trainable, updates), frozen)
    new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state)
    # The divergence guard, on device: the host reads the flags only when it logs or saves.
    finite = jnp.isfinite(main_loss) & jnp.isfinite(optax.global_norm(grads))
    if skip_nonfinite:  # the step moves on; parameters, optimiser and BatchNorm state do not
      new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new,
                         state.replace(step=state.step + 1))
    n = jnp.where(finite, jnp.float32(logits.shape[0]), 0.0)
    sums = {'loss': sums['loss'] + jnp.where(finite, main_loss, 0.0) * n,
            'correct': sums['correct'] + jnp.where(
                finite, jnp.sum(jnp.argmax(logits, -1) == batch['label']), 0),
            'count': sums['count'] + n,
            'nonfinite': sums['nonfinite'] + (~finite).astype(jnp.int32),
            'first_nonfinite': jnp.where((sums['first_nonfinite'] < 0) & ~finite, new.step,
                                         sums['first_nonfinite'])}
    return new, sums

  repl, data = parallel.replicated(setup.mesh), parallel.batch_sharded(setup.mesh)
  return jax.jit(train_step, in_shardings=(repl, repl, data), out_shardings=(repl, repl),
                 donate_argnums=(0, 1))


def dihedral_views(images: jax.Array) -> jax.Array:
  """[B, S, S, C] boards -> [B * 8, S, S, C]: each board's 8 symmetries (cnn_jax.data.symmetry's
  order), board by board."""
  batch, size = images.shape[0], images.shape[1]
  points = images.reshape((batch, size * size, -1))
  views = jnp.take(points, jnp.asarray(symmetry.permutations(size)), axis=1)
  return views.reshape((batch * symmetry.NUM_SYMMETRIES,) + images.shape[1:])


def from_dihedral_views(logits: jax.Array) -> jax.Array:
  """[B * 8, S * S] per-point outputs of :func:`dihedral_views`' boards -> [B, 8, S * S], each
  view's outputs moved back to the points of the original board (the inverse transforms)."""
  points = logits.shape[-1]
  size = round(points ** 0.5)
  views = logits.reshape((-1, symmetry.NUM_SYMMETRIES, points))
  inverse = jnp.asarray(symmetry.inverse_permutations(size))
  return jnp.take_along_axis(views, inverse[None], axis=2)


def _hits(logits: jax.Array, labels: jax.Array, top_k: int) -> tuple[jax.Array, jax.Array]:
  """Per example: is the label the top class, is it among the ``top_k``."""
  in_top_k = jnp.any(jax.lax.top_k(logits, top_k)[1] == labels[:, None], axis=-1)
  return jnp.argmax(logits, -1) == labels, in_top_k


def make_eval_step(setup: TrainSetup):
  """Returns the jitted ``(state, sums, batch) -> sums``; padded examples (mask 0) count nothing.

  A batch with a LABEL_MASK also sums the accuracies with the disallowed classes' logits at -inf
  (sums from :func:`zero_eval_sums` with ``masked=True``).
  """
  top_k = min(5, setup.info.num_classes)
  symmetries = setup.eval_symmetries > 1

  def eval_step(state: TrainState, sums: dict, batch: dict):
    images = batch['image']
    views = images.shape[1] if images.ndim == 5 else 0  # multi-crop: [batch, views, H, W, C]
    if views:
      images = images.reshape((-1,) + images.shape[2:])
    if symmetries:
      images = dihedral_views(images)
    logits = setup.model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                               images, train=False)
    if views:  # ten-crop evaluation averages the views' logits
      logits = logits.reshape((-1, views, logits.shape[-1])).mean(axis=1)
    if symmetries:  # averages the 8 views' probabilities, as AlphaGo averages its policy outputs;
      # their log stands for the logits, so the loss is the averaged policy's cross-entropy
      log_probs = jax.nn.log_softmax(from_dihedral_views(logits).astype(jnp.float32))
      logits = jax.nn.logsumexp(log_probs, axis=1) - jnp.log(float(symmetry.NUM_SYMMETRIES))
    mask, labels = batch['mask'], batch['label']
    loss = cross_entropy(logits, labels)
    correct, in_top_k = _hits(logits, labels, top_k)
    out = {'loss': sums['loss'] + jnp.sum(loss * mask),
           'correct': sums['correct'] + jnp.sum(correct * mask),
           'correct_top5': sums['correct_top5'] + jnp.sum(in_top_k * mask),
           'count': sums['count'] + jnp.sum(mask)}
    if LABEL_MASK in batch:  # on the original board's points: the symmetric views are mapped back
      allowed = batch[LABEL_MASK].astype(bool)
      # a disallowed label is never a hit, even when fewer than top_k classes are allowed
      counts = mask * jnp.take_along_axis(allowed, labels[:, None], axis=1)[:, 0]
      correct, in_top_k = _hits(jnp.where(allowed, logits, -jnp.inf), labels, top_k)
      out['masked_correct'] = sums['masked_correct'] + jnp.sum(correct * counts)
      out['masked_correct_top5'] = sums['masked_correct_top5'] + jnp.sum(in_top_k * counts)
    return out

  repl, data = parallel.replicated(setup.mesh), parallel.batch_sharded(setup.mesh)
  return jax.jit(eval_step, in_shardings=(repl, repl, data), out_shardings=repl, donate_argnums=(1,))


def make_plateau_step(setup: TrainSetup):
  """Returns the jitted ``(state, validation_error) -> state`` that feeds reduce_on_plateau."""
  def plateau_step(state: TrainState, error: jax.Array) -> TrainState:
    _, plateau = setup.plateau_tx.update(jax.tree.map(jnp.zeros_like, state.params),
                                         state.plateau, value=error)
    return state.replace(plateau=plateau)
  repl = parallel.replicated(setup.mesh)
  return jax.jit(plateau_step, in_shardings=(repl, None), out_shardings=repl, donate_argnums=(0,))


def learning_rate(setup: TrainSetup, state: TrainState, step: int) -> float:
  scale = float(state.plateau.scale) if setup.plateau_tx else 1.0
  return float(setup.schedule(step)) * scale


def evaluate(setup: TrainSetup, config: ml_collections.ConfigDict, eval_step, state: TrainState,
             role: str = 'eval') -> dict:
  """Metrics over the whole ``role`` split: 'eval' (the test split) or 'validation'."""
  sums = None
  for local in pipeline.eval_batches(config.data, local_batch=setup.local_batch, role=role,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    if sums is None:  # the batches tell whether there are masked accuracies to sum
      sums = parallel.replicate(zero_eval_sums(masked=LABEL_MASK in local), setup.mesh)
    sums = eval_step(state, sums, parallel.global_batch(local, setup.mesh))
  return eval_metrics(jax.device_get(sums))


def eval_metrics(sums: dict) -> dict:
  """An evaluation's metrics from its summed counts (host values)."""
  count = sums['count']
  metrics = {'loss': sums['loss'] / count, 'accuracy': sums['correct'] / count,
             'top5_accuracy': sums['correct_top5'] / count}
  if 'masked_correct' in sums:
    metrics.update(masked_accuracy=sums['masked_correct'] / count,
                   masked_top5_accuracy=sums['masked_correct_top5'] / count)
  return {**metrics, 'num_examples': count}


# ---------------------------------------------------------------------------------------------
# The loop


def eval_roles(setup: TrainSetup, config: ml_collections.ConfigDict,
               final: bool) -> tuple[str, ...]:
  """The splits an evaluation covers; the first one selects models and drives plateau. With
  ``config.final_test_only`` and a validation split, the test split waits for the last step."""
  if not setup.info.num_validation:
    return ('eval',)
  return ('validation', 'eval') if final or not config.final_test_only else ('validation',)


def save_result(workdir: str, step: int, results: dict[str, dict]) -> None:
  """``workdir/result.json``: the final metrics per split; its presence marks a finished run."""
  if jax.process_index() == 0:
    record = {'step': step, **{role: {k: float(v) for k, v in m.items()} for role, m in results.items()}}
    with tf.io.gfile.GFile(os.path.join(workdir, run_files.RESULT), 'w') as f:
      f.write(json.dumps(record, indent=2, sort_keys=True))


class StopSignals:
  """SIGTERM (preemption, SLURM's ``--signal``) and SIGINT ask the loop to stop after the current
  step (and the evaluation in progress) with a checkpoint; a second SIGINT stops at once.

  Multi-process runs install no handler: JAX's preemption service takes SIGTERM and
  ``reached_preemption`` makes every process stop at the same step.
  """

  def __init__(self, install: bool):
    self.install = install and threading.current_thread() is threading.main_thread()
    self.received: Optional[signal.Signals] = None
    self._previous: dict = {}

  def _handle(self, signum, frame):
    if self.received == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum)

  def __enter__(self) -> 'StopSignals':
    if self.install:
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def latest_state(config: ml_collections.ConfigDict, workdir: str) -> Optional[TrainState]:
  """The train state of ``workdir``'s newest restorable checkpoint (None without one)."""
  setup = build(config)
  manager = checkpoint.make_manager(workdir, config)
  restored = checkpoint.restore_latest(manager, workdir, abstract_state(setup, config.seed),
                                       parallel.replicate(zero_train_sums(), setup.mesh))
  manager.close()
  return None if restored is None else restored[0]


def _hold_lock(workdir: str, override: bool) -> Optional[workdir_lib.Lock]:
  """Process 0 takes the workdir lock; every process raises if it could not."""
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = workdir_lib.Lock(workdir, override=override).acquire()
    except RunError as e:
      error = e
  if jax.process_count() > 1:
    held = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not held and error is None:
      error = RunError(f'process 0 could not lock {workdir}: see its message')
  if error is not None:
    raise error
  return lock


def _divergence(setup: TrainSetup, manager, workdir: str, state: TrainState,
                sums: dict) -> RunError:
  first = int(jax.device_get(sums['first_nonfinite']))
  checkpoint.wait(manager)  # the saves in flight are finite: they were checked before saving
  latest = manager.latest_step()
  kept = (f'the last checkpoint, step {latest} in {checkpoint.directory(workdir)}, is finite and '
          'kept' if latest is not None else 'no checkpoint had been written yet')
  return RunError(f'the loss or gradient norm is not finite at step {first} (learning rate '
                  f'{learning_rate(setup, state, first - 1):.3g}): stopped without saving; {kept}. '
                  'Lower the learning rate, or set --config.skip_nonfinite_steps=true to skip '
                  'such steps')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False, override_lock: bool = False) -> dict:
  """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns the final eval
  metrics (of the eval split; result.json also has the validation split's).

  Raises ConfigError for a user mistake (before compiling) and RunError for a run that stopped:
  divergence, a failed save, a workdir held by another run, or a stop signal.
  """
  setup = build(config)
  use_compilation_cache(config)
  workdir_lib.check_writable(workdir)
  lock = _hold_lock(workdir, override_lock)
  try:
    manager = checkpoint.make_manager(workdir, config)
    changes = workdir_lib.check_resumed_config(config, workdir, manager.latest_step(),
                                               allow_config_change)
    with StopSignals(install=jax.process_count() == 1) as signals:
      return _train(setup, config, workdir, manager, changes, lock, signals)
  except (OSError, tf.errors.OpError) as e:  # e.g. a full disk under metrics.jsonl
    raise RunError(f'writing to {workdir} failed: {checkpoint.cause(e)}; the last complete '
                   'checkpoint is intact. Fix it and run the same command to resume') from None
  finally:
    if lock is not None:
      lock.release()


def make_steps(setup: TrainSetup, config: ml_collections.ConfigDict) -> tuple[Callable, ...]:
  """The train, eval and (with plateau) plateau steps, as :class:`executables.CachedStep`: a
  warm start reads their executables in the background from here on."""
  cache = executables.directory(jax.config.jax_compilation_cache_dir)
  # with the config and the mesh, everything a TrainSetup is built from
  facts = (setup.model, setup.info, setup.local_batch, setup.layout.steps_per_epoch,
           setup.total_steps)
  steps = {'train_step': make_train_step(setup, config), 'eval_step': make_eval_step(setup),
           'plateau_step': make_plateau_step(setup) if setup.plateau_tx else None}
  digest = executables.program_digest(config, setup.mesh, *facts)  # once for all three
  return tuple(step and executables.CachedStep(
      step, executables.step_key(name, config, setup.mesh, digest=digest), cache)
      for name, step in steps.items())


def _train(setup: TrainSetup, config: ml_collections.ConfigDict, workdir: str, manager,
           changes: list[str], lock: Optional[workdir_lib.Lock], signals: StopSignals) -> dict:
  # config.init_from is read by a fresh run only (the run's own checkpoint wins), before anything
  # compiles: a wrong directory or a source that does not fit is one line.
  loaded = None
  if config.get('init_from') and not manager.all_steps():
    shapes = variable_shapes(setup.model, setup.info.image_shape)
    loaded = transfer.load(config, {'params': shapes['params'],
                                    'batch_stats': shapes.get('batch_stats', {})}, setup.trainable)
  train_step, eval_step, plateau_step = make_steps(setup, config)
  sums = parallel.replicate(zero_train_sums(), setup.mesh)
  # Restored into shapes alone: a resumed run does not initialise what it is about to overwrite,
  # and a fresh run does not trace the model for a target it does not need.
  restored = checkpoint.restore_latest(manager, workdir, abstract_state(setup, config.seed),
                                       sums) if manager.all_steps() else None
  step = int(restored[0].step) if restored is not None else 0
  batches = parallel.device_batches(pipeline.train_batches(config.data, seed=config.seed,
                                                           layout=setup.layout, start_step=step),
                                    setup.mesh)
  if step < setup.total_steps:  # its first batches are read while the state is made
    batches = parallel.started(batches)
  state, sums = restored if restored is not None else (init_state(setup, config.seed, loaded),
                                                       sums)
  if jax.process_index() == 0:
    workdir_lib.save_config(config, workdir, step, changes)
  reporter = reporting.Reporter(workdir, setup.total_steps, setup.layout.steps_per_epoch,
                                resumed_step=step)
  if restored is not None:
    reporter.message(f'resumed from step {step} in {workdir}' + (
        ' (config.init_from is not read: the run continues from its own checkpoint)'
        if config.get('init_from') else ''))
  if loaded is not None:
    reporter.message(loaded.table)
  if setup.trainable is not None:
    reporter.message(setup.trainable.describe())
  if changes:
    reporter.message(f'config changes accepted at step {step}: {"; ".join(changes)}')
  result_path = os.path.join(workdir, run_files.RESULT)
  if step < setup.total_steps and jax.process_index() == 0 and tf.io.gfile.exists(result_path):
    tf.io.gfile.remove(result_path)  # a finished run given more steps is unfinished again
  if jax.process_count() > 1:  # a process that saw another checkpoint would desynchronise the run
    multihost_utils.assert_equal(np.int64(step), 'processes disagree on the step to resume from')
  logging.info('%s: %d steps (%d per epoch), global batch %d over %d devices',
               config.model.name, setup.total_steps, setup.layout.steps_per_epoch, config.batch_size,
               setup.mesh.devices.size)

  eval_every = max(1, int(config.eval_every_epochs * setup.layout.steps_per_epoch))
  skipped = sum(int(r.get('skipped_steps', 0)) for r in reporter.kept if r['split'] == 'train')
  results: dict[str, dict] = {}
  reporter.start(step)
  last_log_time, last_log_step = time.time(), step
  try:
    while step < setup.total_steps:
      state, sums = train_step(state, sums, next(batches))
      step += 1
      final = step == setup.total_steps
      log_now = step % config.log_every_steps == 0 or final
      eval_now = step % eval_every == 0 or final
      stop = signals.received is not None or (jax.process_count() > 1 and
                                               manager.reached_preemption(step))
      if ((log_now or eval_now or stop or manager.should_save(step)) and
          not config.skip_nonfinite_steps and int(jax.device_get(sums['nonfinite']))):
        raise _divergence(setup, manager, workdir, state, sums)
      if log_now:
        host = jax.device_get(sums)  # with the check above, the only host syncs of training
        if not host['count']:
          raise RunError(f'every step from {last_log_step + 1} to {step} had a non-finite loss or '
                         'gradient and was skipped: lower the learning rate')
        now = time.time()
        metrics = {'loss': host['loss'] / host['count'], 'accuracy': host['correct'] / host['count'],
                   'learning_rate': learning_rate(setup, state, step - 1),
                   'images_per_sec': (step - last_log_step) * config.batch_size / (now - last_log_time)}
        if config.skip_nonfinite_steps:
          metrics['skipped_steps'] = int(host['nonfinite'])
          skipped += int(host['nonfinite'])
        reporter.write(step, 'train', metrics)
        reporter.progress(step, metrics)
        sums = parallel.replicate(zero_train_sums(), setup.mesh)
        last_log_time, last_log_step = time.time(), step
      if eval_now:
        eval_start = time.time()
        roles = eval_roles(setup, config, final=final)
        results = {role: evaluate(setup, config, eval_step, state, role) for role in roles}
        if setup.plateau_tx:  # model selection reads the validation split when there is one
          state = plateau_step(state, jnp.float32(1.0 - results[roles[0]]['accuracy']))
        for role, metrics in results.items():
          reporter.write(step, role, metrics)
          masked = (f'masked top-1 {metrics["masked_accuracy"]:.4f} top-5 '
                    f'{metrics["masked_top5_accuracy"]:.4f} ' if 'masked_accuracy' in metrics
                    else '')
          reporter.message(f'{role} step {step} epoch {step / setup.layout.steps_per_epoch:.1f}: '
                           f'loss {metrics["loss"]:.4f} top-1 {metrics["accuracy"]:.4f} '
                           f'top-5 {metrics["top5_accuracy"]:.4f} {masked}'
                           f'({int(metrics["num_examples"])} examples)')
        last_log_time += time.time() - eval_start  # evaluation time is not training throughput
      checkpoint.save(manager, step, state, sums, force=final or stop)
      checkpoint.check(manager)
      if lock is not None:
        lock.check()
      if stop and not final:
        checkpoint.wait(manager)
        name = signals.received.name if signals.received is not None else 'preemption'
        raise RunError(f'stopped by {name} at step {step}: checkpoint saved in '
                       f'{checkpoint.directory(workdir)}; run the same command to resume',
                       exit_code=128 + (signals.received or signal.SIGTERM))
  except BaseException:
    # An interrupted run (Ctrl-C, an error) still completes the checkpoint it was writing.
    try:
      manager.wait_until_finished()
    except Exception:  # noqa: BLE001 (the error in flight is the one to report)
      pass
    raise
  checkpoint.wait(manager)
  if not results:  # resumed at the end: report the result again
    results = {role: evaluate(setup, config, eval_step, state, role)
               for role in eval_roles(setup, config, final=True)}
  manager.close()
  save_result(workdir, step, results)
  eval_metrics = results['eval']
  also = (f'; validation accuracy {results["validation"]["accuracy"]:.4f}'
          if 'validation' in results else '')
  if skipped:
    also += f'; {skipped} steps skipped (non-finite)'
  reporter.message(f'final eval accuracy: {eval_metrics["accuracy"]:.4f} '
                   f'(top-5 {eval_metrics["top5_accuracy"]:.4f}, step {step}){also}')
  reporter.close()
  return eval_metrics
