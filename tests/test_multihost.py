"""Many hosts on one machine: 2 processes x 4 CPU devices, jax.distributed over gloo.

Every subprocess has a timeout, so a hang fails the test instead of stalling CI.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from cnn_jax import train
from tests.conftest import REPO, run_main, small_config, xla_flags

# A constant rate makes "20 steps, stop, resume to 40" the same run as "40 steps". gloo sums the
# gradients in another order than one process does; at the default rate 0.05 LeNet's early steps
# amplify that float rounding (40 steps: eval accuracy 0.8806 vs 0.8583), at 0.01 the two runs
# agree to 1e-7 in the loss.
ARGS = ['--config.schedule.name=constant', '--config.schedule.warmup=0',
        '--config.optimizer.learning_rate=0.01', '--config.data.num_shards=2',
        '--config.checkpoint_every_steps=10', '--config.log_every_steps=10',
        '--config.eval_every_epochs=100']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _launch(args, data_dir, timeout=300):
  env = dict(os.environ, TFDS_DATA_DIR=data_dir)
  return subprocess.run(['bash', 'launch/local_multiprocess.sh', '--processes=2', '--devices=4',
                         f'--port={_free_port()}', '--', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _start_two(data_dir, workdir, args) -> list[subprocess.Popen]:
  """Two cnn_jax.main processes of one run, 4 CPU devices each, output piped."""
  port = _free_port()
  env = dict(os.environ, TFDS_DATA_DIR=data_dir, XLA_FLAGS=xla_flags(4), PYTHONUNBUFFERED='1')
  return [subprocess.Popen(
      [sys.executable, '-m', 'cnn_jax.main', f'--workdir={workdir}',
       f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}', *args],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]


def _wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 180) -> None:
  """Reads ``proc``'s stdout until a line starts with ``prefix``."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if line.startswith(prefix):
      return
    if not line and proc.poll() is not None:
      raise AssertionError(f'process exited ({proc.returncode}) before a line {prefix!r}')
  raise AssertionError(f'no line {prefix!r} within {timeout} s: training never started')


def _params(workdir, data_dir):
  config = small_config(data_dir, schedule__name='constant', schedule__warmup=0)
  state = train.latest_state(config, workdir)
  return int(state.step), jax.tree.map(np.asarray, (state.params, state.opt_state))


def test_preempted_two_processes_stop_together_resume_and_match_one_process(data_dir, tmp_path):
  """SIGTERM to one of two processes (preemption of one host): JAX's preemption service tells
  the other, both save the same step and exit; the rerun resumes them together and ends where
  one process with 8 devices ends."""
  steps = ['--config.num_train_steps=60']
  reference = str(tmp_path / 'one_process')
  result = run_main(ARGS + steps + [f'--workdir={reference}'], devices=8, data_dir=data_dir)
  assert result.returncode == 0, result.stderr[-3000:]

  workdir = str(tmp_path / 'two_processes')
  procs = _start_two(data_dir, workdir, ARGS + steps)
  try:
    _wait_for_line(procs[0], 'step 10/')
    procs[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120) for p in procs]
  finally:
    for p in procs:
      p.kill()
  codes = [p.returncode for p in procs]
  assert codes == [128 + signal.SIGTERM] * 2, [err[-2000:] for _, err in outputs]
  lines = [err.strip().splitlines()[-1] for _, err in outputs]
  assert all(line.startswith('error: stopped by preemption at step ') for line in lines), lines
  stopped = {int(line.split('at step ')[1].split(':')[0]) for line in lines}
  assert len(stopped) == 1, lines
  stopped = stopped.pop()
  assert 10 <= stopped < 60
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert saved[-1] == stopped, saved

  second = _launch(ARGS + steps + [f'--workdir={workdir}'], data_dir)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f'resumed from step {stopped}' in second.stdout
  # Only process 0 reports: one final line, one metrics file.
  assert second.stdout.count('final eval accuracy') == 1
  assert second.stdout.strip().splitlines()[-1] == result.stdout.strip().splitlines()[-1]

  step_a, tree_a = _params(reference, data_dir)
  step_b, tree_b = _params(workdir, data_dir)
  assert step_a == step_b == 60
  for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_killed_process_makes_the_other_exit_with_an_error(data_dir, tmp_path):
  procs = _start_two(data_dir, tmp_path, ['--heartbeat_timeout=5', '--config.num_epochs=1000',
                                            '--config.log_every_steps=5'])
  try:
    _wait_for_line(procs[0], 'step ')
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, stderr = procs[0].communicate(timeout=120)
    elapsed = time.time() - killed_at
  finally:
    for p in procs:
      p.kill()
  assert procs[0].returncode != 0
  assert elapsed < 60
  assert 'another task died' in stderr or 'stopped sending heartbeats' in stderr, stderr[-2000:]
