"""The workdir: checked before anything compiles, held by one run at a time, and its config kept.

- :func:`check_writable`: a workdir that is a file, or cannot be written, is a one-line error.
- :class:`Lock`: ``workdir/lock.json`` names the run holding the workdir (host, pid, heartbeat).
  A second copy of the same command exits at once; a lock whose holder is dead (same host) or whose
  heartbeat is older than :data:`STALE_AFTER_SECONDS` (another host: a SLURM requeue, a recreated
  TPU VM) is taken over with a warning. Local disks create the file atomically (``O_EXCL``); on
  ``gs://`` and other remote paths the lock is advisory: two runs that start in the same second can
  both take it.
- :func:`check_resumed_config`: a resumed run whose recipe differs from ``config.json`` stops with
  the list of differences, unless they are accepted; :func:`save_config` then keeps the replaced
  file beside the new one.
- :func:`load_config`, :func:`define_config_flag`: a run's config for the tools that read a run
  (``cnn_jax.evaluate``, ``cnn_jax.visualize``), with ``--config.X=...`` overrides.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any, Mapping, Optional, Sequence

import ml_collections
import tensorflow as tf
from ml_collections import config_flags

from cnn_jax import ConfigError, RunError, one_line_errors, run_files

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0

# Fields that change how long a run is, how it reports, or where it reads from, but not what it
# computes: a resumed run may change them freely. init_from and init_from_skip are read by a fresh
# run only: once a run has a checkpoint, it resumes from that.
RESUMABLE_CHANGES = ('num_train_steps', 'num_epochs', 'log_every_steps', 'eval_every_epochs',
                     'checkpoint_every_steps', 'keep_checkpoints', 'skip_nonfinite_steps',
                     'data.data_dir', 'data.manual_dir', 'data.source_dir', 'data.download',
                     'data.prefetch', 'data.cache', 'compilation_cache_dir', 'init_from',
                     'init_from_skip')


def check_writable(workdir: str) -> None:
  """Creates ``workdir`` and writes a probe file in it; ConfigError naming the problem if not."""
  if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
    raise ConfigError(f'--workdir={workdir} is a file: pass a directory (it is created if missing).')
  probe = os.path.join(workdir, f'.write_test.{uuid.uuid4().hex}')
  try:
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(probe, 'w') as f:
      f.write('ok')
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    reason = getattr(e, 'strerror', None) or getattr(e, 'message', None) or str(e)
    raise ConfigError(f'--workdir={workdir} cannot be written ({reason.strip().splitlines()[0]}): '
                      'pass a directory you can write to.') from None


# ---------------------------------------------------------------------------------------------
# The lock


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


class Lock:
  """Holds ``workdir/lock.json`` from :meth:`acquire` to :meth:`release`, refreshing its heartbeat
  from a daemon thread. ``override``: take the lock even from a live holder."""

  def __init__(self, workdir: str, override: bool = False,
               heartbeat_seconds: float = HEARTBEAT_SECONDS,
               stale_after_seconds: float = STALE_AFTER_SECONDS):
    self.path = os.path.join(workdir, run_files.LOCK)
    self.override = override
    self.heartbeat_seconds = heartbeat_seconds
    self.stale_after_seconds = stale_after_seconds
    self.local = '://' not in workdir
    self.record = {'host': socket.gethostname(), 'pid': os.getpid(), 'token': uuid.uuid4().hex}
    self.lost: Optional[str] = None  # set by the heartbeat thread when another run took the lock
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def _contents(self) -> str:
    return json.dumps({**self.record, 'heartbeat': time.time()})

  def _read(self) -> Optional[dict]:
    try:
      with tf.io.gfile.GFile(self.path) as f:
        return json.loads(f.read())
    except (OSError, tf.errors.OpError, ValueError):
      return None  # gone, or half written: treated as no lock

  def _write_new(self) -> bool:
    """Creates the lock file if there is none; True when this call created it."""
    if not self.local:
      if tf.io.gfile.exists(self.path):
        return False
      with tf.io.gfile.GFile(self.path, 'w') as f:
        f.write(self._contents())
      return True
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'w') as f:
      f.write(self._contents())
    return True

  def _replace(self) -> None:
    temporary = f'{self.path}.{self.record["token"]}'
    with tf.io.gfile.GFile(temporary, 'w') as f:
      f.write(self._contents())
    tf.io.gfile.rename(temporary, self.path, overwrite=True)

  def _why_stale(self, holder: dict) -> Optional[str]:
    age = time.time() - float(holder.get('heartbeat', 0))
    if holder.get('host') == self.record['host'] and not _pid_alive(int(holder.get('pid', -1))):
      return f'its holder, pid {holder.get("pid")} on this host, is gone'
    if age > self.stale_after_seconds:
      return f'its heartbeat is {age:.0f} s old'
    if self.override:
      return 'taken with --override_lock'
    return None

  def acquire(self) -> 'Lock':
    for _ in range(3):  # a holder may release between our reads
      if self._write_new():
        break
      holder = self._read()
      if holder is None:
        continue
      reason = self._why_stale(holder)
      if reason is None:
        age = time.time() - float(holder.get('heartbeat', 0))
        raise RunError(f'{os.path.dirname(self.path)} is in use by pid {holder.get("pid")} on '
                       f'{holder.get("host")} (heartbeat {age:.0f} s ago): wait for that run or '
                       'stop it, use another --workdir, or pass --override_lock if it is dead')
      print(f'warning: taking over the lock of {os.path.dirname(self.path)} from pid '
            f'{holder.get("pid")} on {holder.get("host")}: {reason}', file=sys.stderr, flush=True)
      self._replace()
      break
    else:
      raise RunError(f'cannot take the lock {self.path}: it keeps changing; is another run starting?')
    if (self._read() or {}).get('token') != self.record['token']:
      raise RunError(f'another run took the lock {self.path} at the same moment: stop one of them')
    self._thread = threading.Thread(target=self._beat, name='workdir-lock', daemon=True)
    self._thread.start()
    return self

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_seconds):
      holder = self._read()
      if holder is not None and holder.get('token') != self.record['token']:
        self.lost = f'pid {holder.get("pid")} on {holder.get("host")} took over {self.path}'
        return
      try:
        self._replace()
      except (OSError, tf.errors.OpError):
        pass  # a full disk: the next beat tries again; the run reports the disk itself

  def check(self) -> None:
    """Raises RunError if another run has taken the lock over (it judged this one dead)."""
    if self.lost:
      raise RunError(f'{self.lost}: stopping this run; do not run two copies in one workdir')

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    holder = self._read()
    if holder is not None and holder.get('token') == self.record['token']:
      tf.io.gfile.remove(self.path)

  def __enter__(self) -> 'Lock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


# ---------------------------------------------------------------------------------------------
# The saved config


def _flat(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _as_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


# Fields renamed since a run may have saved its config: old dotted path -> new one. A run saved
# before a rename resumes (and is evaluated) as if it had been saved after it.
RENAMED_FIELDS = {'model.width': 'model.base_width'}  # CifarResNet folded into ResNet


def migrated(saved: Mapping[str, Any]) -> dict[str, Any]:
  """A saved config (nested dicts) with the renames of RENAMED_FIELDS applied."""
  out = json.loads(json.dumps(saved))
  for old, new in RENAMED_FIELDS.items():
    *old_parents, old_key = old.split('.')
    *new_parents, new_key = new.split('.')
    node = out
    for part in old_parents:
      node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or old_key not in node:
      continue
    value = node.pop(old_key)
    target = out
    for part in new_parents:
      target = target.setdefault(part, {})
    target.setdefault(new_key, value)
  return out


def flat_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``{'data.name': 'digits', ...}``: every field by its dotted path, values as config.json has them."""
  return _flat(json.loads(_as_json(config)))


def _defaults() -> dict[str, Any]:
  """configs/default.py's values, flat; empty where the configs are not importable."""
  try:
    from configs import default   # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  return flat_config(default.get_config())


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """``workdir/config.json`` as a ConfigDict whose fields ``--config.X=...`` can override: a field
  saved as null keeps the type configs/default.py gives it (``data.data_dir`` is a str), and lists
  are tuples again. ConfigError if the workdir has no config (it is not a cnn_jax run)."""
  path = os.path.join(workdir, run_files.CONFIG)
  if not tf.io.gfile.exists(path):
    raise ConfigError(f'{workdir} has no {run_files.CONFIG}: pass the --workdir of a cnn_jax run '
                      '(or a directory written by python -m cnn_jax.convert).')
  with tf.io.gfile.GFile(path) as f:
    saved = migrated(json.loads(f.read()))
  try:
    from configs import default   # pylint: disable=g-import-not-at-top
    typed = default.get_config()
  except ImportError:
    typed = ml_collections.ConfigDict()

  def build(values: Mapping[str, Any], types: Any) -> ml_collections.ConfigDict:
    node = ml_collections.ConfigDict()
    for key, value in values.items():
      typed_here = types if isinstance(types, ml_collections.ConfigDict) and key in types else None
      if isinstance(value, Mapping):
        node[key] = build(value, typed_here[key] if typed_here is not None else None)
      elif value is None and typed_here is not None and typed_here.get_type(key) is not type(None):
        node[key] = ml_collections.config_dict.placeholder(typed_here.get_type(key))
      else:
        node[key] = tuple(value) if isinstance(value, list) else value
    return node
  return build(saved, typed)


def config_differences(saved: Mapping[str, Any], config: ml_collections.ConfigDict) -> list[str]:
  """``'field old -> new'`` for each field that changes what a resumed run computes.

  A field the saved config lacks is no change when it has its configs/default.py value: fields
  added to cnn_jax after the run started default to what the code did before them.
  """
  old, new = _flat(migrated(saved)), flat_config(config)
  missing = object()
  defaults = _defaults()
  added_at_default = {key for key in set(new) - set(old)
                      if key in defaults and new[key] == defaults[key]}
  return [f'{key} {old.get(key, "(absent)")!r} -> {new.get(key, "(absent)")!r}'
          for key in sorted(set(old) | set(new))
          if key not in RESUMABLE_CHANGES and key not in added_at_default
          and old.get(key, missing) != new.get(key, missing)]


def check_resumed_config(config: ml_collections.ConfigDict, workdir: str,
                         resumed_step: Optional[int], accept_changes: bool) -> list[str]:
  """The recipe changes of a resumed run against ``workdir/config.json`` (empty for a new run);
  ConfigError listing them unless ``accept_changes``. Every process checks: they all stop."""
  path = os.path.join(workdir, run_files.CONFIG)
  if resumed_step is None or not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    changes = config_differences(json.loads(f.read()), config)
  if changes and not accept_changes:
    raise ConfigError(f'the flags change the recipe of the run in {workdir} (checkpointed at step '
                      f'{resumed_step}): {"; ".join(changes)}. Pass the original flags, use a new '
                      '--workdir, or add --allow_config_change to accept.')
  return changes


def save_config(config: ml_collections.ConfigDict, workdir: str, resumed_step: Optional[int],
                changes: list[str]) -> None:
  """Writes ``workdir/config.json``; a replaced one with accepted ``changes`` is kept as
  ``config.step<N>.json``."""
  path = os.path.join(workdir, run_files.CONFIG)
  if changes:
    tf.io.gfile.copy(path, os.path.join(workdir, f'config.step{resumed_step}.json'), overwrite=True)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(_as_json(config))


def workdir_from_argv(argv: Sequence[str]) -> Optional[str]:
  """The value of ``--workdir`` in a command line (absl has not parsed it yet), or None."""
  for i, arg in enumerate(argv):
    if arg.startswith('--workdir='):
      return arg.split('=', 1)[1]
    if arg == '--workdir' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def define_config_flag(argv: Sequence[str]) -> None:
  """Defines ``--config`` with the ``config.json`` of the ``--workdir`` in ``argv`` as its default,
  so that ``--config.X=...`` overrides the run's fields with ml_collections' usual types and checks:
  the flag of the tools that read a run. A workdir without a config exits with one line."""
  workdir = workdir_from_argv(argv)
  saved = ml_collections.ConfigDict()
  if workdir is not None:
    with one_line_errors():
      saved = load_config(workdir)
  config_flags.DEFINE_config_dict('config', saved,
                                  'The workdir\'s config; --config.X=... overrides a field.')
