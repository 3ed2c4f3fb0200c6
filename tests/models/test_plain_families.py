"""AlexNet/ZFNet, VGG, GoogLeNet and the AlphaGo policy network: shapes, parameter counts, layers.

Big networks are only traced (``jax.eval_shape``): their parameters are never allocated. The few
real forward passes use narrow variants.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ConfigError
from cnn_jax.models import AUX_LOGITS, get_model, info, layers
from cnn_jax.models.layers import AdaptiveAvgPool
from cnn_jax.models.googlenet import Inception
from cnn_jax.summary import summarize

RNGS = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}


def conv(k: int, c_in: int, c_out: int, groups: int = 1) -> int:
  return k * k * (c_in // groups) * c_out + c_out


def dense(n_in: int, n_out: int) -> int:
  return n_in * n_out + n_out


def abstract_variables(model, shape, train=False):
  return jax.eval_shape(lambda: model.init(RNGS, jnp.zeros(shape), train=train))


def param_count(model, shape) -> int:
  variables = abstract_variables(model, shape)
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables['params']))


def numpy_variables(model, shape, seed=0):
  """Variables filled by NumPy from the traced shapes: a real ``init`` compiles every random
  initialiser (seconds on this CPU), and these tests need values, not the initialisers."""
  rng = np.random.default_rng(seed)
  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.normal(0, 1 / np.sqrt(fan_in), leaf.shape), leaf.dtype)
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.asarray(rng.normal(0, 0.1, leaf.shape) if name == 'bias' else np.zeros(leaf.shape),
                       leaf.dtype)
  return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, shape))


def rows_by_name(summary):
  return {row['name']: row for row in summary['layers']}


# Hand-derived from the papers' layer tables (see each module's docstring).
_ALEXNET = (conv(11, 3, 96) + conv(5, 96, 256, 2) + conv(3, 256, 384) + conv(3, 384, 384, 2)
            + conv(3, 384, 256, 2) + dense(6 * 6 * 256, 4096) + dense(4096, 4096) + dense(4096, 1000))
_ZFNET = (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 384) + conv(3, 384, 384)
          + conv(3, 384, 256) + dense(9216, 4096) + dense(4096, 4096) + dense(4096, 1000))
_ZFNET_512 = (conv(7, 3, 96) + conv(5, 96, 256) + conv(3, 256, 512) + conv(3, 512, 1024)
              + conv(3, 1024, 512) + dense(6 * 6 * 512, 4096) + dense(4096, 4096) + dense(4096, 1000))


def _alphago(k: int) -> int:
  return conv(5, 48, k) + 11 * conv(3, k, k) + k + 19 * 19   # final 1x1 kernel + per-point biases


# Counts derived by hand from the papers' layer tables, against the code's; the published figures
# (torchvision's counts, the papers' millions) are checked for every model by test_registry.py.
DERIVED_PARAMS = {
    'alexnet': _ALEXNET, 'zfnet': _ZFNET, 'zfnet_512': _ZFNET_512,
    'vgg11_lrn': 132_863_336,                                       # A-LRN: LRN has no parameters
    'vgg16_c': 133_047_848 + conv(1, 256, 256) + 2 * conv(1, 512, 512),   # B + three 1x1 convs
    'vgg16_c_bn': 133_053_736 + conv(1, 256, 256) + 2 * conv(1, 512, 512) + 2 * (256 + 512 + 512),
    'googlenet': 13_378_280,     # derivation in googlenet.py's docstring
    'alphago_policy': _alphago(192), 'alphago_policy_k128': _alphago(128),
    'alphago_policy_k256': _alphago(256), 'alphago_policy_k384': _alphago(384),
}


@pytest.mark.parametrize('name', sorted(DERIVED_PARAMS))
def test_param_count_is_the_derived_one(name):
  assert param_count(get_model(name), (1,) + info(name).input_shape) == DERIVED_PARAMS[name]


def test_googlenet_without_aux_heads_is_its_table():
  # GoogLeNet table 1 sums to 6.8M without the auxiliary heads (its column rounds); 7.0M here.
  assert param_count(get_model('googlenet', aux_heads=False), (1, 224, 224, 3)) == 6_998_552


# Other input sizes than the registered ones (test_registry.py checks those).
@pytest.mark.parametrize('name, shape', [
    ('alexnet', (2, 96, 96, 3)), ('alexnet_tv', (2, 64, 64, 3)), ('zfnet_512', (2, 64, 64, 3)),
    ('vgg11', (2, 32, 32, 3)), ('vgg11_lrn', (2, 32, 32, 3)), ('vgg16_c_bn', (2, 48, 48, 3)),
    ('googlenet', (2, 96, 96, 3))])
def test_output_shape_and_dtype_at_other_sizes(name, shape):
  model = get_model(name)
  variables = abstract_variables(model, shape)
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
  assert out.shape == (shape[0], info(name).num_classes)
  assert out.dtype == jnp.float32


@pytest.mark.parametrize('name', ['alexnet', 'vgg16_bn', 'googlenet'])
def test_bfloat16_compute_keeps_float32_params_and_logits(name):
  model = get_model(name, dtype=jnp.bfloat16)
  shape = (2,) + info(name).input_shape
  variables = abstract_variables(model, shape)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables['params'])} == {jnp.dtype(jnp.float32)}
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
  assert out.dtype == jnp.float32


def test_alexnet_lecture_table():
  rows = rows_by_name(summarize('alexnet'))
  assert rows['conv1']['output_shape'] == [55, 55, 96]
  assert rows['conv1']['params'] == 34_944
  assert rows['max_pool1']['output_shape'] == [27, 27, 96]
  assert rows['conv2']['output_shape'] == [27, 27, 256]
  assert rows['max_pool2']['output_shape'] == [13, 13, 256]
  assert rows['conv3']['output_shape'] == [13, 13, 384]
  assert rows['conv4']['output_shape'] == [13, 13, 384]
  assert rows['max_pool3']['output_shape'] == [6, 6, 256]
  assert rows['fc6']['params'] == 6 * 6 * 256 * 4096 + 4096
  # The towers: conv2 reads 48 of conv1's 96 maps, conv3 all 256 of conv2's.
  assert rows['conv2']['macs'] == 27 * 27 * 256 * 5 * 5 * 48
  assert rows['conv3']['macs'] == 13 * 13 * 384 * 3 * 3 * 256


def test_alexnet_tv_and_zfnet_maps():
  tv = rows_by_name(summarize('alexnet_tv'))
  assert [tv[f'conv{i}']['output_shape'] for i in (1, 2, 3)] == [[55, 55, 64], [27, 27, 192],
                                                                  [13, 13, 384]]
  assert tv['max_pool3']['output_shape'] == [6, 6, 256]
  assert abs(summarize('alexnet_tv')['totals']['macs'] / 1e9 - 0.71) < 0.01
  zf = rows_by_name(summarize('zfnet'))
  assert zf['conv1']['output_shape'] == [110, 110, 96]
  assert zf['max_pool1']['output_shape'] == [55, 55, 96]
  assert zf['conv2']['output_shape'] == [26, 26, 256]
  assert zf['max_pool2']['output_shape'] == [13, 13, 256]
  assert zf['max_pool3']['output_shape'] == [6, 6, 256]
  # ZFNet normalises after pooling, AlexNet before.
  assert zf['lrn1']['output_shape'] == [55, 55, 96]
  assert rows_by_name(summarize('alexnet'))['lrn1']['output_shape'] == [55, 55, 96]
  order = [row['name'] for row in summarize('zfnet')['layers']]
  assert order.index('max_pool1') < order.index('lrn1')


def test_vgg16_lecture_table():
  summary = summarize('vgg16')
  convs = [row for row in summary['layers'] if row['type'] == 'Conv']
  assert len(convs) == 13
  assert sorted({row['output_shape'][0] for row in convs}, reverse=True) == [224, 112, 56, 28, 14]
  pools = [row['output_shape'] for row in summary['layers'] if row['type'] == 'max_pool']
  assert pools == [[112, 112, 64], [56, 56, 128], [28, 28, 256], [14, 14, 512], [7, 7, 512]]
  assert rows_by_name(summary)['fc1']['params'] == 102_760_448 + 4096
  assert summary['totals']['params'] == 138_357_544
  assert abs(summary['totals']['macs'] / 1e9 - 15.5) / 15.5 < 0.01     # 15.47 GMACs
  # Conv outputs: 2x224^2x64 + 2x112^2x128 + 3x56^2x256 + 3x28^2x512 + 3x14^2x512 = 13.5M. The
  # sheet's "about 24M" is the cs231n notes' figure, whose own per-layer list sums to 15.2M
  # (cs231n.github.io issue 88): that list (input, convs, pools, fc) is the total here.
  assert sum(row['activations'] for row in convs) == 13_547_520
  assert summary['totals']['activations'] == 15_237_608


def test_vgg_configurations():
  c_rows = rows_by_name(summarize('vgg16_c'))
  assert [c_rows[f'conv{i}']['params'] for i in (7, 10, 13)] == [conv(1, 256, 256),
                                                                   conv(1, 512, 512),
                                                                   conv(1, 512, 512)]
  lrn = [row['name'] for row in summarize('vgg11_lrn')['layers']]
  assert lrn[:3] == ['input', 'conv1', 'lrn1']
  assert sum(row['type'] == 'BatchNorm' for row in summarize('vgg19_bn')['layers']) == 16


def test_googlenet_module_outputs():
  model = get_model('googlenet')
  variables = abstract_variables(model, (1, 224, 224, 3))
  _, state = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((1, 224, 224, 3)), train=False, mutable=['intermediates'],
                            capture_intermediates=lambda m, _: isinstance(m, Inception)),
      variables)
  shapes = {name[len('inception'):]: out['__call__'][0].shape[1:]
            for name, out in state['intermediates'].items()}
  assert shapes == {'3a': (28, 28, 256), '3b': (28, 28, 480), '4a': (14, 14, 512),
                    '4b': (14, 14, 512), '4c': (14, 14, 512), '4d': (14, 14, 528),
                    '4e': (14, 14, 832), '5a': (7, 7, 832), '5b': (7, 7, 1024)}


def test_googlenet_stem_and_cost():
  summary = summarize('googlenet')
  rows = rows_by_name(summary)
  assert rows['conv1']['output_shape'] == [112, 112, 64]
  assert rows['max_pool1']['output_shape'] == [56, 56, 64]
  assert rows['conv2']['output_shape'] == [56, 56, 192]
  assert rows['max_pool2']['output_shape'] == [28, 28, 192]
  assert rows['inception3a/branch5x5']['params'] == conv(5, 16, 32)   # a real 5x5
  assert rows['avg_pool1']['output_shape'] == [1, 1, 1024]
  assert abs(summary['totals']['macs'] / 1e9 - 1.5) / 1.5 < 0.06    # "1.5 billion multiply-adds"


def test_googlenet_returns_logits_and_sows_aux_logits_only_in_training():
  model = get_model('googlenet')
  x = jnp.zeros((2, 224, 224, 3))
  variables = abstract_variables(model, x.shape)   # an eval-mode init creates the heads too
  assert {'aux1', 'aux2'} <= set(variables['params'])
  assert set(variables) == {'params'}              # no logits collection in the variables
  assert AUX_LOGITS not in abstract_variables(model, x.shape, train=True)

  def apply(model, variables, train):
    return jax.eval_shape(lambda v: model.apply(v, x, train=train, rngs=RNGS, mutable=[AUX_LOGITS]),
                          variables)

  for train in (False, True):  # one output contract: logits in every mode
    logits, collections = apply(model, variables, train)
    assert isinstance(logits, jax.ShapeDtypeStruct) and logits.shape == (2, 1000)
    if not train:
      assert not collections.get(AUX_LOGITS)
  aux = collections[AUX_LOGITS]
  assert sorted(aux) == ['aux1', 'aux2'] and all(set(head) == {'logits'} for head in aux.values())
  assert [a.shape for a in jax.tree.leaves(aux)] == [(2, 1000), (2, 1000)]
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(aux))
  no_aux = get_model('googlenet', aux_heads=False)
  logits, collections = apply(no_aux, abstract_variables(no_aux, x.shape), True)
  assert logits.shape == (2, 1000) and not collections.get(AUX_LOGITS)


def test_googlenet_aux_heads_need_a_big_enough_map():
  model = get_model('googlenet')
  with pytest.raises(ConfigError, match='aux_heads=False'):
    abstract_variables(model, (1, 32, 32, 3), train=True)
  small = get_model('googlenet', aux_heads=False)
  assert jax.eval_shape(lambda v: small.apply(v, jnp.zeros((1, 32, 32, 3))),
                        abstract_variables(small, (1, 32, 32, 3))).shape == (1, 1000)


def test_alphago_layers_and_position_bias():
  model = get_model('alphago_policy', filters=8)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 19, 19, 48)), jnp.float32)
  variables = numpy_variables(model, x.shape)
  params = variables['params']
  assert params['conv1']['kernel'].shape == (5, 5, 48, 8)
  assert all(params[f'conv{i}']['kernel'].shape == (3, 3, 8, 8) for i in range(2, 13))
  assert params['conv13']['kernel'].shape == (1, 1, 8, 1) and 'bias' not in params['conv13']
  assert params['position_bias']['bias'].shape == (19, 19)
  apply = jax.jit(model.apply)
  logits = apply(variables, x)
  assert logits.shape == (2, 361) and logits.dtype == jnp.float32
  # Each point has its own bias: moving the bias of point (3, 4) moves logit 3*19+4 only.
  bumped = jax.tree.map(lambda a: a, variables)   # a copy of the nested dicts
  bumped['params']['position_bias']['bias'] = params['position_bias']['bias'].at[3, 4].add(1.0)
  delta = np.asarray(apply(bumped, x) - logits)
  expected = np.zeros((2, 361), np.float32)
  expected[:, 3 * 19 + 4] = 1.0
  np.testing.assert_allclose(delta, expected, atol=1e-5)
  deep = get_model('alphago_policy', num_layers=5, filters=8)
  deep_params = abstract_variables(deep, x.shape)['params']
  assert sorted(k for k in deep_params if k.startswith('conv')) == [
      'conv1', 'conv2', 'conv3', 'conv4', 'conv5']


@pytest.mark.parametrize('name, kwargs, message', [
    ('alphago_policy', {'num_classes': 10}, 'num_classes must be 361'),
    ('alphago_policy', {'num_layers': 1}, 'num_layers >= 2'),
    ('alphago_policy', {'filters': 0}, 'filters must be >= 1'),
    ('alexnet', {'towers': 3}, 'towers=3'),
    ('alexnet', {'weight_init': 'xavier'}, 'use one of'),
    ('alexnet_tv', {'widths': (64, 192)}, '5 convolutions'),
    ('vgg16', {'config': 'F'}, 'A-LRN is config A'),
    ('vgg16', {'bn_group_size': 32}, 'batch_norm=True'),
    ('vgg16_bn', {'bn_group_size': 0}, 'positive'),
    ('googlenet', {'dropout_rate': 1.0}, r'\[0, 1\)'),
    ('lenet5', {'pooling': 'mean'}, "one of 'max', 'avg', 'trainable'"),
    ('lenet5_1998', {'activation': 'tanh'}, "one of 'relu', 'squash'"),
])
def test_impossible_arguments_raise_config_error(name, kwargs, message):
  with pytest.raises(ConfigError, match=message):
    get_model(name, **kwargs)


@pytest.mark.parametrize('name, shape, message', [
    ('alexnet', (1, 48, 48, 3), 'too small'),
    ('vgg11', (1, 16, 16, 3), 'at least 32x32'),
    ('alphago_policy', (1, 9, 9, 48), '19x19'),
])
def test_impossible_inputs_raise_config_error(name, shape, message):
  with pytest.raises(ConfigError, match=message):
    abstract_variables(get_model(name), shape)


def eval_and_train(model, variables, x):
  """Both modes in one compiled function (each compilation costs about a second on this CPU)."""
  @jax.jit
  def both(variables, x):
    return (model.apply(variables, x, train=False),
            model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(4)}))
  return both(variables, x)


def test_small_real_forward_passes_train_and_eval():
  # The two towers and per-tower LRN run for real, at AlexNet's smallest input (67x67).
  model = get_model('alexnet', widths=(8, 8, 8, 8, 8), fc_width=16, num_classes=5,
                    weight_init='lecun')
  x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 67, 67, 3)), jnp.float32)
  variables = numpy_variables(model, x.shape)
  eval_logits, train_logits = eval_and_train(model, variables, x)
  assert eval_logits.shape == (4, 5) and bool(jnp.all(jnp.isfinite(train_logits)))
  assert not np.allclose(eval_logits, train_logits)   # dropout acts in training only



def test_vgg_bn_group_size_reaches_batch_norm():
  vgg = get_model('vgg11_bn', bn_group_size=3)
  with pytest.raises(ValueError, match='group_size 3 does not divide the batch of 4'):
    jax.eval_shape(lambda v: vgg.apply(v, jnp.zeros((4, 32, 32, 3)), train=True, rngs=RNGS,
                                       mutable=['batch_stats']),
                   abstract_variables(vgg, (3, 32, 32, 3)))


def test_alexnet_paper_init():
  model = get_model('alexnet', widths=(8, 8, 8, 8, 8), fc_width=16, num_classes=5)
  with jax.threefry_partitionable(False):   # compiles the initialisers 5x faster here
    params = jax.jit(model.init)(RNGS, jnp.zeros((1, 67, 67, 3)))['params']
  biases = {name: float(params[name]['bias'].mean()) for name in params if 'bias' in params[name]}
  assert biases == {'conv1': 0.0, 'conv2': 1.0, 'conv3': 0.0, 'conv4': 1.0, 'conv5': 1.0,
                    'fc6': 1.0, 'fc7': 1.0, 'fc8': 0.0}
  assert abs(float(params['fc6']['kernel'].std()) - 0.01) < 0.002
  # The towers: conv2, conv4, conv5 read half of their input maps.
  assert [params[f'conv{i}']['kernel'].shape[2] for i in range(1, 6)] == [3, 4, 8, 4, 4]


def _lrn_reference(x, n=5, k=2.0, alpha=1e-4, beta=0.75):
  out = np.empty_like(x)
  channels = x.shape[-1]
  for i in range(channels):
    lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
    out[..., i] = x[..., i] / (k + alpha * np.sum(x[..., lo:hi + 1] ** 2, axis=-1)) ** beta
  return out


def test_local_response_norm_is_the_papers_formula():
  x = np.random.default_rng(7).normal(0, 30.0, (2, 3, 3, 11)).astype(np.float32)
  @jax.jit
  def normalise(x):
    return (layers.LocalResponseNorm().apply({}, x),
            layers.LocalResponseNorm(groups=2).apply({}, x[..., :10]),
            layers.LocalResponseNorm().apply({}, x.astype(jnp.bfloat16)))
  y, towers, y16 = normalise(jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(y), _lrn_reference(x), rtol=1e-5)
  # alpha is not divided by n (PyTorch/Caffe would give a different value for this input).
  assert not np.allclose(np.asarray(y), _lrn_reference(x, alpha=1e-4 / 5), rtol=1e-3)
  expected = np.concatenate([_lrn_reference(x[..., :5]), _lrn_reference(x[..., 5:10])], axis=-1)
  np.testing.assert_allclose(np.asarray(towers), expected, rtol=1e-5)
  assert y16.dtype == jnp.bfloat16


def test_adaptive_avg_pool_matches_pytorch_bins():
  ramp = jnp.arange(5.0).reshape(1, 5, 1, 1) * jnp.ones((1, 5, 2, 1))
  x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 14, 14, 3)), jnp.float32)
  one = jnp.full((1, 1, 1, 2), 3.0)
  @jax.jit
  def pool(ramp, x, one):
    return (AdaptiveAvgPool((3, 1)).apply({}, ramp), AdaptiveAvgPool((7, 7)).apply({}, x),
            AdaptiveAvgPool((6, 6)).apply({}, one))
  bins, halves, repeated = pool(ramp, x, one)
  # PyTorch bins for 5 -> 3: [0, 2), [1, 4), [3, 5).
  np.testing.assert_allclose(np.asarray(bins[0, :, 0, 0]), [0.5, 2.0, 3.5])
  np.testing.assert_allclose(halves, x.reshape(2, 7, 2, 7, 2, 3).mean(axis=(2, 4)), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(repeated, jnp.full((1, 6, 6, 2), 3.0))
  same = x[:, :7, :7]
  assert AdaptiveAvgPool((7, 7)).apply({}, same) is same   # already the size: untouched
