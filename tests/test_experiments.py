"""Sweeps: definitions expand to valid commands; the executors run, skip, resume and report points.

The runs are LeNet-5 on digits for 4 steps at batch 8 (configs/default.py), all with the same
shapes, so that the session's XLA cache (conftest) compiles their steps once. Run with
``python -m pytest -q -n 0 tests/test_experiments.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from experiments import definitions, report, runner
from tests.conftest import REPO

LENET5_PARAMS = 61_706       # ReLU LeNet-5, 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850
CIFAR_RESNET20_PARAMS = 269_434  # one input channel (digits); the plain twin has the same count
TINY = {'config.batch_size': 8, 'config.eval_every_epochs': 1000, 'config.log_every_steps': 2,
        'config.checkpoint_every_steps': 2, 'config.data.validation_size': 64}


def write_sweep_file(directory, axes: str) -> str:
  """A --sweep_file defining the sweep ``tiny``: 4-step LeNet-5 runs on digits over ``axes``."""
  path = os.path.join(str(directory), 'tiny_sweeps.py')
  with open(path, 'w') as f:
    f.write(textwrap.dedent(f'''\
        from experiments.definitions import Axis, Plot, Sweep
        SWEEPS = [Sweep(name='tiny', doc='Tiny LeNet-5 runs on digits.', config='configs/default.py',
                        axes=({axes},), fixed={TINY!r}, plot=Plot(x='seed'), steps=4,
                        steps_key='config.num_train_steps', train_size_key=None,
                        cpu_budget='seconds', paper_steps=4, paper_budget='none')]
        '''))
  return path


def run_cli(module: str, args: list[str], data_dir: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  if data_dir:
    env['TFDS_DATA_DIR'] = data_dir
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def attempts(workdir: str) -> list[dict]:
  return runner.read_json(os.path.join(workdir, runner.POINT_RECORD))['attempts']


def hparams_sessions(directory: str) -> dict[str, dict]:
  """TensorBoard HParams data under ``directory``: run -> {'experiment'|'session': ..., scalars}."""
  from tensorboard.backend.event_processing import event_file_loader
  from tensorboard.compat.proto import event_pb2
  from tensorboard.plugins.hparams import metadata
  out: dict[str, dict] = {}
  for root, _, files in os.walk(directory):
    for name in files:
      run = os.path.relpath(root, directory)
      for raw in event_file_loader.RawEventFileLoader(os.path.join(root, name)).Load():
        event = event_pb2.Event.FromString(raw)
        for value in event.summary.value:
          entry = out.setdefault(run, {})
          content = value.metadata.plugin_data.content
          if value.tag == metadata.EXPERIMENT_TAG:
            entry['experiment'] = metadata.parse_experiment_plugin_data(content)
          elif value.tag == metadata.SESSION_START_INFO_TAG:
            entry['session'] = metadata.parse_session_start_info_plugin_data(content)
          else:
            entry[value.tag] = value.simple_value
  return out


def is_png(path: str) -> bool:
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


# ---------------------------------------------------------------------------------------------
# Local executor, end to end (shared by the resume test, which copies its workdirs)


@pytest.fixture(scope='module')
def local_sweep(data_dir, tmp_path_factory):
  directory = tmp_path_factory.mktemp('local_sweep')
  sweep_file = write_sweep_file(directory, "Axis('seed', (0, 1))")
  sweep_dir = str(directory / 'sweep')
  result = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                         f'--sweep_dir={sweep_dir}', '--executor=local',
                                         '--parallel=2'], data_dir)
  return sweep_file, sweep_dir, result


def test_local_sweep_runs_two_pinned_points_at_once_and_reports(local_sweep):
  _, sweep_dir, result = local_sweep
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  workdirs = [os.path.join(sweep_dir, f'seed={seed}') for seed in (0, 1)]
  records = [attempts(w) for w in workdirs]
  for workdir, record in zip(workdirs, records):
    assert os.path.exists(os.path.join(workdir, 'result.json'))
    assert [a['returncode'] for a in record] == [0] and record[0]['wall_seconds'] > 0
    with open(os.path.join(workdir, 'log.txt')) as f:
      assert 'final eval accuracy' in f.read()
  # Both ran at once, each pinned to its own half of the cores.
  assert max(r[0]['start'] for r in records) < min(r[0]['end'] for r in records)
  cores = sorted(os.sched_getaffinity(0))
  if len(cores) >= 2:
    assert not set(records[0][0]['cores']) & set(records[1][0]['cores'])
    assert len(records[0][0]['cores']) == len(cores) // 2
  # The sweep regenerated the report: both seeds aggregated, params from cnn_jax.summary.
  with open(os.path.join(sweep_dir, 'results.json')) as f:
    results = json.load(f)
  (setting,) = results['settings']
  assert setting['finished'] == 2 and setting['final_test_error']['n'] == 2
  assert setting['final_test_error']['std'] is not None
  assert setting['final_validation_error']['n'] == 2 and setting['params'] == LENET5_PARAMS
  point = results['points'][0]
  assert point['final_test_error'] == pytest.approx(
      1 - runner.read_json(os.path.join(workdirs[0], 'result.json'))['eval']['accuracy'])
  with open(os.path.join(sweep_dir, 'results.md')) as f:
    assert '| 2/2 |' in f.read()
  assert is_png(os.path.join(sweep_dir, 'final_error.png'))
  sessions = hparams_sessions(os.path.join(sweep_dir, 'tensorboard'))
  assert 'seed' in [h.name for h in sessions['.']['experiment'].hparam_infos]
  assert set(sessions) == {'.', 'seed=0', 'seed=1'}
  assert sessions['seed=1']['final/test_error'] == pytest.approx(results['points'][1]['final_test_error'])
  assert 'report:' in result.stdout and 'tiny: 2/2 finished, 0 failed' in result.stdout


def test_rerun_skips_the_finished_point_and_resumes_the_interrupted_one(local_sweep, data_dir,
                                                                       tmp_path):
  sweep_file, done_dir, _ = local_sweep
  sweep_dir = str(tmp_path / 'sweep')
  finished, interrupted = (os.path.join(sweep_dir, f'seed={s}') for s in (0, 1))
  shutil.copytree(os.path.join(done_dir, 'seed=0'), finished)
  shutil.copytree(os.path.join(done_dir, 'seed=1'), interrupted)
  os.remove(os.path.join(finished, runner.POINT_RECORD))   # made elsewhere: result.json counts
  os.remove(os.path.join(finished, 'log.txt'))
  # Interrupted after step 4 was logged but before its checkpoint, its launcher killed.
  shutil.rmtree(os.path.join(interrupted, 'checkpoints', '4'))
  os.remove(os.path.join(interrupted, 'result.json'))
  point = next(p for p in definitions.expand(definitions.load_file(sweep_file)[0])
               if p.values['seed'] == 1)
  runner.write_json(os.path.join(interrupted, runner.POINT_RECORD), {
      'name': point.name, 'values': point.values, 'args': point.main_args(interrupted),
      'attempts': [{'number': 1, 'start': 1.0, 'end': None, 'wall_seconds': None,
                    'returncode': None}]})
  assert runner.point_status(interrupted) == 'running'

  result = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                         f'--sweep_dir={sweep_dir}', '--noreport'], data_dir)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert '1 finished before (skipped), 1 to run' in result.stdout
  assert not os.path.exists(os.path.join(finished, 'log.txt'))   # never launched
  assert attempts(finished) == []
  with open(os.path.join(interrupted, 'log.txt')) as f:
    assert 'resumed from step 2' in f.read()
  assert runner.read_json(os.path.join(interrupted, 'result.json'))['step'] == 4
  record = attempts(interrupted)
  assert [a['end'] is None for a in record] == [True, False] and record[1]['returncode'] == 0
  # Step 4 is now in metrics.jsonl twice; the report counts it once, the later record.
  point = report.summarize_point(sweep_dir, 'seed=1', {'seed': 1}, model_sizes=False)
  assert [s for s, _ in point['curves']['train']] == [2, 4]
  assert point['wall_seconds'] == pytest.approx(record[1]['wall_seconds'])


def test_failing_point_is_reported_and_the_others_finish(data_dir, tmp_path):
  sweep_file = write_sweep_file(tmp_path, "Axis('config.optimizer.name', ('sgd', 'sgdx'))")
  sweep_dir = str(tmp_path / 'sweep')
  result = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                         f'--sweep_dir={sweep_dir}', '--parallel=2', '--noreport'],
                   data_dir)
  assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
  good, bad = (os.path.join(sweep_dir, f'name={n},seed=0') for n in ('sgd', 'sgdx'))
  assert os.path.exists(os.path.join(good, 'result.json'))
  assert runner.point_status(bad) == 'failed' and attempts(bad)[0]['returncode'] == 1
  assert f'FAILED name=sgdx,seed=0 (exit status 1); log: {bad}/log.txt' in result.stderr
  assert "error: unknown optimizer 'sgdx'" in result.stderr   # the log's last lines
  assert 'tiny: 1/2 finished, 1 failed' in result.stdout


def test_slurm_executor_runs_the_point_as_a_submitit_job(data_dir, tmp_path):
  """submitit's local cluster runs the same task as a SLURM array task would (one point here; the
  array of one task per point is checked on the sbatch script below)."""
  sweep_file = write_sweep_file(tmp_path, "Axis('seed', (0,))")
  sweep_dir = str(tmp_path / 'sweep')
  result = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                         f'--sweep_dir={sweep_dir}', '--executor=slurm',
                                         '--slurm_cluster=local', '--slurm_time=5', '--noreport'],
                   data_dir)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  workdir = os.path.join(sweep_dir, 'seed=0')
  assert os.path.exists(os.path.join(workdir, 'result.json'))
  (attempt,) = attempts(workdir)
  assert attempt['executor'] == 'slurm' and attempt['returncode'] == 0
  assert f'submitted seed=0 as job {attempt["job_id"]}' in result.stdout
  logs = os.listdir(os.path.join(sweep_dir, 'submitit'))
  assert f'{attempt["job_id"]}_0_log.out' in logs
  with open(os.path.join(workdir, 'log.txt')) as f:
    assert 'final eval accuracy' in f.read()


def test_slurm_executor_writes_one_sbatch_array(tmp_path):
  """With a fake sbatch on PATH: the array's script asks for one task per point on its GPUs."""
  fake = tmp_path / 'bin'
  fake.mkdir()
  (fake / 'srun').write_text('#!/usr/bin/env bash\nexit 0\n')
  (fake / 'sbatch').write_text(f'#!/usr/bin/env bash\ncp "${{@: -1}}" {tmp_path}/script.sbatch\n'
                               'echo "Submitted batch job 4242"\n')
  for path in fake.iterdir():
    path.chmod(0o755)
  env = dict(os.environ, PATH=f'{fake}:{os.environ["PATH"]}')
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', '--sweep=degradation', '--steps=64000',
       f'--sweep_dir={tmp_path}/sweep', '--executor=slurm', '--nowait', '--slurm_partition=gpu',
       '--slurm_gpus_per_task=2', '--slurm_time=600', '--slurm_array_parallelism=3'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  script = (tmp_path / 'script.sbatch').read_text()
  for line in ('#SBATCH --array=0-7%3', '#SBATCH --gpus-per-task=2', '#SBATCH --ntasks-per-node=1',
               '#SBATCH --partition=gpu', '#SBATCH --time=600'):
    assert line in script, script
  assert 'submitted net=resnet,depth=56,seed=0 as job 4242_7' in result.stdout


# ---------------------------------------------------------------------------------------------
# Report from hand-written workdirs (no training)


def _write_lines(path: str, records: list[dict]) -> None:
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def test_report_reads_partial_sweeps_and_counts_a_step_logged_twice_once(data_dir, tmp_path):
  sweep = definitions.with_overrides(definitions.SWEEPS['degradation'], steps=6)
  points = {p.name: p for p in definitions.expand(sweep)}
  sweep_dir = str(tmp_path / 'sweep')
  runner.write_sweep_record(sweep, list(points.values()), sweep_dir)
  from configs import default
  config = json.loads(default.get_config().to_json())
  config['model'] = {'name': 'resnet_cifar', 'depth': 20, 'residual': False}
  # plain-20 finished; resumed after step 4 was logged: steps 4 (train, validation, eval) twice.
  done = os.path.join(sweep_dir, 'net=plain,depth=20,seed=0')
  os.makedirs(done)
  runner.write_json(os.path.join(done, 'config.json'), config)
  train = lambda step, acc: {'step': step, 'split': 'train', 'accuracy': acc, 'loss': 1.0,
                             'images_per_sec': 100.0}
  evaluation = lambda split, step, acc: {'step': step, 'split': split, 'accuracy': acc, 'loss': 1.0}
  _write_lines(os.path.join(done, 'metrics.jsonl'), [
      train(2, 0.5), evaluation('validation', 2, 0.6), evaluation('eval', 2, 0.55),
      train(4, 0.1), evaluation('validation', 4, 0.1), evaluation('eval', 4, 0.1),   # replaced
      train(4, 0.7), evaluation('validation', 4, 0.8), evaluation('eval', 4, 0.75),
      train(6, 0.9), evaluation('validation', 6, 0.7), evaluation('eval', 6, 0.85)])
  runner.write_json(os.path.join(done, 'result.json'), {
      'step': 6, 'eval': {'accuracy': 0.85}, 'validation': {'accuracy': 0.7}})
  runner.write_json(os.path.join(done, runner.POINT_RECORD), {'attempts': [
      {'number': 1, 'end': 20.0, 'wall_seconds': 10.0, 'returncode': None},
      {'number': 2, 'end': 40.0, 'wall_seconds': 5.0, 'returncode': 0}]})
  # resnet-20 still running at step 2; plain-32 failed; the other five never started.
  running = os.path.join(sweep_dir, 'net=resnet,depth=20,seed=0')
  os.makedirs(running)
  _write_lines(os.path.join(running, 'metrics.jsonl'), [train(2, 0.4), evaluation('eval', 2, 0.45)])
  with open(os.path.join(running, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 4, "split": "tr')   # a line being written
  failed = os.path.join(sweep_dir, 'net=plain,depth=32,seed=0')
  os.makedirs(failed)
  runner.write_json(os.path.join(failed, runner.POINT_RECORD), {'attempts': [
      {'number': 1, 'end': 3.0, 'wall_seconds': 2.0, 'returncode': 1}]})
  with open(os.path.join(failed, 'log.txt'), 'w') as f:
    f.write('=== attempt 1\nerror: something named the fix\n')

  result = run_cli('experiments.report', [sweep_dir], data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(sweep_dir, 'results.json')) as f:
    results = json.load(f)
  by_name = {p['name']: p for p in results['points']}
  point = by_name['net=plain,depth=20,seed=0']
  assert point['status'] == 'finished' and point['step'] == 6
  assert [s for s, _ in point['curves']['train']] == [2, 4, 6]
  assert point['curves']['eval'][1] == [4, pytest.approx(0.25)]             # the later record
  assert point['final_train_error'] == pytest.approx(0.1)
  assert point['final_test_error'] == pytest.approx(0.15)
  assert point['best_validation_error'] == pytest.approx(0.2) and point['best_validation_step'] == 4
  assert point['test_error_at_best_validation'] == pytest.approx(0.25)
  assert point['final_validation_error'] == pytest.approx(0.3)
  assert point['wall_seconds'] == pytest.approx(15.0) and point['attempts'] == 2
  assert point['params'] == CIFAR_RESNET20_PARAMS and point['macs'] > 0
  assert by_name['net=resnet,depth=20,seed=0']['status'] == 'interrupted'
  assert by_name['net=resnet,depth=20,seed=0']['final_test_error'] == pytest.approx(0.55)
  assert by_name['net=plain,depth=32,seed=0']['status'] == 'failed'
  assert sum(p['status'] == 'pending' for p in results['points']) == 5
  settings = {(s['values']['net'], s['values']['depth']): s for s in results['settings']}
  assert len(settings) == 8 and settings[('plain', 20)]['complete']
  assert not settings[('resnet', 20)]['complete'] and settings[('resnet', 20)]['step'] == 2
  with open(os.path.join(sweep_dir, 'results.md')) as f:
    markdown = f.read()
  assert '1 of 8 runs finished' in markdown and 'error: something named the fix' in markdown
  assert f'log `{failed}/log.txt`' in markdown
  with open(os.path.join(sweep_dir, 'results.csv')) as f:
    assert len(f.read().strip().splitlines()) == 1 + 8
  assert is_png(os.path.join(sweep_dir, 'curves.png'))
  assert is_png(os.path.join(sweep_dir, 'final_error.png'))
  assert set(hparams_sessions(os.path.join(sweep_dir, 'tensorboard'))) == {
      '.', 'net=plain,depth=20,seed=0', 'net=resnet,depth=20,seed=0'}
  # Run again: the same files, params from the workdir's cache (no error on a second pass).
  assert run_cli('experiments.report', [sweep_dir], data_dir).returncode == 0


# ---------------------------------------------------------------------------------------------
# Definitions, printing and the CLI (no training)


def _resolved_config(point: definitions.Point):
  """The config cnn_jax.main would build from this point's flags (the real flag parsing)."""
  from absl import flags
  from ml_collections import config_flags
  argv = ['main', *point.main_args('/tmp/unused')]
  values = flags.FlagValues()
  # The override flags (--config.X) are defined from the argv that will be parsed.
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=True,
                                  sys_argv=argv)
  flags.DEFINE_string('workdir', None, '', flag_values=values)
  values(argv)
  return values.config


@pytest.fixture
def in_repo(monkeypatch):
  """Config paths in commands are relative to the repository root, where cnn_jax.main runs."""
  monkeypatch.chdir(REPO)


@pytest.mark.parametrize('name', sorted(definitions.SWEEPS))
def test_every_registered_sweep_expands_to_valid_commands(name, in_repo):
  sweep = definitions.SWEEPS[name]
  for steps in (sweep.steps, sweep.paper_steps):
    points = definitions.expand(definitions.with_overrides(sweep, steps=steps, seeds=2))
    assert len(points) == 2 * len(definitions.expand(sweep))
    assert len({p.name for p in points}) == len(points)
    accepted = definitions.recipe_arguments(sweep.config_file)
    for point in points:
      _, _, args = point.config.partition(':')
      assert {a.partition('=')[0] for a in args.split(',') if a} <= accepted.names
      if not os.path.exists(os.path.join(REPO, sweep.config_file)):
        continue  # a recipe still to land: its argument names are all that can be checked
      config = _resolved_config(point)
      assert config.num_train_steps == steps and config.seed == point.values['seed']
      for key, value in point.values.items():
        if key.startswith('config.'):
          node = config
          for part in key.split('.')[1:]:
            node = node[part]
          assert node == value


def test_registered_grids_vary_what_their_papers_vary(in_repo):
  degradation = {p.name: _resolved_config(p).model
                 for p in definitions.expand(definitions.SWEEPS['degradation'])}
  assert degradation['net=plain,depth=56,seed=0'].residual is False
  assert degradation['net=resnet,depth=32,seed=0'].depth == 32
  survival = [_resolved_config(p).model.survival_prob_last
              for p in definitions.expand(definitions.SWEEPS['stochastic_depth'])]
  assert survival == [1.0, 0.8, 0.5]
  sweep = definitions.SWEEPS['depth_vs_width']
  widths = [(p.config, p.name) for p in definitions.expand(sweep)]
  assert widths[0] == (f'configs/fashion_mnist.py:model=wrn-40-1,steps={sweep.steps}',
                       'depth=40,width=1,seed=0')


def test_print_executor_prints_every_command_and_runs_nothing(tmp_path):
  result = run_cli('experiments.sweep', ['--sweep=degradation', '--executor=print', '--steps=800',
                                         f'--sweep_dir={tmp_path}/s', '--slurm_partition=gpu'])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  commands = [line for line in lines if ' -m cnn_jax.main ' in line]
  sbatch = [line for line in lines if ' sbatch ' in line]
  assert len(commands) == 8 and len(sbatch) == 8
  workdir = f'{tmp_path}/s/net=plain,depth=20,seed=0'
  fixed = ' '.join(f'--{key}={definitions.format_value(value)}'
                   for key, value in definitions.SWEEPS['degradation'].fixed.items())
  assert commands[0] == (f'mkdir -p {workdir} && python -m cnn_jax.main '
                         f'--config=configs/fashion_mnist.py:model=plain20,steps=800 '
                         f'--workdir={workdir} {fixed} --config.seed=0 >> {workdir}/log.txt 2>&1')
  assert sbatch[-1].endswith(
      '--partition=gpu --output={0}/slurm-%j.out launch/slurm.sbatch '
      '--config=configs/fashion_mnist.py:model=resnet56,steps=800 --workdir={0} {1} '
      '--config.seed=0'.format(f'{tmp_path}/s/net=resnet,depth=56,seed=0', fixed))
  assert not os.path.exists(f'{tmp_path}/s')


def test_cli_reports_mistakes_in_one_line(tmp_path):
  cases = {('--sweep=degradatoin',): "error: unknown sweep 'degradatoin'. Did you mean degradation?",
           ('--sweep=smoke', '--parallel=0'): 'error: --parallel must be >= 1, not 0.',
           ('--sweep=smoke', '--parallel=two'): 'error: flag --parallel=two:',
           ('--sweep=degradation', '--set=modle=resnet20', '--executor=print'):
               'error: sweep degradation: modle is neither a recipe argument of '
               'configs/fashion_mnist.py',
           ('--sweep=smoke', '--train_size=100', '--executor=print'):
               'error: sweep smoke: its config takes no training subset (--train_size).'}
  for args, message in cases.items():
    result = run_cli('experiments.sweep', [*args, f'--sweep_dir={tmp_path}/s'])
    assert result.returncode == 1 and result.stderr.startswith(message), (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  listing = run_cli('experiments.sweep', ['--list'])
  assert listing.returncode == 0
  for name in definitions.SWEEPS:
    assert f'\n{name}  (' in '\n' + listing.stdout
  assert 'Fig. 6' in listing.stdout and '--steps=64000' in listing.stdout


def test_a_workdir_run_with_other_flags_is_refused_before_anything_starts(tmp_path):
  sweep_file = write_sweep_file(tmp_path, "Axis('seed', (0, 1))")
  sweep_dir = tmp_path / 'sweep'
  first = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                        f'--sweep_dir={sweep_dir}', '--executor=print'])
  assert first.returncode == 0
  point = definitions.expand(definitions.load_file(sweep_file)[0])[1]
  workdir = str(sweep_dir / point.name)
  runner.prepare(point, workdir)
  record = runner.read_json(os.path.join(workdir, runner.POINT_RECORD))
  record['args'] = [a.replace('num_train_steps=4', 'num_train_steps=8') for a in record['args']]
  runner.write_json(os.path.join(workdir, runner.POINT_RECORD), record)
  result = run_cli('experiments.sweep', [f'--sweep_file={sweep_file}', '--sweep=tiny',
                                         f'--sweep_dir={sweep_dir}'])
  assert result.returncode == 1
  assert result.stderr.startswith(f'error: {workdir} was run with other flags '
                                  f'(--config.num_train_steps=8 now --config.num_train_steps=4)')
  assert not os.path.exists(os.path.join(workdir, 'log.txt'))
  assert not os.path.exists(str(sweep_dir / 'seed=0' / 'log.txt'))


def test_cores_are_split_evenly_and_children_told_their_thread_count():
  assert runner.core_slots([0, 1], 2) == [(0,), (1,)]
  assert runner.core_slots([0, 1, 2, 3, 4], 2) == [(0, 1, 2), (3, 4)]
  assert runner.core_slots([0, 1], 3) == [(0,), (1,), (0,)]   # more runs than cores: shared
  assert runner.core_slots([0, 1, 2, 3], 1) == [(0, 1, 2, 3)]
  one = runner.thread_env({'XLA_FLAGS': '--xla_backend_optimization_level=0', 'HOME': '/h'}, 1)
  assert one['TF_NUM_INTRAOP_THREADS'] == one['TF_NUM_INTEROP_THREADS'] == '1'
  # XLA flags are part of the compilation cache's key: kept as they are, so runs share compiles.
  assert one['XLA_FLAGS'] == '--xla_backend_optimization_level=0' and one['HOME'] == '/h'
  assert runner.thread_env({}, 2)['OMP_NUM_THREADS'] == '2'


def test_zipped_axes_labels_and_seeds_expand_as_documented():
  sweep = definitions.Sweep(
      name='t', doc='d', config='configs/fashion_mnist.py',
      axes=(definitions.Zip({'depth': (40, 16), 'width': (1, 2)}),
            definitions.Axis('config.optimizer.learning_rate', (0.1,))),
      derived={'model': 'wrn-{depth}-{width}'}, fixed={'validation': 1000},
      plot=definitions.Plot(x='width'), steps=100, cpu_budget='', paper_steps=1,
      paper_budget='', train_size=512)
  points = definitions.expand(definitions.with_overrides(sweep, seeds=2))
  assert [p.name for p in points] == [
      'depth=40,width=1,learning_rate=0.1,seed=0', 'depth=40,width=1,learning_rate=0.1,seed=1',
      'depth=16,width=2,learning_rate=0.1,seed=0', 'depth=16,width=2,learning_rate=0.1,seed=1']
  assert points[3].config == 'configs/fashion_mnist.py:model=wrn-16-2,validation=1000,steps=100,train_size=512'
  assert points[3].overrides == ('--config.optimizer.learning_rate=0.1', '--config.seed=1')
  with pytest.raises(definitions.SweepError, match='must not overlap'):
    definitions.expand(definitions.with_overrides(sweep, settings={'depth': '28'}))
  with pytest.raises(definitions.SweepError, match='same number'):
    definitions.Zip({'depth': (40, 16), 'width': (1,)})


def test_a_local_attempt_runs_pinned_and_is_logged_and_recorded(tmp_path):
  workdir = str(tmp_path / 'point')
  os.makedirs(workdir)
  cores = sorted(os.sched_getaffinity(0))[-1:]
  command = [sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)), '
             'os.environ["TF_NUM_INTRAOP_THREADS"]); raise SystemExit(3)']
  attempt = runner.Attempt('p', workdir, command, runner.thread_env(os.environ, 1), 'local', cores)
  assert attempts(workdir)[0]['end'] is None   # recorded before it ends
  entry = attempt.finish(attempt.wait())
  assert entry['returncode'] == 3 and entry['cores'] == cores and entry['wall_seconds'] >= 0
  assert attempts(workdir) == [entry] and runner.point_status(workdir) == 'failed'
  with open(os.path.join(workdir, 'log.txt')) as f:
    log = f.read()
  assert f'\n{cores} 1\n' in log and 'ended with exit status 3' in log
