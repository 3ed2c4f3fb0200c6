"""Running a sweep's points: local processes pinned to their share of the cores, or printed commands.

(The SLURM job array is in :mod:`experiments.slurm`, which alone imports submitit.)

Each point runs ``python -m cnn_jax.main ... --workdir=SWEEP_DIR/POINT`` from the repository root.
Its workdir also holds, besides what cnn_jax writes:

- ``log.txt``: stdout and stderr of every attempt, each after a ``=== attempt N`` header;
- ``sweep_point.json``: the point's axis values, its command line and one record per attempt
  (start, end, wall seconds, exit status, executor, host, cores), written before the process starts
  and again when it ends, so an attempt without an end is one whose launcher died.

``result.json`` (written by cnn_jax at the end of a run) means finished: such a point is skipped.
Anything else runs again with the same command, which resumes from the latest checkpoint.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterable, Mapping, Optional, Sequence

from cnn_jax import run_files
from experiments.definitions import REPO, Point, Sweep, SweepError

POINT_RECORD = 'sweep_point.json'
SWEEP_RECORD = 'sweep.json'
LOG = 'log.txt'
TAIL_LINES = 12
INTERRUPT_GRACE_SECONDS = 60  # for a stopped run to checkpoint its step


def workdir_of(sweep_dir: str, point: Point) -> str:
  return os.path.join(sweep_dir, point.name)


def main_command(point: Point, workdir: str, python: str = sys.executable) -> list[str]:
  return [python, '-m', 'cnn_jax.main', *point.main_args(workdir)]


# ---------------------------------------------------------------------------------------------
# Records


def read_json(path: str) -> Optional[dict]:
  """The JSON object in ``path``, or None if it is missing or half written."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_json(path: str, record: Mapping[str, Any]) -> None:
  """Atomic: a reader (the report, another launcher) never sees half a file."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def point_status(workdir: str) -> str:
  """finished | failed | running (or its launcher died) | interrupted (stopped, or has metrics
  without a record of its attempts) | pending."""
  if os.path.exists(os.path.join(workdir, run_files.RESULT)):
    return 'finished'
  record = read_json(os.path.join(workdir, POINT_RECORD)) or {}
  attempts = record.get('attempts', [])
  if attempts and attempts[-1].get('end') is None:
    return 'running'
  if attempts and attempts[-1].get('returncode') not in (0, None) and not attempts[-1].get('interrupted'):
    return 'failed'
  if os.path.exists(os.path.join(workdir, run_files.METRICS)) or os.path.isdir(
      os.path.join(workdir, run_files.CHECKPOINTS)):
    return 'interrupted'
  return 'pending'


def prepare(point: Point, workdir: str) -> None:
  """Creates the point's workdir and record; refuses a workdir that ran another command, whose
  checkpoints and results would otherwise be mixed with this one's (e.g. another --steps)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, POINT_RECORD)
  record = read_json(path)
  args = point.main_args(workdir)
  if record is not None and record.get('args') != args:
    before, now = set(record.get('args', [])), set(args)
    changed = ' '.join(sorted(before - now)) or '(order)'
    raise SweepError(f'{workdir} was run with other flags ({changed} now {" ".join(sorted(now - before))}'
                     f'): use another --sweep_dir, or the same flags as before.')
  if record is None:
    write_json(path, {'name': point.name, 'values': point.values, 'args': args, 'attempts': []})


def write_sweep_record(sweep: Sweep, points: Sequence[Point], sweep_dir: str) -> None:
  """``SWEEP_DIR/sweep.json``: what the report needs to read the sweep without its definition."""
  from experiments import definitions
  os.makedirs(sweep_dir, exist_ok=True)
  write_json(os.path.join(sweep_dir, SWEEP_RECORD), {
      'name': sweep.name, 'doc': sweep.doc, 'config': sweep.config,
      'axes': [list(axis.keys) for axis in sweep.axes]
              + ([] if definitions.SEED in sweep.axis_keys else [[definitions.SEED]]),
      'labels': sorted(sweep.labels), 'derived': dict(sweep.derived),
      'fixed': {k: definitions.format_value(v) for k, v in sweep.fixed.items()},
      'plot': dataclasses.asdict(sweep.plot), 'steps': sweep.steps, 'train_size': sweep.train_size,
      'cpu_budget': sweep.cpu_budget, 'paper_steps': sweep.paper_steps,
      'paper_budget': sweep.paper_budget,
      'points': [{'name': p.name, 'values': p.values, 'args': p.main_args(workdir_of(sweep_dir, p))}
                 for p in points]})


def log_tail(workdir: str, lines: int = TAIL_LINES) -> list[str]:
  try:
    with open(os.path.join(workdir, LOG), errors='replace') as f:
      return [line.rstrip('\n') for line in collections.deque(f, maxlen=lines)]
  except OSError:
    return []


# ---------------------------------------------------------------------------------------------
# One attempt


def thread_env(env: Mapping[str, str], cores: int) -> dict[str, str]:
  """``env`` for a child pinned to ``cores`` cores.

  The pinning itself is what limits XLA: XLA:CPU and tf.data size their thread pools from the
  affinity mask (measured with jax 0.10.2: 2 -> 1 Eigen and TF compute threads on one core).
  These variables make TensorFlow's own pools and BLAS say the same. XLA_FLAGS are left as they
  are: --xla_cpu_multi_thread_eigen=false made no measurable difference on a pinned core, and any
  XLA flag changes the persistent compilation cache's key, so 1-core and 2-core runs of one config
  would no longer share compiled steps ("intra_op_parallelism_threads=1" is not an XLA flag at
  all: ignored without "--", fatal with it).
  """
  out = dict(env)
  for name in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS', 'OMP_NUM_THREADS',
               'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    out[name] = str(cores)
  return out


def core_slots(cores: Sequence[int], parallel: int) -> list[tuple[int, ...]]:
  """``parallel`` disjoint groups of ``cores``, as even as possible; with more runs than cores,
  runs share cores in turn."""
  if parallel < 1:
    raise SweepError(f'--parallel must be >= 1, not {parallel}.')
  cores = sorted(cores)
  if parallel > len(cores):
    return [(cores[i % len(cores)],) for i in range(parallel)]
  per, extra = divmod(len(cores), parallel)
  slots, start = [], 0
  for i in range(parallel):
    size = per + (i < extra)
    slots.append(tuple(cores[start:start + size]))
    start += size
  return slots


class Attempt:
  """One run of a point's command: started at construction, logged to the workdir, recorded."""

  def __init__(self, point_name: str, workdir: str, command: Sequence[str], env: Mapping[str, str],
               executor: str, cores: Optional[Sequence[int]] = None, job_id: Optional[str] = None):
    self.workdir = workdir
    path = os.path.join(workdir, POINT_RECORD)
    record = read_json(path) or {'name': point_name, 'attempts': []}
    self.number = len(record['attempts']) + 1
    self.start = time.time()
    self.entry = {'number': self.number, 'executor': executor, 'host': socket.gethostname(),
                  'cores': list(cores) if cores else None, 'start': self.start, 'end': None,
                  'wall_seconds': None, 'returncode': None,
                  'job_id': job_id}
    record['attempts'].append(self.entry)
    write_json(path, record)
    self.log = open(os.path.join(workdir, LOG), 'a')
    self.log.write(f'=== attempt {self.number} at {time.strftime("%Y-%m-%d %H:%M:%S")} on '
                   f'{socket.gethostname()}{f" cores {list(cores)}" if cores else ""}: '
                   f'{shlex.join(command)}\n')
    self.log.flush()
    self.process = subprocess.Popen(list(command), cwd=REPO, env=dict(env), stdout=self.log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if cores:
      # Pinned from outside (a preexec_fn would fork a possibly multithreaded parent): the child
      # is still starting Python, so XLA's and tf.data's thread pools, made later, see only these.
      try:
        os.sched_setaffinity(self.process.pid, cores)
      except ProcessLookupError:
        pass  # it has already exited: poll() reports how
    self.entry['pid'] = self.process.pid
    write_json(path, record)

  def poll(self) -> Optional[int]:
    return self.process.poll()

  def wait(self) -> int:
    return self.process.wait()

  def finish(self, returncode: int) -> dict:
    """Records the end of the attempt; returns its entry."""
    self.entry.update(end=time.time(), returncode=returncode)
    self.entry['wall_seconds'] = round(self.entry['end'] - self.start, 3)
    path = os.path.join(self.workdir, POINT_RECORD)
    record = read_json(path) or {'attempts': [self.entry]}
    record['attempts'] = [self.entry if a.get('number') == self.number else a
                          for a in record['attempts']]
    write_json(path, record)
    self.log.write(f'=== attempt {self.number} ended with exit status {returncode} after '
                   f'{duration(self.entry["wall_seconds"])}\n')
    self.log.close()
    return self.entry

  def interrupt(self) -> int:
    """SIGTERM, which makes the run checkpoint its current step and exit; SIGKILL if it has not
    done so after a grace period."""
    self.entry['interrupted'] = True
    self.process.send_signal(signal.SIGTERM)
    try:
      self.process.wait(INTERRUPT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
      self.process.kill()
    return self.finish(self.process.wait())['returncode']


def duration(seconds: Optional[float]) -> str:
  if seconds is None:
    return '?'
  minutes, secs = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{secs:02d}s' if hours else f'{minutes}m{secs:02d}s'


# ---------------------------------------------------------------------------------------------
# Executors


@dataclasses.dataclass
class Outcome:
  point: Point
  workdir: str
  status: str                     # finished | failed | skipped (finished before) | submitted
  returncode: Optional[int] = None

  def failure_report(self) -> str:
    tail = '\n'.join('    ' + line for line in log_tail(self.workdir))
    return (f'FAILED {self.point.name} (exit status {self.returncode}); log: '
            f'{os.path.join(self.workdir, LOG)}; last lines:\n{tail}')


def running_here(workdir: str) -> Optional[int]:
  """The pid of this point's run if another launcher on this host is running it now."""
  record = read_json(os.path.join(workdir, POINT_RECORD)) or {}
  last = (record.get('attempts') or [{}])[-1]
  pid = last.get('pid')
  if last.get('end') is not None or not pid or last.get('host') != socket.gethostname():
    return None
  try:
    with open(f'/proc/{pid}/cmdline', 'rb') as f:
      command = f.read()
  except OSError:  # not running (or not Linux)
    return None
  return pid if b'cnn_jax.main' in command and f'--workdir={workdir}'.encode() in command else None


def split_finished(points: Iterable[Point], sweep_dir: str,
                   out=sys.stdout) -> tuple[list[Point], list[Outcome]]:
  """Points to run, and outcomes of those finished (never relaunched) or being run right now by
  another launcher on this machine (never started twice)."""
  todo, done = [], []
  for point in points:
    workdir = workdir_of(sweep_dir, point)
    pid = running_here(workdir)
    if point_status(workdir) == 'finished':
      done.append(Outcome(point, workdir, 'skipped', 0))
    elif pid is not None:
      print(f'{point.name} is running already (pid {pid}): not started again', file=out)
      done.append(Outcome(point, workdir, 'running elsewhere'))
    else:
      todo.append(point)
  return todo, done


def run_local(points: Sequence[Point], sweep_dir: str, parallel: int,
              env: Optional[Mapping[str, str]] = None, out=sys.stdout) -> list[Outcome]:
  """Runs ``points`` as local processes, ``parallel`` at once, each pinned to its own cores."""
  available = sorted(os.sched_getaffinity(0))
  slots = core_slots(available, parallel)
  if parallel > len(available):
    print(f'note: --parallel={parallel} on {len(available)} core(s): runs share cores', file=out)
  base_env = dict(os.environ if env is None else env)
  base_env.setdefault('PYTHONUNBUFFERED', '1')
  queue = collections.deque(points)
  free = list(slots)
  running: list[tuple[Attempt, Point, tuple[int, ...]]] = []
  outcomes: list[Outcome] = []
  total = len(points)

  def say(text: str) -> None:
    print(f'[{len(outcomes)}/{total} done] {text}', file=out, flush=True)

  try:
    while queue or running:
      while queue and free:
        point, cores = queue.popleft(), free.pop(0)
        workdir = workdir_of(sweep_dir, point)
        attempt = Attempt(point.name, workdir, main_command(point, workdir),
                          thread_env(base_env, len(cores)), 'local', cores)
        running.append((attempt, point, cores))
        say(f'started {point.name} (attempt {attempt.number}) on core(s) '
            f'{",".join(map(str, cores))}: {os.path.join(workdir, LOG)}')
      time.sleep(0.2)
      for item in list(running):
        attempt, point, cores = item
        returncode = attempt.poll()
        if returncode is None:
          continue
        entry = attempt.finish(returncode)
        running.remove(item)
        free.append(cores)
        ok = returncode == 0
        outcomes.append(Outcome(point, attempt.workdir, 'finished' if ok else 'failed', returncode))
        say(f'{"finished" if ok else "FAILED"} {point.name} in {duration(entry["wall_seconds"])}'
            f'{"" if ok else f" (exit status {returncode}, see {os.path.join(attempt.workdir, LOG)})"}')
  except KeyboardInterrupt:
    print(f'interrupted: stopping {len(running)} run(s); the same command resumes them',
          file=out, flush=True)
    for attempt, _, _ in running:
      attempt.interrupt()
    raise
  return outcomes


def print_commands(points: Sequence[Point], sweep: Sweep, sweep_dir: str, slurm_flags: Sequence[str],
                   out=sys.stdout) -> None:
  """The grid as shell lines to run anywhere: cnn_jax commands, then one sbatch per point."""
  print(f'# sweep {sweep.name}: {len(points)} points, --steps={sweep.steps}; run from the '
        f'repository root. A finished point (result.json) is marked; rerunning one resumes it.',
        file=out)
  for point in points:
    workdir = workdir_of(sweep_dir, point)
    mark = '# finished: ' if point_status(workdir) == 'finished' else ''
    command = shlex.join(main_command(point, workdir, python='python'))
    print(f'{mark}mkdir -p {shlex.quote(workdir)} && {command} >> {shlex.quote(os.path.join(workdir, LOG))} 2>&1',
          file=out)
  print('# or on a SLURM cluster, one job per point (launch/slurm.sbatch):', file=out)
  for point in points:
    workdir = workdir_of(sweep_dir, point)
    mark = '# finished: ' if point_status(workdir) == 'finished' else ''
    sbatch = ['sbatch', f'--job-name={sweep.name}', *slurm_flags,
              f'--output={os.path.join(workdir, "slurm-%j.out")}', 'launch/slurm.sbatch',
              *point.main_args(workdir)]
    print(f'{mark}mkdir -p {shlex.quote(workdir)} && {shlex.join(sbatch)}', file=out)
