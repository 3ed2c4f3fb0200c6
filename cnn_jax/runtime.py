"""Process start-up: the one place that decides XLA's flags and TensorFlow's devices.

Every entry point (``cnn_jax.main``, ``cnn_jax.summary``, the benchmarks, the sweep and report
programs, the tests' conftest) calls :func:`start` (cnn_jax's programs through
:func:`start_program`) before JAX starts its backend; importing
``cnn_jax`` or any of its modules changes nothing in the process.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from typing import Sequence

from absl import logging

from cnn_jax import ConfigError

# XLA flags the project sets, each for a reason measured on its platform (the README's speed
# section). A flag the user's XLA_FLAGS already sets keeps the user's value, extended by ours where
# it is a list of passes.
XLA_FLAGS = {
    # Residual blocks end in an optimization_barrier (models/layers.py) that keeps XLA:CPU from
    # re-fusing the whole residual chain into every backward fusion (quadratic step cost in depth).
    # XLA's cse_barrier_expander pass would remove the barriers.
    '--xla_disable_hlo_passes': 'cse_barrier_expander',
    # XLA:CPU's Eigen convolutions: ResNet-20's train step 394 ms against 598 ms with the
    # convolutions in YNNPACK fusions (this jaxlib's default).
    '--xla_cpu_experimental_ynn_fusion_type': '-individual_convolution',
}
_LIST_FLAGS = ('--xla_disable_hlo_passes',)  # comma lists: the user's value is extended


def merge_xla_flags(given: str) -> str:
  """``given`` (an XLA_FLAGS value) with the project's :data:`XLA_FLAGS` added; the user's value of
  a flag wins, except that a list of passes is extended. Merging twice adds nothing."""
  flags = given.split()
  for name, value in XLA_FLAGS.items():
    given_at = [i for i, f in enumerate(flags) if f.split('=', 1)[0] == name]
    if not given_at:
      flags.append(f'{name}={value}')
    elif name in _LIST_FLAGS:
      i = given_at[-1]  # XLA reads the last occurrence
      current = flags[i].partition('=')[2]
      if value not in current.split(','):
        flags[i] = f'{name}={current},{value}' if current else f'{name}={value}'
  return ' '.join(flags)


def backend_started() -> bool:
  """Whether JAX has started a backend in this process (after which XLA_FLAGS are not read)."""
  if 'jax' not in sys.modules:   # no JAX imported, no backend
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return xla_bridge.backends_are_initialized()


def start() -> None:
  """Prepares the process for cnn_jax; call it first, before anything starts JAX's backend.

  * Adds the project's :data:`XLA_FLAGS` to ``os.environ['XLA_FLAGS']`` (see
    :func:`merge_xla_flags`); XLA reads them once, when the backend starts.
  * Hides GPUs from TensorFlow, which only feeds data here.

  Idempotent. Raises RuntimeError if the flags are not yet set and the backend has already
  started: they could no longer take effect.

  Library functions (``train.make_train_step``, ``models.get_model``, ...) do not call it: by the
  time they run, a caller has usually started the backend (``train.build`` lists the devices), so
  it would come too late or fail. The flags change speed, not results beyond float rounding
  (without them residual nets train slower on CPU), so a program that uses cnn_jax as a library
  calls it once at its own start to get the measured speed.
  """
  flags = merge_xla_flags(os.environ.get('XLA_FLAGS', ''))
  if flags != os.environ.get('XLA_FLAGS'):
    if backend_started():
      raise RuntimeError('cnn_jax.runtime.start() was called after JAX started its backend, so '
                         'XLA would not read its flags: call it first, before any JAX computation.')
    os.environ['XLA_FLAGS'] = flags
  _hide_gpus_from_tensorflow()


def start_program(argv: Sequence[str], *, log_level: int = logging.WARNING) -> None:
  """The start of every cnn_jax program's ``main`` (inside :func:`cnn_jax.one_line_errors`):
  :func:`start`, then a ConfigError for stray arguments (a flag written ``--name value`` leaves its
  value behind as one), then library logs at ``log_level`` (orbax and tfds log every read and write
  at INFO) unless ``--verbosity``/``-v`` is given."""
  start()
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments: {" ".join(argv[1:])}: options are flags, written '
                      '--name=value.')
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(log_level)


_tensorflow_gpus_hidden = False


def _hide_gpus_from_tensorflow() -> None:
  global _tensorflow_gpus_hidden
  # The full tensorflow wheel on a GPU host would otherwise take GPU memory JAX needs.
  # requirements.txt pins tensorflow-cpu, which never sees a GPU: then TF is not imported here
  # (seconds that programs without data, such as the summary, need not pay).
  if (_tensorflow_gpus_hidden or importlib.util.find_spec('tensorflow') is None
      or _is_tensorflow_cpu()):
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # once: TF refuses it after its devices exist
  _tensorflow_gpus_hidden = True


def _is_tensorflow_cpu() -> bool:
  try:
    importlib.metadata.distribution('tensorflow-cpu')
  except importlib.metadata.PackageNotFoundError:
    return False
  try:  # both installed: the full wheel's files win, and it may see GPUs
    importlib.metadata.distribution('tensorflow')
    return False
  except importlib.metadata.PackageNotFoundError:
    return True
