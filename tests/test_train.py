"""The train loop end to end: accuracy on digits, data parallelism, resume, bad input."""
import dataclasses
import glob
import json
import logging
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ConfigError, evaluate, executables, train
from cnn_jax import workdir as workdir_lib
from cnn_jax.data import LABEL_MASK, pipeline
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
  # cnn_jax.evaluate reads the workdir's config and newest checkpoint and scores exactly what
  # training scored, writing nothing into the workdir.
  before = sorted(os.listdir(workdir))
  scored = run_main([f'--workdir={workdir}', f'--output={tmp_path / "metrics.json"}'],
                    data_dir=data_dir, as_users_run=True, module='cnn_jax.evaluate')
  assert scored.returncode == 0, scored.stderr[-3000:]
  with open(tmp_path / 'metrics.json') as f:
    metrics = json.load(f)
  assert metrics['step'] == evals[-1]['step']
  assert metrics['eval']['accuracy'] == pytest.approx(evals[-1]['accuracy'], abs=1e-6)
  assert f'top-1 {evals[-1]["accuracy"]:.4f}' in scored.stdout
  assert sorted(os.listdir(workdir)) == before
  # Overrides say how to evaluate (here: the split); the recipe of the trained run cannot change.
  config = workdir_lib.load_config(workdir)
  config.data.data_dir, config.data.eval_split = data_dir, 'test[:50]'
  evaluate.check_overrides(workdir_lib.load_config(workdir), config)
  assert evaluate.evaluate(config, workdir)['eval']['num_examples'] == 50
  config.model.name = 'resnet20_cifar'
  with pytest.raises(ConfigError, match=r'cannot change config\.model\.name.*init_from'):
    evaluate.check_overrides(workdir_lib.load_config(workdir), config)


def test_eight_devices_give_the_same_loss_curve_as_one(data_dir, tmp_path):
  args = ['--config=configs/digits_resnet.py:8',
          '--config.data.train_ops=resize(16)|normalize', '--config.data.eval_ops=resize(16)|normalize',
          '--config.num_train_steps=12', '--config.log_every_steps=1', '--config.batch_size=32']
  curves = {}
  # BatchNorm over the global batch (default, None), and over groups of 4 examples, one group per
  # device as the papers' per-GPU statistics. The two curves compared step by step compile with
  # the default XLA flags (at optimisation level 0 they part sooner); the grouped run, which only
  # has to differ, with the tests' faster-compiling flags.
  for devices, group in ((1, None), (8, None), (8, 4)):
    workdir = str(tmp_path / f'd{devices}_g{group}')
    group_flag = [f'--config.model.bn_group_size={group}'] if group else []
    result = run_main(args + [f'--workdir={workdir}', *group_flag],
                      devices=devices, data_dir=data_dir, as_users_run=group is None)
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
    (dict(eval_symmetries=4), r'config.eval_symmetries=4 must be 1 \(off\) or 8'),
    (dict(eval_symmetries=8), r'eval_symmetries=8 needs single square eval images with one class '
                              r'per point .* got 32x32x1 and 10 classes: set --config.eval_symmetries=1'),
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


# ---------------------------------------------------------------------------------------------
# Board evaluation: 8 symmetries, masked accuracies (synthetic batches, a hand-built model)


def _dihedral(board: np.ndarray, t: int) -> np.ndarray:
  """Transform ``t`` of cnn_jax.data.symmetry, written with numpy's own rotations."""
  turned = np.rot90(board, t % 4)
  return np.swapaxes(turned, 0, 1) if t >= 4 else turned


class _PlaneZero(nn.Module):
  """Logits = plane 0 of the board, flattened: equivariant under every symmetry, unless a bias
  per point (different at every point) breaks it."""
  position_bias: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    scale = self.param('scale', nn.initializers.ones, ())
    logits = scale * x[..., 0].reshape(x.shape[0], -1)
    return logits + 0.3 * jnp.arange(logits.shape[-1]) if self.position_bias else logits


def _board_setup(tmp_path, symmetries=1, position_bias=False, size=5, batch=8):
  info = pipeline.DatasetInfo(num_classes=size * size, image_shape=(size, size, 2), num_train=64,
                              num_eval=batch)
  setup = train.build(small_config(str(tmp_path), batch_size=batch, eval_symmetries=symmetries),
                      info=info)
  return dataclasses.replace(setup, model=_PlaneZero(position_bias))


def _run_eval(setup, batch):
  from cnn_jax import parallel
  state = train.init_state(setup, 0)
  sums = parallel.replicate(train.zero_eval_sums(masked=LABEL_MASK in batch), setup.mesh)
  return jax.device_get(train.make_eval_step(setup)(state, sums,
                                                    parallel.global_batch(batch, setup.mesh)))


def _board_batch(size=5, batch=8, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.normal(size=(batch, size, size, 2)).astype(np.float32),
          'label': rng.integers(0, size * size, batch).astype(np.int32),
          'mask': np.array([1] * (batch - 2) + [0, 0], np.float32)}


def test_dihedral_views_and_their_inverse_mapping_are_exact():
  board = np.arange(5 * 5, dtype=np.float32).reshape(5, 5)
  boards = np.stack([board, 100 + board])[..., None]  # two boards: views stay board by board
  views = np.asarray(train.dihedral_views(jnp.asarray(boards)))
  assert views.shape == (16, 5, 5, 1)
  for b in range(2):
    for t in range(8):
      np.testing.assert_array_equal(views[8 * b + t, ..., 0], _dihedral(boards[b, ..., 0], t))
  # Each view's per-point values, moved back, are the original board's exactly.
  back = np.asarray(train.from_dihedral_views(jnp.asarray(views.reshape(16, 25))))
  assert back.shape == (2, 8, 25)
  for t in range(8):
    np.testing.assert_array_equal(back[0, t], board.ravel())
    np.testing.assert_array_equal(back[1, t], 100 + board.ravel())


def test_eight_fold_eval_averages_the_views_policies_on_the_original_board(tmp_path):
  batch = _board_batch()
  batch[LABEL_MASK] = (np.random.default_rng(1).random((8, 25)) < 0.5).astype(np.uint8)
  # An equivariant model predicts the same from every view: 8-fold eval changes nothing.
  single, eightfold = (_run_eval(_board_setup(tmp_path, s), batch) for s in (1, 8))
  assert set(single) == set(eightfold) == set(train.EVAL_SUMS + train.MASKED_EVAL_SUMS)
  for name in single:
    np.testing.assert_allclose(eightfold[name], single[name], rtol=1e-5, err_msg=name)
  # One that is not: the score is the mean of the 8 views' probabilities, mapped back.
  biased = _run_eval(_board_setup(tmp_path, 8, position_bias=True), batch)
  plane = batch['image'][..., 0]
  probs = []
  for t in range(8):
    view_logits = np.stack([_dihedral(p, t).ravel() for p in plane]) + 0.3 * np.arange(25)
    view_probs = np.exp(view_logits) / np.exp(view_logits).sum(-1, keepdims=True)
    where = np.stack([_dihedral(np.arange(25).reshape(5, 5), t).ravel()] * 8)
    back = np.empty_like(view_probs)
    np.put_along_axis(back, where, view_probs, axis=1)  # view point i is original point where[i]
    probs.append(back)
  mean = np.mean(probs, axis=0)
  loss = -np.log(mean[np.arange(8), batch['label']])
  np.testing.assert_allclose(biased['loss'], np.sum(loss * batch['mask']), rtol=1e-5)
  assert biased['correct'] == np.sum((mean.argmax(-1) == batch['label']) * batch['mask'])
  assert abs(biased['loss'] - _run_eval(_board_setup(tmp_path, 1, True), batch)['loss']) > 1e-3


def test_masked_accuracy_ranks_only_the_allowed_classes(tmp_path):
  setup = _board_setup(tmp_path)
  batch = _board_batch()
  logits = batch['image'][..., 0].reshape(8, 25)
  rng = np.random.default_rng(2)
  allowed = (rng.random((8, 25)) < 0.3).astype(np.uint8)
  allowed[0] = 0
  allowed[0, [3, 7]] = 1  # fewer allowed classes than top-5
  batch['label'][0] = 3
  allowed[1, batch['label'][1]] = 0  # a disallowed label is never a hit
  plain = _run_eval(setup, batch)
  assert set(plain) == set(train.EVAL_SUMS)  # no label_mask: the sums and metrics of before
  masked = _run_eval(setup, dict(batch, label_mask=allowed))
  for name in train.EVAL_SUMS:
    assert masked[name] == plain[name]
  ranked = np.argsort(-np.where(allowed == 1, logits, -np.inf), axis=1)
  label_allowed = allowed[np.arange(8), batch['label']] == 1
  top1 = (ranked[:, 0] == batch['label']) & label_allowed
  top5 = np.any(ranked[:, :5] == batch['label'][:, None], axis=1) & label_allowed
  assert top5[0] and not top5[1]
  assert masked['masked_correct'] == np.sum(top1 * batch['mask'])
  assert masked['masked_correct_top5'] == np.sum(top5 * batch['mask'])
  assert masked['masked_correct_top5'] > masked['correct_top5']  # masking helps here: teeth
  metrics = train.eval_metrics(masked)
  assert list(metrics) == ['loss', 'accuracy', 'top5_accuracy', 'masked_accuracy',
                           'masked_top5_accuracy', 'num_examples']
  assert metrics['masked_accuracy'] == masked['masked_correct'] / 6
  assert list(train.eval_metrics(plain)) == ['loss', 'accuracy', 'top5_accuracy', 'num_examples']


def test_evaluate_reports_masked_accuracies_when_the_batches_carry_a_label_mask(tmp_path,
                                                                                monkeypatch):
  setup = _board_setup(tmp_path, 8)
  batches = [_board_batch(seed=i) for i in range(2)]
  for batch in batches:
    batch[LABEL_MASK] = np.ones((8, 25), np.uint8)
  monkeypatch.setattr(pipeline, 'eval_batches', lambda *a, **k: iter(batches))
  config = small_config(str(tmp_path), batch_size=8, eval_symmetries=8)
  metrics = train.evaluate(setup, config, train.make_eval_step(setup), train.init_state(setup, 0))
  assert metrics['num_examples'] == 12
  # everything allowed: the masked accuracies are the plain ones
  assert metrics['masked_accuracy'] == metrics['accuracy']
  assert metrics['masked_top5_accuracy'] == metrics['top5_accuracy']
