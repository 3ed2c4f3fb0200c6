"""Orbax checkpoints in ``workdir/checkpoints``: every N steps and at the end, keeping the last K.

The saved pytree is the whole train state (step, parameters, optimiser state, BatchNorm statistics,
RNG key). The input position is the step itself: the pipeline rebuilds its batches from it.
Saving and restoring are collective: every process calls them, orbax coordinates the writes.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from cnn_jax import run_files


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=config.checkpoint_every_steps,
      max_to_keep=config.keep_checkpoints,
      enable_async_checkpointing=True,
  )
  # Remote workdirs (gs://...) are used as they are; local ones are made absolute for orbax.
  root = workdir if '://' in workdir else os.path.abspath(workdir)
  return ocp.CheckpointManager(os.path.join(root, run_files.CHECKPOINTS), options=options)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> Optional[Any]:
  """Restores the newest checkpoint into arrays laid out like ``abstract_state``, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
      if isinstance(x, jax.Array) else x, abstract_state)
  return manager.restore(step, args=ocp.args.StandardRestore(target))


def save(manager: ocp.CheckpointManager, step: int, state: Any, force: bool = False) -> bool:
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)
