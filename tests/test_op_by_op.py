"""The initial state computed op by op equals JAX's eager one bit for bit, at fewer compiles."""
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import op_by_op, train
from cnn_jax.models import layers
from tests.conftest import small_config


class EveryInitializer(nn.Module):
  """One layer per initializer the models use; ``width`` changes every shape."""
  width: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.width, (3, 3))(x)  # flax's default: LeCun truncated normal
    x = layers.BatchNorm()(x, train)
    x = nn.Conv(self.width + 3, (3, 3), kernel_init=layers.he_normal_fan_out)(x)
    x = nn.Dense(2 * self.width, kernel_init=nn.initializers.uniform(0.1),
                 bias_init=nn.initializers.constant(0.25))(x.reshape(x.shape[0], -1))
    return nn.Dense(10, kernel_init=nn.initializers.normal(0.01))(x)


def _state(model, tx, seed, image_shape=(6, 6, 3)):
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + image_shape), train=False)
  return variables, tx.init(variables['params'])


def _assert_bitwise_equal(got, expected):
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('largest_bucketed', [1 << 22, 512])
def test_op_by_op_equals_eager_jax_bit_for_bit(monkeypatch, largest_bucketed):
  """Bucketed samplers, draws too large to bucket, numpy broadcasts and arithmetic, optimiser
  zeros: every leaf equals the eager result, and the jitted one is not the reference (it rounds
  differently, so equality here would prove nothing about eager)."""
  monkeypatch.setattr(op_by_op, 'BUCKETED_SAMPLES_BELOW', largest_bucketed)
  model, tx = EveryInitializer(width=5), optax.sgd(0.1, momentum=0.9)
  expected = _state(model, tx, 3)
  _assert_bitwise_equal(op_by_op.run(lambda seed: _state(model, tx, seed), 3), expected)


def test_one_compiled_sampler_serves_every_shape_of_a_size_class(caplog):
  """After one net, a net whose every shape differs (but falls in the same powers of two) compiles
  no sampler: what makes a deep net's initialisation fast."""
  tx = optax.sgd(0.1)
  op_by_op.run(lambda seed: _state(EveryInitializer(width=12), tx, seed), 0)
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    state = op_by_op.run(lambda seed: _state(EveryInitializer(width=13), tx, seed), 0)
  compiled = [r.getMessage() for r in caplog.records if 'Compiling' in r.getMessage()]
  assert state[0]['params']['Conv_1']['kernel'].shape == (3, 3, 13, 16)
  assert not [m for m in compiled if '_normal' in m or '_uniform' in m], compiled


def test_init_state_of_a_registered_net_equals_flax_lazy_init(data_dir):
  setup = train.build(small_config(data_dir, model__name='resnet_cifar', model__depth=8,
                                   model__base_width=4))
  params_rng, dropout_rng, state_rng = jax.random.split(jax.random.PRNGKey(7), 3)
  variables = setup.model.lazy_init({'params': params_rng, 'dropout': dropout_rng},
                                    jax.ShapeDtypeStruct((1,) + setup.info.image_shape,
                                                         jnp.float32), train=False)
  state = train.init_state(setup, 7)
  _assert_bitwise_equal((state.params, state.batch_stats, state.rng),
                        (variables['params'], variables['batch_stats'], state_rng))
  _assert_bitwise_equal(state.opt_state, setup.tx.init(variables['params']))
