"""The paper recipes in configs/: their numbers against the papers, their arguments, runlocal.

A recipe's paper numbers are written once, as its file's PAPER (configs/common.py, Paper): the
tests check that get_config resolves to them, that the docstring states them and that the README's
recipe table states the same targets. The first tests only read configs (fast). The smoke tests at the end train every recipe file's
default variant with ``runlocal`` for 2 steps and one evaluation on digits, in this process, at
the recipe's input size.
"""
import importlib
import json
import math
import os
import re

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import common
from cnn_jax import train
from cnn_jax.data import DATASETS, ops

# Slowest smoke run first (README, Tests and their cost): conftest starts the long tests first.
SMOKE_ORDER = ['stochastic_depth_cifar10', 'densenet_imagenet', 'preact_resnet_cifar',
               'densenet_bc_cifar', 'vgg_imagenet', 'resnext_imagenet', 'googlenet_imagenet',
               'resnet_imagenet', 'resnext29_cifar', 'alexnet_imagenet', 'wrn_cifar',
               'zfnet_imagenet', 'resnet_cifar10', 'fashion_mnist', 'lenet5_mnist']
RECIPES = sorted(common.recipes(),
                 key=lambda name: SMOKE_ORDER.index(name) if name in SMOKE_ORDER else 0)
# The configs in configs/ that are not paper recipes (no PAPER): demos on digits.
DEMOS = {'default', 'digits_resnet', 'transfer'}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module(name: str):
  return importlib.import_module(f'configs.{name}')


def get(name: str, args: str = ''):
  return module(name).get_config(args)


def flat(config) -> dict:
  out = {}
  def walk(node, prefix):
    for key, value in node.items():
      if hasattr(value, 'items'):
        walk(value, f'{prefix}{key}.')
      else:
        out[f'{prefix}{key}'] = value
  walk(config, '')
  return out


# Every (recipe, args) that a recipe's PAPER.variants lists, '' (the default) included.
VARIANTS = [(name, args) for name in RECIPES for args in sorted({'', *module(name).PAPER.variants})]


def pipeline(dataset: str) -> dict:
  """What the shared pipelines of configs/common.py (cifar_data, imagenet_data) resolve to."""
  if dataset in ('cifar10', 'cifar100'):  # the CIFAR augmentation of the ResNet era
    return {'data.train_ops': f"pad_random_crop(4) | flip_lr | normalize('{dataset}')",
            'data.eval_ops': f"normalize('{dataset}')", 'data.cache': True}
  if dataset == 'imagenet2012':
    return {'data.cache': False, 'data.eval_split': ''}
  return {}


@pytest.mark.parametrize('name, args', VARIANTS, ids=lambda x: str(x) or 'default')
def test_recipe_matches_the_paper(name, args):
  """get_config(args) resolves to the PAPER data of the recipe's file (and the shared pipeline)."""
  paper = module(name).PAPER.fields(args)
  assert 'data.name' in paper, f'{name}: PAPER names no data set'
  expected = {**pipeline(paper['data.name']), **paper}
  config = flat(get(name, args))
  wrong = {key: (config.get(key, '<missing>'), value) for key, value in expected.items()
           if config.get(key, '<missing>') != value}
  assert not wrong, f'{name}:{args} (got, paper): {wrong}'


@pytest.mark.parametrize('name, args', VARIANTS, ids=lambda x: str(x) or 'default')
def test_every_listed_variant_builds_with_runlocal(name, args, data_dir):
  """Model, optimiser, schedule and data of every variant above pass the trainer's checks."""
  config = get(name, ','.join(filter(None, [args, 'runlocal'])))
  if not hasattr(module(name), 'RUNLOCAL_DATA'):   # a recipe's own local data keep their dir
    config.data.data_dir = data_dir
  setup = train.build(config)
  assert setup.total_steps == 2
  assert setup.model.num_classes == DATASETS[config.data.name].num_classes


def test_every_config_with_get_config_is_a_recipe_or_a_demo():
  """common.recipes() lists the configs that define PAPER; every other config is a digits demo."""
  configs = {file[:-3] for file in os.listdir(os.path.join(REPO, 'configs'))
             if file.endswith('.py') and hasattr(module(file[:-3]), 'get_config')}
  assert set(RECIPES) == configs - DEMOS and not DEMOS & set(RECIPES)
  # A recipe missing from SMOKE_ORDER runs its smoke test first (its cost is unknown).
  assert set(SMOKE_ORDER) <= set(RECIPES)


# ---------------------------------------------------------------------------------------------
# The docstrings and the README state the PAPER data

# A recipe docstring states a figure once, e.g. "lr 0.1", "weight decay 1e-4", "32k", "64,000",
# "60x10^4", "10M iterations". Each number, with its multiplier.
NUMBER = re.compile(r'(?<![\d.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?)(k\b|M\b|x10\^(\d+))?')
# Variant fields whose numbers the docstring must state too (the recipe's: all of them).
KEY_FIELDS = ('optimizer.learning_rate', 'optimizer.momentum', 'optimizer.weight_decay',
              'batch_size', 'schedule.decay_factor', 'schedule.warmup_lr', 'model.dropout_rate')


def stated_numbers(text: str) -> list[float]:
  numbers = []
  for digits, suffix, power in NUMBER.findall(text):
    value = float(digits.replace(',', ''))
    if power:
      value *= 10 ** int(power)
    elif suffix:
      value *= {'k': 1e3, 'M': 1e6}[suffix]
    numbers.append(value)
  return numbers


def paper_numbers(key: str, value) -> list[float]:
  """The numbers a docstring states for one field: a long regular schedule by its period."""
  if isinstance(value, bool) or not isinstance(value, (int, float, tuple)):
    return []
  values = list(value) if isinstance(value, tuple) else [value]
  steps = {b - a for a, b in zip(values, values[1:])}
  if len(values) > 4 and len(steps) == 1:  # "every 8 epochs"
    values = [values[0]]
  return [v for v in values if v != 0]


def states(numbers: list[float], key: str, value: float) -> bool:
  # A decay factor reads "divided by 10" as well as "x0.96"; a rounded factor, "0.376".
  candidates = [value, 1 / value] if key == 'schedule.decay_factor' else [value]
  return any(math.isclose(n, c, rel_tol=1e-3) for n in numbers for c in candidates)


def figure_in(figure: str, text: str) -> bool:
  """The figure ('27.0/8.8'), not a longer number containing it ('27.05')."""
  text = re.sub(r'\s*/\s*', '/', text)
  return re.search(rf'(?<![\d.]){re.escape(figure)}(?!\d)', text) is not None


def target_paragraphs(doc: str) -> str:
  return '\n'.join(p for p in re.split(r'\n\s*\n', doc) if 'target' in p.lower())


@pytest.mark.parametrize('name', RECIPES)
def test_docstring_states_the_paper_targets_and_numbers(name):
  """Each target figure of PAPER in the docstring's target paragraph, each number of its recipe
  (and each key number of its variants) somewhere in the docstring."""
  paper, doc = module(name).PAPER, module(name).__doc__
  targets = target_paragraphs(doc)
  assert paper.targets and targets, f'{name}: no paper target'
  missing = [f'{label}: {figure}' for label, figure in paper.targets.items()
             if not figure_in(figure, targets)]
  assert not missing, f'{name}: targets missing from the docstring: {missing}'
  numbers = stated_numbers(doc)
  facts = [*paper.recipe.items(),
           *((key, value) for fields in paper.variants.values() for key, value in fields.items()
             if key in KEY_FIELDS)]
  missing = sorted({f'{key}={value}' for key, field in facts for value in paper_numbers(key, field)
                    if not states(numbers, key, value)})
  assert not missing, f'{name}: numbers of PAPER missing from the docstring: {missing}'


def readme_targets() -> dict[str, str]:
  """The "paper target" column of README.md's recipe table, by recipe."""
  with open(os.path.join(REPO, 'README.md')) as f:
    section = f.read().split('\n## Paper recipes', 1)[1].split('\n## ', 1)[0]
  rows, column = {}, None
  for line in section.splitlines():
    cells = [cell.strip() for cell in re.split(r'(?<!\\)\|', line)[1:-1]]
    if column is None and any(cell.startswith('paper target') for cell in cells):
      column = next(i for i, cell in enumerate(cells) if cell.startswith('paper target'))
    elif column is not None:
      if not line.startswith('|'):
        break  # the table's end
      if match := re.search(r'configs/(\w+)\.py', line):
        rows[match.group(1)] = cells[column]
  return rows


def test_readme_recipe_table_has_every_recipe():
  assert sorted(readme_targets()) == sorted(RECIPES)


@pytest.mark.parametrize('name', RECIPES)
def test_readme_paper_target_column_matches_paper(name):
  """Every target figure of PAPER in the recipe's README row, and no other error figure there."""
  cell = readme_targets()[name]
  paper = module(name).PAPER
  missing = [figure for figure in paper.targets.values() if not figure_in(figure, cell)]
  assert not missing, f'{name}: README lacks {missing}: {cell!r}'
  known = {number for figure in paper.targets.values() for number in figure.split('/')}
  unknown = set(re.findall(r'\d+\.\d+', cell)) - known
  assert not unknown, f'{name}: README states {sorted(unknown)}, not in PAPER.targets: {cell!r}'


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_uses_the_paper_data_and_a_docstring_with_command_and_target(name):
  module = importlib.import_module(f'configs.{name}')
  doc = module.__doc__
  assert f'--config=configs/{name}.py' in doc and 'runlocal' in doc
  assert 'target' in doc.lower() and 'Departures' in doc
  config = get(name)
  assert config.data.name in DATASETS and config.data.name != 'digits'
  assert config.model.name != 'lenet5' or name == 'lenet5_mnist'
  for spec in (config.data.train_ops, config.data.eval_ops):
    ops.parse(spec)  # valid op names, arguments and order


def test_googlenet_schedule_cuts_four_percent_every_eight_epochs():
  from cnn_jax import optim
  config = get('googlenet_imagenet')
  steps_per_epoch = 1000
  schedule = optim.make_schedule(config, steps_per_epoch, 250 * steps_per_epoch)
  for epoch in (0, 7, 8, 16, 100, 249):
    assert float(schedule(epoch * steps_per_epoch)) == pytest.approx(0.01 * 0.96 ** (epoch // 8),
                                                                     rel=1e-5)


def test_resnet110_warms_up_at_001_for_400_iterations_then_follows_the_steps():
  from cnn_jax import optim
  config = get('resnet_cifar10', '110')
  schedule = optim.make_schedule(config, 390, 64_000)
  lr = lambda step: float(schedule(step))
  assert lr(0) == lr(399) == pytest.approx(0.01)
  assert lr(400) == lr(31_999) == pytest.approx(0.1)
  assert lr(32_000) == pytest.approx(0.01) and lr(48_000) == pytest.approx(0.001)


def test_lenet_schedule_keeps_the_paper_boundaries_and_overall_decrease():
  from cnn_jax import optim
  config = get('lenet5_mnist')
  schedule = optim.make_schedule(config, 60_000, 20 * 60_000)
  assert float(schedule(0)) == pytest.approx(5e-4)
  assert float(schedule(13 * 60_000)) == pytest.approx(1e-5, rel=1e-4)
  assert float(schedule(2 * 60_000 - 1)) == pytest.approx(5e-4)
  assert float(schedule(2 * 60_000)) < 5e-4


def test_imagenet_ten_crop_option_gives_ten_views():
  for name in ('alexnet_imagenet', 'zfnet_imagenet', 'vgg_imagenet', 'googlenet_imagenet',
               'resnet_imagenet', 'densenet_imagenet', 'resnext_imagenet'):
    config = get(name, 'ten_crop')
    assert 'ten_crop(' in config.data.eval_ops
    assert 'ten_crop' not in get(name).data.eval_ops


# ---------------------------------------------------------------------------------------------
# Arguments


def test_arguments_positional_named_and_flags():
  assert get('resnet_cifar10', '110').model.depth == 110
  assert get('resnet_cifar10', 'depth=110').model.depth == 110
  assert get('resnet_cifar10', ' 44 , plain ').model.residual is False
  assert get('resnet_cifar10', '44,plain=false').model.residual is True
  assert get('resnet_cifar10').model.depth == 20


@pytest.mark.parametrize('name, args, message', [
    ('resnet_cifar10', 'depth=21', r'depth=.21. is not valid; valid values: 20, 32, 44, 56, 110, 1202'),
    ('resnet_cifar10', 'deep', r"unknown argument 'deep' for resnet_cifar10: neither an argument "
                               r"name nor a valid depth; valid values: 20, 32, 44, 56, 110, 1202\. "
                               r"Valid arguments: depth=20\|32\|44\|56\|110\|1202 \(positional, "
                               r"first\), plain \(flag\), runlocal \(flag\)"),
    ('resnet_cifar10', '110,56', r"unknown argument '56'"),
    ('resnet_cifar10', '110,depth=56', r"'depth' is given twice"),
    ('resnet_cifar10', 'depth', r"'depth' needs a value"),
    ('vgg_imagenet', 'F', r'nor a valid variant; valid values: A, A-LRN, B, C, D, E'),
    ('vgg_imagenet', 'A-LRN,bn', r'A-LRN has no BatchNorm variant'),
    ('wrn_cifar', 'dropout=high', r'dropout=.high. is not valid'),
    ('wrn_cifar', 'dataset=svhn', r'valid values: cifar10, cifar100'),
    ('alexnet_imagenet', 'runlocal=maybe', r'runlocal=.maybe. is not valid'),
    ('lenet5_mnist', 'modern', r"unknown argument 'modern' for lenet5_mnist\. Valid arguments: runlocal"),
    ('fashion_mnist', 'resnet21x', r"neither an argument name nor a valid model.*Models: lenet5, "
     r"resnetD or plainD"),
    ('fashion_mnist', 'plain20,survival=0.5', r'survival=0.5 needs a residual net'),
    ('fashion_mnist', 'survival=0', r'survival=0.0 must be in \(0, 1\]'),
    ('fashion_mnist', 'steps=-5', r'must be >= 0'),
    ('fashion_mnist', 'pad=-1', r'steps, train_size, validation and pad must be >= 0'),
    ('fashion_mnist', 'lenet5,pad=2', r'pad=2 is for the ResNets and Wide ResNets'),
])
def test_bad_arguments_raise_a_value_error_naming_the_valid_ones(name, args, message):
  with pytest.raises(ValueError, match=message):
    get(name, args)


def test_config_file_arguments_through_the_command_line_flag():
  """``--config=configs/X.py:ARGS`` reaches get_config as one string."""
  from absl import flags
  from ml_collections import config_flags
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', 'configs/default.py', flag_values=values)
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  values(['main', f'--config={here}/configs/resnet_cifar10.py:110,runlocal'])
  assert values.config.model.depth == 110 and values.config.data.name == 'digits'
  assert values.config.schedule.warmup == 400
  # Fields whose default is None take a value from the command line too.
  argv = ['main', f'--config={here}/configs/fashion_mnist.py:lenet5', '--config.data.data_dir=/d',
          '--config.data.source_dir=/s', '--config.data.manual_dir=/m',
          '--config.schedule.warmup_lr=0.01']
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', 'configs/default.py', flag_values=values, sys_argv=argv)
  values(argv)
  assert (values.config.data.data_dir, values.config.data.source_dir,
          values.config.data.manual_dir, values.config.schedule.warmup_lr) == ('/d', '/s', '/m', 0.01)


# ---------------------------------------------------------------------------------------------
# runlocal


@pytest.mark.parametrize('name', RECIPES)
def test_runlocal_keeps_model_optimiser_schedule_and_input_size(name):
  full, local = flat(get(name)), flat(get(name, 'runlocal'))
  for key in full:
    if key.startswith(('model.', 'optimizer.', 'schedule.', 'loss.')) and key != 'model.bn_group_size':
      assert local[key] == full[key], key
  own_data = getattr(module(name), 'RUNLOCAL_DATA', None)   # data digits cannot stand in for
  if own_data:
    assert {key: local[key] for key in own_data} == own_data
    assert local['data.name'] == full['data.name']
  else:
    assert local['data.name'] == 'digits'
  assert local['data.eval_split'] == common.RUNLOCAL_EVAL_SPLIT
  assert local['batch_size'] == common.RUNLOCAL_BATCH and local['num_train_steps'] == 2
  assert local['log_every_steps'] == 1
  crops = [op for op in full['data.eval_ops'].split('|') if 'normalize' not in op]
  assert all(op.strip() in local['data.eval_ops'] for op in crops)  # same crop, same size


def test_apply_sets_flat_fields_and_refuses_a_misspelt_one():
  from cnn_jax import ConfigError
  config = common.base_config()
  common.apply(config, {'optimizer.learning_rate': 0.2, 'model.depth': 8})  # models take any field
  assert config.optimizer.learning_rate == 0.2 and config.model.depth == 8
  with pytest.raises(ConfigError, match=r"'optimizer.learning_rte' does not exist"):
    common.apply(config, {'optimizer.learning_rte': 0.1})


def test_runlocal_replaces_the_fused_jpeg_crop_and_tiles_grey_to_rgb():
  assert common.local_ops('decode_inception_crop(224) | flip_lr', 256, True) == \
      'decode | resize(256) | inception_crop(224) | flip_lr'
  assert common.local_ops('decode | random_crop(224)', 256, True) == \
      'decode | resize(256) | random_crop(224)'
  assert common.local_ops("normalize('cifar10')", 32, True) == "to_rgb | resize(32) | normalize('cifar10')"
  assert common.local_ops('pad(2) | normalize', 28, False) == 'resize(28) | pad(2) | normalize'


# ---------------------------------------------------------------------------------------------
# The ops the recipes added


def _run(spec, image, seed=0):
  return ops.apply(ops.parse(spec), tf.convert_to_tensor(image), tf.constant([0, seed], tf.int64)).numpy()


def test_to_rgb_pad_random_crop_and_random_scale_ops():
  grey = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
  rgb = _run('to_rgb', grey)
  assert rgb.shape == (4, 4, 3) and (rgb == grey).all()
  assert (_run('to_rgb', rgb) == rgb).all()
  padded = _run('pad(2)', grey)
  assert padded.shape == (8, 8, 1) and padded[2:6, 2:6].tolist() == grey.tolist()
  assert padded.sum() == grey.sum()
  image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
  crops = [_run('random_crop(16)', image, seed) for seed in range(20)]
  assert all(c.shape == (16, 16, 3) for c in crops) and len({c.tobytes() for c in crops}) > 10
  assert any((image[i:i + 16, j:j + 16] == crops[0]).all() for i in range(25) for j in range(45))
  shorts = {min(_run('resize_small_random(20, 30)', image, seed).shape[:2]) for seed in range(60)}
  assert min(shorts) >= 20 and max(shorts) <= 30 and len(shorts) > 6
  assert _run('resize_small_random(20, 30)', image).shape[1] > 20  # aspect ratio kept


# ---------------------------------------------------------------------------------------------
# Smoke: every recipe file, default variant, runlocal, in this process

# Each takes 5-60 s on 2 CPU cores, mostly compiling the train step (README, Tests and their cost).
@pytest.mark.parametrize('name', RECIPES)
def test_runlocal_smoke_trains_two_steps_and_evaluates(name, data_dir, tmp_path, monkeypatch):
  config = get(name, 'runlocal')
  config.data.data_dir = data_dir
  initial = {}
  if name == 'googlenet_imagenet':  # keeps the initial parameters instead of initialising again
    init_state = train.init_state

    def init_state_kept(setup, seed, loaded=None):  # a host copy: the train step donates buffers
      state = init_state(setup, seed, loaded)
      initial['params'] = jax.device_get(state.params)
      return state

    monkeypatch.setattr(train, 'init_state', init_state_kept)
  result = train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    records = [json.loads(line) for line in f]
  train_losses = [r['loss'] for r in records if r['split'] == 'train']
  evals = [r for r in records if r['split'] == 'eval']
  assert len(train_losses) == 2 and all(math.isfinite(loss) for loss in train_losses), train_losses
  assert len(evals) == 1 and evals[0]['num_examples'] == 2
  assert math.isfinite(result['loss']) and result['num_examples'] == 2
  if name == 'googlenet_imagenet':  # the auxiliary classifiers learn from their own losses
    final = train.latest_state(config, str(tmp_path))
    heads = [k for k in initial['params'] if k.startswith('aux')]
    assert int(final.step) == 2 and len(heads) == 2, heads
    for head in heads:  # biases: weight decay skips them, so only the head's loss moves them
      assert any(not np.array_equal(a, b) for a, b in zip(
          jax.tree.leaves(initial['params'][head]),
          jax.tree.leaves(jax.device_get(final.params[head]))) if a.ndim == 1), head
