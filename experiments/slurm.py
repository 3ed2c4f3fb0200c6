"""A sweep as one SLURM job array through submitit: one array task per point, one cnn_jax process
on the GPUs the task is given (SLURM sets CUDA_VISIBLE_DEVICES; JAX uses all it sees).

On a time limit or preemption submitit signals the task, which stops its run (SIGTERM: the run
checkpoints its current step) and requeues itself; the requeued task runs the same command, which
resumes. Tests use submitit's local cluster, which runs the same tasks as local processes.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Optional, Sequence

import submitit

from experiments import runner
from experiments.definitions import Point, SweepError


class PointTask(submitit.helpers.Checkpointable):
  """What one array task runs: the point's command, logged and recorded in its workdir."""

  def __init__(self, point_name: str, workdir: str, command: Sequence[str]):
    self.point_name = point_name
    self.workdir = workdir
    self.command = list(command)
    self._attempt: Optional[runner.Attempt] = None

  def __call__(self) -> dict:
    job_id = submitit.JobEnvironment().job_id
    self._attempt = runner.Attempt(self.point_name, self.workdir, self.command,
                                   {**os.environ, 'PYTHONUNBUFFERED': '1'}, 'slurm', job_id=job_id)
    entry = self._attempt.finish(self._attempt.wait())
    self._attempt = None
    return entry

  def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
    if self._attempt is not None:  # time limit or preemption: stop cleanly, then requeue
      self._attempt.interrupt()
      self._attempt = None
    return super().checkpoint(*args, **kwargs)

  def __getstate__(self) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != '_attempt'} | {'_attempt': None}


@dataclasses.dataclass
class SlurmOptions:
  cluster: str = 'slurm'          # 'local' runs the array as local processes (tests)
  partition: Optional[str] = None
  gpus_per_task: int = 1
  cpus_per_task: int = 8
  time_minutes: int = 24 * 60
  mem_gb: Optional[int] = None
  array_parallelism: int = 64
  account: Optional[str] = None
  qos: Optional[str] = None
  constraint: Optional[str] = None
  additional: dict = dataclasses.field(default_factory=dict)  # any other sbatch option


def make_executor(folder: str, name: str, options: SlurmOptions) -> submitit.AutoExecutor:
  try:
    executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
  except RuntimeError as e:  # no srun on this machine
    raise SweepError(f'--executor=slurm: {e} Use --executor=print for sbatch lines to run '
                     f'elsewhere, or --slurm_cluster=local.') from None
  executor.update_parameters(
      name=name, timeout_min=options.time_minutes, nodes=1, tasks_per_node=1,
      cpus_per_task=options.cpus_per_task, mem_gb=options.mem_gb,
      slurm_partition=options.partition, slurm_gpus_per_task=options.gpus_per_task or None,
      slurm_array_parallelism=options.array_parallelism, slurm_account=options.account,
      slurm_qos=options.qos, slurm_constraint=options.constraint,
      slurm_additional_parameters=options.additional or None)
  return executor


def run_slurm(points: Sequence[Point], sweep_dir: str, sweep_name: str, options: SlurmOptions,
              wait: bool = True, out=sys.stdout) -> list[runner.Outcome]:
  """Submits ``points`` as one array; with ``wait``, waits for every task and returns outcomes."""
  if not points:
    return []
  executor = make_executor(os.path.join(sweep_dir, 'submitit'), f'sweep-{sweep_name}', options)
  with executor.batch():
    jobs = [executor.submit(PointTask(p.name, runner.workdir_of(sweep_dir, p),
                                      runner.main_command(p, runner.workdir_of(sweep_dir, p))))
            for p in points]
  for job, point in zip(jobs, points):
    print(f'submitted {point.name} as job {job.job_id}: '
          f'{os.path.join(runner.workdir_of(sweep_dir, point), runner.LOG)}', file=out, flush=True)
  if not wait:
    return [runner.Outcome(p, runner.workdir_of(sweep_dir, p), 'submitted') for p in points]
  outcomes = []
  for job, point in zip(jobs, points):
    workdir = runner.workdir_of(sweep_dir, point)
    try:
      returncode = job.result()['returncode']
    except Exception as e:  # the task itself failed (node lost, cancelled): submitit's own log
      print(f'job {job.job_id} of {point.name} failed: {str(e).strip().splitlines()[-1:]} '
            f'(submitit log {job.paths.stderr})', file=out, flush=True)
      returncode = -1
    ok = returncode == 0
    outcomes.append(runner.Outcome(point, workdir, 'finished' if ok else 'failed', returncode))
    print(f'{"finished" if ok else "FAILED"} {point.name} (job {job.job_id})', file=out, flush=True)
  return outcomes
