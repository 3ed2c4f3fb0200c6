"""Orbax checkpoints in ``workdir/checkpoints``: every N steps and at the end, keeping the last K.

The saved pytree is ``{'state': TrainState, 'log_sums': ...}``: the whole train state (step,
parameters, optimiser state, BatchNorm statistics, RNG key) and the running sums of the log
interval in progress, so that a resumed run logs what an uninterrupted one does. The input position
is the step itself: the pipeline rebuilds its batches from it. Saving and restoring are collective:
every process calls them, orbax coordinates the writes.

Faults: a checkpoint that cannot be restored is moved to ``workdir/checkpoints_unreadable/`` with a
one-line warning and the previous one is restored; a failed (asynchronous) save is a
:class:`~cnn_jax.RunError` at the first step after it is known. Orbax writes each step into a
temporary directory and renames it when complete, so a save cut short leaves the earlier ones intact.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from typing import Any, Iterator, Optional

import jax
import numpy as np
import ml_collections
import orbax.checkpoint as ocp
import tensorflow as tf
from absl import logging
from jax.experimental import multihost_utils

from cnn_jax import RunError, run_files


def directory(workdir: str) -> str:
  # Remote workdirs (gs://...) are used as they are; local ones are made absolute for orbax.
  root = workdir if '://' in workdir else os.path.abspath(workdir)
  return os.path.join(root, run_files.CHECKPOINTS)


# Orbax splits the write of a replicated array among its replicas ("replica-parallel"), slicing it
# on device with one compiled program per shape and device count: the first save of an 8-device
# run compiled 474 slices (7 s of a 35 s ResNet-8 run on CPU). Arrays whose slices would be
# smaller than this are written whole by one replica; the large ones are still split. Orbax takes
# the option only through its global handler registry, so every manager sets it (idempotent).
MIN_REPLICA_SLICE_BYTES = 16 << 20


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(
          min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES), override=True)
  every = config.checkpoint_every_steps
  options = ocp.CheckpointManagerOptions(
      # Every N steps, and at preemption (orbax's own policy); not orbax's default extra save of
      # a run's first step.
      should_save_fn=lambda step, last_saved: step % every == 0,
      max_to_keep=config.keep_checkpoints,
      enable_async_checkpointing=True,
      cleanup_tmp_directories=True,  # the remains of a save cut short by a kill
  )
  try:
    # The handler named up front, so that item_metadata can read a step before anything is restored.
    return ocp.CheckpointManager(directory(workdir), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())
  except OSError as e:
    raise RunError(f'cannot open {directory(workdir)}: {cause(e)}') from None


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO)


def cause(error: BaseException) -> str:
  """The root of an exception chain in a few words: an OSError's text and file where there is
  one (orbax and TensorStore wrap them several times), else the first line of the last message."""
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    chain.append(error)
    error = error.__cause__ or error.__context__
  for e in chain:
    if isinstance(e, OSError) and e.strerror:
      return f'{e.strerror} ({e.filename})' if e.filename else e.strerror
  for e in chain:  # TensorStore's text: '...: No space left on device [os_error_code=28]', often
    found = re.search(r"os_error_code='?(\d+)", str(e))  # behind a long quoted path
    if found:
      return os.strerror(int(found.group(1)))
  for e in chain:  # or the system's text alone
    found = next((os.strerror(c) for c in _DISK_ERRORS if os.strerror(c) in str(e)), None)
    if found:
      return found
  text = str(chain[-1]).strip().splitlines()
  first = text[0] if text else type(chain[-1]).__name__
  return first if len(first) <= 200 else first[:197] + '...'


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
                      if isinstance(x, jax.Array) else x, tree)


def _restore(manager: ocp.CheckpointManager, step: int, state: Any, log_sums: Any):
  saved = manager.item_metadata(step)
  if saved is not None and 'state' not in saved:  # written before log sums were checkpointed
    return manager.restore(step, args=ocp.args.StandardRestore(_abstract(state))), log_sums
  item = manager.restore(step, args=ocp.args.StandardRestore(
      _abstract({'state': state, 'log_sums': log_sums})))
  return item['state'], item['log_sums']


def _set_aside(manager: ocp.CheckpointManager, workdir: str, step: int) -> str:
  """Moves an unreadable step out of orbax's sight, keeping its files for a post-mortem."""
  source = os.path.join(directory(workdir), str(step))
  target_dir = os.path.join(os.path.dirname(directory(workdir)), run_files.UNREADABLE_CHECKPOINTS)
  target = os.path.join(target_dir, str(step))
  if jax.process_index() == 0:
    tf.io.gfile.makedirs(target_dir)
    suffix = 1
    while tf.io.gfile.exists(target):
      target, suffix = os.path.join(target_dir, f'{step}.{suffix}'), suffix + 1
    try:
      tf.io.gfile.rename(source, target)
    except (OSError, tf.errors.OpError) as e:  # object stores cannot rename directories
      raise RunError(f'checkpoint {step} in {directory(workdir)} cannot be restored, nor moved '
                     f'aside ({cause(e)}): move or delete it by hand and run again') from None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
  manager.reload()
  return target


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def restore_latest(manager: ocp.CheckpointManager, workdir: str, state: Any,
                   log_sums: Any) -> Optional[tuple[Any, Any]]:
  """``(state, log_sums)`` of the newest checkpoint that can be restored, laid out like the
  arguments; None without checkpoints. Unreadable ones are set aside, each with a warning."""
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      with _quiet():  # orbax logs each failed read as an error: the warning below says it once
        return _restore(manager, step, state, log_sums)
    except Exception as e:  # noqa: BLE001 (orbax and TensorStore raise many kinds for bad files)
      moved = _set_aside(manager, workdir, step)
      failures.append(step)
      if jax.process_index() == 0:
        print(f'warning: checkpoint {step} cannot be restored ({cause(e)}); moved to {moved}, '
              'trying the previous one', file=sys.stderr, flush=True)
  if failures:
    raise RunError(f'no checkpoint in {directory(workdir)} can be restored (steps '
                   f'{", ".join(map(str, failures))}, now in {run_files.UNREADABLE_CHECKPOINTS}/): '
                   'use a new --workdir, or run again to start this one afresh')
  return None


def save(manager: ocp.CheckpointManager, step: int, state: Any, log_sums: Any,
         force: bool = False) -> bool:
  """Starts an asynchronous save if ``step`` is due (or ``force``); raises RunError if this or an
  earlier save failed."""
  try:
    return manager.save(step, args=ocp.args.StandardSave({'state': state, 'log_sums': log_sums}),
                        force=force)
  except Exception as e:  # noqa: BLE001
    raise _save_failed(manager, e) from None


def check(manager: ocp.CheckpointManager) -> None:
  """Raises RunError if an asynchronous save has failed; no device sync, cheap every step."""
  try:
    with _quiet():
      manager.check_for_errors()
  except Exception as e:  # noqa: BLE001
    raise _save_failed(manager, e) from None


def wait(manager: ocp.CheckpointManager) -> None:
  """Waits for the save in flight; raises RunError if it failed."""
  try:
    with _quiet():  # orbax logs the failure as an error too: the RunError says it once
      manager.wait_until_finished()
  except Exception as e:  # noqa: BLE001
    raise _save_failed(manager, e) from None


def _save_failed(manager: ocp.CheckpointManager, error: BaseException) -> RunError:
  try:
    steps = manager.all_steps(read=True)
  except Exception:  # noqa: BLE001 (the directory itself may be what failed)
    steps = []
  kept = f'checkpoint {max(steps)} is intact' if steps else 'no earlier checkpoint exists'
  return RunError(f'saving a checkpoint in {manager.directory} failed: {cause(error)}; {kept}. '
                  'Make room (or fix the path) and run the same command to resume')


def load_variables(workdir: str, step: Optional[int] = None) -> tuple[int, dict[str, Any]]:
  """``(step, {'params': ..., 'batch_stats': ...})`` of ``workdir``'s newest checkpoint (or of
  checkpoint ``step``), as host arrays, read without knowing the model, optimiser or data set that
  wrote it: what evaluation, visualisation and ``config.init_from`` need. RunError if there is no
  such checkpoint to read."""
  path = directory(workdir)
  missing = RunError(f'no checkpoint in {path}: train the run first (or pass another directory)')
  if not tf.io.gfile.isdir(path):  # the manager would create it
    raise missing
  try:
    with _quiet():
      manager = ocp.CheckpointManager(path, item_handlers=ocp.PyTreeCheckpointHandler())
      steps = manager.all_steps()
      if step is not None and step not in steps:
        raise RunError(f'no checkpoint {step} in {path} (its steps: '
                       f'{", ".join(map(str, sorted(steps))) or "none"})')
      step = manager.latest_step() if step is None else step
      if step is None:
        raise missing
      # checkpoints from before log sums were saved hold the state alone
      saved = manager.item_metadata(step).tree
      # Only the variables are read (as host arrays): not the optimiser state, which is as large
      # as the parameters again with momentum, twice as large with Adam.
      wanted = _variables(saved.get('state', saved))
      item = {'state': wanted} if 'state' in saved else wanted
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item=item, partial_restore=True,
          restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)))
      manager.close()
  except RunError:
    raise
  except Exception as e:  # noqa: BLE001 (orbax and TensorStore raise many kinds for bad files)
    raise RunError(f'cannot read the checkpoint in {path}: {cause(e)}') from None
  variables = restored.get('state', restored)
  return step, {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def _variables(state: dict[str, Any]) -> dict[str, Any]:
  """The parameters and BatchNorm statistics of a saved train state (a model without BatchNorm
  saves none)."""
  return {key: state[key] for key in ('params', 'batch_stats') if state.get(key)}
