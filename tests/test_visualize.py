"""cnn_jax.visualize: each computation on a hand-built model whose answer is known, the activation
swap on every registered model, and the command end to end on a briefly trained digits run."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ConfigError, models, run_files
from cnn_jax import visualize as vis

from conftest import REPO, small_config, xla_flags


class OnePixel(nn.Module):
  """Two logits read through a ReLU from the single pixel (5, 7)."""
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(2)(self.act(3.0 * x[:, 5, 7, :] + 1.0))


class Detector(nn.Module):
  """A 3x3 'detector' conv (valid), ReLU, 2x2/2 max-pool, a 3x3 'head' conv (valid), logits of its
  mean."""
  kernels: np.ndarray   # [3, 3, 1, units]
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.kernels.shape[-1], (3, 3), padding='VALID', use_bias=False, name='detector',
                kernel_init=lambda *_: jnp.asarray(self.kernels))(x)
    x = nn.max_pool(self.act(x), (2, 2), (2, 2))
    x = nn.Conv(4, (3, 3), padding='VALID', name='head')(x)
    return nn.Dense(2)(self.act(x).mean(axis=(1, 2)))


class Region(nn.Module):
  """Class 1's logit is the sum of the pixels of rows and columns 2..5; class 0's is 0."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    score = x[:, 2:6, 2:6, :].sum(axis=(1, 2, 3))
    return jnp.stack([jnp.zeros_like(score), score], axis=-1)


def _init(model, shape):
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape), train=False)


def test_saliency_of_a_model_reading_one_pixel_is_that_pixel():
  model = OnePixel()
  variables = _init(model, (12, 12, 3))
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 12, 12, 3))
  maps = np.asarray(vis.saliency(model, variables, images, jnp.array([0, 1])))
  assert maps.shape == (2, 12, 12)
  for heat in maps:
    assert np.unravel_index(heat.argmax(), heat.shape) == (5, 7)
    assert heat[5, 7] > 0 and np.count_nonzero(heat) == 1


def test_occluding_the_only_informative_region_drops_the_true_class_probability():
  model = Region()
  variables = _init(model, (12, 12, 1))
  image = np.zeros((1, 12, 12, 1), np.float32)
  image[0, 2:6, 2:6] = 0.25                   # class 1's evidence, nothing elsewhere
  heat = np.asarray(vis.occlusion(model, variables, image, np.array([1]), size=4, stride=2))
  assert heat.shape == (1, 5, 5)              # corners 0, 2, ..., 8
  unoccluded = float(jax.nn.softmax(model.apply(variables, image))[0, 1])
  overlapping = np.zeros((5, 5), bool)
  overlapping[:3, :3] = True                  # squares from rows/columns 0, 2, 4 meet rows 2..5
  assert unoccluded > 0.9
  np.testing.assert_allclose(heat[0][~overlapping], unoccluded, rtol=1e-6)
  assert (heat[0][overlapping] < unoccluded - 0.02).all()
  assert heat[0].argmin() == np.ravel_multi_index((1, 1), (5, 5))   # the square on the region
  np.testing.assert_allclose(heat[0, 1, 1], 0.5, rtol=1e-6)          # no evidence left: 50/50


def test_filter_grid_reproduces_the_kernel_tile_by_tile():
  kernel = np.arange(3 * 3 * 1 * 5, dtype=np.float32).reshape(3, 3, 1, 5) - 20.0
  grid = np.asarray(vis.filter_grid(kernel, columns=3, pad=1))
  assert grid.shape == (2 * 4 - 1, 3 * 4 - 1, 1)
  for f in range(5):
    row, col = divmod(f, 3)
    tile = grid[row * 4:row * 4 + 3, col * 4:col * 4 + 3, 0]
    weights = kernel[..., 0, f]
    np.testing.assert_allclose(tile, 0.5 + weights / (2 * np.abs(weights).max()), rtol=1e-6)
  assert (grid[3, :, 0] == 1.0).all() and (grid[4:, 8:, 0] == 1.0).all()  # gaps, missing 6th tile
  rgb = np.asarray(vis.filter_grid(np.ones((2, 2, 3, 4), np.float32)))
  assert rgb.shape == (5, 5, 3)
  planes = np.asarray(vis.filter_grid(np.ones((2, 2, 5, 4), np.float32)))
  assert planes.shape == (4 * 3 - 1, 5 * 3 - 1, 1)   # a row per filter, a tile per input plane


CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.float32)
BAR = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], np.float32)


def _matched(pattern, weight):
  return weight * np.where(pattern > 0, 1.0, -1.0)


def test_top_patches_pick_the_images_containing_the_units_pattern():
  kernels = np.stack([_matched(CROSS, 2.0), _matched(BAR, 1.0)], axis=-1)[:, :, None, :]
  model = Detector(kernels)
  variables = _init(model, (16, 16, 1))
  images = np.zeros((10, 16, 16, 1), np.float32)
  crosses = {2: (3, 9), 5: (10, 1), 8: (0, 12)}     # image: top-left corner of its cross
  for index, (r, c) in crosses.items():
    images[index, r:r + 3, c:c + 3, 0] = CROSS
  for index, (r, c) in {1: (6, 6), 6: (12, 3)}.items():
    images[index, r:r + 3, c:c + 3, 0] = BAR
  _, activations = vis.forward(model, variables, images, 'detector')
  maxima, positions = vis.channel_maxima(activations)
  units, winners = map(np.asarray, vis.top_activations(maxima, num_units=2, per_unit=3))
  assert units[0] == 0 and set(winners[0]) == set(crosses)
  assert units[1] == 1 and set(winners[1][:2]) == {1, 6}
  where = np.asarray(positions)[winners[0], 0]
  assert [tuple(p) for p in where] == [crosses[i] for i in winners[0]]
  boxes = vis.receptive_fields(model, variables, (16, 16, 1), 'detector', where)
  patches = vis.crop_patches(images[winners[0]], boxes)
  assert patches.shape == (3, 3, 3, 1)
  for patch in patches:
    np.testing.assert_array_equal(patch[..., 0], CROSS)


def test_receptive_field_through_a_stride_two_pool_is_the_papers_arithmetic():
  model = Detector(np.ones((3, 3, 1, 2), np.float32))
  variables = _init(model, (20, 20, 1))
  positions = np.array([[0, 0], [1, 2], [5, 5]])   # 'head' maps 20 -> 18 -> 9 -> 7
  boxes = vis.receptive_fields(model, variables, (20, 20, 1), 'head', positions)
  # head (i, j) reads pool rows i..i+2, i.e. detector rows 2i..2i+5, i.e. input rows 2i..2i+7
  expected = [[2 * i, 2 * j, 2 * i + 8, 2 * j + 8] for i, j in positions]
  np.testing.assert_array_equal(boxes, np.minimum(expected, 20))


def test_confusion_matrix_and_most_confident_wrong_equal_a_hand_count():
  labels = np.array([0, 0, 1, 2, 2, 2, 1])
  probs = np.array([[.9, .05, .05], [.2, .7, .1], [.1, .8, .1], [.1, .1, .8], [.6, .3, .1],
                    [.05, .9, .05], [.3, .3, .4]])
  matrix = np.asarray(vis.confusion_matrix(labels, probs.argmax(axis=1), 3))
  np.testing.assert_array_equal(matrix, [[1, 1, 0],
                                         [0, 1, 1],
                                         [1, 1, 1]])
  # wrong: #1 (0 as 1, .7), #4 (2 as 0, .6), #5 (2 as 1, .9), #6 (1 as 2, .4)
  np.testing.assert_array_equal(vis.most_confident_wrong(probs, labels, 3), [5, 1, 4])
  np.testing.assert_array_equal(vis.most_confident_wrong(probs, labels, 10), [5, 1, 4, 6])


def test_backprop_rules_pass_what_the_papers_say():
  x = jnp.array([-1.0, 2.0, -3.0, 4.0])
  g = jnp.array([5.0, -6.0, -7.0, 8.0])
  for rule, expected in (('guided', [0, 0, 0, 8]), ('deconvnet', [5, 0, 0, 8])):
    relu = vis.BACKPROP_RULES[rule]
    np.testing.assert_array_equal(relu(x), jax.nn.relu(x))
    _, pullback = jax.vjp(relu, x)
    np.testing.assert_array_equal(pullback(g)[0], expected)


def test_reconstructions_follow_the_strongest_unit_and_differ_from_the_plain_gradient():
  model = Detector(np.stack([_matched(CROSS, 1.0), _matched(BAR, 1.0)], axis=-1)[:, :, None, :])
  variables = _init(model, (16, 16, 1))
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 1))
  guided, units = vis.reconstruct(model, variables, images, 'head', 'guided')
  deconvnet, deconvnet_units = vis.reconstruct(model, variables, images, 'head', 'deconvnet')
  np.testing.assert_array_equal(units, deconvnet_units)

  @jax.jit
  def plain(x):  # the plain gradient of the same units
    activations = lambda x: vis.forward(model, variables, x, 'head')[1]
    return jax.grad(lambda x: sum(activations(x)[n][tuple(units[n])] for n in range(2)))(x), \
        activations(x)
  gradient, activations = plain(images)
  assert guided.shape == images.shape
  assert not np.allclose(guided, gradient) and not np.allclose(deconvnet, gradient)
  for n in range(2):  # each image's strongest unit, as (row, column, channel)
    assert activations[n][tuple(units[n])] == activations[n].max()
  # the check that keeps them to ReLU networks
  assert vis.nonlinearity_change(OnePixel(), _init(OnePixel(), (12, 12, 1)), images[:, :12, :12]) \
      < 1e-6
  squash = OnePixel(act=jnp.tanh)
  assert vis.nonlinearity_change(squash, _init(squash, (12, 12, 1)), images[:, :12, :12]) > 1e-3


# Primitives that compute a nonlinearity (jax.nn.relu is a custom_jvp; squash is tanh).
NONLINEAR_PRIMITIVES = {'custom_jvp_call', 'max', 'min', 'tanh', 'logistic', 'exp', 'erf', 'abs',
                        'sign', 'clamp'}


def _primitives(jaxpr, found: set) -> set:
  """The primitives of a jaxpr and its sub-jaxprs, not looking inside custom_vjp calls (the
  swapped ReLUs' own forward pass)."""
  for eqn in jaxpr.eqns:
    found.add(eqn.primitive.name)
    if eqn.primitive.name.startswith('custom_vjp'):
      continue
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          _primitives(inner, found)
  return found


SMOKE = [name for name in models.names() if models.info(name).smoke is not None]


@pytest.mark.parametrize('name', SMOKE)
def test_activation_swap_reaches_every_nonlinearity_and_layers_are_found(name):
  smoke = models.info(name).smoke
  model = models.get_model(name, **smoke.kwargs)
  calls = vis.module_calls(model, smoke.input_shape)
  variables = jax.eval_shape(lambda: model.init(
      {'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)},
      jnp.zeros((1,) + smoke.input_shape), train=False))
  image = jax.ShapeDtypeStruct((1,) + smoke.input_shape, jnp.float32)

  swaps = []
  def counting_guided(x):
    swaps.append(x.shape)
    return vis.BACKPROP_RULES['guided'](x)
  forward = lambda m: jax.make_jaxpr(lambda v, x: m.apply(v, x, train=False))(variables, image)
  plain = _primitives(forward(model).jaxpr, set())
  swapped = _primitives(forward(model.clone(act=counting_guided)).jaxpr, set())
  assert plain & NONLINEAR_PRIMITIVES, 'the check would see a nonlinearity left in place'
  assert swaps and not swapped & NONLINEAR_PRIMITIVES, (
      f'{name}: nonlinearities outside act: {swapped & NONLINEAR_PRIMITIVES}')

  conv = vis.first_conv(calls)
  kernel = vis.subtree(variables['params'], conv.path)['kernel']
  assert kernel.shape == conv.kernel_shape and kernel.shape[2] == smoke.input_shape[-1]
  assert calls.index(conv) == min(i for i, c in enumerate(calls) if c.kernel_shape)
  assert jax.eval_shape(vis.filter_grid, kernel).ndim == 3
  layer = vis.default_layer(calls)
  assert vis.find_layer(calls, layer.path) == layer and len(layer.output_shape) == 4


def test_a_wrong_layer_is_one_line_naming_the_valid_layers():
  name = 'plain20_cifar'
  calls = vis.module_calls(models.get_model(name), models.info(name).smoke.input_shape)
  with pytest.raises(ConfigError) as error:
    vis.find_layer(calls, 'stage2_blok1')
  message = str(error.value)
  assert '\n' not in message and 'Did you mean stage2_block1' in message
  # 47 layers: the top-level ones are listed, and how to name those inside them
  top = [layer.path for layer in vis.feature_layers(calls) if '/' not in layer.path]
  assert all(path in message for path in top)
  assert 'as PATH/NAME (e.g. stage1_block1/conv1)' in message


# ---------------------------------------------------------------------------------------------
# The command, on a LeNet-5 trained 20 steps on digits


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
  from cnn_jax import train
  workdir = str(tmp_path_factory.mktemp('visualize_run'))
  config = small_config(data_dir, num_train_steps=20)
  train.train_and_evaluate(config, workdir)
  return config, workdir


def test_a_wrong_layer_stops_the_run_before_anything_is_drawn(trained, tmp_path):
  config, workdir = trained
  out = tmp_path / 'out'
  with pytest.raises(ConfigError, match=r'--layer=C2 .*Valid layers: C1, C3\.'):
    vis.run(config, workdir, vis.Options(out=str(out), layer='C2'))
  assert not out.exists()


def test_command_writes_every_figure_and_tensorboard_images(trained, data_dir):
  import tensorflow as tf
  _, workdir = trained
  env = dict(os.environ, XLA_FLAGS=xla_flags(1), TFDS_DATA_DIR=data_dir)
  result = subprocess.run(
      [sys.executable, '-m', 'cnn_jax.visualize', f'--workdir={workdir}', '--images=0,3',
       '--num_eval=100', '--num_units=2', '--per_unit=3', '--num_wrong=4', '--occlusion_stride=4',
       '--config.data.eval_split=test[:200]'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = os.path.join(workdir, 'visualize')
  assert sorted(os.listdir(out)) == sorted(f'{w}.png' for w in vis.WHAT)
  for name in os.listdir(out):
    with open(os.path.join(out, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  events = tf.io.gfile.glob(os.path.join(workdir, run_files.TENSORBOARD, 'visualize', 'events.*'))
  assert len(events) == 1
  tags = {value.tag for event in tf.compat.v1.train.summary_iterator(events[0])
          for value in event.summary.value}
  assert tags == set(vis.WHAT)
