"""Every registered model takes ``act`` and uses it for all of its nonlinearities, none hard-wired.

Each net is only traced (``jax.make_jaxpr`` of its init, which runs the forward pass; nothing is
compiled): the replacement counts its calls, and the traced program is searched for a ReLU or a
tanh (LeNet's squash) that did not go through ``act``.
"""
from __future__ import annotations

import gc
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jax_core

from cnn_jax import models
from cnn_jax.models import lenet
from cnn_jax.summary import default_input_shape


def _subjaxprs(params: dict[str, Any]):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax_core.Jaxpr):
        yield item


def fixed_nonlinearities(jaxpr) -> list[str]:
  """The ReLUs (``jax.nn.relu`` traces as a call named relu) and tanhs anywhere in ``jaxpr``."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.params.get('name') == 'relu':
      found.append('relu')
      continue  # its body is the same ReLU
    if eqn.primitive.name == 'tanh':
      found.append('tanh')
    for sub in _subjaxprs(eqn.params):
      found += fixed_nonlinearities(sub)
  return found


def test_the_search_finds_relu_and_squash():
  trace = lambda fn: jax.make_jaxpr(fn)(jnp.ones((2, 3))).jaxpr
  assert fixed_nonlinearities(trace(nn.relu)) == ['relu']
  relu_then_squash = lambda x: lenet.squash(jax.jit(nn.relu)(x))
  assert fixed_nonlinearities(trace(relu_then_squash)) == ['relu', 'tanh']


@pytest.mark.parametrize('name', models.names())
def test_act_replaces_every_nonlinearity(name):
  calls = []

  def act(x: jax.Array) -> jax.Array:
    calls.append(x.shape)
    return jnp.sin(x)

  model = models.get_model(name, act=act)
  images = jnp.zeros((1,) + default_input_shape(name))
  gc.disable()  # tracing a deep net makes many short-lived objects (see test_residual_families)
  try:
    jaxpr = jax.make_jaxpr(lambda: model.init(jax.random.key(0), images, train=False))().jaxpr
  finally:
    gc.enable()
  assert calls, f'{name} never calls its act'
  assert not fixed_nonlinearities(jaxpr), f'{name} has nonlinearities that are not its act'


def test_lenet5_1998_keeps_the_papers_squash_without_act():
  jaxpr = jax.make_jaxpr(lambda: models.get_model('lenet5_1998').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 1))))().jaxpr
  assert set(fixed_nonlinearities(jaxpr)) == {'tanh'}
