"""Shared fixtures: a prepared digits data dir and small, fast configs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tests compile far more than they run: LLVM's optimisation level 0 cuts XLA:CPU's compile
# time by about a third (DenseNet-121's train step: 32 s -> 20 s). It changes results by float32
# rounding only, which long training amplifies (on one CPU the quick start ended at 0.9889 instead
# of 0.9806), so the quick start's test runs with the default flags, as users run
# (``run_main(..., as_users_run=True)``); every other subprocess gets these too, so that the runs
# a test compares compile alike. Turning off XLA:CPU's new fusion emitters halves the compile of
# the DenseNets' long concatenation chains (DenseNet-BC-100 train step 12.5 s -> 6.3 s; whole
# suite 481 s -> 414 s in one run each). Set before JAX starts its backend.
# TensorFlow imports Keras eagerly (about 2.5 s of every process here, with scikit-learn and
# SciPy) to register its optimisers for SavedModel. Nothing in cnn_jax uses Keras; pointing TF at
# the absent legacy tf_keras makes it skip that import, in the workers and every subprocess.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'
os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

from cnn_jax import runtime  # noqa: E402  (pytest.ini puts the repository on sys.path)

runtime.start()  # as every entry point does: the project's flags join the tests' own


# The minute-long tests start first, so that the two xdist workers end on short tests instead of
# one worker finishing a long one alone (measured in the 2-worker run: 50-70 s each).
LONG_TESTS = ('tests/test_multihost.py::test_preempted_two_processes', 'tests/test_train.py::test_eight_devices',
              'tests/test_configs.py::test_runlocal_smoke', 'tests/test_train.py::test_default_config',
              'tests/test_multihost.py::')


def pytest_collection_modifyitems(items):
  def rank(item):
    return next((i for i, prefix in enumerate(LONG_TESTS) if item.nodeid.startswith(prefix)),
                len(LONG_TESTS))
  items.sort(key=rank)  # stable: the order within a rank is the file's


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the session: runs that compile the same step (resume tests,
  repeated CLI runs in subprocesses) compile it once."""
  import jax
  path = str(tmp_path_factory.mktemp('xla_cache'))
  os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  return path


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory) -> str:
  """A tfds data dir with digits prepared once for the whole session."""
  import tensorflow_datasets as tfds
  from cnn_jax import data  # noqa: F401  (registers the digits builder)
  path = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('digits', data_dir=path).download_and_prepare()
  return path


def small_config(data_dir: str, **overrides):
  """The default config shrunk for tests; ``overrides`` are dotted keys, e.g. model__depth=8."""
  from configs import default
  config = default.get_config()
  config.data.data_dir = data_dir
  config.num_epochs = 1
  config.log_every_steps = 5
  config.eval_every_epochs = 1
  for key, value in overrides.items():
    *path, leaf = key.split('__')
    node = config
    for part in path:
      node = node[part]
    with node.unlocked() if hasattr(node, 'unlocked') else _noop():
      node[leaf] = value
  return config


class _noop:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def xla_flags(devices: int, as_users_run: bool = False) -> str:
  """A subprocess's XLA_FLAGS: ``devices`` host devices, and the tests' compile flags unless it
  must run as users run."""
  return f'--xla_force_host_platform_device_count={devices}' + ('' if as_users_run else
                                                                  f' {TEST_XLA_FLAGS}')


def run_main(args: list[str], *, devices: int = 1, data_dir: str | None = None,
             timeout: float = 300, as_users_run: bool = False,
             module: str = 'cnn_jax.main') -> subprocess.CompletedProcess:
  """Runs ``python -m cnn_jax.main`` (or another entry point) in a fresh process with ``devices``
  host devices."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = xla_flags(devices, as_users_run)
  if data_dir:
    env['TFDS_DATA_DIR'] = data_dir
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
