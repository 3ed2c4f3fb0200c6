"""Compiled steps kept whole between runs, so that a warm start neither traces nor compiles them.

JAX's persistent compilation cache skips the compile, but finds its entry by the lowered program,
so every start still traces and lowers each step first (ResNet-110: about 3.5 s of a warm start).
:class:`CachedStep` keys a step's serialized executable on everything the program is made from
instead: cnn_jax's source, the config's fields that reach the programs, the model and data facts,
the library versions, JAX's settings, XLA's flags and the devices. A warm start reads the
executable in a background thread while the initial state is made, and checks it against the
arguments of the first call before using it; anything that does not match is compiled as usual.

The executables live in ``steps/`` of the compilation cache directory (one file per step and key,
unbounded like JAX's own entries), instead of JAX's entries for the same steps: an executable that
JAX's cache deserialised serialises without its kernels (jaxlib 0.10.2: "Function ..._kernel not
found" when it runs), so the steps stored here are compiled afresh and kept out of JAX's cache.
Single-process runs only: a multi-process program's executable is compiled in every process,
through JAX's cache.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import importlib.metadata
import os
import pickle
import tempfile
from typing import Any, Callable, Optional

import jax
import ml_collections
from absl import logging
from jax.experimental import serialize_executable
from jax.extend import backend as jax_backend

SUBDIRECTORY = 'steps'

# Config fields that only the host reads (the loop, the data pipeline, the initial state): runs
# that differ in them alone share their steps' executables. The data set's facts that reach the
# programs (classes, image shape) enter the key through ``facts``; the batch shapes are checked
# on the first call. tests/test_executables.py proves each field leaves the lowered steps alone.
HOST_ONLY_FIELDS = ('seed', 'data', 'log_every_steps', 'eval_every_epochs',
                    'checkpoint_every_steps', 'keep_checkpoints', 'compilation_cache_dir',
                    'final_test_only', 'init_from', 'init_from_skip')
LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'numpy')


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
  """sha256 over cnn_jax's Python files: any change to the code is a new key."""
  root = os.path.dirname(os.path.abspath(__file__))
  digest = hashlib.sha256()
  for directory, subdirectories, files in sorted(os.walk(root)):
    subdirectories.sort()
    for name in sorted(f for f in files if f.endswith('.py')):
      path = os.path.join(directory, name)
      digest.update(os.path.relpath(path, root).encode() + b'\0')
      with open(path, 'rb') as f:
        digest.update(f.read() + b'\0')
  return digest.hexdigest()


def _environment() -> list[str]:
  versions = []
  for library in LIBRARIES:
    try:
      versions.append(f'{library}=={importlib.metadata.version(library)}')
    except importlib.metadata.PackageNotFoundError:
      versions.append(f'{library} absent')
  settings = sorted((k, repr(v)) for k, v in jax.config.values.items() if 'cache' not in k)
  return [*versions, os.environ.get('XLA_FLAGS', ''), repr(settings)]


def _devices(mesh: jax.sharding.Mesh) -> str:
  backend = jax_backend.get_backend()
  devices = [(d.platform, d.device_kind, d.id, d.process_index) for d in mesh.devices.flat]
  return repr((backend.platform_version, jax.process_count(), mesh.axis_names,
               mesh.devices.shape, devices))


def program_config(config: ml_collections.ConfigDict) -> str:
  """The config's fields that reach the compiled programs, as JSON."""
  fields = config.to_dict()
  for name in HOST_ONLY_FIELDS:
    fields.pop(name, None)
  return ml_collections.ConfigDict(fields).to_json_best_effort(sort_keys=True)


def program_digest(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                   *facts: Any) -> str:
  """What a run's steps are made from, hashed: the program's config, ``facts`` (reprs of what
  else the steps are built from: model, data facts, batch size), the code, the libraries, JAX's
  and XLA's settings and the devices."""
  digest = hashlib.sha256()
  for part in (program_config(config), *map(repr, facts), _source_digest(), *_environment(),
               _devices(mesh)):
    digest.update(part.encode() + b'\0')
  return digest.hexdigest()[:40]


def step_key(name: str, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
             *facts: Any, digest: Optional[str] = None) -> str:
  """A step's key: its name and :func:`program_digest` (``digest`` when already computed)."""
  return f'{name}-{digest or program_digest(config, mesh, *facts)}'


def directory(cache_dir: Optional[str]) -> Optional[str]:
  """Where the executables go: ``steps/`` in a local compilation cache directory of a
  single-process run; None (JAX's cache alone) otherwise."""
  if not cache_dir or '://' in cache_dir or jax.process_count() > 1:
    return None
  return os.path.join(cache_dir, SUBDIRECTORY)


def _load(path: str):
  with open(path, 'rb') as f:
    payload, in_tree, out_tree = pickle.load(f)
  return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)


def _save(compiled, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = pickle.dumps(serialize_executable.serialize(compiled))
  handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-')
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(data)
    os.replace(temporary, path)  # readers see a whole file or none
  except BaseException:
    os.remove(temporary)
    raise


def _matches(compiled, args: tuple) -> bool:
  expected = jax.tree.leaves(compiled.in_avals)
  given = jax.tree.leaves((args, {}))
  return (jax.tree.structure((args, {})) == jax.tree.structure(compiled.in_avals) and
          all(e.shape == g.shape and e.dtype == g.dtype for e, g in zip(expected, given)))


# One thread reads and writes executables in the background; the interpreter waits for it at
# exit, so a file being written is finished.
_WORKER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='cnn_jax-executables')


_JAX_CACHE_HIT = '/jax/compilation_cache/cache_hits'
_jax_cache_hits = 0


def _count_jax_cache_hits(event: str, **_) -> None:
  global _jax_cache_hits
  if event == _JAX_CACHE_HIT:
    _jax_cache_hits += 1


jax.monitoring.register_event_listener(_count_jax_cache_hits)


def _compile_outside_jax_cache(jitted: Callable, args: tuple):
  """``jitted`` compiled for ``args``, not written to JAX's cache; and whether it was read
  from there (an entry written before: such an executable must not be stored)."""
  hits, minimum = _jax_cache_hits, jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update('jax_persistent_cache_min_compile_time_secs', float('inf'))
  try:
    compiled = jitted.lower(*args).compile()
  finally:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', minimum)
  return compiled, _jax_cache_hits > hits


def wait() -> None:
  """Returns once the reads and writes started so far are done."""
  _WORKER.submit(lambda: None).result()


class CachedStep:
  """A jitted step whose executable is read from ``directory/key`` when a previous run wrote it,
  and written there after its first compile. Without a directory, or for a function that is not
  jitted (a test's wrapper), it is the step itself.

  Reading starts at construction, in the background; the first call waits for it. Calls whose
  arguments differ in shape from the compiled program's go to the jitted step.
  """

  def __init__(self, jitted: Callable, key: str, cache_directory: Optional[str]):
    self._jitted = jitted
    self._path = (os.path.join(cache_directory, key)
                  if cache_directory and hasattr(jitted, 'lower') else None)
    self._compiled: Optional[Callable] = None if self._path else jitted
    self._loading = (_WORKER.submit(_load, self._path)
                     if self._path and os.path.exists(self._path) else None)
    self.loaded = False  # whether the executable came from the cache

  def __call__(self, *args):
    if self._compiled is None:
      self._compiled = self._first_compiled(args)
    try:
      return self._compiled(*args)
    except TypeError:  # arguments of other shapes than the compiled ones: checked before running
      if self._compiled is self._jitted:
        raise
      return self._jitted(*args)

  def _first_compiled(self, args: tuple):
    if self._loading is not None:
      try:
        compiled = self._loading.result()
        if _matches(compiled, args):
          self.loaded = True
          return compiled
        logging.info('%s: compiled for other arguments; compiling again', self._path)
      except Exception as e:  # noqa: BLE001 (a damaged or foreign file is compiled over)
        logging.warning('cannot read the cached executable %s (%s); compiling', self._path, e)
    compiled, from_jax_cache = _compile_outside_jax_cache(self._jitted, args)
    if not from_jax_cache:
      _WORKER.submit(self._write, compiled)
    return compiled

  def _write(self, compiled) -> None:
    try:
      _save(compiled, self._path)
    except Exception as e:  # noqa: BLE001 (a full disk costs the next start its compile, no more)
      logging.warning('cannot write the executable %s (%s)', self._path, e)
