"""Faults a long run meets, made for real where they can be: kill -9, SIGTERM, damaged checkpoints,
divergence, a full disk, a second copy of the run; and the user's mistakes, each one line."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

from cnn_jax import ConfigError, RunError, checkpoint, reporting, run_files, train, workdir
from cnn_jax.data import pipeline
from tests.conftest import REPO, run_main, small_config

# LeNet-5 on digits: 22 steps an epoch at batch 64.
STEPS, EVERY = 30, 10
FLAGS = [f'--config.num_train_steps={STEPS}', f'--config.checkpoint_every_steps={EVERY}',
         '--config.log_every_steps=1', '--config.eval_every_epochs=0.5', '--config.keep_checkpoints=5']


def _config(data_dir, **overrides):
  return small_config(data_dir, **{'num_train_steps': STEPS, 'checkpoint_every_steps': EVERY,
                                   'log_every_steps': 1, 'eval_every_epochs': 0.5,
                                   'keep_checkpoints': 5, **overrides})


def _records(path):
  """metrics.jsonl without its wall-clock field."""
  return [{k: v for k, v in r.items() if k != 'images_per_sec'}
          for r in reporting.read_records(os.path.join(path, 'metrics.jsonl'))]


def _events(path):
  """(tag, step) -> value of every scalar in the workdir's TensorBoard event files."""
  seen = {}
  for name in tf.io.gfile.glob(os.path.join(path, 'tensorboard', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(name):
      for value in event.summary.value:
        key = (value.tag, event.step)
        assert key not in seen, f'{key} logged twice'
        seen[key] = float(tf.make_ndarray(value.tensor))
  return seen


def _assert_same_state(a, b):
  assert int(a.step) == int(b.step)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope='module')
def reference(data_dir, tmp_path_factory):
  """An uninterrupted run: its workdir and final state."""
  path = str(tmp_path_factory.mktemp('reference'))
  train.train_and_evaluate(_config(data_dir), path)
  return path, train.latest_state(_config(data_dir), path)


def _start(args, data_dir):
  env = dict(os.environ, TFDS_DATA_DIR=data_dir)  # the XLA flags of this process: same executables
  return subprocess.Popen([sys.executable, '-m', 'cnn_jax.main', *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_until(process, step):
  """Reads the run's progress lines until it reports ``step``."""
  for line in process.stdout:
    if line.startswith('step ') and int(line.split()[1].split('/')[0]) >= step:
      return
  raise AssertionError(f'the run ended before step {step}: {process.stderr.read()[-2000:]}')


def _kill_during_a_save(process, directory, timeout=60) -> str:
  """SIGKILL the moment a save is in flight: orbax writes a step into a temporary directory and
  renames it when complete. Returns the temporary directory's name."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    names = os.listdir(directory) if os.path.isdir(directory) else []
    partial = [name for name in names if '.orbax-checkpoint-tmp' in name]
    if partial:
      process.kill()
      process.wait(timeout=60)
      return partial[0]
  raise AssertionError(f'no save seen in flight in {directory} within {timeout} s')


def test_killed_and_preempted_run_resumes_to_the_uninterrupted_state_and_metrics(
    data_dir, tmp_path, reference):
  """kill -9 during a save from a random step on, then SIGTERM at another step, then the same
  command to the end."""
  rng = random.Random(11)
  kill_from = rng.randint(EVERY + 1, 2 * EVERY - 1)
  term_at = rng.randint(2 * EVERY + 1, STEPS - 2)
  args = FLAGS + [f'--workdir={tmp_path}']

  # A save every step (checkpointing may change on resume), so that one is in flight to kill.
  killed = _start(args + ['--config.checkpoint_every_steps=1'], data_dir)
  _run_until(killed, kill_from)
  partial = _kill_during_a_save(killed, tmp_path / 'checkpoints')
  assert partial in os.listdir(tmp_path / 'checkpoints')  # killed before orbax's rename

  preempted = _start(args, data_dir)
  _run_until(preempted, term_at)
  preempted.send_signal(signal.SIGTERM)
  _, stderr = preempted.communicate(timeout=120)
  assert preempted.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('error: stopped by SIGTERM at step ') and 'run the same command' in last
  stopped_at = int(last.split('at step ')[1].split(':')[0])
  assert str(stopped_at) in os.listdir(tmp_path / 'checkpoints')  # a checkpoint off the schedule

  finished = _start(args, data_dir)
  stdout, stderr = finished.communicate(timeout=120)
  assert finished.returncode == 0, stderr[-2000:]
  assert f'resumed from step {stopped_at}' in stdout
  assert not [name for name in os.listdir(tmp_path / 'checkpoints') if 'tmp' in name]

  path, state = reference
  _assert_same_state(train.latest_state(_config(data_dir), str(tmp_path)), state)
  assert _records(tmp_path) == _records(path)  # every step once, with the same values
  events, expected = _events(tmp_path), _events(path)
  wall_clock = {key for key in expected if key[0] == 'train/images_per_sec'}
  assert events.keys() == expected.keys()
  assert {k: v for k, v in events.items() if k not in wall_clock} == {
      k: v for k, v in expected.items() if k not in wall_clock}


def _corrupt(step_dir, how):
  files = sorted((os.path.getsize(os.path.join(root, name)), os.path.join(root, name))
                 for root, _, names in os.walk(step_dir) for name in names)
  for size, name in files:  # every file: whichever orbax reads first must fail
    with open(name, 'r+b') as f:
      if how == 'truncated':
        f.truncate(size // 2)
      else:
        f.write(os.urandom(max(size, 16)))


@pytest.mark.parametrize('how', ['garbage', 'truncated'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(data_dir, tmp_path, reference,
                                                                    capfd, how):
  config = _config(data_dir)
  shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
  with open(tmp_path / 'result.json') as f:
    assert json.load(f)['step'] == STEPS
  _corrupt(tmp_path / 'checkpoints' / str(STEPS), how)
  # The remains of a save cut short by kill -9: orbax's temporary directory, never renamed.
  shutil.copytree(tmp_path / 'checkpoints' / '10', tmp_path / 'checkpoints' / '40.orbax-checkpoint-tmp-1')
  config.num_train_steps = 40
  capfd.readouterr()
  train.train_and_evaluate(config, str(tmp_path))
  err = capfd.readouterr().err
  warnings = [line for line in err.splitlines() if line.startswith('warning:')]
  assert len(warnings) == 1 and warnings[0].startswith(f'warning: checkpoint {STEPS} cannot be '
                                                       'restored (') and 'trying the previous' in warnings[0]
  assert os.listdir(tmp_path / 'checkpoints_unreadable') == [str(STEPS)]  # kept for a post-mortem
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))  # no temporary left
  assert steps[-1] == 40 and STEPS in steps  # retrained from 20 through 30
  records = _records(tmp_path)
  assert [r['step'] for r in records if r['split'] == 'train'] == list(range(1, 41))
  # The records of the set-aside steps 21-30 are kept beside metrics.jsonl, not lost.
  dropped = reporting.read_records(str(tmp_path / run_files.DROPPED_METRICS))
  assert [r['step'] for r in dropped if r['split'] == 'train'] == list(range(21, 31))


def test_a_checkpoint_from_before_log_sums_were_saved_still_resumes(tmp_path, capfd):
  """Workdirs written before the log interval's sums were checkpointed hold the state alone: a new
  process restores their newest step, with fresh sums, instead of setting it aside."""
  config = ml_collections.ConfigDict({'checkpoint_every_steps': 10, 'keep_checkpoints': 5})
  manager = checkpoint.make_manager(str(tmp_path), config)
  for step in (10, 20):
    manager.save(step, args=ocp.args.StandardSave({'w': jnp.full(3, float(step))}))
  manager.wait_until_finished()
  manager.close()
  fresh = checkpoint.make_manager(str(tmp_path), config)  # as a new process sees it
  state, sums = checkpoint.restore_latest(fresh, str(tmp_path), {'w': jnp.zeros(3)},
                                          {'loss': jnp.zeros(())})
  np.testing.assert_array_equal(state['w'], np.full(3, 20.0))
  assert float(sums['loss']) == 0.0
  assert 'warning' not in capfd.readouterr().err
  assert not (tmp_path / run_files.UNREADABLE_CHECKPOINTS).exists()


def test_no_restorable_checkpoint_is_one_error_naming_the_directory(data_dir, tmp_path, reference):
  shutil.copytree(os.path.join(reference[0], 'checkpoints'), tmp_path / 'checkpoints')
  for step in os.listdir(tmp_path / 'checkpoints'):
    _corrupt(tmp_path / 'checkpoints' / step, 'garbage')
  with pytest.raises(RunError, match=r'no checkpoint in .*checkpoints can be restored \(steps 30, '
                                     r'20, 10, now in checkpoints_unreadable/\)'):
    train.train_and_evaluate(_config(data_dir), str(tmp_path))


def _poisoned_batches(step):
  """The pipeline, with a NaN pixel in the batch of ``step`` (1-based)."""
  real = pipeline.train_batches
  def batches(*args, start_step=0, **kwargs):
    for i, batch in enumerate(real(*args, start_step=start_step, **kwargs), start_step + 1):
      if i == step:
        batch = dict(batch, image=batch['image'].copy())
        batch['image'][0, 0, 0, 0] = np.nan
      yield batch
  return batches


def test_divergence_stops_at_its_step_and_keeps_the_finite_checkpoints(data_dir, tmp_path,
                                                                       monkeypatch):
  monkeypatch.setattr(pipeline, 'train_batches', _poisoned_batches(25))
  config = _config(data_dir, log_every_steps=5)
  with pytest.raises(RunError, match=r'not finite at step 25 .* stopped without saving; the last '
                                     r'checkpoint, step 20 in .*, is finite and kept'):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['10', '20']
  assert max(r['step'] for r in _records(tmp_path)) < 25  # nothing of step 25 is logged
  state = train.latest_state(config, str(tmp_path))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def test_skipping_nonfinite_steps_leaves_the_state_of_the_step_before(data_dir, tmp_path,
                                                                      monkeypatch, capfd):
  monkeypatch.setattr(pipeline, 'train_batches', _poisoned_batches(3))
  config = _config(data_dir, num_train_steps=3, log_every_steps=3, skip_nonfinite_steps=True)
  train.train_and_evaluate(config, str(tmp_path / 'skipped'))
  assert '1 steps skipped (non-finite)' in capfd.readouterr().out
  monkeypatch.setattr(pipeline, 'train_batches', _poisoned_batches(-1))
  config.num_train_steps = 2
  train.train_and_evaluate(config, str(tmp_path / 'two_steps'))
  skipped, two = (train.latest_state(config, str(tmp_path / n)) for n in ('skipped', 'two_steps'))
  assert int(skipped.step) == 3
  for a, b in zip(jax.tree.leaves((skipped.params, skipped.batch_stats, skipped.opt_state)),
                  jax.tree.leaves((two.params, two.batch_stats, two.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert [r['skipped_steps'] for r in _records(tmp_path / 'skipped') if r['split'] == 'train'] == [1]


def test_a_real_divergence_stops_the_run(data_dir, tmp_path):
  """At learning rate 1e6 LeNet-5's loss is not finite within a few steps, with no help from us."""
  with pytest.raises(RunError, match=r'^the loss or gradient norm is not finite at step \d+ '
                                     r'\(learning rate'):
    train.train_and_evaluate(_config(data_dir, optimizer__learning_rate=1e6), str(tmp_path))


@pytest.fixture
def small_disk(tmp_path):
  """A 1.2 MB tmpfs: room for the run's first checkpoints (about 500 KB each), not for more."""
  path = tmp_path / 'disk'
  path.mkdir()
  subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1200k', 'tmpfs', str(path)], check=True)
  try:
    yield str(path)
  finally:
    subprocess.run(['umount', '-l', str(path)], check=True)


def test_a_full_disk_stops_the_run_at_once_in_one_line(data_dir, small_disk):
  config = _config(data_dir, log_every_steps=5, keep_checkpoints=10)
  started = time.time()
  with pytest.raises(RunError) as error:
    train.train_and_evaluate(config, small_disk)
  message = str(error.value)
  assert 'No space left on device' in message and '\n' not in message, message
  assert re.search(r'failed: No space left on device; checkpoint \d+ is intact', message), message
  assert time.time() - started < 120
  shutil.rmtree(os.path.join(small_disk, 'tensorboard'))  # room to read the survivors
  state = train.latest_state(config, small_disk)
  assert state is not None and int(state.step) >= 10


@pytest.mark.parametrize('text', [
    # TensorStore's error behind a quoted path whose ':' and '"' hide the usual pattern
    'RESOURCE_EXHAUSTED: Error writing "state.rng/.zarray" in OCDBT database at local file '
    '"/tmp/d:1/checkpoints": Failed to write 8 bytes: No space left on device [os_error_code=28]',
    'RESOURCE_EXHAUSTED: Error writing "a" in "/x:y": No space left on device',
])
def test_a_full_disk_is_named_in_any_wrapping(text):
  try:
    try:
      raise RuntimeError(text)
    except RuntimeError as inner:
      raise ValueError('orbax: saving failed') from inner
  except ValueError as outer:
    assert checkpoint.cause(outer) == 'No space left on device'


def _write_lock(path, **fields):
  record = {'host': socket.gethostname(), 'pid': os.getpid(), 'token': 'x',
            'heartbeat': time.time(), **fields}
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, run_files.LOCK), 'w') as f:
    json.dump(record, f)


def test_a_second_run_in_a_locked_workdir_exits_at_once(data_dir, tmp_path):
  _write_lock(tmp_path)  # held by this live process, heartbeat now
  result = run_main(FLAGS + [f'--workdir={tmp_path}'], data_dir=data_dir)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'error: {tmp_path} is in use by pid {os.getpid()} on {socket.gethostname()}')
  assert sorted(os.listdir(tmp_path)) == [run_files.LOCK]  # nothing written, nothing trained


def test_a_stale_lock_is_taken_over_with_a_warning_and_a_lost_lock_stops_the_run(tmp_path, capfd):
  dead = subprocess.Popen(['true'])
  dead.wait()
  _write_lock(tmp_path, pid=dead.pid)
  with workdir.Lock(str(tmp_path)):
    pass
  assert f'from pid {dead.pid} on {socket.gethostname()}: its holder' in capfd.readouterr().err
  _write_lock(tmp_path, host='another-host', heartbeat=time.time() - 1000)
  with workdir.Lock(str(tmp_path)):
    pass
  assert 'its heartbeat is 1000 s old' in capfd.readouterr().err
  _write_lock(tmp_path, host='another-host')
  with pytest.raises(RunError, match='in use by pid .* on another-host'):
    workdir.Lock(str(tmp_path)).acquire()
  holder = workdir.Lock(str(tmp_path), override=True, heartbeat_seconds=0.05).acquire()
  intruder = workdir.Lock(str(tmp_path), override=True).acquire()
  time.sleep(0.3)
  with pytest.raises(RunError, match='took over'):
    holder.check()
  intruder.release()
  holder.release()
  assert not os.path.exists(tmp_path / run_files.LOCK)


def test_resuming_with_a_changed_recipe_stops_unless_accepted(data_dir, tmp_path, reference):
  shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
  config = _config(data_dir, optimizer__learning_rate=0.2, num_train_steps=STEPS + 2)
  with pytest.raises(ConfigError, match=r'change the recipe .* optimizer.learning_rate 0.05 -> 0.2\. '
                                        r'Pass the original flags'):
    train.train_and_evaluate(config, str(tmp_path))
  train.train_and_evaluate(config, str(tmp_path), allow_config_change=True)
  with open(tmp_path / f'config.step{STEPS}.json') as f:
    assert json.load(f)['optimizer']['learning_rate'] == 0.05


def test_a_field_added_since_the_run_is_no_change_at_its_default():
  from configs import default
  config = default.get_config()
  saved = json.loads(config.to_json_best_effort())
  del saved['eval_symmetries']   # a run started before the field existed
  assert workdir.config_differences(saved, config) == []
  config.eval_symmetries = 8     # the field away from its default: the run would compute otherwise
  assert workdir.config_differences(saved, config) == ["eval_symmetries '(absent)' -> 8"]


def test_a_run_saved_before_a_field_was_renamed_resumes_and_loads_under_the_new_name(tmp_path):
  from configs import default
  config = default.get_config()
  config.model.base_width = 16
  saved = json.loads(config.to_json_best_effort())
  saved['model']['width'] = saved['model'].pop('base_width')  # CifarResNet's name for it
  assert workdir.config_differences(saved, config) == []
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  loaded = workdir.load_config(str(tmp_path))
  assert loaded.model.base_width == 16 and 'width' not in loaded.model
  # a field saved as null keeps its type, so that a --config.X=... override can set it
  assert loaded.data.data_dir is None
  loaded.data.data_dir = '/data'
  with pytest.raises(TypeError):
    loaded.data.data_dir = 3


@pytest.mark.parametrize('overrides, message', [
    (dict(optimizer__learning_rate=-0.1), r'config.optimizer.learning_rate=-0.1 must be > 0'),
    (dict(num_epochs=0), r'config.num_epochs=0 trains nothing'),
    (dict(keep_checkpoints=0), r'config.keep_checkpoints=0 must be >= 1'),
    (dict(model__name='resnet_cifar', model__depth=8, model__bn_group_size=24),
     r'bn_group_size=24 must divide the batch size 64'),
    # None is the global batch; 0 (what a flag can say) names the ways to ask for it
    (dict(model__name='resnet_cifar', model__depth=8, model__bn_group_size=0),
     r'bn_group_size=0 must be a positive divisor .* None .* --config.model.bn_group_size=64 '),
])
def test_values_no_run_can_use_are_caught_before_compiling(data_dir, overrides, message):
  config = small_config(data_dir)
  config.model.unlock()
  for key, value in overrides.items():  # model fields the default config does not have
    *path, leaf = key.split('__')
    node = config
    for part in path:
      node = node[part]
    with node.unlocked():
      node[leaf] = value
  with pytest.raises(ConfigError, match=message):
    train.build(config)


def test_a_workdir_that_is_a_file_or_read_only_is_one_error(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(ConfigError, match='is a file: pass a directory'):
    workdir.check_writable(str(tmp_path / 'file'))
  with pytest.raises(ConfigError, match=r'cannot be written \(.*not a directory\)'):
    workdir.check_writable(str(tmp_path / 'file' / 'run'))


@pytest.mark.parametrize('args, line', [
    (['--config=configs/nope.py'], 'error: --config=configs/nope.py: No such file or directory; '
                                   'config files are in configs/'),
    (['--config.optimizer.learnig_rate=1'], "error: --config.optimizer.learnig_rate: the config has "
                                            "no field 'learnig_rate'; did you mean learning_rate?"),
])
def test_config_flag_mistakes_are_one_line(tmp_path, args, line):
  result = subprocess.run([sys.executable, '-m', 'cnn_jax.main', f'--workdir={tmp_path}', *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(line)
