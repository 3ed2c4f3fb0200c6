"""Ablation sweeps: one training run per grid point, then the report (table, figures, HParams).

  python -m experiments.sweep --list
  python -m experiments.sweep --sweep=degradation --sweep_dir=/tmp/sweeps/degradation \\
      --executor=local --parallel=2 --steps=500
  python -m experiments.sweep --sweep=degradation --executor=print --steps=64000   # commands only
  python -m experiments.sweep --sweep=degradation --executor=slurm --steps=64000 \\
      --sweep_dir=/shared/sweeps/degradation --slurm_partition=gpu --slurm_gpus_per_task=1
  python -m experiments.report /tmp/sweeps/degradation                     # the report again

The sweeps are defined in experiments/definitions.py (or a --sweep_file of your own). Each point
runs ``python -m cnn_jax.main`` in SWEEP_DIR/POINT; running the same command again skips finished
points and resumes the others from their checkpoints. A failed point does not stop the others; the
exit status is 1 if any failed.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys

if __package__ in (None, ''):  # python experiments/sweep.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

from cnn_jax import runtime
from experiments import definitions, runner
from experiments.definitions import SweepError

FLAGS = flags.FLAGS
flags.DEFINE_string('sweep', None, 'Which sweep to run (--list shows them).')
flags.DEFINE_bool('list', False, 'List the sweeps with what they reproduce and their budgets.')
flags.DEFINE_string('sweep_file', None, 'A Python file defining SWEEPS (a list of '
                    'experiments.definitions.Sweep), in addition to the registered ones.')
flags.DEFINE_string('sweep_dir', None, 'One workdir per point goes here, and the report '
                    '(default /tmp/cnn_jax/sweeps/SWEEP).')
flags.DEFINE_enum('executor', 'local', ['local', 'slurm', 'print'],
                  'local: processes on this machine; slurm: a job array through submitit; '
                  'print: print the commands and sbatch lines, run nothing.')
flags.DEFINE_integer('parallel', 1, 'local: runs at once, each pinned to its share of the cores.')
flags.DEFINE_integer('steps', None, 'Iterations per run (the recipe\'s steps= argument: its '
                     'schedule scales with it); default: the sweep\'s CPU budget.')
flags.DEFINE_integer('train_size', None, 'Training examples per run (the recipe\'s train_size=; 0 = all).')
flags.DEFINE_integer('seeds', None, 'Replicates per setting (seeds 0..N-1); default: the sweep\'s.')
flags.DEFINE_multi_string('set', [], 'KEY=VALUE for every point: a recipe argument '
                          '(model=resnet110) or a config field (config.data.data_dir=/data).')
flags.DEFINE_bool('report', True, 'Regenerate the report at the end.')
flags.DEFINE_bool('wait', True, 'slurm: wait for the array and report; --nowait submits and exits.')
flags.DEFINE_enum('slurm_cluster', 'slurm', ['slurm', 'local'], 'slurm: submitit\'s cluster '
                  '(local runs the array as local processes, for tests).')
flags.DEFINE_string('slurm_partition', None, 'slurm: partition.')
flags.DEFINE_integer('slurm_gpus_per_task', 1, 'slurm: GPUs per point (one process uses them all).')
flags.DEFINE_integer('slurm_cpus_per_task', 8, 'slurm: CPU cores per point (input pipeline).')
flags.DEFINE_integer('slurm_time', 24 * 60, 'slurm: time limit per task in minutes; a task that '
                     'reaches it requeues itself and resumes.')
flags.DEFINE_integer('slurm_mem_gb', None, 'slurm: memory per point in GB.')
flags.DEFINE_integer('slurm_array_parallelism', 64, 'slurm: array tasks running at once.')
flags.DEFINE_string('slurm_account', None, 'slurm: account.')
flags.DEFINE_string('slurm_qos', None, 'slurm: quality of service.')
flags.DEFINE_string('slurm_constraint', None, 'slurm: node constraint.')
flags.DEFINE_multi_string('slurm_additional', [], 'slurm: other sbatch options as KEY=VALUE, or '
                          'KEY alone (exclusive).')


def _additional() -> dict[str, object]:
  """--slurm_additional: KEY=VALUE, or KEY alone for an option without value (exclusive)."""
  out: dict[str, object] = {}
  for text in FLAGS.slurm_additional:
    key, sep, value = text.partition('=')
    if not key:
      raise SweepError(f'--slurm_additional expects KEY=VALUE or KEY, got {text!r}.')
    out[key.strip().lstrip('-').replace('-', '_')] = value if sep else True
  return out


def _slurm_options() -> 'slurm.SlurmOptions':
  from experiments import slurm
  additional = _additional()
  return slurm.SlurmOptions(
      cluster=FLAGS.slurm_cluster, partition=FLAGS.slurm_partition,
      gpus_per_task=FLAGS.slurm_gpus_per_task, cpus_per_task=FLAGS.slurm_cpus_per_task,
      time_minutes=FLAGS.slurm_time, mem_gb=FLAGS.slurm_mem_gb,
      array_parallelism=FLAGS.slurm_array_parallelism, account=FLAGS.slurm_account,
      qos=FLAGS.slurm_qos, constraint=FLAGS.slurm_constraint, additional=additional)


def _sbatch_flags() -> list[str]:
  """The sbatch options of --executor=print's lines: one task on its GPUs, as the array's."""
  out = ['--nodes=1', '--ntasks-per-node=1', f'--gpus-per-task={FLAGS.slurm_gpus_per_task}',
         f'--cpus-per-task={FLAGS.slurm_cpus_per_task}', f'--time={FLAGS.slurm_time}']
  for name in ('partition', 'account', 'qos', 'constraint'):
    value = getattr(FLAGS, f'slurm_{name}')
    if value:
      out.append(f'--{name}={value}')
  if FLAGS.slurm_mem_gb:
    out.append(f'--mem={FLAGS.slurm_mem_gb}G')
  out += [f'--{k.replace("_", "-")}' + ('' if v is True else f'={v}') for k, v in _additional().items()]
  return out


def run(argv: list[str]) -> int:
  """The sweep command; returns the exit status."""
  if len(argv) > 1:
    raise SweepError(f'unexpected arguments: {" ".join(argv[1:])}')
  extra = definitions.load_file(FLAGS.sweep_file) if FLAGS.sweep_file else []
  if FLAGS.list:
    known = {**definitions.SWEEPS, **{s.name: s for s in extra}}
    print('\n\n'.join(definitions.describe(s) for s in known.values()))
    return 0
  if not FLAGS.sweep:
    raise SweepError('--sweep is required (--list shows the sweeps).')
  if FLAGS.parallel < 1:
    raise SweepError(f'--parallel must be >= 1, not {FLAGS.parallel}.')
  for name in ('steps', 'train_size'):
    if getattr(FLAGS, name) is not None and getattr(FLAGS, name) < (1 if name == 'steps' else 0):
      raise SweepError(f'--{name} must be >= {1 if name == "steps" else 0}, not {getattr(FLAGS, name)}.')
  sweep = definitions.with_overrides(
      definitions.get(FLAGS.sweep, extra), steps=FLAGS.steps, train_size=FLAGS.train_size,
      seeds=FLAGS.seeds, settings=dict(definitions.parse_setting(t) for t in FLAGS.set))
  points = definitions.expand(sweep)
  sweep_dir = os.path.abspath(FLAGS.sweep_dir or os.path.join('/tmp/cnn_jax/sweeps', sweep.name))

  if FLAGS.executor == 'print':
    runner.print_commands(points, sweep, sweep_dir, _sbatch_flags())
    return 0
  if FLAGS.executor == 'slurm' and FLAGS.slurm_cluster == 'slurm' and not shutil.which('srun'):
    raise SweepError('--executor=slurm: no srun on this machine (not a SLURM login node). Use '
                     '--executor=print for sbatch lines to run elsewhere, or --slurm_cluster=local.')
  for point in points:  # every workdir checked before anything starts
    runner.prepare(point, runner.workdir_of(sweep_dir, point))
  runner.write_sweep_record(sweep, points, sweep_dir)
  todo, skipped = runner.split_finished(points, sweep_dir)
  finished_before = sum(o.status == 'skipped' for o in skipped)
  print(f'sweep {sweep.name}: {len(points)} points in {sweep_dir}, {finished_before} finished '
        f'before (skipped), {len(todo)} to run, --steps={sweep.steps}', flush=True)
  if FLAGS.executor == 'local':
    outcomes = runner.run_local(todo, sweep_dir, FLAGS.parallel)
  else:
    from experiments import slurm
    # The array tasks unpickle experiments.slurm.PointTask: make the checkout importable there.
    paths = os.environ.get('PYTHONPATH', '').split(os.pathsep)
    if definitions.REPO not in paths:
      os.environ['PYTHONPATH'] = os.pathsep.join([definitions.REPO] + [p for p in paths if p])
    outcomes = slurm.run_slurm(todo, sweep_dir, sweep.name, _slurm_options(), wait=FLAGS.wait)
    if not FLAGS.wait:
      print(f'submitted; when the jobs end: python -m experiments.report {sweep_dir}')
      return 0
  failures = [o for o in outcomes if o.status == 'failed']
  if FLAGS.report:
    from experiments import report
    report.generate(sweep_dir)
    print(f'report: {os.path.join(sweep_dir, "results.md")}', flush=True)
  for failure in failures:
    print(failure.failure_report(), file=sys.stderr)
  done = finished_before + sum(o.status == 'finished' for o in outcomes)
  print(f'sweep {sweep.name}: {done}/{len(points)} finished, {len(failures)} failed', flush=True)
  return 1 if failures else 0


def _stop(signum: int, frame) -> None:
  raise KeyboardInterrupt  # SIGTERM (kill, timeout) stops the runs as Ctrl-C does, never orphans them


def main(argv: list[str]) -> None:
  runtime.start()  # the points run in their own processes; the report sizes models here
  if not FLAGS['verbosity'].present:  # tfds logs every data set read at INFO
    logging.set_verbosity(logging.WARNING)
  signal.signal(signal.SIGTERM, _stop)
  try:
    status = run(argv)
  except SweepError as e:
    sys.exit(f'error: {e}')
  except KeyboardInterrupt:  # the running points were stopped cleanly; the same command resumes
    sys.exit(130)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing with a bad flag reported in one line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
