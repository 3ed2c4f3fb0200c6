"""The one place that decides sharding: a data-parallel mesh over every device of every host.

Parameters and optimiser state are replicated; batches are split over the ``data`` axis. Each
process builds its local slice of a batch and :func:`global_batch` assembles the global array.
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
from typing import Any, Iterator, Optional

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnn_jax import ConfigError

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           heartbeat_timeout: int = 60) -> None:
  """Starts JAX's multi-controller runtime when the run spans several processes.

  With explicit flags, uses them; on Cloud TPU pods and under SLURM, JAX finds the cluster itself.
  A single process on one machine needs nothing.
  """
  explicit = coordinator_address is not None
  slurm_multi = int(os.environ.get('SLURM_NTASKS', '1')) > 1
  tpu_pod = ',' in os.environ.get('TPU_WORKER_HOSTNAMES', '')
  if not (explicit or slurm_multi or tpu_pod):
    return
  # CPU hosts (the tests, clusters without accelerators) need a collectives backend.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, heartbeat_timeout_seconds=heartbeat_timeout)
  else:  # JAX reads the cluster from SLURM or the TPU metadata
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout)
  logging.info('process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
  """This process's share of ``global_batch``; the batch must split evenly over devices."""
  devices = mesh.devices.size
  if global_batch % devices:
    raise ConfigError(f'batch size {global_batch} does not divide evenly over {devices} devices: '
                      f'use a multiple of {devices} (e.g. {max(devices, global_batch // devices * devices)}).')
  return global_batch // jax.process_count()


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles per-process numpy slices into global arrays sharded over the data axis."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def device_batches(local_batches: Iterator[dict[str, np.ndarray]], mesh: Mesh,
                   ahead: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Global batches from per-process ones, each made ``ahead`` batches before it is used.

  Making a global array starts its host-to-device copies without waiting for them, so on an
  accelerator the next batches' copies overlap the steps before them. On CPU it costs nothing
  (``benchmarks/input_pipeline.py``).
  """
  queue = collections.deque()
  for local in local_batches:
    queue.append(global_batch(local, mesh))
    if len(queue) > ahead:
      yield queue.popleft()
  yield from queue  # a finite iterator's last batches


def started(items: Iterator) -> Iterator:
  """``items``, whose first item is made in a background thread from this call on: a run's
  first batches are read while its initial state is made."""
  worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='cnn_jax-first-item')
  first = worker.submit(next, items, StopIteration)
  worker.shutdown(wait=False)  # the thread ends with its one task

  def rest() -> Iterator:
    item = first.result()  # the worker's exception, if any, is raised here
    if item is StopIteration:
      return
    yield item
    yield from items
  return rest()


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
