"""Every registered model against the facts its registry entry carries (cnn_jax.models.info).

A new variant is one ``register`` call: these tests find it, trace it at its registered input shape
(``jax.make_jaxpr``: nothing is allocated or compiled) and check its output, each published figure
it declares, and that its ``act`` argument replaces every nonlinearity: the replacement counts its
calls, and the traced program is searched for a ReLU or a tanh (LeNet's squash) that did not go
through ``act``.
"""
from __future__ import annotations

import gc
import os
import re
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jax_core

from cnn_jax import models
from cnn_jax.models import lenet
from cnn_jax.summary import reference_row, summarize

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      'README.md')


def _readme_reference_rows() -> dict[str, str]:
  """The README's reference figures, model name -> its table row."""
  with open(README) as f:
    section = f.read().split('### Reference figures')[1].split('\n#')[0]
  return {m.group(1): line for line in section.splitlines()
          if (m := re.match(r'\| `(\w+)` \|', line))}


README_ROWS = _readme_reference_rows()


def _traced(name: str, act: Optional[Callable[[jax.Array], jax.Array]] = None, **kwargs):
  """(jaxpr, (logits, variables)) of init on a batch of 2 at the registered input shape; the
  shapes as ShapeDtypeStructs."""
  model = models.get_model(name, **kwargs, **({'act': act} if act else {}))
  shape = (2,) + models.info(name).input_shape
  def init():
    return model.init_with_output({'params': jax.random.key(0)}, jnp.zeros(shape), train=False)
  # Tracing a deep net makes many short-lived objects; pausing CPython's cycle collector, which
  # would rescan the growing heap again and again, saves about a fifth of the tracing time.
  gc.disable()
  try:
    jaxpr, out = jax.make_jaxpr(init, return_shape=True)()
    return jaxpr.jaxpr, out
  finally:
    gc.enable()


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


def _param_count(variables) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(variables['params']))


def matches_printed(value: float, printed: float, tolerance: float) -> bool:
  """Within ``tolerance`` (relative), or equal at the printed precision (0.769M prints as 0.8M)."""
  decimals = len(repr(float(printed)).split('.')[1].rstrip('0'))
  return abs(value - printed) <= tolerance * printed or round(value, decimals) == printed


def test_matches_printed_can_fail():
  assert matches_printed(0.769, 0.8, 0.01) and matches_printed(36.48, 36.5, 0.01)
  assert not matches_printed(0.74, 0.8, 0.01) and not matches_printed(10.33, 10.2, 0.01)


def test_every_model_has_its_facts():
  families_with_smoke = set()
  for name in models.names():
    info = models.info(name)
    assert len(info.input_shape) == 3 and all(d > 0 for d in info.input_shape), name
    assert ' et al. ' in info.paper or ' & ' in info.paper, (name, info.paper)   # authors, year
    assert isinstance(info.published, tuple), name   # empty says "no published figure"
    assert isinstance(info.num_classes, int) and info.num_classes > 0, name
    if info.smoke:
      families_with_smoke.add(info.family)
  # tests/test_models_train.py trains each family file's small instance.
  assert families_with_smoke == {models.info(n).family for n in models.names()}


def test_registering_without_facts_fails():
  with pytest.raises(TypeError, match='published'):
    models.register('lenet5_copy', models.lenet.LeNet5, input_shape=(32, 32, 1), paper='x')
  with pytest.raises(ValueError, match=r'\(H, W, C\)'):
    models.register('lenet5_copy', models.lenet.LeNet5, input_shape=(32, 32), paper='x',
                    published=())
  with pytest.raises(ValueError, match='gives no figure'):
    models.Published('a paper')
  assert 'lenet5_copy' not in models.names()


@pytest.mark.parametrize('name', models.names())
def test_output_shape_act_and_published_figures(name):
  info = models.info(name)
  calls = []
  def act(x: jax.Array) -> jax.Array:
    calls.append(x.shape)
    return jnp.sin(x)
  summaries = {}
  def summary(**kwargs):   # traced once per set of arguments
    key = tuple(sorted(kwargs.items()))
    if key not in summaries:
      summaries[key] = summarize(name, **kwargs)
    return summaries[key]
  jaxpr, (logits, variables) = _traced(name, act)
  assert calls, f'{name} never calls its act'
  assert not fixed_nonlinearities(jaxpr), f'{name} has nonlinearities that are not its act'
  assert logits.shape == (2, info.num_classes) and logits.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(variables['params'])} == {jnp.dtype(jnp.float32)}
  for figure in info.published:
    if figure.params is not None or figure.params_m is not None:
      count = _param_count(_traced(name, **figure.built_with)[1][1] if figure.built_with
                           else variables)
      if figure.params is not None:
        assert count == figure.params, (figure.source, count)
      if figure.params_m is not None:
        assert matches_printed(count / 1e6, figure.params_m, figure.tolerance), (figure.source, count)
    if figure.gmacs is not None:
      macs = summary(**figure.built_with)['totals']['macs']
      assert matches_printed(macs / 1e9, figure.gmacs, figure.tolerance), (figure.source, macs)
  if name in README_ROWS:
    assert README_ROWS[name] == reference_row(summary())


def test_readme_reference_table_is_found():
  assert {'alexnet', 'vgg16', 'resnet50', 'alphago_policy'} <= set(README_ROWS)
  assert set(README_ROWS) <= set(models.names())


def test_lenet5_1998_keeps_the_papers_squash_without_act():
  jaxpr = jax.make_jaxpr(lambda: models.get_model('lenet5_1998').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 1))))().jaxpr
  assert set(fixed_nonlinearities(jaxpr)) == {'tanh'}
