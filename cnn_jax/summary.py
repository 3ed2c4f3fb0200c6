"""Per-layer inspector: output shape, parameters, activations and multiply-adds of a registered model.

  python -m cnn_jax.summary --model=alexnet [--input_shape=227,227,3] [--num_classes=N] [--json]
  python -m cnn_jax.summary --list      # every registered model: input, classes, paper, figures
  python -m cnn_jax.summary --workdir=DIR   # the model of a run's (or converted) config.json

Nothing is allocated: the model is initialised and run under ``jax.eval_shape`` (VGG-19's 144M
parameters cost nothing) while a Flax method interceptor records every module call. A row is a
module that calls no other module (Conv, Dense, BatchNorm, LRN, ...) or a max/avg pool called from
``flax.linen`` by a composite module; modules that hand back their input unchanged (Dropout at
evaluation, an adaptive pool already at its size) are left out. See the README section "How it counts" for how each
column is counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

import cnn_jax
from cnn_jax import ConfigError
from cnn_jax import models, runtime

_POOLS = ('max_pool', 'avg_pool')


def default_input_shape(model_name: str) -> tuple[int, int, int]:
  """The input (H, W, C) a registered model was published with: its registry entry's."""
  return models.info(model_name).input_shape


@dataclasses.dataclass
class _Frame:
  module: nn.Module
  first_row: int
  has_children: bool = False
  pool_counts: dict[str, int] = dataclasses.field(default_factory=dict)


def _per_example(shape: Sequence[int]) -> int:
  return math.prod(shape[1:])


def _size(tree: Any) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _arrays(tree: Any) -> list[Any]:
  return [leaf for leaf in jax.tree.leaves(tree) if hasattr(leaf, 'shape')]


class _Recorder:
  """Collects one row per leaf module call and per pool call of a composite module."""

  def __init__(self):
    self.rows: list[dict[str, Any]] = []
    self.stack: list[_Frame] = []
    self.counted_paths: set[tuple[str, ...]] = set()   # leaf modules whose params are in a row
    self.called_paths: set[tuple[str, ...]] = set()    # every module that ran

  def intercept(self, next_fun: Callable[..., Any], args: tuple, kwargs: dict,
                context: nn.module.InterceptorContext) -> Any:
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    if self.stack:
      self.stack[-1].has_children = True
    frame = _Frame(context.module, first_row=len(self.rows))
    self.called_paths.add(tuple(context.module.path))
    self.stack.append(frame)
    try:
      out = next_fun(*args, **kwargs)
    finally:
      self.stack.pop()
    if not frame.has_children:
      del self.rows[frame.first_row:]   # pools inside a leaf module belong to its row
      self._record_module(context.module, args, out)
    return out

  def _record_module(self, module: nn.Module, args: tuple, out: Any) -> None:
    path = tuple(module.path)
    params = module.variables.get('params', {}) if module.scope is not None else {}
    inputs = _arrays(args)
    if not params and inputs and out is inputs[0]:
      return   # an identity at this point (Dropout at evaluation, a no-op pool)
    outputs = _arrays(out)
    activations = sum(_per_example(o.shape) for o in outputs)
    # A weight tensor of W elements producing C output channels does W / C multiply-adds per output
    # element: kh*kw*in/groups for a (grouped) convolution, in for a dense layer. Biases and
    # normalisation scales (not named 'kernel') are additions and cost nothing here.
    kernels = [leaf for keys, leaf in traverse_util.flatten_dict(dict(params)).items()
               if keys[-1] == 'kernel' and leaf.ndim >= 2]
    macs = 0
    if kernels and outputs:
      macs = activations * sum(k.size for k in kernels) // outputs[0].shape[-1]
    shared = path in self.counted_paths   # a module called twice has its parameters once
    self.counted_paths.add(path)
    self.rows.append({
        'name': '/'.join(path) or type(module).__name__,
        'type': type(module).__name__,
        'output_shape': [list(o.shape[1:]) for o in outputs] if len(outputs) > 1
                        else list(outputs[0].shape[1:]) if outputs else [],
        'params': 0 if shared else _size(params),
        'activations': activations,
        'macs': int(macs),
    })

  def record_pool(self, kind: str, inputs: jax.Array, out: jax.Array) -> None:
    if not self.stack:
      return
    frame = self.stack[-1]
    frame.pool_counts[kind] = frame.pool_counts.get(kind, 0) + 1
    parent = '/'.join(frame.module.path)
    name = f'{kind}{frame.pool_counts[kind]}'
    self.rows.append({
        'name': f'{parent}/{name}' if parent else name,
        'type': kind,
        'output_shape': list(out.shape[1:]),
        'params': 0,
        'activations': _per_example(out.shape),
        'macs': 0,
    })


@contextlib.contextmanager
def _recording_pools(recorder: _Recorder) -> Iterator[None]:
  """Temporarily wraps ``flax.linen``'s pooling functions so that their calls become rows."""
  namespaces = (nn, nn.pooling)
  originals = [(space, kind, getattr(space, kind)) for space in namespaces for kind in _POOLS]

  def recording(kind: str, pool: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    @functools.wraps(pool)
    def wrapper(inputs, *args, **kwargs):
      out = pool(inputs, *args, **kwargs)
      recorder.record_pool(kind, inputs, out)
      return out
    return wrapper

  wrappers = {kind: recording(kind, getattr(nn.pooling, kind)) for kind in _POOLS}
  try:
    for space, kind, _ in originals:
      setattr(space, kind, wrappers[kind])
    yield
  finally:
    for space, kind, original in originals:
      setattr(space, kind, original)


def _output_shapes(output: Any) -> Any:
  """Per-example shapes with the model output's nesting, as JSON-ready lists."""
  if isinstance(output, (tuple, list)):
    return [_output_shapes(o) for o in output]
  if isinstance(output, dict):
    return {k: _output_shapes(v) for k, v in output.items()}
  return list(output.shape[1:])


def _unattributed_rows(params: Any, recorder: _Recorder) -> list[dict[str, Any]]:
  """Rows for parameters that no row owns: those of modules that did not run in this mode
  (GoogLeNet's auxiliary heads at evaluation) and those a composite module created itself."""
  counted = recorder.counted_paths
  owners: dict[tuple[str, ...], int] = {}
  for keys, leaf in traverse_util.flatten_dict(dict(params)).items():
    if not any(keys[:i] in counted for i in range(len(keys))):
      owners[keys[:-1]] = owners.get(keys[:-1], 0) + math.prod(leaf.shape)
  return [{'name': '/'.join(path) or '(model)',
           'type': 'own params' if path in recorder.called_paths else 'not run',
           'output_shape': [], 'params': count, 'activations': 0, 'macs': 0}
          for path, count in owners.items()]


def summarize(model_name: str, input_shape: Optional[Sequence[int]] = None,
              num_classes: Optional[int] = None, train: bool = False,
              **model_kwargs: Any) -> dict[str, Any]:
  """Per-layer table of the registered model ``model_name`` for one example of ``input_shape``.

  ``input_shape`` is (H, W, C), by default the model's own (:func:`default_input_shape`);
  ``num_classes`` and ``model_kwargs`` go to :func:`cnn_jax.models.get_model`. Returns
  ``{'model', 'input_shape', 'mode', 'output_shape', 'layers': [row, ...], 'totals'}`` with rows
  ``{'name', 'type', 'output_shape', 'params', 'activations', 'macs'}`` and totals
  ``{'params', 'macs', 'activations'}``, each the sum of its column. ``train=True`` traces the
  training forward pass (auxiliary heads, dropout). Unknown names, arguments or impossible shapes
  raise :class:`ConfigError`.
  """
  if num_classes is not None:
    model_kwargs['num_classes'] = num_classes
  model = models.get_model(model_name, **model_kwargs)
  shape = tuple(input_shape) if input_shape else default_input_shape(model_name)
  summary = summarize_module(model, shape, train=train,
                             batch_size=model_kwargs.get('bn_group_size') or 1)
  summary['model'] = model_name
  return summary


def summarize_module(model: nn.Module, input_shape: Sequence[int], train: bool = False,
                     batch_size: int = 1) -> dict[str, Any]:
  """:func:`summarize` for a module instance (called as ``model.apply(v, x, train=...)``)."""
  if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
    raise ConfigError(f'input_shape must be three positive sizes H,W,C, '
                      f'got {",".join(map(str, input_shape))}.')
  shape = tuple(int(d) for d in input_shape)
  # Per-example counts do not depend on the batch; BatchNorm groups only need it to divide.
  images = jax.ShapeDtypeStruct((batch_size,) + shape, jnp.float32)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  variables = jax.eval_shape(lambda x: model.init(rngs, x, train=train), images)
  params = variables.get('params', {})

  def forward(variables, x):
    return model.apply(variables, x, train=train, rngs={'dropout': rngs['dropout']},
                       mutable=True if train else False)

  recorder = _Recorder()
  with nn.intercept_methods(recorder.intercept), _recording_pools(recorder):
    output = jax.eval_shape(forward, variables, images)
  if train:
    output = output[0]   # drop the updated collections

  rows = [{'name': 'input', 'type': 'input', 'output_shape': list(shape), 'params': 0,
           'activations': math.prod(shape), 'macs': 0}]
  rows += recorder.rows
  rows += _unattributed_rows(params, recorder)
  totals = {key: sum(row[key] for row in rows) for key in ('params', 'macs', 'activations')}
  if totals['params'] != _size(params):   # every parameter belongs to exactly one row
    raise AssertionError(f'the summary attributes {totals["params"]:,} of {_size(params):,} '
                         f'parameters of {type(model).__name__}')
  return {
      'model': type(model).__name__,
      'input_shape': list(shape),
      'mode': 'train' if train else 'eval',
      'output_shape': _output_shapes(output),
      'layers': rows,
      'totals': totals,
  }


def _shape_text(shape: list[Any]) -> str:
  if shape and isinstance(shape[0], list):
    return ', '.join(_shape_text(s) for s in shape)
  return 'x'.join(map(str, shape)) if shape else '-'


def _output_text(shapes: Any) -> str:
  if isinstance(shapes, (list, tuple)) and shapes and isinstance(shapes[0], (list, tuple)):
    return '(' + ', '.join(_output_text(s) for s in shapes) + ')'
  return _shape_text(list(shapes))


def _scaled(count: int) -> str:
  """1,582,671,872 -> '1.58G'; small counts stay exact."""
  for factor, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
    if count >= factor:
      return f'{count / factor:.3g}{suffix}'
  return str(count)


def format_table(summary: dict[str, Any]) -> str:
  """The summary as an aligned text table with a totals line."""
  rows = summary['layers']
  name_width = max(len('layer'), *(len(r['name']) for r in rows))
  type_width = max(len('type'), *(len(r['type']) for r in rows))
  shape_width = max(len('output'), *(len(_shape_text(r['output_shape'])) for r in rows))
  line = (f'{{:<{name_width}}}  {{:<{type_width}}}  {{:<{shape_width}}}  {{:>13}}  {{:>13}}  '
          f'{{:>16}}')
  totals = summary['totals']
  text = [f'{summary["model"]}: input {_shape_text(summary["input_shape"])}, {summary["mode"]} mode, '
          f'output {_output_text(summary["output_shape"])}',
          line.format('layer', 'type', 'output', 'params', 'activations', 'MACs')]
  for r in rows:
    text.append(line.format(r['name'], r['type'], _shape_text(r['output_shape']),
                            f'{r["params"]:,}', f'{r["activations"]:,}', f'{r["macs"]:,}'))
  text.append(line.format('total', '', '', f'{totals["params"]:,}', f'{totals["activations"]:,}',
                          f'{totals["macs"]:,}'))
  text.append(f'{_scaled(totals["params"])} parameters, {_scaled(totals["macs"])} multiply-adds, '
              f'{_scaled(totals["activations"])} activations per example '
              f'({totals["activations"] * 4 / 2**20:.1f} MiB in float32)')
  return '\n'.join(text)


def _figure_text(figure: models.Published) -> str:
  figures = []
  if figure.params is not None:
    figures.append(f'{figure.params:,} params')
  if figure.params_m is not None:
    figures.append(f'{figure.params_m}M params')
  if figure.gmacs is not None:
    figures.append(f'{figure.gmacs} GMACs')
  built_with = ''.join(f', {k}={v!r}' for k, v in figure.built_with.items())
  return f'{figure.source}{built_with}: {", ".join(figures)}'


def _published_text(info: models.ModelInfo) -> str:
  return '; '.join(map(_figure_text, info.published)) or 'none'


def registry_table() -> str:
  """Every registered model with its registry facts, as a Markdown table (``--list``)."""
  lines = ['| model | file | input | classes | paper | published figures |',
           '| --- | --- | --- | --- | --- | --- |']
  for name in models.names():
    info = models.info(name)
    published = _published_text(info)
    lines.append(f'| `{name}` | `{info.family}.py` | {_shape_text(list(info.input_shape))} | '
                 f'{info.num_classes} | {info.paper} | {published} |')
  return '\n'.join(lines)


def reference_row(summary: dict[str, Any]) -> str:
  """A registered model's row of the README's reference figures: its summary's totals beside the
  figures its registry entry says were published."""
  info = models.info(summary['model'])
  totals = summary['totals']
  published = _published_text(info)
  return (f'| `{info.name}` | {_shape_text(summary["input_shape"])} | {totals["params"]:,} | '
          f'{totals["macs"] / 1e9:.4g} | {_scaled(totals["activations"])} | {published} |')


def workdir_model(workdir: str) -> tuple[str, Optional[tuple[int, int, int]], dict[str, Any]]:
  """``(name, input_shape, kwargs)`` of the model a workdir's ``config.json`` trains: the model
  section's arguments, the data set's classes unless the config fixes them, and the shape its eval
  ops give the data set's images (None when they do not fix one; the data are not read)."""
  from cnn_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from cnn_jax.data import DATASETS  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  spec = DATASETS.get(config.data.name)
  name, kwargs = models.config_arguments(config.model, spec.num_classes if spec else None)
  return name, _eval_input_shape(spec, config.data.eval_ops) if spec else None, kwargs


def _eval_input_shape(spec: Any, eval_ops: str) -> Optional[tuple[int, int, int]]:
  """The (H, W, C) the eval ops make of the data set's declared image shape, traced."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top (only --workdir needs it)
  from cnn_jax.data import ops as ops_lib  # pylint: disable=g-import-not-at-top
  ops = ops_lib.parse(eval_ops)
  image = (tf.TensorSpec([], tf.string) if ops_lib.encoded_input(ops)
           else tf.TensorSpec(spec.image_shape, tf.uint8))
  trace = tf.function(lambda x: ops_lib.apply(ops, x, tf.constant([0, 0], tf.int64)))
  shape = trace.get_concrete_function(image).structured_outputs.shape
  return tuple(shape[-3:]) if shape.rank in (3, 4) and shape.is_fully_defined() else None


def parse_input_shape(text: str) -> tuple[int, ...]:
  """'227,227,3' or '227x227x3' -> (227, 227, 3)."""
  try:
    return tuple(int(d) for d in text.replace('x', ',').split(','))
  except ValueError:
    raise ConfigError(f'--input_shape must look like 224,224,3 (H,W,C), got {text!r}.') from None


def main(argv: Sequence[str]) -> None:
  from absl import flags
  args = flags.FLAGS
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)   # JAX logs its backend search at INFO
    input_shape = parse_input_shape(args.input_shape) if args.input_shape else None
    if args.list:
      text = registry_table()
    elif args.model and args.workdir:
      raise ConfigError('--model and --workdir both name a model: pass one of them.')
    elif not args.model and not args.workdir:
      raise ConfigError('name a model with --model=NAME or --workdir=DIR, or list them all with '
                        '--list.')
    else:
      name, num_classes, model_kwargs = args.model, args.num_classes, {}
      if args.workdir:
        name, run_shape, model_kwargs = workdir_model(args.workdir)
        input_shape = input_shape or run_shape
        run_classes = model_kwargs.pop('num_classes', None)
        num_classes = num_classes if num_classes is not None else run_classes
      summary = summarize(name, input_shape, num_classes, train=args.train, **model_kwargs)
      text = json.dumps(summary) if args.json else format_table(summary)
  try:
    print(text, flush=True)
  except BrokenPipeError:   # piped into `head`: stop quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == '__main__':
  from absl import app, flags
  # Flags are defined only when run as a program, so importing this module next to a trainer that
  # has its own --model flag does not clash.
  flags.DEFINE_string('model', None, 'registered model name')
  flags.DEFINE_string('workdir', None, 'a run\'s (or converted model\'s) directory: summarise the '
                      'model of its config.json at the shape its eval ops give')
  flags.DEFINE_bool('list', False, 'list every registered model with its input, paper and '
                    'published figures (a Markdown table)')
  flags.DEFINE_string('input_shape', None, 'H,W,C of one example (default: the model\'s own)')
  flags.DEFINE_integer('num_classes', None, 'number of classes (default: the model\'s own)')
  flags.DEFINE_bool('json', False, 'print one JSON object instead of a table')
  flags.DEFINE_bool('train', False, 'trace the training forward pass (auxiliary heads, dropout)')
  app.run(main)
