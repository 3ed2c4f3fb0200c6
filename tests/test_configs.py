"""The paper recipes in configs/: their numbers against the papers, their arguments, runlocal.

The first tests only read configs (fast). The smoke tests at the end train every recipe file's
default variant with ``runlocal`` for 2 steps and one evaluation on digits, in this process, at
the recipe's input size.
"""
import importlib
import json
import math
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import common
from cnn_jax import train
from cnn_jax.data import DATASETS, ops

# Slowest smoke run first (README, Tests and their cost): conftest starts the long tests first.
RECIPES = ['stochastic_depth_cifar10', 'densenet_imagenet', 'preact_resnet_cifar',
           'densenet_bc_cifar', 'vgg_imagenet', 'resnext_imagenet', 'googlenet_imagenet',
           'resnet_imagenet', 'resnext29_cifar', 'alexnet_imagenet', 'wrn_cifar', 'zfnet_imagenet',
           'resnet_cifar10', 'fashion_mnist', 'lenet5_mnist']


def get(name: str, args: str = ''):
  return importlib.import_module(f'configs.{name}').get_config(args)


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


SGD = {'optimizer.name': 'sgd', 'optimizer.momentum': 0.9, 'optimizer.weight_decay_mode': 'coupled',
       'loss.label_smoothing': 0.0}
CIFAR_STEPS = {'schedule.name': 'piecewise', 'schedule.unit': 'steps',
               'schedule.boundaries': (32_000, 48_000), 'schedule.decay_factor': 0.1,
               'num_train_steps': 64_000, 'batch_size': 128, 'optimizer.learning_rate': 0.1,
               'optimizer.weight_decay': 1e-4, 'optimizer.nesterov': False}
WARMUP_400 = {'schedule.warmup': 400, 'schedule.warmup_lr': 0.01,
              'schedule.warmup_shape': 'constant'}
NO_WARMUP = {'schedule.warmup': 0}
PLATEAU = {'schedule.name': 'plateau', 'schedule.decay_factor': 0.1, 'schedule.min_scale': 1e-3,
           'eval_every_epochs': 1}
IMAGENET = {'data.name': 'imagenet2012', 'data.cache': False, 'data.eval_split': ''}


def cifar(dataset='cifar10'):
  return {'data.name': dataset, 'data.train_ops': f"pad_random_crop(4) | flip_lr | normalize('{dataset}')",
          'data.eval_ops': f"normalize('{dataset}')"}


# (recipe, args) -> the paper's numbers, as resolved config fields.
EXPECTED = {
    ('lenet5_mnist', ''): {
        **SGD, 'data.name': 'mnist', 'model.name': 'lenet5_1998', 'optimizer.momentum': 0.0,
        'optimizer.learning_rate': 0.0005, 'optimizer.weight_decay': 0.0, 'batch_size': 1,
        'num_epochs': 20, 'schedule.name': 'piecewise', 'schedule.unit': 'epochs',
        'schedule.boundaries': (2, 5, 8, 12), **NO_WARMUP},
    ('alexnet_imagenet', ''): {
        **SGD, **IMAGENET, **PLATEAU, 'model.name': 'alexnet', 'model.towers': 2,
        'model.weight_init': 'gaussian_unit_bias', 'model.dropout_rate': 0.5,
        'optimizer.learning_rate': 0.01, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 5e-4, 'batch_size': 128, 'num_epochs': 90, **NO_WARMUP},
    ('zfnet_imagenet', ''): {
        **SGD, **IMAGENET, **PLATEAU, 'model.name': 'zfnet', 'model.weight_init': 'gaussian',
        'model.dropout_rate': 0.5, 'optimizer.learning_rate': 0.01, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0, 'batch_size': 128, 'num_epochs': 70},
    ('zfnet_imagenet', 'wide'): {'model.name': 'zfnet_512'},
    ('vgg_imagenet', ''): {
        **SGD, **IMAGENET, **PLATEAU, 'model.name': 'vgg16', 'model.dropout_rate': 0.5,
        'optimizer.learning_rate': 0.01, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 5e-4, 'batch_size': 256, 'num_epochs': 74},
    ('vgg_imagenet', 'A'): {'model.name': 'vgg11'},
    ('vgg_imagenet', 'A-LRN'): {'model.name': 'vgg11_lrn'},
    ('vgg_imagenet', 'B'): {'model.name': 'vgg13'},
    ('vgg_imagenet', 'C'): {'model.name': 'vgg16_c'},
    ('vgg_imagenet', 'variant=E'): {'model.name': 'vgg19', 'optimizer.learning_rate': 0.01},
    ('vgg_imagenet', 'D,bn'): {'model.name': 'vgg16_bn'},
    ('googlenet_imagenet', ''): {
        **SGD, **IMAGENET, 'model.name': 'googlenet', 'model.aux_heads': True,
        'model.dropout_rate': 0.4, 'model.aux_dropout_rate': 0.7, 'loss.aux_weight': 0.3,
        'optimizer.learning_rate': 0.01, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 2e-4, 'batch_size': 32, 'num_epochs': 250,
        'schedule.name': 'piecewise', 'schedule.unit': 'epochs', 'schedule.decay_factor': 0.96,
        'schedule.boundaries': tuple(range(8, 250, 8)), **NO_WARMUP},
    ('resnet_imagenet', ''): {
        **SGD, **IMAGENET, 'model.name': 'resnet', 'model.depth': 50, 'model.shortcut': 'B',
        'model.stride_on_3x3': False, 'optimizer.learning_rate': 0.1, 'optimizer.nesterov': False,
        'optimizer.weight_decay': 1e-4, 'batch_size': 256, 'num_train_steps': 600_000,
        'schedule.name': 'piecewise', 'schedule.unit': 'epochs', 'schedule.boundaries': (30, 60),
        'schedule.decay_factor': 0.1, **NO_WARMUP},
    ('resnet_imagenet', '18'): {'model.depth': 18},
    ('resnet_imagenet', '34'): {'model.depth': 34},
    ('resnet_imagenet', 'depth=101'): {'model.depth': 101},
    ('resnet_imagenet', '152,v1_5'): {'model.depth': 152, 'model.stride_on_3x3': True},
    ('densenet_imagenet', ''): {
        **SGD, **IMAGENET, 'model.name': 'densenet', 'model.depth': 121, 'model.growth_rate': 32,
        'model.stem': 'imagenet', 'optimizer.learning_rate': 0.1, 'optimizer.nesterov': True,
        'optimizer.weight_decay': 1e-4, 'batch_size': 256, 'num_epochs': 90,
        'schedule.name': 'piecewise', 'schedule.boundaries': (30, 60), 'schedule.decay_factor': 0.1},
    ('densenet_imagenet', '264'): {'model.depth': 264},
    ('resnext_imagenet', ''): {
        **SGD, **IMAGENET, 'model.name': 'resnext', 'model.depth': 50, 'model.groups': 32,
        'model.width_per_group': 4, 'model.bn_group_size': 32, 'optimizer.learning_rate': 0.1,
        'optimizer.nesterov': False, 'optimizer.weight_decay': 1e-4, 'batch_size': 256,
        'num_epochs': 100, 'schedule.name': 'piecewise', 'schedule.boundaries': (30, 60, 90),
        'schedule.decay_factor': 0.1},
    ('resnext_imagenet', '101-64x4d'): {'model.depth': 101, 'model.groups': 64,
                                        'model.width_per_group': 4},
    ('resnet_cifar10', ''): {
        **SGD, **CIFAR_STEPS, **cifar(), **NO_WARMUP, 'model.name': 'resnet_cifar',
        'model.depth': 20, 'model.residual': True, 'model.bn_group_size': 64},
    ('resnet_cifar10', '56'): {'model.depth': 56, **NO_WARMUP},
    ('resnet_cifar10', '110'): {**CIFAR_STEPS, 'model.depth': 110, **WARMUP_400},
    ('resnet_cifar10', '1202'): {'model.depth': 1202, **WARMUP_400},
    ('resnet_cifar10', '56,plain'): {'model.depth': 56, 'model.residual': False},
    ('preact_resnet_cifar', ''): {
        **SGD, **CIFAR_STEPS, **cifar(), **WARMUP_400, 'model.name': 'preact_resnet',
        'model.stem': 'cifar', 'model.depth': 164, 'model.block': 'bottleneck',
        'model.bn_group_size': 64},
    ('preact_resnet_cifar', '1001,dataset=cifar100'): {**cifar('cifar100'), 'model.depth': 1001},
    ('wrn_cifar', ''): {
        **SGD, **cifar(), **NO_WARMUP, 'model.name': 'wrn', 'model.depth': 28,
        'model.widen_factor': 10, 'model.dropout_rate': 0.0, 'optimizer.learning_rate': 0.1,
        'optimizer.nesterov': True, 'optimizer.weight_decay': 5e-4, 'batch_size': 128,
        'num_epochs': 200, 'schedule.name': 'piecewise', 'schedule.unit': 'epochs',
        'schedule.boundaries': (60, 120, 160), 'schedule.decay_factor': 0.2},
    ('wrn_cifar', '28-10,dropout'): {'model.dropout_rate': 0.3},
    ('wrn_cifar', '16-8,dataset=cifar100'): {**cifar('cifar100'), 'model.depth': 16,
                                            'model.widen_factor': 8},
    ('wrn_cifar', 'net=40-4,dropout=0.1'): {'model.depth': 40, 'model.widen_factor': 4,
                                            'model.dropout_rate': 0.1},
    ('densenet_bc_cifar', ''): {
        **SGD, **cifar(), 'model.name': 'densenet', 'model.stem': 'cifar', 'model.depth': 100,
        'model.growth_rate': 12, 'model.bottleneck': True, 'model.compression': 0.5,
        'model.dropout_rate': 0.0, 'optimizer.learning_rate': 0.1, 'optimizer.nesterov': True,
        'optimizer.weight_decay': 1e-4, 'batch_size': 64, 'num_epochs': 300,
        'schedule.name': 'piecewise', 'schedule.boundaries': (150, 225),
        'schedule.decay_factor': 0.1},
    ('densenet_bc_cifar', '250-24'): {'model.depth': 250, 'model.growth_rate': 24},
    ('densenet_bc_cifar', '190-40,dataset=cifar100'): {**cifar('cifar100'), 'model.depth': 190,
                                                      'model.growth_rate': 40},
    ('stochastic_depth_cifar10', ''): {
        **SGD, **cifar(), **NO_WARMUP, 'model.name': 'resnet_cifar', 'model.depth': 110,
        'model.survival_prob_last': 0.5, 'optimizer.learning_rate': 0.1,
        'optimizer.nesterov': True, 'optimizer.weight_decay': 1e-4, 'batch_size': 128,
        'num_epochs': 500, 'schedule.name': 'piecewise', 'schedule.unit': 'epochs',
        'schedule.boundaries': (250, 375), 'schedule.decay_factor': 0.1},
    ('stochastic_depth_cifar10', '1202'): {'model.depth': 1202, 'model.survival_prob_last': 0.5},
    ('resnext29_cifar', ''): {
        **SGD, **cifar(), 'model.name': 'resnext', 'model.stem': 'cifar', 'model.depth': 29,
        'model.groups': 8, 'model.width_per_group': 64, 'optimizer.learning_rate': 0.1,
        'optimizer.nesterov': False, 'optimizer.weight_decay': 5e-4, 'batch_size': 128,
        'num_epochs': 300, 'schedule.name': 'piecewise', 'schedule.boundaries': (150, 225),
        'schedule.decay_factor': 0.1},
    ('resnext29_cifar', '16x64d,dataset=cifar100'): {**cifar('cifar100'), 'model.groups': 16},
    # Fashion-MNIST: He et al.'s CIFAR schedule, its boundaries at 1/2 and 3/4 of the budget.
    ('fashion_mnist', ''): {
        **SGD, 'data.name': 'fashion_mnist', 'data.validation_size': 5000, 'data.train_size': 0,
        'data.train_ops': "pad_random_crop(4) | flip_lr | normalize('fashion_mnist')",
        'data.eval_ops': "normalize('fashion_mnist')", 'model.name': 'resnet_cifar',
        'model.depth': 20, 'model.residual': True, 'model.survival_prob_last': 1.0,
        'batch_size': 128, 'optimizer.learning_rate': 0.1, 'optimizer.weight_decay': 1e-4,
        'optimizer.nesterov': False, 'num_train_steps': 6500, 'schedule.name': 'piecewise',
        'schedule.unit': 'steps', 'schedule.boundaries': (3250, 4875), 'schedule.decay_factor': 0.1,
        **NO_WARMUP},
    ('fashion_mnist', 'plain56,steps=64000,train_size=20000'): {
        **CIFAR_STEPS, 'model.depth': 56, 'model.residual': False, 'data.train_size': 20000,
        **NO_WARMUP},
    ('fashion_mnist', 'resnet110,survival=0.5,steps=64000'): {
        **CIFAR_STEPS, **WARMUP_400, 'model.depth': 110, 'model.survival_prob_last': 0.5},
    ('fashion_mnist', 'resnet110,steps=3200'): {'schedule.warmup': 200, 'num_train_steps': 3200},
    ('fashion_mnist', 'wrn-28-10,steps=1000,validation=0'): {
        'model.name': 'wrn', 'model.depth': 28, 'model.widen_factor': 10, 'model.dropout_rate': 0.0,
        'optimizer.nesterov': True, 'optimizer.weight_decay': 5e-4, 'schedule.unit': 'steps',
        'schedule.boundaries': (300, 600, 800), 'schedule.decay_factor': 0.2,
        'data.validation_size': 0},
    ('fashion_mnist', 'resnet20,pad=2'): {
        'data.train_ops': "pad_random_crop(2) | flip_lr | normalize('fashion_mnist')"},
    ('fashion_mnist', 'resnet20,pad=0'): {'data.train_ops': "flip_lr | normalize('fashion_mnist')"},
    ('fashion_mnist', 'lenet5'): {
        'model.name': 'lenet5', 'data.train_ops': "pad(2) | flip_lr | normalize('fashion_mnist')", 'data.eval_ops': "pad(2) | normalize('fashion_mnist')",
        'optimizer.learning_rate': 0.05, 'optimizer.weight_decay': 5e-4},
}


@pytest.mark.parametrize('name, args', sorted(EXPECTED), ids=lambda x: str(x) or 'default')
def test_recipe_matches_the_paper(name, args):
  config = flat(get(name, args))
  expected = EXPECTED[(name, args)]
  wrong = {key: (config.get(key, '<missing>'), value) for key, value in expected.items()
           if config.get(key, '<missing>') != value}
  assert not wrong, f'{name}:{args} (got, paper): {wrong}'


@pytest.mark.parametrize('name, args', sorted(EXPECTED), ids=lambda x: str(x) or 'default')
def test_every_listed_variant_builds_with_runlocal(name, args, data_dir):
  """Model, optimiser, schedule and data of every variant above pass the trainer's checks."""
  config = get(name, ','.join(filter(None, [args, 'runlocal'])))
  config.data.data_dir = data_dir
  setup = train.build(config)
  assert setup.total_steps == 2 and setup.model.num_classes == 10  # digits' classes


def test_every_recipe_file_is_listed_and_tested():
  """A config built on configs/common.py is a paper recipe: it must be in RECIPES and EXPECTED."""
  here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
  recipes = set()
  for file in os.listdir(here):
    if file.endswith('.py') and file != 'common.py':
      with open(os.path.join(here, file)) as f:
        if 'from configs import common' in f.read():
          recipes.add(file[:-3])
  assert recipes == set(RECIPES)
  assert {name for name, _ in EXPECTED} == set(RECIPES)


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
  assert local['data.name'] == 'digits' and local['data.eval_split'] == common.RUNLOCAL_EVAL_SPLIT
  assert local['batch_size'] == common.RUNLOCAL_BATCH and local['num_train_steps'] == 2
  assert local['log_every_steps'] == 1
  crops = [op for op in full['data.eval_ops'].split('|') if 'normalize' not in op]
  assert all(op.strip() in local['data.eval_ops'] for op in crops)  # same crop, same size


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

    def init_state_kept(setup, seed):  # a host copy: the train step donates the device buffers
      state = init_state(setup, seed)
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
