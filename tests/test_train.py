"""The train loop end to end: accuracy on digits, data parallelism, resume, bad input."""
import glob
import json
import logging
import os

import jax
import numpy as np
import pytest

from cnn_jax import ConfigError, executables, train
from cnn_jax.data import pipeline
from tests.conftest import run_main, small_config

# A small BatchNorm + residual net: exercises BatchNorm state in every test below, quickly.
TINY_RESNET = dict(model__name='resnet_cifar', model__depth=8, data__train_ops='resize(16) | normalize',
                   data__eval_ops='resize(16) | normalize')


def _read_metrics(workdir, split):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['split'] == split]


def test_default_config_trains_digits_to_97_percent(data_dir, tmp_path):
  """The README's quick start: the CLI trains LeNet-5 on digits and writes all its outputs."""
  workdir = str(tmp_path / 'default')
  result = run_main([f'--workdir={workdir}'], data_dir=data_dir, as_users_run=True)
  assert result.returncode == 0, result.stderr[-3000:]
  last = result.stdout.strip().splitlines()[-1]
  assert last.startswith('final eval accuracy:'), result.stdout[-2000:]
  assert float(last.split()[3]) >= 0.97
  evals = _read_metrics(workdir, 'eval')
  assert evals[-1]['accuracy'] >= 0.97 and evals[-1]['num_examples'] == 360
  train_records = _read_metrics(workdir, 'train')
  assert train_records[-1]['loss'] < train_records[0]['loss']
  assert {'loss', 'accuracy', 'learning_rate', 'images_per_sec'} <= set(train_records[0])
  assert os.listdir(os.path.join(workdir, 'checkpoints'))
  assert glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['name'] == 'lenet5'
  # The events hold the scalars a user looks for in TensorBoard.
  import tensorflow as tf
  tags = set()
  for path in glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {'train/loss', 'train/accuracy', 'train/learning_rate', 'train/images_per_sec',
          'eval/loss', 'eval/accuracy', 'eval/top5_accuracy'} <= tags
  # Running the same command again resumes at the end instead of training again.
  again = run_main([f'--workdir={workdir}'], data_dir=data_dir, as_users_run=True)
  assert 'resumed from step' in again.stdout and again.stdout.strip().splitlines()[-1] == last


def test_eight_devices_give_the_same_loss_curve_as_one(data_dir, tmp_path):
  args = ['--config=configs/digits_resnet.py:8',
          '--config.data.train_ops=resize(16)|normalize', '--config.data.eval_ops=resize(16)|normalize',
          '--config.num_train_steps=12', '--config.log_every_steps=1', '--config.batch_size=32']
  curves = {}
  # Default XLA flags: at optimisation level 0 the 1- and 8-device curves part sooner.
  # BatchNorm over the global batch (default, None), and over groups of 4 examples, one group per
  # device as the papers' per-GPU statistics.
  for devices, group in ((1, None), (8, None), (8, 4)):
    workdir = str(tmp_path / f'd{devices}_g{group}')
    group_flag = [f'--config.model.bn_group_size={group}'] if group else []
    result = run_main(args + [f'--workdir={workdir}', *group_flag],
                      devices=devices, data_dir=data_dir, as_users_run=True)
    assert result.returncode == 0, result.stderr[-3000:]
    curves[devices, group] = np.array([r['loss'] for r in _read_metrics(workdir, 'train')])
  assert len(curves[1, None]) == 12
  # The two runs sum in different orders, and training amplifies the rounding about tenfold every two
  # steps (measured: 1e-7 at step 5, 3e-5 at step 8, 1.2e-3 to 2.8e-3 at step 12 on two CPUs), so
  # the first six steps must agree to float32 rounding and the rest only closely.
  np.testing.assert_allclose(curves[8, None][:6], curves[1, None][:6], rtol=1e-5)
  np.testing.assert_allclose(curves[8, None], curves[1, None], rtol=2e-2)
  # Per-device statistics train too, on a curve that differs from the first step on.
  assert np.all(np.isfinite(curves[8, 4])) and curves[8, 4][-1] < curves[8, 4][0]
  assert np.all(np.abs(curves[8, 4][:6] / curves[8, None][:6] - 1) > 1e-3)


class _Interrupt(Exception):
  pass


def test_interrupted_and_resumed_equals_uninterrupted(data_dir, tmp_path, monkeypatch):
  config = small_config(data_dir, num_train_steps=30, checkpoint_every_steps=10, batch_size=32,
                        log_every_steps=10, **TINY_RESNET)
  config.model.unlock()
  config.model.survival_prob_last = 0.5  # stochastic depth: the dropout RNG must resume too
  reference = str(tmp_path / 'reference')
  train.train_and_evaluate(config, reference)

  real_batches = pipeline.train_batches
  def crashing_batches(*args, **kwargs):  # dies while fetching the batch of step 26
    for i, batch in enumerate(real_batches(*args, **kwargs)):
      if i == 25:
        raise _Interrupt()
      yield batch
  interrupted = str(tmp_path / 'interrupted')
  monkeypatch.setattr(pipeline, 'train_batches', crashing_batches)
  with pytest.raises(_Interrupt):
    train.train_and_evaluate(config, interrupted)
  monkeypatch.setattr(pipeline, 'train_batches', real_batches)
  assert sorted(os.listdir(os.path.join(interrupted, 'checkpoints'))) == ['10', '20']
  resumed = train.train_and_evaluate(config, interrupted)

  states = [train.latest_state(config, w) for w in (reference, interrupted)]
  assert int(states[0].step) == int(states[1].step) == 30
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert resumed['accuracy'] == _read_metrics(reference, 'eval')[-1]['accuracy']


def test_multi_view_eval_scores_the_mean_of_the_views_logits(data_dir):
  """Ten-crop evaluation: a [batch, 10, H, W, C] batch is scored on its per-example mean logits."""
  from cnn_jax import parallel
  setup = train.build(small_config(data_dir, batch_size=8))
  state = train.init_state(setup, 0)
  batch_size, num_views, shape = 8, 10, setup.info.image_shape
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(batch_size, num_views) + shape).astype(np.float32),
           'label': rng.integers(0, setup.info.num_classes, batch_size).astype(np.int32),
           'mask': np.array([1, 1, 1, 1, 1, 1, 0, 0], np.float32)}
  eval_step = train.make_eval_step(setup)

  def run_eval(images):
    sums = parallel.replicate(train._zero_metrics(train.EVAL_SUMS), setup.mesh)
    return jax.device_get(eval_step(state, sums, parallel.global_batch(dict(batch, image=images),
                                                                       setup.mesh)))

  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  views = setup.model.apply(variables, batch['image'].reshape((-1,) + shape), train=False)
  logits = np.asarray(views).reshape(batch_size, num_views, -1).mean(axis=1)
  loss = np.asarray(train.cross_entropy(logits, batch['label']))
  sums = run_eval(batch['image'])
  np.testing.assert_allclose(sums['loss'], np.sum(loss * batch['mask']), rtol=1e-5)
  assert sums['correct'] == np.sum((logits.argmax(-1) == batch['label']) * batch['mask'])
  assert sums['count'] == 6
  # One view alone scores differently: the ten views all count.
  assert abs(run_eval(batch['image'][:, 4])['loss'] - sums['loss']) > 1e-4


def test_every_step_of_training_lowers_the_loss_of_a_batchnorm_net(data_dir, tmp_path):
  config = small_config(data_dir, num_train_steps=40, batch_size=64, log_every_steps=10,
                        optimizer__learning_rate=0.05, **TINY_RESNET)
  train.train_and_evaluate(config, str(tmp_path))
  losses = [r['loss'] for r in _read_metrics(str(tmp_path), 'train')]
  assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize('overrides,message', [
    (dict(model__name='resnet21'), r"unknown model 'resnet21'.*Valid names: .*lenet5"),
    (dict(model__name='resnet_cifar', model__depth=21), r'6n\+2.*20 and 26'),
    (dict(data__name='cifar11'), r"unknown data set 'cifar11'.*Valid names: cifar10, cifar100, digits"),
    (dict(optimizer__name='adagrad'), r"unknown optimizer 'adagrad'.*Valid names: sgd, adam, adamw"),
    (dict(schedule__name='step'), r"unknown schedule 'step'.*Valid names: constant, piecewise"),
    (dict(batch_size=5000), r'larger than the 1437 training examples'),
])
def test_bad_config_is_caught_before_compiling(data_dir, overrides, message):
  with pytest.raises(ConfigError, match=message):
    train.build(small_config(data_dir, **overrides))


def test_cli_reports_bad_input_in_one_line(data_dir, tmp_path):
  """Batch 12 on 8 devices: one line naming the fix, no traceback, non-zero exit."""
  result = run_main([f'--workdir={tmp_path}', '--config.batch_size=12'], devices=8, data_dir=data_dir)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      'error: batch size 12 does not divide evenly over 8 devices: use a multiple of 8 (e.g. 8).')


def test_cli_reports_a_bad_config_argument_in_one_line(data_dir, tmp_path):
  result = run_main([f'--workdir={tmp_path}', '--config=configs/resnet_cifar10.py:21'], data_dir=data_dir)
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: ValueError: unknown argument '21' for resnet_cifar10")


@pytest.mark.parametrize('final_test_only', [False, True])
def test_validation_split_is_evaluated_apart_and_drives_the_plateau_schedule(data_dir, tmp_path,
                                                                             monkeypatch,
                                                                             final_test_only):
  """Model selection reads the held-out validation split; the test split is reported beside it,
  or only at the end."""
  config = small_config(data_dir, num_train_steps=20, batch_size=110, log_every_steps=10,
                        eval_every_epochs=1, schedule__name='plateau', schedule__warmup=0,
                        data__validation_size=337,  # 1,100 training examples: 10 steps an epoch
                        final_test_only=final_test_only)
  fed = []
  make_plateau_step = train.make_plateau_step
  def recording_plateau_step(setup):
    step = make_plateau_step(setup)
    def record(state, error):
      fed.append(float(error))
      return step(state, error)
    return record
  monkeypatch.setattr(train, 'make_plateau_step', recording_plateau_step)
  result = train.train_and_evaluate(config, str(tmp_path))
  validation, test = _read_metrics(tmp_path, 'validation'), _read_metrics(tmp_path, 'eval')
  assert [r['step'] for r in validation] == [10, 20]
  assert [r['step'] for r in test] == ([20] if final_test_only else [10, 20])
  assert {r['num_examples'] for r in validation} == {337} and {r['num_examples'] for r in test} == {360}
  np.testing.assert_allclose(fed, [1 - r['accuracy'] for r in validation], rtol=1e-6)
  with open(tmp_path / 'result.json') as f:
    final = json.load(f)
  assert final['step'] == 20 and final['eval']['accuracy'] == result['accuracy']
  assert final['validation']['accuracy'] == validation[-1]['accuracy']


def test_a_second_start_loads_its_steps_from_the_compilation_cache(data_dir, tmp_path, caplog,
                                                                   compilation_cache, monkeypatch):
  """``config.compilation_cache_dir``: a new workdir of the same config reads the first start's
  train and eval executables and neither traces nor compiles them; '' turns the cache off, and a
  directory that cannot be one is a one-line ConfigError naming the fix."""
  config = small_config(data_dir, num_train_steps=2, log_every_steps=1, batch_size=16,
                        data__eval_split='test[:16]', compilation_cache_dir=str(tmp_path / 'cache'),
                        seed=1)
  try:
    train.train_and_evaluate(config, str(tmp_path / 'first'))
    executables.wait()
    written = os.listdir(tmp_path / 'cache')
    assert not any(name.startswith('jit_train_step-') for name in written), written
    stored = os.listdir(tmp_path / 'cache' / executables.SUBDIRECTORY)
    assert {name.split('-')[0] for name in stored} == {'train_step', 'eval_step'}, stored
    loaded = []
    load = executables._load
    monkeypatch.setattr(executables, '_load', lambda path: loaded.append(path) or load(path))
    config.seed = 2  # the seed reaches no program: its steps are the first start's
    with caplog.at_level(logging.DEBUG, logger='jax._src.compiler'):
      first_again = train.train_and_evaluate(config, str(tmp_path / 'second'))
    assert sorted(os.path.basename(p).split('-')[0] for p in loaded) == ['eval_step', 'train_step']
    compiled = [r.getMessage() for r in caplog.records if 'train_step' in r.getMessage()]
    assert not compiled, compiled
    assert first_again['num_examples'] == 16
    config.compilation_cache_dir = ''
    assert train.use_compilation_cache(config) is None
    assert jax.config.jax_compilation_cache_dir is None
    (tmp_path / 'a_file').write_text('')
    config.compilation_cache_dir = str(tmp_path / 'a_file' / 'cache')
    with pytest.raises(ConfigError, match=r"cannot be used .*set a writable directory, or ''"):
      train.use_compilation_cache(config)
  finally:  # the session's cache again, for the tests after this one
    config.compilation_cache_dir = None
    assert train.use_compilation_cache(config) == compilation_cache
