"""layers.conv_general_dilated: the same values and gradients as lax's convolution, computed the way
XLA:CPU runs fast."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import ConfigError
from cnn_jax.models import layers

NHWC = ('NHWC', 'HWIO', 'NHWC')


@pytest.mark.parametrize('groups,per_group_in,per_group_out,kernel,stride,padding,dilation', [
    (4, 2, 3, 3, 1, 'SAME', 1),             # ResNeXt's 3x3
    (4, 2, 3, 3, 2, ((1, 1), (1, 1)), 1),    # its strided first block
    (2, 3, 2, 5, 2, 'VALID', 1),            # AlexNet's towers
    (2, 3, 2, 3, 1, ((2, 2), (2, 2)), 2),    # dilated
    (2, 3, 4, 3, 3, ((0, 1), (1, 0)), 1),    # asymmetric padding, stride leaving a remainder
])
def test_grouped_conv_matches_lax_values_and_gradients(groups, per_group_in, per_group_out, kernel,
                                                       stride, padding, dilation):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 11, groups * per_group_in))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, per_group_in, groups * per_group_out))
  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(
        x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, NHWC),
        feature_group_count=groups)))
  ours = jax.jit(jax.value_and_grad(loss(layers.conv_general_dilated), argnums=(0, 1)))(x, w)
  native = jax.jit(jax.value_and_grad(loss(lax.conv_general_dilated), argnums=(0, 1)))(x, w)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(native)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_grouped_kernel_gradient_avoids_the_batch_grouped_kernel_gradient_on_cpu():
  x = jnp.ones((2, 8, 8, 8))
  w = jnp.ones((3, 3, 2, 8))
  def kernel_gradient_hlo(conv):
    grad = jax.grad(lambda w: jnp.sum(conv(
        x, w, (1, 1), 'SAME', dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, NHWC),
        feature_group_count=4)))
    return jax.jit(grad).lower(w).as_text()
  assert 'batch_group_count = 4' in kernel_gradient_hlo(lax.conv_general_dilated)
  ours = kernel_gradient_hlo(layers.conv_general_dilated)
  assert 'batch_group_count = 4' not in ours and ours.count('feature_group_count = 4') == 1


@pytest.mark.parametrize('kernel,stride,padding,dilation', [
    (3, 1, 'SAME', 1),                 # a ResNet's 3x3
    (3, 2, ((1, 1), (1, 1)), 1),       # its strided first block
    (1, 1, 'VALID', 1),                # a bottleneck's 1x1
    (5, 1, 'VALID', 1),                # LeNet's C1
    (3, 3, ((0, 1), (1, 0)), 2),       # dilated, asymmetric padding, stride leaving a remainder
])
def test_chunked_kernel_gradient_matches_lax(monkeypatch, kernel, stride, padding, dilation):
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 56, 56, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, 3, 5))
  # Chunks of 2 examples: the input is 37 KiB an example.
  monkeypatch.setattr(layers, 'KERNEL_GRAD_CHUNK_BYTES', 2 * 56 * 56 * 3 * 4)
  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(
        x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=lax.conv_dimension_numbers(x.shape, w.shape, NHWC))))
  grad = jax.value_and_grad(loss(layers.conv_general_dilated), argnums=(0, 1))
  assert jax.jit(jax.grad(loss(layers.conv_general_dilated), argnums=1)).lower(
      x, w).as_text().count('convolution(') == 1 + 3   # the forward conv and one per chunk
  ours = jax.jit(grad)(x, w)
  native = jax.jit(jax.value_and_grad(loss(lax.conv_general_dilated), argnums=(0, 1)))(x, w)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(native)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_kernel_gradient_chunks_follow_the_map_size():
  chunk = lambda shape, pixels: layers.kernel_grad_chunk(shape, pixels)
  assert chunk((128, 32, 32, 16), 32 * 32) == 16      # a CIFAR ResNet's first stage: 1 MiB chunks
  assert chunk((128, 8, 8, 64), 8 * 8) is None         # small maps: the native gradient is as fast
  assert chunk((16, 32, 32, 16), 32 * 32) is None      # the whole batch fits one chunk
  assert chunk((8, 56, 56, 256), 56 * 56) == 2         # never fewer than 2 examples a chunk


@pytest.mark.parametrize('group_size', [0, -2])
def test_batch_norm_group_size_is_none_or_positive(group_size):
  with pytest.raises(ConfigError, match=r'bn_group_size \(None: statistics over the global batch\) '
                                        r'must be a positive integer'):
    layers.BatchNorm(group_size=group_size).init(jax.random.PRNGKey(0), jnp.ones((4, 3)), train=True)


@pytest.mark.parametrize('group_size', [None, 2])
def test_batch_norm_normalises_each_group_and_updates_the_running_statistics(group_size):
  x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (4, 5, 5, 3))
  bn = layers.BatchNorm(group_size=group_size)
  variables = bn.init(jax.random.PRNGKey(1), x, train=False)
  params = {'scale': jnp.array([1.0, 2.0, 0.5]), 'bias': jnp.array([0.0, -1.0, 3.0])}
  y, updated = bn.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, train=True,
                        mutable=['batch_stats'])
  groups = np.asarray(x, np.float64).reshape(4 // (group_size or 4), -1, 5, 5, 3)
  mean = groups.mean(axis=(1, 2, 3), keepdims=True)
  var = groups.var(axis=(1, 2, 3), keepdims=True)
  want = ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * params['scale'] + params['bias']
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(updated['batch_stats']['mean'], 0.1 * mean.mean(axis=0).ravel(), rtol=1e-5)
  np.testing.assert_allclose(updated['batch_stats']['var'], 0.9 + 0.1 * var.mean(axis=0).ravel(),
                             rtol=1e-5)
  stats = {'mean': jnp.array([1.0, 2.0, 3.0]), 'var': jnp.array([4.0, 1.0, 0.25])}
  evaluated = bn.apply({'params': params, 'batch_stats': stats}, x, train=False)
  np.testing.assert_allclose(evaluated, (np.asarray(x, np.float64) - stats['mean'])
                             / np.sqrt(np.asarray(stats['var']) + 1e-5) * params['scale']
                             + params['bias'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('depth, nearest', [(21, '20 and 26'), (30, '26 and 32'), (7, '8 and 14'),
                                            ('x', '8 and 14')])
def test_a_depth_off_the_rule_names_the_two_nearest_valid_depths(depth, nearest):
  assert layers.units_for_depth(110, per_unit=6, fixed=2, net='a net', counted='c',
                                examples='e') == 18
  with pytest.raises(ConfigError, match=f'must be 6n\\+2 .*Nearest valid depths: {nearest} '):
    layers.units_for_depth(depth, per_unit=6, fixed=2, net='a net', counted='c', examples='e')


def test_the_shared_argument_checks_raise_one_config_error_type():
  with pytest.raises(ConfigError, match=r'must be in \(0, 1\]'):
    layers.survival_probs(3, 0.0)  # the stochastic-depth rule, also checked by every family
  with pytest.raises(ConfigError, match=r'VGG dropout_rate must be in \[0, 1\); got 1.0'):
    layers.check_dropout_rate(1.0, 'VGG dropout_rate')
  assert layers.survival_probs(2, 0.5) == [0.75, 0.5]
