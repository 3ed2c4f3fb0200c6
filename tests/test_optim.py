"""Optimisers and schedules built from the config."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import ConfigError, optim
from tests.conftest import small_config


def _config(**overrides):
  return small_config('/nonexistent', **overrides)


def test_piecewise_divides_by_ten_at_epoch_boundaries():
  config = _config(schedule__name='piecewise', schedule__boundaries=(2, 4), schedule__warmup=0,
                   optimizer__learning_rate=0.1)
  schedule = optim.make_schedule(config, steps_per_epoch=10, total_steps=60)
  assert [float(schedule(s)) for s in (0, 19, 20, 39, 40, 59)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_iteration_milestones_with_constant_warmup():
  # He et al. ResNet-110: 0.01 for the first 400 iterations, then 0.1, /10 at 32k and 48k.
  config = _config(schedule__name='piecewise', schedule__unit='steps', schedule__warmup=400,
                   schedule__warmup_lr=0.01, schedule__warmup_shape='constant',
                   schedule__boundaries=(32000, 48000), optimizer__learning_rate=0.1)
  schedule = optim.make_schedule(config, steps_per_epoch=391, total_steps=64000)
  assert [float(schedule(s)) for s in (0, 399, 400, 31999, 32000, 48000)] == pytest.approx(
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


def test_cosine_with_linear_warmup():
  config = _config(schedule__name='cosine', schedule__warmup=1, optimizer__learning_rate=1.0)
  schedule = optim.make_schedule(config, steps_per_epoch=10, total_steps=110)
  assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0) and float(schedule(60)) == pytest.approx(0.5)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)


def _one_update(config, params, grads):
  tx = optim.make_optimizer(config, optim.make_schedule(config, 10, 100))
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_coupled_decay_is_l2_in_gradient_and_skips_biases():
  config = _config(optimizer__name='sgd', optimizer__momentum=0.9, optimizer__nesterov=False,
                   optimizer__weight_decay=0.1, optimizer__learning_rate=0.5, schedule__name='constant',
                   schedule__warmup=0)
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  grads = {'kernel': jnp.zeros((2, 2)), 'bias': jnp.zeros((2,))}
  updates = _one_update(config, params, grads)
  np.testing.assert_allclose(updates['kernel'], -0.5 * 0.1 * np.ones((2, 2)))  # -lr * wd * w
  np.testing.assert_allclose(updates['bias'], 0.0)


def test_adamw_decoupled_decay_is_not_normalised_by_adam():
  config = _config(optimizer__name='adamw', optimizer__weight_decay=0.1, optimizer__learning_rate=0.5,
                   schedule__name='constant', schedule__warmup=0)
  params = {'kernel': 2 * jnp.ones((2, 2))}
  updates = _one_update(config, params, {'kernel': jnp.zeros((2, 2))})
  np.testing.assert_allclose(updates['kernel'], -0.5 * 0.1 * 2.0)
  reference = optax.adamw(0.5, weight_decay=0.1)
  expected, _ = reference.update({'kernel': jnp.full((2, 2), 0.3)}, reference.init(params), params)
  np.testing.assert_allclose(_one_update(config, params, {'kernel': jnp.full((2, 2), 0.3)})['kernel'],
                             expected['kernel'], rtol=1e-6)


def test_nesterov_matches_optax_sgd():
  config = _config(optimizer__name='sgd', optimizer__momentum=0.9, optimizer__nesterov=True,
                   optimizer__weight_decay=0.0, optimizer__learning_rate=0.1, schedule__name='constant',
                   schedule__warmup=0)
  tx = optim.make_optimizer(config, optim.make_schedule(config, 10, 100))
  ref = optax.sgd(0.1, momentum=0.9, nesterov=True)
  params = {'w': jnp.arange(3.0)}
  state, ref_state = tx.init(params), ref.init(params)
  for g in (1.0, -2.0, 0.5):
    grads = {'w': jnp.full(3, g)}
    u, state = tx.update(grads, state, params)
    r, ref_state = ref.update(grads, ref_state, params)
    np.testing.assert_allclose(u['w'], r['w'], rtol=1e-6)


@pytest.mark.parametrize('key,value,message', [
    ('optimizer__name', 'sgdm', r"unknown optimizer 'sgdm'.*sgd, adam, adamw"),
    ('schedule__name', 'step', r"unknown schedule 'step'.*constant, piecewise, cosine"),
    ('optimizer__weight_decay_mode', 'l2', r"weight_decay_mode must be 'coupled' or 'decoupled'"),
])
def test_bad_names_list_valid_ones(key, value, message):
  config = _config(**{key: value})
  with pytest.raises(ConfigError, match=message):
    optim.make_optimizer(config, optim.make_schedule(config, 10, 100))
