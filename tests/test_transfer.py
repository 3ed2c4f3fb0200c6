"""Transfer (cnn_jax/transfer.py): config.init_from loads another run's variables by path,
config.trainable freezes the rest, data.train_per_class takes a class-balanced subset.

The source is one tiny ResNet workdir shared by the module: its checkpoint written by the
project's own checkpoint code (seed 1, BatchNorm statistics made non-trivial), so that nothing
here compiles a step the probe run does not need.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil

import flax.linen as nn
import jax
import numpy as np
import pytest

from cnn_jax import ConfigError, checkpoint, parallel, train, transfer
from cnn_jax import workdir as workdir_lib
from cnn_jax.data import pipeline
from cnn_jax.models import layers
from tests.conftest import small_config

TINY_RESNET = dict(model__name='resnet_cifar', model__depth=8, batch_size=8,
                   data__train_ops='resize(16) | normalize',
                   data__eval_ops='resize(16) | normalize')
SOURCE_STEP = 7
PROBE = '^fc/'
CLASSES = 12   # the probe's classifier: another shape than the source's 10 classes


def _run(config, workdir) -> str:
  """train_and_evaluate's console output."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    train.train_and_evaluate(config, workdir)
  return out.getvalue()


@pytest.fixture(scope='module')
def source(data_dir, tmp_path_factory) -> str:
  config = small_config(data_dir, seed=1, **TINY_RESNET)
  workdir = str(tmp_path_factory.mktemp('source'))
  setup = train.build(config)
  state = jax.device_get(train.init_state(setup, config.seed))
  rng = np.random.default_rng(0)
  stats = jax.tree.map(lambda x: (rng.uniform(0.5, 2.0, x.shape)).astype(x.dtype),
                       state.batch_stats)
  state = state.replace(step=np.int32(SOURCE_STEP), batch_stats=stats)
  manager = checkpoint.make_manager(workdir, config)
  checkpoint.save(manager, SOURCE_STEP, parallel.replicate(state, setup.mesh),
                  parallel.replicate(train.zero_train_sums(), setup.mesh), force=True)
  checkpoint.wait(manager)
  manager.close()
  workdir_lib.save_config(config, workdir, None, [])
  return workdir


def probe_config(data_dir, source, **overrides):
  fields = dict(num_train_steps=3, log_every_steps=3, init_from=source, trainable=PROBE,
                **TINY_RESNET)
  config = small_config(data_dir, **{**fields, **overrides})
  config.model.unlock()
  config.model.num_classes = CLASSES
  return config


@pytest.fixture(scope='module')
def probe(source, data_dir, tmp_path_factory):
  """A linear probe of the source, 3 steps: (config, workdir, console output)."""
  config = probe_config(data_dir, source)
  workdir = str(tmp_path_factory.mktemp('probe'))
  return config, workdir, _run(config, workdir)


def test_a_probe_loads_by_path_and_trains_the_classifier_alone(probe, source):
  config, workdir, output = probe
  _, before = checkpoint.load_variables(source)
  step, after = checkpoint.load_variables(workdir)
  assert step == 3
  # The table: a few lines, the classifier re-initialised for its new shape.
  table = output[output.index('init_from'):].splitlines()[:6]
  assert table[0].startswith(f'init_from {source} (resnet_cifar on digits, step {SOURCE_STEP})')
  assert table[1].split()[:2] == ['loaded', str(len(transfer.flatten(before['params'])) - 2 +
                                               len(transfer.flatten(before['batch_stats'])))]
  assert f'fc/kernel (64, 10) -> (64, {CLASSES})' in table[2] and table[2].split()[1] == '2'
  assert table[5].startswith("trainable (config.trainable='^fc/'): 2 of ")
  # Frozen parameters and their BatchNorm statistics: bit-identical to the source's after training.
  old, new = (transfer.flatten(v['params']) for v in (before, after))
  assert set(new) == set(old)
  for path in new:
    if not path.startswith('fc/'):
      np.testing.assert_array_equal(new[path], old[path], err_msg=path)
  old_stats, new_stats = (transfer.flatten(v['batch_stats']) for v in (before, after))
  assert set(new_stats) == set(old_stats)
  for path in new_stats:
    np.testing.assert_array_equal(new_stats[path], old_stats[path], err_msg=path)
  # The classifier has its new shape and moved from its initial value.
  setup = train.build(config)
  shapes = train.abstract_state(setup, config.seed)
  loaded = transfer.load(config, {'params': shapes.params, 'batch_stats': shapes.batch_stats},
                         setup.trainable)
  initial = jax.device_get(train.init_state(setup, config.seed, loaded))
  assert loaded.initialised == ('fc/bias', 'fc/kernel')
  assert new['fc/kernel'].shape == (64, CLASSES)
  assert not np.array_equal(new['fc/kernel'], initial.params['fc']['kernel'])
  # The optimiser holds momentum for the classifier alone.
  state = train.latest_state(config, workdir)
  arrays = [x.shape for x in jax.tree.leaves(state.opt_state) if x.ndim]
  assert sorted(arrays) == [(CLASSES,), (64, CLASSES)]


def test_a_run_that_has_a_checkpoint_resumes_and_never_reads_init_from(probe, data_dir,
                                                                         tmp_path):
  config, workdir, _ = probe
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed)
  config = probe_config(data_dir, str(tmp_path / 'gone'), num_train_steps=5)  # moved away
  output = _run(config, resumed)
  assert 'resumed from step 3' in output and 'init_from is not read' in output
  assert 'matched by path' not in output
  assert checkpoint.load_variables(resumed)[0] == 5


def _expected(config) -> tuple[dict, train.TrainSetup]:
  """The run's variables as shapes, and its setup: what transfer.load matches a source against."""
  setup = train.build(config)
  shapes = train.abstract_state(setup, config.seed)
  return {'params': shapes.params, 'batch_stats': shapes.batch_stats}, setup


def _one_line(error) -> str:
  message = str(error.value)
  assert '\n' not in message, message
  return message


def test_bad_sources_and_patterns_are_one_line_errors_before_compiling(
    source, data_dir, tmp_path, monkeypatch):
  # Through the entry point, which never reaches the steps.
  monkeypatch.setattr(train, 'make_steps', lambda *a: pytest.fail('compiled steps'))
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(probe_config(data_dir, str(tmp_path / 'missing')), str(tmp_path / 'w'))
  assert 'is not a directory: pass the --workdir of a trained run' in _one_line(error)
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(probe_config(data_dir, source, trainable='^fc/,^classifier/'),
                             str(tmp_path / 'w'))
  assert _one_line(error).startswith("config.trainable: '^classifier/' matches no parameter of "
                                     'resnet_cifar (regexes searched in paths such as bn1/')
  config = probe_config(data_dir, source)
  expected, setup = _expected(config)
  os.makedirs(tmp_path / 'unfinished' / 'checkpoints')
  cases = {str(tmp_path): r'holds no checkpoints/: pass the --workdir',
           str(tmp_path / 'unfinished'): r'unfinished.: no checkpoint in .*: train the run first'}
  for init_from, message in cases.items():
    config.init_from = init_from
    with pytest.raises(ConfigError) as error:
      transfer.load(config, expected, setup.trainable)
    assert re.search(message, _one_line(error)), error.value
  config.init_from, config.init_from_skip = source, '^fc/,^classifier/'
  with pytest.raises(ConfigError) as error:
    transfer.load(config, expected, setup.trainable)
  assert _one_line(error).startswith("config.init_from_skip: '^classifier/' matches no variable")
  # A layer initialised afresh but frozen would stay random.
  config.init_from_skip = ''
  with pytest.raises(ConfigError) as error:
    transfer.load(config, expected, transfer.make_trainable('^stage3', expected['params'], 'r'))
  assert _one_line(error).startswith('config.trainable freezes fc/bias, fc/kernel, which '
                                     'config.init_from does not load')
  # A source of another architecture: nothing fits.
  lenet = probe_config(data_dir, source, trainable='', model__name='lenet5',
                       data__eval_ops='resize(32) | normalize')
  del lenet.model['depth']
  with pytest.raises(ConfigError) as error:
    transfer.load(lenet, _expected(lenet)[0])
  assert 'none of its' in _one_line(error) and 'fits lenet5 by path and shape' in str(error.value)


def test_init_from_takes_a_checkpoint_directory_and_skips_what_it_is_told(source, data_dir):
  config = probe_config(data_dir, os.path.join(source, 'checkpoints', str(SOURCE_STEP)),
                        init_from_skip='^stage3', trainable='')
  config.model.num_classes = 10  # the source's classifier fits and is loaded
  setup = train.build(config)
  shapes = train.abstract_state(setup, config.seed)
  loaded = transfer.load(config, {'params': shapes.params, 'batch_stats': shapes.batch_stats})
  paths = {path for _, path in loaded.arrays}
  assert 'fc/kernel' in paths and not any(p.startswith('stage3') for p in paths)
  assert loaded.initialised and all(p.startswith('stage3') for p in loaded.initialised)
  assert 'stage3_block1 (config.init_from_skip)' in loaded.table.splitlines()[2]
  assert len(loaded.table.splitlines()) == 5


def test_modules_are_listed_with_numbered_runs_collapsed():
  paths = [f'stage{s}_block{b}/conv1/kernel' for s in (1, 2) for b in (1, 2, 3)]
  assert transfer.modules(['bn1/scale', 'conv1/kernel', *paths, 'fc/bias']) == (
      'bn1, conv1, stage1_block1-3, stage2_block1-3, fc')
  assert transfer.modules(['fc1/kernel', 'fc3/kernel']) == 'fc{1,3}'


def test_a_probe_runs_frozen_batchnorm_in_inference_mode(data_dir):
  """In a linear probe's training forward pass the frozen layers compute what evaluation does."""
  config = small_config(data_dir, trainable=PROBE, **TINY_RESNET)
  setup = train.build(config)
  state = jax.device_get(train.init_state(setup, 0))
  variables = {'params': state.params,
               'batch_stats': jax.tree.map(lambda x: x + 0.5, state.batch_stats)}
  images = np.random.default_rng(0).normal(size=(4,) + setup.info.image_shape).astype(np.float32)

  @functools.partial(jax.jit, static_argnums=(2, 3))
  def forward(variables, images, train_mode: bool, probe: bool):
    with setup.trainable.forward() if probe else contextlib.nullcontext():
      return setup.model.apply(variables, images, train=train_mode, mutable=['batch_stats'])

  logits_eval = jax.jit(setup.model.apply, static_argnames='train')(variables, images,
                                                                      train=False)
  logits, new = forward(variables, images, True, True)
  np.testing.assert_allclose(logits, logits_eval, rtol=1e-6, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, new['batch_stats'], variables['batch_stats'])
  logits_full, _ = forward(variables, images, True, False)  # everything trains: batch statistics
  assert np.abs(logits_full - logits_eval).max() > 1e-3


class _DropoutNet(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = layers.BatchNorm(name='bn')(nn.Dense(8, name='body')(x), train)
    x = nn.Dropout(0.5)(x, deterministic=not train)   # its input is frozen features
    self.sow('intermediates', 'features', x)
    x = nn.Dropout(0.5)(nn.Dense(8, name='mid')(x), deterministic=not train)
    return nn.Dense(3, name='head')(x)


@pytest.mark.parametrize('patterns, second_dropout_on', [('^head/', False),
                                                         ('^mid/,^head/', True)])
def test_dropout_on_frozen_features_is_off_and_after_trainable_layers_on(patterns,
                                                                         second_dropout_on):
  net, x = _DropoutNet(), np.ones((16, 4), np.float32)
  variables = jax.jit(net.init)(jax.random.PRNGKey(0), x)
  trainable = transfer.make_trainable(patterns, variables['params'], 'net')
  evaluation, seen = jax.jit(functools.partial(net.apply, mutable=['intermediates']))(variables, x)

  @jax.jit
  def probe_forward(variables, x):
    with trainable.forward():
      return net.apply(variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(1)},
                       mutable=['intermediates', 'batch_stats'])
  out, sown = probe_forward(variables, x)
  np.testing.assert_array_equal(sown['intermediates']['features'],
                                seen['intermediates']['features'])
  assert np.array_equal(out, evaluation) != second_dropout_on


def test_train_per_class_takes_the_first_examples_of_each_class(data_dir):
  config = small_config(data_dir)
  config.data.train_per_class = 3
  spec, builder = pipeline.get_builder(config.data)
  split = pipeline.split_names(config.data, spec, builder)['train']
  labels = pipeline._labels(builder, spec, split)
  assert np.bincount(labels).tolist() == [3] * spec.num_classes
  assert pipeline.dataset_info(config.data).num_train == 3 * spec.num_classes
  everything = pipeline._labels(builder, spec, spec.train_split)
  firsts = np.sort(np.concatenate([np.flatnonzero(everything == c)[:3]
                                   for c in range(spec.num_classes)]))
  np.testing.assert_array_equal(labels, everything[firsts])
  config.data.train_per_class = 1000
  with pytest.raises(ConfigError, match=r'train_per_class=1000: a class .* has only \d+ examples'):
    pipeline.split_names(config.data, spec, builder)
  config.data.train_size = 100
  with pytest.raises(ConfigError, match=r'train_size=100 and train_per_class=1000 both'):
    pipeline.split_names(config.data, spec, builder)


def test_transfer_recipes_differ_only_in_what_they_load_and_train():
  from configs import transfer as recipe
  probe, finetune, scratch = (recipe.get_config(f'{r},shots=1,source=/run')
                              for r in recipe.RECIPES)
  assert (probe.init_from, probe.init_from_skip, probe.trainable) == ('/run', PROBE, PROBE)
  assert (finetune.init_from, finetune.init_from_skip, finetune.trainable) == ('/run', PROBE, '')
  assert (scratch.init_from, scratch.trainable) == ('', '')
  for config in (probe, finetune, scratch):
    assert config.data.train_per_class == 1 and config.batch_size == 10
    assert config.model == probe.model and config.data == probe.data
  assert recipe.get_config('model=lenet5').trainable == '^output/'
  assert recipe.get_config('finetune,shots=all').data.train_per_class == 0
