"""The XLA flags cnn_jax sets at import, and what they do to the compiled programs."""
import re

import jax
import jax.numpy as jnp
import pytest

import cnn_jax
from cnn_jax.models import layers


@pytest.mark.parametrize('given, expected', [
    ('', '--xla_disable_hlo_passes=cse_barrier_expander '
         '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    # the user's passes are kept and the barrier's pass is added to them
    ('--xla_disable_hlo_passes=foo --xla_force_host_platform_device_count=2',
     '--xla_disable_hlo_passes=foo,cse_barrier_expander --xla_force_host_platform_device_count=2 '
     '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    # the user's own choice of library fusions wins
    ('--xla_cpu_experimental_ynn_fusion_type=individual_dot',
     '--xla_cpu_experimental_ynn_fusion_type=individual_dot '
     '--xla_disable_hlo_passes=cse_barrier_expander'),
])
def test_xla_flags_extend_the_users(monkeypatch, given, expected):
  monkeypatch.setenv('XLA_FLAGS', given)
  cnn_jax._set_xla_flags()
  import os
  assert os.environ['XLA_FLAGS'] == expected
  cnn_jax._set_xla_flags()  # idempotent: a second import adds nothing
  assert os.environ['XLA_FLAGS'] == expected


def test_compiled_block_keeps_its_barrier_and_eigen_convolutions():
  def block(x, kernel):
    y = layers.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return layers.checkpoint_block_output(x + jax.nn.relu(y))

  def loss(x, kernel):
    return jnp.sum(block(block(x, kernel), kernel) ** 2)

  # big enough for YNNPACK to take the convolutions when allowed
  x, kernel = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32)) * 0.01
  hlo = jax.jit(jax.grad(loss, argnums=1)).lower(x, kernel).compile().as_text()
  assert 'opt-barrier' in hlo, "cse_barrier_expander removed the residual blocks' barriers"
  # the computations that convolve, and those that YNNPACK fusions call
  computations = [c for c in hlo.split('\n\n') if c.strip()]
  convolving = {c.split()[0].lstrip('%') for c in computations if ' convolution(' in c}
  ynn_called = set(re.findall(r'ynn_fusion[.\d]* = .*calls=%([\w.]+)', hlo))
  assert convolving, hlo
  assert not convolving & ynn_called, f'convolutions in YNNPACK fusions: {convolving & ynn_called}'
