"""Runs a function op by op, as JAX's eager mode does, to the same bits, but compiling far less.

For initial states. Eager initialisation compiles one XLA program per primitive and shape: a
sampler per kernel shape, a multiply per kernel shape, a broadcast per ``zeros`` of the optimiser.
flax's ``lazy_init`` also runs every eval-mode BatchNorm's arithmetic on the known parameters,
whose results nobody reads. A jitted initialisation compiles one threefry per parameter instead,
for longer than it runs, and rounds differently from the eager one. :func:`run` traces the
function once, drops the ops whose results are unused, and evaluates the rest in order, with two
changes that keep every bit:

- normal, truncated normal and uniform samples of fewer than ``BUCKETED_SAMPLES_BELOW`` values are
  drawn at the next power of two and cut to shape on the host. With threefry's partitionable
  layout (``jax_threefry_partitionable``, JAX's default) value i of a draw depends only on the key
  and i, so the first n of a longer draw are the n values, and one compiled sampler serves every
  shape of a size class. Larger draws keep their shape: there, sampling costs more than compiling.
- broadcasts and single-precision arithmetic on concrete values run in numpy, which compiles
  nothing and rounds as XLA does (IEEE 754 correctly rounded operations).

Anything else is bound as JAX binds it eagerly.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import numpy as np
from jax.extend import core
# dce_jaxpr has no public name; tests/test_op_by_op.py fails if it changes meaning.
from jax._src.interpreters.partial_eval import dce_jaxpr

BUCKETED_SAMPLES_BELOW = 1 << 22
SMALLEST_BUCKET = 1 << 10

# The samplers inside jax.random (jitted with static shape and dtype): how many traced arguments
# follow the key, and the public function that draws the same values at another shape.
_SAMPLERS = {
    '_normal': (0, lambda key, args, shape, dtype: jax.random.normal(key, shape, dtype)),
    '_truncated_normal': (2, lambda key, args, shape, dtype: jax.random.truncated_normal(
        key, *args, shape, dtype)),
    '_uniform': (2, lambda key, args, shape, dtype: jax.random.uniform(key, shape, dtype, *args)),
}


def _np_broadcast_in_dim(x, *, shape, broadcast_dimensions, **_):
  expanded = [1] * len(shape)
  for in_dim, out_dim in enumerate(broadcast_dimensions):
    expanded[out_dim] = np.shape(x)[in_dim]
  return np.ascontiguousarray(np.broadcast_to(np.reshape(x, expanded), shape))


_NUMPY = {
    'broadcast_in_dim': _np_broadcast_in_dim,
    'reshape': lambda x, *, new_sizes, **_: np.reshape(x, new_sizes),
    'mul': lambda x, y, **_: np.multiply(x, y),
    'div': lambda x, y, **_: np.divide(x, y),
    'sqrt': lambda x, **_: np.sqrt(x),
}


def run(fn: Callable[..., Any], *args: Any) -> Any:
  """``fn(*args)`` evaluated op by op; leaves are numpy or JAX arrays, equal to eager JAX's."""
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
  jaxpr, used_inputs = dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
  flat_args = [x for x, used in zip(jax.tree.leaves(args), used_inputs) if used]
  partitionable = jax.config.jax_threefry_partitionable
  env = dict(zip(closed.jaxpr.constvars, closed.consts))
  env.update(zip(jaxpr.invars, flat_args))
  read = lambda v: v.val if isinstance(v, core.Literal) else env[v]
  for eqn in jaxpr.eqns:
    values = [read(v) for v in eqn.invars]
    outs = None
    if partitionable:
      outs = _bucketed_sample(eqn, values)
    if outs is None:
      outs = _numpy_op(eqn, values)
    if outs is None:
      outs = eqn.primitive.bind(*values, **eqn.params)
      outs = outs if eqn.primitive.multiple_results else [outs]
    env.update(zip(eqn.outvars, outs))
  return jax.tree.unflatten(jax.tree.structure(out_shape), [read(v) for v in jaxpr.outvars])


def _bucketed_sample(eqn: core.JaxprEqn, values: list) -> list | None:
  name = eqn.params.get('name') if eqn.primitive.name in ('jit', 'pjit') else None
  if name not in _SAMPLERS or len(values) != 1 + _SAMPLERS[name][0] or len(eqn.outvars) != 1:
    return None
  aval = eqn.outvars[0].aval
  size = math.prod(aval.shape)
  key = values[0]
  if (size >= BUCKETED_SAMPLES_BELOW or not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
      or jax.random.key_impl(key) != 'threefry2x32'):
    return None
  bucket = max(SMALLEST_BUCKET, 1 << (size - 1).bit_length())
  drawn = np.asarray(_SAMPLERS[name][1](key, values[1:], (bucket,), aval.dtype))
  return [drawn[:size].reshape(aval.shape)]


def _numpy_op(eqn: core.JaxprEqn, values: list) -> list | None:
  op = _NUMPY.get(eqn.primitive.name)
  if op is None or not all(isinstance(v, (np.ndarray, np.generic, jax.Array, int, float))
                           for v in values):
    return None
  dtype = eqn.outvars[0].aval.dtype
  if (jax.dtypes.issubdtype(dtype, jax.dtypes.extended)  # PRNG keys stay JAX's
      or eqn.params.get('dimensions') is not None  # a reshape that also transposes
      or (dtype != np.float32 and eqn.primitive.name not in ('broadcast_in_dim', 'reshape'))):
    return None
  values = [np.asarray(v, dtype=getattr(v, 'dtype', dtype)) for v in values]
  if any(v.dtype != dtype for v in values):
    return None
  return [np.asarray(op(*values, **eqn.params), dtype=dtype)]
