"""Transfer: a run that starts from another run's variables, and trains only some of its own.

``config.init_from`` names a trained run (its workdir, its ``checkpoints/`` or one
``checkpoints/<step>/``, or a directory written by ``python -m cnn_jax.convert``). A fresh run
loads that checkpoint's parameters and BatchNorm statistics into its initial state, matched by
path (``stage3_block2/conv1/kernel``), before anything compiles:

- a variable with the same path and shape is loaded (cast to this run's dtype);
- one whose shape differs (the classifier of another number of classes), or that
  ``config.init_from_skip`` names, is initialised afresh: re-initialised;
- one of ours the source lacks is initialised afresh too (new); a source variable this model
  lacks is not used (unused). Both are listed, neither is an error;
- if nothing is loaded the source is the wrong run: ConfigError.

The optimiser state, the step and the RNG start afresh. A workdir with a checkpoint of its own
resumes from it and never reads ``init_from`` (the checkpoint wins), so changing ``init_from``
after the start changes nothing: it is one of ``workdir.RESUMABLE_CHANGES``.

``config.trainable`` (comma-separated regexes, searched in the parameter paths; '' = all) freezes
every parameter no pattern matches. The train step differentiates the trainable parameters alone
and the optimiser holds state for them alone, so the frozen ones (and weight decay on them) stay
bit-identical; frozen layers run in inference mode (:meth:`Trainable.forward`). A pattern that
matches no parameter is a ConfigError.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import re
from typing import Any, Iterable, Mapping, Optional

import flax.linen as nn
import numpy as np
import tensorflow as tf
from flax import traverse_util

from cnn_jax import ConfigError, RunError, checkpoint, run_files
from cnn_jax import workdir as workdir_lib

SEPARATOR = '/'
COLLECTIONS = ('params', 'batch_stats')
# Call arguments that put a layer in inference mode, with their inference values: the models'
# ``train`` (cnn_jax's BatchNorm and StochasticDepth, every block), flax's Dropout and BatchNorm.
INFERENCE_ARGUMENTS = {'train': False, 'deterministic': True, 'use_running_average': True}
EXAMPLE_PATHS = 6    # paths listed when a pattern matches nothing
LISTED_PATHS = 4     # re-initialised variables listed one by one (with shapes) up to this many


def flatten(tree: Any) -> dict[str, Any]:
  """``{'stage1_block1/conv1/kernel': leaf, ...}``; {} for an empty tree."""
  return traverse_util.flatten_dict(tree, sep=SEPARATOR) if tree else {}


def unflatten(flat: Mapping[str, Any]) -> dict:
  return traverse_util.unflatten_dict(dict(flat), sep=SEPARATOR) if flat else {}


def patterns(field: str, text: Optional[str]) -> list[re.Pattern]:
  """The comma-separated regexes of config field ``field`` (a comma inside ``{m,n}`` belongs to
  its regex); ConfigError for one that does not compile."""
  out = []
  for text_pattern in re.split(r',(?![^{]*\})', text or ''):
    if not text_pattern.strip():
      continue
    try:
      out.append(re.compile(text_pattern.strip()))
    except re.error as e:
      raise ConfigError(f'config.{field}: {text_pattern.strip()!r} is not a regular expression '
                        f'({e}).') from None
  return out


def modules(paths: Iterable[str]) -> str:
  """The top-level modules of ``paths``, numbered runs collapsed: 'bn1, conv1, stage1_block1-3'."""
  names = list(dict.fromkeys(path.split(SEPARATOR)[0] for path in paths))
  numbered: dict[str, list[int]] = {}
  order: list[str] = []
  for name in names:
    match = re.fullmatch(r'(.*?)(\d+)', name)
    prefix = match.group(1) if match else name
    if prefix not in numbered:
      numbered[prefix] = []
      order.append(prefix)
    if match:
      numbered[prefix].append(int(match.group(2)))
  out = []
  for prefix in order:
    numbers = sorted(set(numbered[prefix]))
    if not numbers:
      out.append(prefix)
    elif len(numbers) == 1:
      out.append(f'{prefix}{numbers[0]}')
    elif numbers == list(range(numbers[0], numbers[-1] + 1)):
      out.append(f'{prefix}{numbers[0]}-{numbers[-1]}')
    else:
      out.append(f'{prefix}{{{",".join(map(str, numbers))}}}')
  return ', '.join(out)


def example_paths(paths: list[str]) -> str:
  """A few paths a pattern could match: the first of each top-level module, first and last kept."""
  firsts = list({path.split(SEPARATOR)[0]: path for path in reversed(paths)}.values())[::-1]
  if len(firsts) > EXAMPLE_PATHS:
    half = EXAMPLE_PATHS // 2
    firsts = firsts[:half] + ['...'] + firsts[-half:]
  return ', '.join(firsts)


def _size(shape: Any) -> int:
  return int(np.prod(shape, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# config.trainable


@dataclasses.dataclass(frozen=True)
class Trainable:
  """The parameters that train (their paths); the others are frozen.

  ``split`` and ``merge`` cut the parameters in two and join them again, so that the train step
  differentiates and updates the trainable part alone and passes the frozen part through.
  """
  paths: frozenset[str]
  all_paths: tuple[str, ...]   # every parameter's
  sizes: tuple[int, ...]       # values of each of all_paths
  field: str = ''              # the config's patterns, for the description

  def split(self, params: Any) -> tuple[dict, dict]:
    flat = flatten(params)
    return (unflatten({k: v for k, v in flat.items() if k in self.paths}),
            unflatten({k: v for k, v in flat.items() if k not in self.paths}))

  @staticmethod
  def merge(trainable: Any, frozen: Any) -> dict:
    return unflatten({**flatten(trainable), **flatten(frozen)})

  @property
  def frozen(self) -> list[str]:
    return [path for path in self.all_paths if path not in self.paths]

  def forward(self) -> contextlib.AbstractContextManager:
    """The context of the training forward pass: frozen layers run in inference mode.

    A module all of whose parameters are frozen is called with ``train=False`` (and
    ``deterministic=True``, ``use_running_average=True`` where it takes them): its BatchNorm layers
    normalise with, and keep, their running statistics, and dropout or stochastic depth inside it
    is off. A module without parameters (dropout, stochastic depth) runs in inference mode while no
    trainable parameter has been used yet in the pass: its input is frozen features. No model code
    is involved (``flax.linen.intercept_methods``); only arguments a layer is called with can be
    changed, not ones fixed as module attributes.
    """
    subtree: dict[tuple[str, ...], list[int]] = {}   # module path -> [trainable, frozen] below it
    owners = set()                                    # modules holding a trainable parameter
    for path in self.all_paths:
      parts = tuple(path.split(SEPARATOR))
      trains = path in self.paths
      if trains:
        owners.add(parts[:-1])
      for depth in range(len(parts)):
        counts = subtree.setdefault(parts[:depth], [0, 0])
        counts[0 if trains else 1] += 1
    seen_trainable = [False]

    def interceptor(next_fun, args, kwargs, context):
      if context.method_name != '__call__':
        return next_fun(*args, **kwargs)
      path = tuple(context.module.path)
      seen_trainable[0] |= path in owners
      counts = subtree.get(path)
      inference = not seen_trainable[0] if counts is None else counts[0] == 0
      if inference:
        args, kwargs = _inference_call(context.module, args, kwargs)
      return next_fun(*args, **kwargs)
    return nn.intercept_methods(interceptor)

  def describe(self) -> str:
    trained = [p for p in self.all_paths if p in self.paths]
    values = sum(size for p, size in zip(self.all_paths, self.sizes) if p in self.paths)
    total = sum(self.sizes)
    return (f'trainable (config.trainable={self.field!r}): {len(trained)} of {len(self.all_paths)} '
            f'parameter arrays, {values:,} of {total:,} values: {modules(trained)}; the other '
            f'{len(self.all_paths) - len(trained)} are frozen, their layers in inference mode')


def _inference_call(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
  """``args, kwargs`` with the inference values of INFERENCE_ARGUMENTS the call passes."""
  try:
    bound = inspect.signature(type(module).__call__).bind(module, *args, **kwargs)
  except (TypeError, ValueError):  # a signature inspect cannot read: called as it is
    return args, kwargs
  for name, value in INFERENCE_ARGUMENTS.items():
    if name in bound.arguments:
      bound.arguments[name] = value
  return bound.args[1:], bound.kwargs


def make_trainable(field: Optional[str], params: Any, model_name: str) -> Optional[Trainable]:
  """The Trainable of ``config.trainable`` over ``params`` (shapes suffice); None when every
  parameter trains. ConfigError for a pattern that matches no parameter."""
  compiled = patterns('trainable', field)
  if not compiled:
    return None
  flat = flatten(params)
  paths = list(flat)
  unmatched = [p.pattern for p in compiled if not any(p.search(path) for path in paths)]
  if unmatched:
    raise ConfigError(f'config.trainable: {", ".join(map(repr, unmatched))} matches no parameter '
                      f'of {model_name} (regexes searched in paths such as '
                      f'{example_paths(paths)}).')
  trainable = frozenset(path for path in paths if any(p.search(path) for p in compiled))
  if len(trainable) == len(paths):
    return None
  return Trainable(trainable, tuple(paths), tuple(_size(v.shape) for v in flat.values()), field)


# ---------------------------------------------------------------------------------------------
# config.init_from


def source_checkpoint(source: str) -> tuple[str, Optional[int]]:
  """``(workdir, step or None)`` of an init_from directory: a workdir (its newest checkpoint), its
  ``checkpoints/``, or one ``checkpoints/<step>/``. ConfigError for anything else."""
  path = source.rstrip('/') or source
  if not tf.io.gfile.isdir(path):
    raise ConfigError(f'config.init_from={source!r} is not a directory: pass the --workdir of a '
                      'trained run (or a directory written by python -m cnn_jax.convert).')
  if tf.io.gfile.isdir(os.path.join(path, run_files.CHECKPOINTS)):
    return path, None
  parent, name = os.path.split(path)
  if name == run_files.CHECKPOINTS:
    return parent, None
  if name.isdigit() and os.path.basename(parent) == run_files.CHECKPOINTS:
    return os.path.dirname(parent), int(name)
  raise ConfigError(f'config.init_from={source!r} holds no {run_files.CHECKPOINTS}/: pass the '
                    '--workdir of a trained run, one of its checkpoints/<step> directories, or a '
                    'directory written by python -m cnn_jax.convert.')


@dataclasses.dataclass(frozen=True)
class Loaded:
  """What a fresh run takes from ``config.init_from``: arrays by (collection, path), the paths
  initialised afresh, and the table that says so."""
  arrays: Mapping[tuple[str, str], np.ndarray]
  initialised: tuple[str, ...]   # parameter paths re-initialised or new
  table: str

  def overlay(self, collection: str, tree: Any) -> dict:
    """``tree`` (one collection of the initial variables) with the loaded arrays in place."""
    flat = flatten(tree)
    for (name, path), array in self.arrays.items():
      if name == collection:
        flat[path] = array
    return unflatten(flat)


def load(config: Any, expected: Mapping[str, Any],
         trainable: Optional[Trainable] = None) -> Loaded:
  """Reads ``config.init_from`` and matches it against ``expected`` (this run's initial variables,
  shapes suffice: {'params': ..., 'batch_stats': ...}). ConfigError, before anything compiles, for
  a directory that holds no readable checkpoint, a pattern of ``config.init_from_skip`` that
  matches nothing, a source of which nothing fits, or a variable initialised afresh that
  ``trainable`` freezes (it would stay random)."""
  source = config.init_from
  workdir, step = source_checkpoint(source)
  try:
    step, variables = checkpoint.load_variables(workdir, step)
  except RunError as e:
    raise ConfigError(f'config.init_from={source!r}: {e}.') from None
  try:
    saved = workdir_lib.load_config(workdir)
    origin = f'{saved.model.name} on {saved.data.name}, step {step}'
  except (ConfigError, AttributeError, ValueError):  # a bare checkpoint: no config to describe
    origin = f'step {step}'
  ours = {(c, path): leaf for c in COLLECTIONS for path, leaf in flatten(expected.get(c)).items()}
  theirs = {(c, path): leaf for c in COLLECTIONS
            for path, leaf in flatten(variables.get(c)).items()}
  skip = patterns('init_from_skip', config.get('init_from_skip'))
  unmatched = [p.pattern for p in skip if not any(p.search(path) for _, path in ours)]
  if unmatched:
    raise ConfigError(f'config.init_from_skip: {", ".join(map(repr, unmatched))} matches no '
                      f'variable of {config.model.name} (regexes searched in paths such as '
                      f'{example_paths([path for c, path in ours if c == "params"])}).')
  arrays, skipped, reshaped, new = {}, [], [], []
  for key, leaf in ours.items():
    if key not in theirs:
      new.append(key)
    elif any(p.search(key[1]) for p in skip):
      skipped.append(key)
    elif tuple(theirs[key].shape) != tuple(leaf.shape):
      reshaped.append(key)
    else:
      arrays[key] = np.asarray(theirs[key], dtype=leaf.dtype)
  unused = [key for key in theirs if key not in ours]
  if not arrays:
    their_paths = [path for c, path in theirs if c == 'params']
    raise ConfigError(f'config.init_from={source!r} ({origin}): none of its {len(theirs)} '
                      f'variables fits {config.model.name} by path and shape (its paths: '
                      f'{example_paths(their_paths)}): point it at a run of this architecture.')
  initialised = tuple(path for c, path in skipped + reshaped + new if c == 'params')
  frozen_afresh = [path for path in initialised if trainable and path not in trainable.paths]
  if frozen_afresh:
    raise ConfigError(f'config.trainable freezes {", ".join(frozen_afresh[:LISTED_PATHS])}'
                      f'{", ..." if len(frozen_afresh) > LISTED_PATHS else ""}, which '
                      'config.init_from does not load (it would stay at its random initial '
                      'value): add them to config.trainable.')
  rows = [('loaded', list(arrays), ''),
          ('re-initialised', skipped + reshaped, _reinitialised(skipped, reshaped, ours, theirs)),
          ('new (not in source)', new, ''), ('unused (source only)', unused, '')]
  sizes = {**{k: _size(v.shape) for k, v in theirs.items()},
           **{k: _size(v.shape) for k, v in ours.items()}}
  lines = [f'init_from {source} ({origin}), matched by path:']
  for label, keys, detail in rows:
    values = sum(sizes[k] for k in keys)
    where = detail or modules(path for _, path in keys)
    lines.append(f'  {label:<21}{len(keys):>5} arrays {values:>12,} values'
                 + (f'  {where}' if keys else ''))
  return Loaded(arrays, initialised, '\n'.join(lines))


def _reinitialised(skipped: list, reshaped: list, ours: Mapping, theirs: Mapping) -> str:
  """Why each variable was re-initialised: shapes one by one when few, modules otherwise."""
  parts = []
  if reshaped:
    if len(reshaped) <= LISTED_PATHS:
      parts += [f'{path} {tuple(theirs[c, path].shape)} -> {tuple(ours[c, path].shape)}'
                for c, path in reshaped]
    else:
      parts.append(f'{modules(path for _, path in reshaped)} (shape differs)')
  if skipped:
    parts.append(f'{modules(path for _, path in skipped)} (config.init_from_skip)')
  return '; '.join(parts)
