"""ResNet (CIFAR and ImageNet), pre-activation ResNet, Wide ResNet, ResNeXt and DenseNet.

Parameter counts and shapes are taken from ``jax.eval_shape`` of ``init_with_output`` (nothing is
allocated, so the 100M-parameter nets are cheap); behaviour tests run tiny instances.
"""
from __future__ import annotations

import functools
import gc
import re
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ConfigError
from cnn_jax.models import get_model, info, layers, resnet
from cnn_jax.models.preact_resnet import PreActResNet
from cnn_jax.models.resnet import BasicBlock, ResNet
from cnn_jax.models.wide_resnet import WideResNet


# Nets whose every module output is inspected; they are traced once, with capture, for all tests.
CAPTURED = ('resnet18', 'resnet50', 'resnet50_v1', 'resnext50_32x4d', 'preact_resnet50', 'densenet121')
CAPTURED_MODELS = {get_model(name) for name in CAPTURED}


def abstract_init(name: str, size: int | None = None, **kwargs):
  """(logits, variables) as ShapeDtypeStructs for a batch of 2 images; for the ``CAPTURED`` nets
  (and their aliases), ``variables['intermediates']`` holds every module's output."""
  model = get_model(name, **kwargs)
  return _abstract_init(model, size or info(name).input_shape[0], model in CAPTURED_MODELS and not size)


@functools.lru_cache(maxsize=None)
def _abstract_init(model: nn.Module, size: int, capture: bool):
  # Cached per configuration (modules are frozen dataclasses), so aliases such as 'resnet' and
  # 'resnet50' are traced once.
  def init():
    return model.init_with_output({'params': jax.random.key(0)}, jnp.zeros((2, size, size, 3)),
                                  train=False, capture_intermediates=capture)

  # Tracing a deep net makes many short-lived objects; pausing CPython's cycle collector, which
  # would rescan the growing heap again and again, saves about a fifth of the tracing time.
  gc.disable()
  try:
    return jax.eval_shape(init)
  finally:
    gc.enable()


def param_count(name: str) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(abstract_init(name)[1]['params']))


# ----------------------------------------------------------------------------- parameter counts

# Published counts are checked for every registered model by test_registry.py.


def test_preact_resnet1001_paper_count_is_its_weights():
  # The paper's 10.2M is the conv and fc weights; BatchNorm's scale and bias add 0.14M.
  params = abstract_init('preact_resnet1001')[1]['params']
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  weights = sum(leaf.size for path, leaf in flat if path[-1].key in ('kernel', 'bias') and
                not any('bn' in str(p.key) for p in path))
  assert abs(weights / 1e6 - 10.2) <= 0.01 * 10.2
  assert abs(param_count('preact_resnet1001') / 1e6 - 10.33) < 0.01


def test_preact_resnet110_has_the_original_resnet110_count():
  assert param_count('preact_resnet110') == param_count('resnet110_cifar')


def test_plain_twin_differs_from_residual_only_by_projections():
  # Option-B projections: 1x1 conv + BN at the three stage transitions of ResNet-34.
  projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in ((64, 128), (128, 256), (256, 512)))
  assert param_count('resnet34') - param_count('plain34') == projections
  assert param_count('resnet34_a') == param_count('plain34')  # option A is parameter-free


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize('name', ['resnet50_v1', 'preact_resnet34', 'densenet121'])
def test_any_input_size(name):
  logits, _ = abstract_init(name, 97, num_classes=7)  # odd sizes at every stride
  assert logits.shape == (2, 7)


def _block_output(intermediates, module: str):
  return intermediates[module]['__call__'][0].shape


@pytest.mark.parametrize('name, expansion', [('resnet18', 1), ('resnet50', 4), ('resnet50_v1', 4),
                                             ('resnext50_32x4d', 4), ('preact_resnet50', 4)])
def test_imagenet_stage_shapes(name, expansion):
  inter = abstract_init(name)[1]['intermediates']
  assert _block_output(inter, 'conv1') == (2, 112, 112, 64)
  last = {1: 2, 2: 2, 3: 2, 4: 2} if name == 'resnet18' else {1: 3, 2: 4, 3: 6, 4: 3}
  for stage, (size, planes) in enumerate(((56, 64), (28, 128), (14, 256), (7, 512)), start=1):
    assert _block_output(inter, f'stage{stage}_block{last[stage]}') == (2, size, size, planes * expansion)


def test_v1_strides_the_first_1x1_and_v15_the_3x3():
  stage2 = lambda name: abstract_init(name)[1]['intermediates']['stage2_block1']
  conv_shape = lambda name, conv: _block_output(stage2(name), conv)[1]
  assert (conv_shape('resnet50', 'conv1'), conv_shape('resnet50', 'conv2')) == (56, 28)
  assert (conv_shape('resnet50_v1', 'conv1'), conv_shape('resnet50_v1', 'conv2')) == (28, 28)


def test_resnext_uses_grouped_3x3():
  params = abstract_init('resnext50_32x4d')[1]['params']
  assert params['stage1_block1']['conv2']['kernel'].shape == (3, 3, 128 // 32, 128)
  assert params['stage4_block1']['conv2']['kernel'].shape == (3, 3, 1024 // 32, 1024)


def test_densenet121_concatenates_and_compresses():
  inter = abstract_init('densenet121')[1]['intermediates']
  assert _block_output(inter, 'block1_layer6') == (2, 56, 56, 64 + 6 * 32)
  assert _block_output(inter, 'transition1') == (2, 28, 28, 128)
  assert _block_output(inter, 'block4_layer16') == (2, 7, 7, 512 + 16 * 32)


# ----------------------------------------------------------------------------- CIFAR ResNet = ResNet


class CifarResNet(nn.Module):
  """The CIFAR ResNet-(6n+2) as a class of its own, before it was folded into ResNet (kept verbatim
  as the reference the registered ``resnet*_cifar`` nets are compared with)."""
  depth: int = 20
  num_classes: int = 10
  width: int = 16
  residual: bool = True
  survival_prob_last: float = 1.0
  dtype: Any = jnp.float32
  bn_group_size: Optional[int] = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n = (self.depth - 2) // 6
    probs = layers.survival_probs(3 * n, self.survival_prob_last)
    x = layers.conv(self.width, 3, name='conv1', dtype=self.dtype)(x.astype(self.dtype))
    x = nn.relu(layers.BatchNorm(dtype=self.dtype, group_size=self.bn_group_size, name='bn1')(x, train))
    for stage in range(3):
      for i in range(n):
        x = BasicBlock(self.width * 2 ** stage, stride=2 if stage and i == 0 else 1,
                       residual=self.residual, survival_prob=probs[stage * n + i], dtype=self.dtype,
                       bn_group_size=self.bn_group_size, name=f'stage{stage + 1}_block{i + 1}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)


def cifar_resnet_as_resnet(depth: int, **kwargs) -> ResNet:
  """The registered CIFAR ResNet: 3x3 stem, basic blocks, width 16, option-A shortcuts."""
  return get_model('resnet_cifar', depth=depth, **kwargs)


def _variable_shapes(model: nn.Module, size: int = 32) -> list[tuple[str, tuple[int, ...], str]]:
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, size, size, 3)),
                                                train=False))
  return [(jax.tree_util.keystr(path), leaf.shape, str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]]


@pytest.mark.parametrize('depth', [20, 56])
@pytest.mark.parametrize('residual', [True, False])
def test_cifar_resnet_has_the_variables_of_the_resnet_with_a_cifar_stem(depth, residual):
  cifar = _variable_shapes(CifarResNet(depth=depth, residual=residual))
  assert cifar == _variable_shapes(cifar_resnet_as_resnet(depth, residual=residual))
  assert {path.split("']")[0] for path, _, _ in cifar} == {"['params", "['batch_stats"}


def test_cifar_resnet_computes_what_the_resnet_with_a_cifar_stem_computes():
  # Same initial values, and the same outputs (evaluation, training with stochastic depth, the
  # updated BatchNorm statistics) for the same variables.
  reference = CifarResNet(depth=8, survival_prob_last=0.5)
  folded = cifar_resnet_as_resnet(8, survival_prob_last=0.5)
  variables = random_variables(reference)

  def outputs(key):
    def run(model):
      initial = model.init(key, IMAGES, train=False)
      train = model.apply(variables, IMAGES, train=True, mutable=['batch_stats'], rngs={'dropout': key})
      return initial, model.apply(variables, IMAGES, train=False), train
    return run(reference), run(folded)

  ours, theirs = compiled(outputs, jax.random.key(3))(jax.random.key(3))
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- stochastic depth

# Tiny members of each residual family, one per network class that wires stochastic depth, and
# together every residual block type: v1 basic (option A), v1 bottleneck with groups and option-B
# projections, pre-activation bottleneck, pre-activation basic with dropout support (the WRN unit).
TINY = {
    'cifar_resnet': (ResNet, dict(resnet.CIFAR, depth=14, base_width=4)),  # two blocks per stage
    'resnext': (ResNet, dict(stem='cifar', depth=11, base_width=8, groups=2, width_per_group=16,
                             num_classes=10)),
    'preact_bottleneck': (PreActResNet, dict(stem='cifar', depth=11, base_width=4, num_classes=10)),
    'wrn': (WideResNet, dict(depth=10, widen_factor=2)),
}
IMAGES = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))


def _tiny(family: str, **kwargs) -> nn.Module:
  cls, config = TINY[family]
  return cls(**config, **kwargs)


def random_variables(model: nn.Module, seed: int = 0):
  """He-scaled random weights built with numpy: compiling ``model.init`` (its random initialisers)
  costs XLA:CPU seconds per net, far more than the tests themselves."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), IMAGES, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    kind, shape = path[-1].key, leaf.shape
    if kind == 'kernel':
      values = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
    elif kind in ('scale', 'var'):
      values = 1.0 + 0.1 * rng.uniform(size=shape)
    else:  # bias, mean
      values = 0.1 * rng.normal(size=shape)
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _tiny_variables(family: str):
  return random_variables(_tiny(family))


def compiled(fn, *args):
  """``jax.jit(fn)`` compiled for ``args`` without LLVM's optimisations: the tiny nets run in
  milliseconds either way, and XLA:CPU's backend optimisation is most of their compile time."""
  return jax.jit(fn).lower(*args).compile(compiler_options={'xla_backend_optimization_level': 0})


def _block_index(path: str) -> tuple[int, int]:
  stage, block = re.search(r'stage(\d+)_block(\d+)', path).groups()
  return int(stage), int(block)


SURVIVAL_PROB_LAST = 0.5
MONTE_CARLO_DRAWS = 400


@functools.lru_cache(maxsize=None)
def _stochastic_depth_outputs(family: str):
  """Everything the stochastic depth tests look at, from one compilation per family (XLA:CPU
  compile time dominates): training outputs with p_L = 1 and without stochastic depth; evaluation
  outputs for dropout keys 0 and 1, with each branch before and after StochasticDepth; which
  blocks survive in ``MONTE_CARLO_DRAWS`` training passes; and each module's probability by path."""
  variables = _tiny_variables(family)  # initialised without stochastic depth
  model = _tiny(family, survival_prob_last=SURVIVAL_PROB_LAST)
  probs_by_path = {}
  is_sd = lambda module, _: isinstance(module, layers.StochasticDepth)

  def kept_blocks(key):
    _, state = model.apply(variables, IMAGES, train=True, rngs={'dropout': key},
                           mutable=['batch_stats', 'intermediates'], capture_intermediates=is_sd)
    flat = jax.tree_util.tree_flatten_with_path(state['intermediates'])[0]
    # A dropped branch is all zeros; a kept one (random weights) is not.
    return {jax.tree_util.keystr(path): jnp.any(leaf != 0) for path, leaf in flat}

  def evaluate(key):  # evaluation outputs, and each StochasticDepth's input and output
    branches = {}

    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if isinstance(context.module, layers.StochasticDepth):
        path = '/'.join(context.module.path)
        probs_by_path[path] = context.module.survival_prob
        branches[path] = (args[0], out)
      return out

    with nn.intercept_methods(record):
      return model.apply(variables, IMAGES, train=False, rngs={'dropout': key}), branches

  def outputs(key0, key1, monte_carlo_keys):
    train = lambda m, **kw: m.apply(variables, IMAGES, train=True, mutable=['batch_stats'], **kw)[0]
    (evaluated, branches), (evaluated_other_key, _) = evaluate(key0), evaluate(key1)
    return dict(train_without_sd=train(_tiny(family)),
                train_p1=train(_tiny(family, survival_prob_last=1.0), rngs={'dropout': key0}),
                eval=evaluated, eval_other_key=evaluated_other_key, eval_branches=branches,
                # lax.map compiles the net once, as a loop body; vmap would batch it (slower).
                kept=jax.lax.map(kept_blocks, monte_carlo_keys))

  args = (jax.random.key(0), jax.random.key(1), jax.random.split(jax.random.key(42), MONTE_CARLO_DRAWS))
  return compiled(outputs, *args)(*args), probs_by_path


@pytest.mark.parametrize('family', sorted(TINY))
def test_survival_prob_one_is_the_net_without_stochastic_depth(family):
  out = _stochastic_depth_outputs(family)[0]
  np.testing.assert_array_equal(out['train_p1'], out['train_without_sd'])


@pytest.mark.parametrize('family', sorted(TINY))
def test_surviving_blocks_follow_the_linear_rule(family):
  kept = _stochastic_depth_outputs(family)[0]['kept']
  paths = sorted(kept, key=_block_index)
  expected = np.array(layers.survival_probs(len(paths), SURVIVAL_PROB_LAST))
  frequency = np.array([np.mean(kept[p]) for p in paths])
  # Per block: binomial std <= 0.025 at 400 draws; the mean count of survivors: std ~ 0.06.
  np.testing.assert_allclose(frequency, expected, atol=0.1)
  survivors = sum(np.asarray(kept[p], np.float32) for p in paths)
  assert abs(np.mean(survivors) - expected.sum()) < 0.25
  assert np.min(survivors) < len(paths)  # some draws drop a block: the net is not deterministic


@pytest.mark.parametrize('family', sorted(TINY))
def test_evaluation_is_deterministic_and_scales_branches(family):
  out, probs_by_path = _stochastic_depth_outputs(family)
  paths = sorted(out['eval_branches'], key=_block_index)
  assert len(paths) == len(probs_by_path) > 1
  expected = layers.survival_probs(len(paths), SURVIVAL_PROB_LAST)
  for path, p in zip(paths, expected):
    assert probs_by_path[path] == pytest.approx(p)
    branch, scaled = out['eval_branches'][path]
    assert np.abs(branch).max() > 0
    np.testing.assert_allclose(scaled, branch * p, rtol=1e-6)
  np.testing.assert_array_equal(out['eval_other_key'], out['eval'])


# ----------------------------------------------------------------------------- other options


def test_dropout_is_random_in_training_only():
  model = WideResNet(depth=10, widen_factor=1, dropout_rate=0.3)
  variables = random_variables(model)
  # rbg keys: XLA:CPU compiles threefry's bit generation for a whole activation slowly (seconds).

  def outputs(key):
    train = model.apply(variables, IMAGES, train=True, mutable=['batch_stats'], rngs={'dropout': key})[0]
    evaluate = lambda m: m.apply(variables, IMAGES, train=False, rngs={'dropout': key})
    return train, evaluate(model), evaluate(WideResNet(depth=10, widen_factor=1))

  keys = [jax.random.key(seed, impl='rbg') for seed in (0, 1)]
  outputs = compiled(outputs, keys[0])
  train0, evaluated0, without_dropout = outputs(keys[0])
  train1, evaluated1, _ = outputs(keys[1])
  assert not np.allclose(train0, train1)
  np.testing.assert_array_equal(evaluated0, evaluated1)
  np.testing.assert_array_equal(evaluated0, without_dropout)


def test_bfloat16_compute_and_bn_groups():
  tiny = lambda group: ResNet(stem='cifar', block='basic', depth=8, base_width=4, num_classes=3,
                              dtype=jnp.bfloat16, bn_group_size=group)
  variables = random_variables(tiny(1))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables['params']))
  other_batch = IMAGES.at[1].set(3.0 * IMAGES[1] + 1.0)  # same first image, different second

  def train_logits(group):
    return compiled(lambda images: tiny(group).apply(variables, images, train=True,
                                                     mutable=['batch_stats'])[0], IMAGES)

  grouped, global_batch = train_logits(1), train_logits(None)
  logits = grouped(IMAGES)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 3)
  # Groups of one image: each image is normalised with its own statistics, so its logits do not
  # depend on the rest of the batch; with global statistics they do.
  np.testing.assert_allclose(logits[0], grouped(other_batch)[0], atol=1e-3)
  assert np.abs(global_batch(IMAGES)[0] - global_batch(other_batch)[0]).max() > 0.1


# ----------------------------------------------------------------------------- invalid arguments

INVALID = [
    ('resnet', dict(depth=26), 'valid depths'),
    ('resnet', dict(depth=18, block='bottleneck'), 'basic blocks'),
    ('resnet', dict(shortcut='D'), 'shortcut option'),
    ('resnet', dict(stem='mnist'), 'stem'),
    ('resnet18', dict(groups=32), 'groups'),
    ('resnext', dict(groups=0), 'positive integer'),
    ('resnet50', dict(residual=False, survival_prob_last=0.5), 'plain net'),
    ('resnet50', dict(survival_prob_last=0.0), '(0, 1]'),
    ('resnet_cifar', dict(depth=21), '6n+2'),
    ('resnext29_8x64d', dict(depth=30), '9n+2'),
    ('preact_resnet_cifar', dict(depth=165), '9n+2'),
    ('preact_resnet_cifar', dict(depth=111, block='basic'), '6n+2'),
    ('preact_resnet', dict(depth=77), 'valid depths'),
    ('preact_resnet', dict(survival_prob_last=1.5), '(0, 1]'),
    ('wrn', dict(depth=27), '6n+4'),
    ('wrn', dict(widen_factor=0), 'widen_factor'),
    ('wrn', dict(dropout_rate=1.0), 'dropout_rate'),
    ('densenet', dict(depth=122), 'valid depths'),
    ('densenet', dict(bottleneck=False), 'DenseNet-BC'),
    ('densenet_cifar', dict(depth=101), '6n+4'),
    ('densenet_cifar', dict(depth=41, bottleneck=False), '3n+4'),
    ('densenet_cifar', dict(compression=0.0), 'compression'),
    ('densenet_cifar', dict(growth_rate=0), 'growth_rate'),
]


@pytest.mark.parametrize('name, kwargs, message', INVALID)
def test_invalid_arguments_raise_config_error(name, kwargs, message):
  with pytest.raises(ConfigError, match=re.escape(message)):
    get_model(name, **kwargs)


def test_valid_generic_depths_build():
  assert get_model('wrn', depth=22, widen_factor=3).depth == 22
  assert get_model('densenet_cifar', depth=40, bottleneck=False, compression=1.0).depth == 40
  assert get_model('preact_resnet_cifar', depth=1001).depth == 1001
