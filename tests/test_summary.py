"""The per-layer inspector (cnn_jax.summary): counting rules, totals, the command line."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cnn_jax import ConfigError, models
from cnn_jax.models import get_model
from cnn_jax.summary import default_input_shape, registry_table, summarize, summarize_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  return subprocess.run([sys.executable, '-m', 'cnn_jax.summary', *args], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=120)


def real_param_count(name: str, shape) -> int:
  model = get_model(name)
  variables = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)},
                                                jnp.zeros((1,) + tuple(shape)), train=False))
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables['params']))


def assert_totals_are_column_sums(summary):
  for key in ('params', 'macs', 'activations'):
    assert summary['totals'][key] == sum(row[key] for row in summary['layers']), key


@pytest.mark.parametrize('name, train', [
    ('alexnet', False), ('zfnet', False), ('vgg16_bn', False), ('vgg11_lrn', True),
    ('googlenet', False), ('googlenet', True), ('alphago_policy', False), ('lenet5_1998', False),
    ('resnet20_cifar', True)])
def test_totals_are_the_column_sums_and_the_real_param_count(name, train):
  summary = summarize(name, train=train)
  assert_totals_are_column_sums(summary)
  assert summary['totals']['params'] == real_param_count(name, summary['input_shape'])
  assert summary['layers'][0] == {'name': 'input', 'type': 'input',
                                  'output_shape': summary['input_shape'], 'params': 0,
                                  'activations': math.prod(summary['input_shape']), 'macs': 0}


def test_googlenet_aux_heads_are_listed_as_not_run_at_evaluation():
  eval_rows = {r['name']: r for r in summarize('googlenet')['layers']}
  assert eval_rows['aux1/fc1'] == {'name': 'aux1/fc1', 'type': 'not run', 'output_shape': [],
                                   'params': 2048 * 1024 + 1024, 'activations': 0, 'macs': 0}
  train = summarize('googlenet', train=True)
  train_rows = {r['name']: r for r in train['layers']}
  assert train_rows['aux1/avg_pool1']['output_shape'] == [4, 4, 512]
  assert train_rows['aux2/conv']['macs'] == 4 * 4 * 128 * 528
  assert train['output_shape'] == [1000]   # the logits; the heads' own are their fc2 rows
  assert train_rows['aux1/fc2']['output_shape'] == train_rows['aux2/fc2']['output_shape'] == [1000]


def test_model_kwargs_and_input_shape_reach_the_model():
  summary = summarize('vgg11', input_shape=(64, 64, 3), num_classes=10, fc_width=32)
  rows = {r['name']: r for r in summary['layers']}
  assert rows['max_pool5']['output_shape'] == [2, 2, 512]
  assert rows['avgpool']['output_shape'] == [7, 7, 512]     # adaptive pool: listed when it acts
  assert rows['fc3']['params'] == 32 * 10 + 10
  assert summary['output_shape'] == [10]


def test_default_input_shapes():
  assert default_input_shape('alexnet') == (227, 227, 3)
  assert default_input_shape('alexnet_tv') == (224, 224, 3)
  assert default_input_shape('vgg16') == (224, 224, 3)
  assert default_input_shape('googlenet') == (224, 224, 3)
  assert default_input_shape('resnet20_cifar') == (32, 32, 3)
  assert default_input_shape('alphago_policy') == (19, 19, 48)
  assert default_input_shape('lenet5') == (32, 32, 1)


def test_nothing_is_allocated_for_a_big_model():
  before = sum(a.size for a in jax.live_arrays())
  summary = summarize('vgg19')
  assert summary['totals']['params'] == 143_667_240
  assert sum(a.size for a in jax.live_arrays()) - before < 1000


@pytest.mark.parametrize('name, paper_gmacs', [
    ('resnet18', 1.8), ('resnet34', 3.6), ('resnet50', 3.8), ('resnet101', 7.6), ('resnet152', 11.3)])
def test_imagenet_resnet_multiply_adds_are_the_papers(name, paper_gmacs):
  gmacs = summarize(name)['totals']['macs'] / 1e9
  assert abs(gmacs - paper_gmacs) / paper_gmacs < 0.10


def test_vgg16_cost():
  totals = summarize('vgg16')['totals']
  assert totals['macs'] == 15_470_264_320   # 15.47 GMACs, torchvision's and the usual figure
  assert totals['params'] == 138_357_544


# Small modules that exercise each counting rule.

class TwoTowerConv(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), feature_group_count=2, padding='VALID', name='grouped')(x)
    x = nn.max_pool(x, (2, 2), (2, 2))
    return nn.Dense(5, name='fc')(x.reshape(x.shape[0], -1))


class SharedDense(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    dense = nn.Dense(6, name='shared')
    x = x.reshape(x.shape[0], -1)[:, :6]
    return dense(dense(x))


class PoolingLeaf(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.avg_pool(x, (2, 2), (2, 2)) * self.param('gain', nn.initializers.ones, (1,))


class OwnParams(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = PoolingLeaf(name='leaf')(x)
    x = nn.Dropout(0.5)(x, deterministic=not train)
    return x.mean(axis=(1, 2)) * self.param('temperature', nn.initializers.ones, (x.shape[-1],))


def test_grouped_conv_and_dense_macs():
  summary = summarize_module(TwoTowerConv(), (6, 6, 4))
  rows = {r['name']: r for r in summary['layers']}
  assert rows['grouped']['output_shape'] == [4, 4, 8]
  assert rows['grouped']['params'] == 3 * 3 * 2 * 8 + 8
  assert rows['grouped']['macs'] == 4 * 4 * 8 * 3 * 3 * 4 // 2
  assert rows['max_pool1'] == {'name': 'max_pool1', 'type': 'max_pool', 'output_shape': [2, 2, 8],
                               'params': 0, 'activations': 32, 'macs': 0}
  assert rows['fc']['macs'] == 32 * 5
  assert_totals_are_column_sums(summary)


def test_a_shared_module_counts_its_params_once_and_its_macs_per_call():
  summary = summarize_module(SharedDense(), (2, 2, 2))
  shared = [r for r in summary['layers'] if r['name'] == 'shared']
  assert [r['params'] for r in shared] == [6 * 6 + 6, 0]
  assert [r['macs'] for r in shared] == [36, 36]
  assert summary['totals']['params'] == 42


def test_leaf_pools_own_params_and_identities():
  eval_summary = summarize_module(OwnParams(), (4, 4, 3))
  rows = [(r['name'], r['type'], r['params']) for r in eval_summary['layers']]
  # The pool inside the leaf module is part of its row; Dropout at evaluation is the identity; the
  # composite module's own parameter gets a row of its own.
  assert rows == [('input', 'input', 0), ('leaf', 'PoolingLeaf', 1), ('(model)', 'own params', 3)]
  train_rows = [r['type'] for r in summarize_module(OwnParams(), (4, 4, 3), train=True)['layers']]
  assert train_rows == ['input', 'PoolingLeaf', 'Dropout', 'own params']


def test_bad_requests_raise_config_error():
  with pytest.raises(ConfigError, match='unknown model'):
    summarize('alexnett')
  with pytest.raises(ConfigError, match='num_classes must be 361'):
    summarize('alphago_policy', num_classes=10)
  with pytest.raises(ConfigError, match='three positive sizes'):
    summarize('vgg16', input_shape=(224, 224))


def test_cli_json():
  result = run_cli('--model=alexnet', '--json')
  assert result.returncode == 0, result.stderr
  summary = json.loads(result.stdout)
  assert_totals_are_column_sums(summary)
  assert summary['totals']['params'] == 60_965_224
  conv1 = summary['layers'][1]
  assert (conv1['name'], conv1['output_shape'], conv1['params']) == ('conv1', [55, 55, 96], 34_944)
  assert conv1['macs'] == 55 * 55 * 96 * 11 * 11 * 3


def test_cli_table_and_flags():
  result = run_cli('--model=vgg16', '--input_shape=32,32,3', '--num_classes=10')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == 'vgg16: input 32x32x3, eval mode, output 10'
  assert lines[1].split() == ['layer', 'type', 'output', 'params', 'activations', 'MACs']
  assert lines[3].split() == ['conv1', 'Conv', '32x32x64', '1,792', '65,536', '1,769,472']
  total = next(line for line in lines if line.startswith('total')).split()
  assert total[1] == f'{138_357_544 - 4_097_000 + 4096 * 10 + 10:,}'


@pytest.mark.parametrize('args, message', [
    (('--model=alexnett',), 'unknown model'),
    (('--model=vgg16', '--input_shape=224x224'), 'three positive sizes'),
    (('--model=alphago_policy', '--num_classes=1000'), 'num_classes must be 361'),
    ((), 'or list them all with --list'),
])
def test_cli_errors_are_one_line(args, message):
  result = run_cli(*args)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0]
  if message == 'unknown model':
    assert 'Valid names:' in errors[0] and 'vgg16' in errors[0]


def _readme_model_table() -> dict[str, set[str]]:
  """{family file: registry names} from the README's "Models" table."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    section = f.read().split('\n## Models\n')[1].split('\n## ')[0]
  table = {}
  for line in section.splitlines():
    cells = line.split(' | ')
    file = re.search(r'\(`(\w+)\.py`\)', cells[0]) if len(cells) == 3 else None
    if file:
      table[file.group(1)] = set(re.findall(r'`(\w+)`', cells[1]))
  return table


def test_readme_model_table_and_list_are_the_registry():
  # A family file has its row; the names a row gives are registered in that file (a new variant
  # need not be added: --list prints them all).
  registered = {}
  for name in models.names():
    registered.setdefault(models.info(name).family, set()).add(name)
  table = _readme_model_table()
  assert set(table) == set(registered)
  assert {family: names - registered[family] for family, names in table.items()
          if names - registered[family]} == {}
  listed = registry_table().splitlines()[2:]
  assert [line.split(' | ')[0] for line in listed] == [f'| `{name}`' for name in models.names()]
  assert 'torchvision: 25,557,032 params, 4.09 GMACs' in listed[models.names().index('resnet50')]
  assert listed[models.names().index('resnet')].endswith('| none |')
