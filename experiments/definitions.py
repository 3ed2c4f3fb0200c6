"""Sweeps as data: a base config, axes to vary, a budget; and their expansion into training commands.

A sweep's grid is the product of its axes, where a :class:`Zip` varies several keys together (one
grid coordinate). A key is one of:

- ``seed``: the replicate, passed as ``--config.seed``; every sweep has it (default ``(0,)``);
- ``config.X.Y``: passed as ``--config.X.Y=VALUE``;
- a recipe argument of the base config (``configs/fashion_mnist.py:model=resnet20,steps=800``): the
  text after the ``:``;
- a label: a name used only in a ``derived`` template, such as ``{net}{depth}`` -> ``model=plain20``,
  so that the report and the plots see ``net`` and ``depth`` as separate axes.

The budget (``--steps``, ``--train_size``) goes to the recipe's own arguments, so that the
schedule's boundaries scale with it. Nothing here imports jax or TensorFlow: printing and listing
sweeps stays instant.
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import os
import re
import string
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 'seed'


class SweepError(ValueError):
  """A mistake in a sweep definition or in the sweep's flags; reported as one line."""


@dataclasses.dataclass(frozen=True)
class Axis:
  """One key and the values it takes."""
  key: str
  values: tuple

  def __post_init__(self):
    object.__setattr__(self, 'values', tuple(self.values))
    if not self.values:
      raise SweepError(f'axis {self.key!r} has no values.')

  @property
  def keys(self) -> tuple[str, ...]:
    return (self.key,)

  def coordinates(self) -> list[dict[str, Any]]:
    return [{self.key: value} for value in self.values]


@dataclasses.dataclass(frozen=True)
class Zip:
  """Keys varied together: the i-th values of every key form one grid coordinate."""
  values: Mapping[str, Sequence[Any]]

  def __post_init__(self):
    lengths = {key: len(values) for key, values in self.values.items()}
    if not lengths or len(set(lengths.values())) != 1 or not next(iter(lengths.values())):
      raise SweepError(f'zipped axes need the same number (> 0) of values each, got {lengths}.')

  @property
  def keys(self) -> tuple[str, ...]:
    return tuple(self.values)

  def coordinates(self) -> list[dict[str, Any]]:
    return [dict(zip(self.values, row)) for row in zip(*self.values.values())]


@dataclasses.dataclass(frozen=True)
class Plot:
  """What the report draws. ``x``: the axis of the final-error figure; ``series``: one line per
  value of this axis; ``curves``: also draw error against iterations (He et al.'s Fig. 6 style),
  one panel per value of ``panels`` and one colour per value of ``series``."""
  x: str
  series: Optional[str] = None
  curves: bool = False
  panels: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Sweep:
  """An ablation: everything needed to run it and to read its results, as plain data."""
  name: str
  doc: str                        # the paper figure it reproduces and what it should show
  config: str                     # base config, with fixed recipe arguments if any (FILE.py[:ARGS])
  axes: tuple[Union[Axis, Zip], ...]
  plot: Plot
  steps: int                      # the default (CPU) budget in iterations
  cpu_budget: str                 # what the default budget costs, e.g. 'about 50 min on 2 cores'
  paper_steps: int                # the paper's budget in iterations
  paper_budget: str               # the paper's schedule in words
  train_size: int = 0             # default training subset (0: all)
  derived: Mapping[str, str] = dataclasses.field(default_factory=dict)  # key -> '{label}...' template
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)    # key -> value, every point
  steps_key: str = 'steps'        # where the step budget goes: a recipe argument or config.X
  train_size_key: Optional[str] = 'train_size'

  @property
  def axis_keys(self) -> tuple[str, ...]:
    return tuple(key for axis in self.axes for key in axis.keys)

  @property
  def config_file(self) -> str:
    return self.config.partition(':')[0]

  @property
  def labels(self) -> set[str]:
    """Axis keys used only to fill ``derived`` templates."""
    used = {field for template in self.derived.values()
            for _, field, _, _ in string.Formatter().parse(template) if field}
    return used & set(self.axis_keys)


@dataclasses.dataclass(frozen=True)
class Point:
  """One training run of a sweep: its axis values and the flags of its ``cnn_jax.main`` command."""
  name: str
  values: dict[str, Any]          # every axis key (labels and seed included) -> value
  config: str                     # FILE.py[:ARGS] for --config
  overrides: tuple[str, ...]      # --config.X=V flags

  def main_args(self, workdir: str) -> list[str]:
    """The arguments of ``python -m cnn_jax.main`` for this point."""
    return [f'--config={self.config}', f'--workdir={workdir}', *self.overrides]


# ---------------------------------------------------------------------------------------------
# Recipe arguments, read from the config file's source (no import: configs pull in TensorFlow).


@dataclasses.dataclass(frozen=True)
class RecipeArguments:
  names: frozenset[str]           # named arguments the config accepts after ':'
  positional: Optional[str]       # the argument a bare first value sets


def recipe_arguments(config_file: str, repo: str = REPO) -> RecipeArguments:
  """The argument names of ``config_file``: the keys of its module-level ``ARGS`` dict (plus the
  shared ``runlocal`` when it parses them with configs.common) and the ``positional=`` it names."""
  path = config_file if os.path.isabs(config_file) else os.path.join(repo, config_file)
  try:
    with open(path) as f:
      tree = ast.parse(f.read(), path)
  except OSError as e:
    raise SweepError(f'config file {config_file} cannot be read: {e.strerror}.') from None
  names: set[str] = set()
  positional = None
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == 'ARGS'
                                            for t in node.targets) and isinstance(node.value, ast.Dict):
      names.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    if isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'parse_args':
      names.add('runlocal')  # configs/common.py's COMMON_ARGS
      for keyword in node.keywords:
        if keyword.arg == 'positional' and isinstance(keyword.value, ast.Constant):
          positional = keyword.value.value
  return RecipeArguments(frozenset(names), positional)


# ---------------------------------------------------------------------------------------------
# Expansion


def format_value(value: Any) -> str:
  """A value as the config parsers read it: bools as true/false, floats without noise."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, float):
    return f'{value:.10g}'
  return str(value)


def _short_key(key: str) -> str:
  return key.rsplit('.', 1)[-1]


def point_name(values: Mapping[str, Any]) -> str:
  """``net=plain,depth=20,seed=0``: readable, unique within a sweep, safe as a directory name."""
  parts = []
  for key, value in values.items():
    text = re.sub(r'[^A-Za-z0-9._+-]', '_', format_value(value))
    parts.append(f'{_short_key(key)}={text}')
  return ','.join(parts)


def with_overrides(sweep: Sweep, *, steps: Optional[int] = None, train_size: Optional[int] = None,
                   seeds: Optional[int] = None, settings: Mapping[str, Any] = ()) -> Sweep:
  """``sweep`` with the CLI's budget, seed count and ``--set KEY=VALUE`` fixed values applied."""
  fixed = dict(sweep.fixed)
  fixed.update(settings)
  axes = tuple(sweep.axes)
  if seeds is not None:
    if seeds < 1:
      raise SweepError(f'--seeds must be >= 1, not {seeds}.')
    axes = tuple(a for a in axes if SEED not in a.keys) + (Axis(SEED, tuple(range(seeds))),)
  return dataclasses.replace(sweep, axes=axes, fixed=fixed,
                             steps=sweep.steps if steps is None else steps,
                             train_size=sweep.train_size if train_size is None else train_size)


def _kind(key: str, labels: set[str]) -> str:
  if key == SEED:
    return 'seed'
  if key.startswith('config.'):
    return 'override'
  if key in labels:
    return 'label'
  return 'recipe'


def check(sweep: Sweep, repo: str = REPO) -> None:
  """Raises SweepError for keys the base config cannot take, before anything runs."""
  keys = list(sweep.axis_keys)
  duplicates = sorted({k for k in keys if keys.count(k) > 1} | (set(keys) & set(sweep.fixed))
                      | (set(keys) & set(sweep.derived)))
  if duplicates:
    raise SweepError(f'sweep {sweep.name}: key(s) {", ".join(duplicates)} set twice '
                     f'(axes, derived and fixed values must not overlap).')
  if sweep.steps < 1:
    raise SweepError(f'sweep {sweep.name}: the step budget must be >= 1, not {sweep.steps}.')
  if sweep.train_size < 0:
    raise SweepError(f'sweep {sweep.name}: train_size must be >= 0, not {sweep.train_size}.')
  if sweep.train_size and not sweep.train_size_key:
    raise SweepError(f'sweep {sweep.name}: its config takes no training subset (--train_size).')
  labels = sweep.labels
  recipe_keys = [k for k in [*keys, *sweep.derived, *sweep.fixed, sweep.steps_key,
                             *([sweep.train_size_key] if sweep.train_size else [])]
                 if _kind(k, labels) == 'recipe']
  if not recipe_keys:
    return
  accepted = recipe_arguments(sweep.config_file, repo)
  unknown = sorted({k for k in recipe_keys if k not in accepted.names})
  if unknown:
    valid = ', '.join(sorted(accepted.names)) or 'none'
    raise SweepError(f'sweep {sweep.name}: {", ".join(unknown)} is neither a recipe argument of '
                     f'{sweep.config_file} (it takes: {valid}) nor config.X.Y, seed or a label '
                     f'of a derived value.')


def expand(sweep: Sweep, repo: str = REPO) -> list[Point]:
  """Every grid point of ``sweep``, in the order they run (seeds of one setting next to each other)."""
  check(sweep, repo)
  axes = list(sweep.axes)
  if SEED not in sweep.axis_keys:
    axes.append(Axis(SEED, (0,)))
  axes.sort(key=lambda a: SEED in a.keys)  # seeds vary fastest
  labels = sweep.labels
  base_file, _, base_args = sweep.config.partition(':')
  budget: dict[str, Any] = {sweep.steps_key: sweep.steps}
  if sweep.train_size:
    budget[sweep.train_size_key] = sweep.train_size
  points = []
  for combination in itertools.product(*(axis.coordinates() for axis in axes)):
    values: dict[str, Any] = {}
    for coordinate in combination:
      values.update(coordinate)
    values = {key: values[key] for key in [k for k in sweep.axis_keys if k != SEED] + [SEED]}
    settings: dict[str, Any] = {}
    for key, template in sweep.derived.items():
      settings[key] = template.format(**{k: format_value(v) for k, v in values.items()})
    settings.update(sweep.fixed)
    settings.update({k: v for k, v in values.items() if _kind(k, labels) != 'label'})
    for key, value in budget.items():  # a fixed value or an axis may set the budget itself
      settings.setdefault(key, value)
    recipe = [f'{k}={format_value(v)}' for k, v in settings.items() if _kind(k, labels) == 'recipe']
    overrides = [f'--config.seed={format_value(v)}' if _kind(k, labels) == 'seed'
                 else f'--{k}={format_value(v)}'
                 for k, v in settings.items() if _kind(k, labels) in ('override', 'seed')]
    args = ','.join(a for a in [base_args, *recipe] if a)
    config = f'{base_file}:{args}' if args else base_file
    points.append(Point(point_name(values), values, config, tuple(overrides)))
  names = [p.name for p in points]
  if len(set(names)) != len(names):
    raise SweepError(f'sweep {sweep.name}: two grid points get the same name; give the axes '
                     f'distinct last components.')
  return points


def parse_setting(text: str) -> tuple[str, Any]:
  """``KEY=VALUE`` from ``--set``; the value stays text (the config parsers convert it)."""
  key, sep, value = text.partition('=')
  if not sep or not key.strip():
    raise SweepError(f'--set expects KEY=VALUE (a recipe argument or config.X.Y), got {text!r}.')
  return key.strip(), value.strip()


# ---------------------------------------------------------------------------------------------
# The registered sweeps

FASHION = 'configs/fashion_mnist.py'

SWEEPS: dict[str, Sweep] = {}


def register(sweep: Sweep) -> Sweep:
  if sweep.name in SWEEPS:
    raise SweepError(f'sweep {sweep.name!r} is registered twice.')
  SWEEPS[sweep.name] = sweep
  return sweep


# The Fashion-MNIST sweeps: bfloat16 compute (float32 parameters, optimiser state and BatchNorm
# statistics), as on TPUs and recent GPUs, which trains ResNet-20 1.8x faster on this CPU's AMX
# units too (71 -> 131 img/s on one core); evaluations before the last step read the validation
# split only. --set config.mixed_precision=false gives float32.
CPU_BUDGET_SETTINGS = {'config.mixed_precision': True, 'config.final_test_only': True}


register(Sweep(
    name='degradation',
    doc="""He et al. 2015 (Deep Residual Learning), Fig. 6: plain nets against residual nets of
depth 20, 32, 44 and 56 on Fashion-MNIST. The plain nets' training error rises with depth (the
degradation problem: deeper is worse even on the training set), the residual nets' falls. The
figure (curves.png) draws training error (thin, dashed) and validation error (bold) against
iterations, plain left, residual right, one colour per depth; the test split is read once, at the
end.""",
    config=FASHION,
    axes=(Axis('net', ('plain', 'resnet')), Axis('depth', (20, 32, 44, 56))),
    derived={'model': '{net}{depth}'},
    # Validation curves need several points per epoch at the CPU budget; the test split is read
    # once. Checkpoints every 100 iterations lose little when a session ends mid-run.
    fixed=CPU_BUDGET_SETTINGS | {'config.eval_every_epochs': 0.2,
                                 'config.checkpoint_every_steps': 100},
    plot=Plot(x='depth', series='net', curves=True, panels='net'),
    steps=300,
    cpu_budget=('8 runs of 300 iterations (0.7 epochs): 60 min with --parallel=2 on 2 CPU '
                'cores, measured (bfloat16; plain-20 8 min, plain-56 20 min on one core)'),
    paper_steps=64_000,
    paper_budget='64,000 iterations at batch 128, lr 0.1 divided by 10 at 32k and 48k'))

register(Sweep(
    name='stochastic_depth',
    doc="""Huang et al. 2016 (Deep Networks with Stochastic Depth), Fig. 3 / Table 1: a 110-layer
residual net with the survival probability of its last block at 1.0 (constant depth), 0.8 and 0.5
(linear decay rule). At the paper's length the dropped blocks regularise: test error falls from
p=1 to p=0.5 while training error rises. At the CPU budget the runs are far from converged, so
expect training error to rise with dropping and little or no test gain yet.""",
    config=FASHION,
    axes=(Axis('survival', (1.0, 0.8, 0.5)),),
    fixed=CPU_BUDGET_SETTINGS | {'model': 'resnet110', 'config.checkpoint_every_steps': 50},
    plot=Plot(x='survival'),
    steps=200,
    cpu_budget=('3 runs of 200 iterations: ResNet-56 (--set=model=resnet56) 14 min each on one CPU '
                'core, measured (bfloat16); ResNet-110 about twice that, estimated'),
    paper_steps=64_000,
    paper_budget=('500 epochs of CIFAR-10 in the paper (195,000 iterations at batch 128); '
                  "He et al.'s 64,000-iteration schedule here")))

register(Sweep(
    name='depth_vs_width',
    doc="""Zagoruyko & Komodakis 2016 (Wide Residual Networks), Table 4 / Fig. 2: at a similar
parameter budget (0.56-0.69M), a deep thin net (WRN-40-1) against wider, shallower ones (WRN-16-2,
WRN-10-3). The paper finds the wider nets as accurate or better, and faster on a GPU; at equal
multiply-adds (64-77M here) a CPU gains nothing from width, so compare the errors and the wall
times.""",
    config=FASHION,
    axes=(Zip({'depth': (40, 16, 10), 'width': (1, 2, 3)}),),
    derived={'model': 'wrn-{depth}-{width}'},
    fixed=CPU_BUDGET_SETTINGS | {'config.checkpoint_every_steps': 50},
    plot=Plot(x='width'),
    steps=200,
    cpu_budget=('3 runs of 200 iterations: 13-17 min each on one CPU core, measured while '
                'another training shared it (bfloat16)'),
    paper_steps=78_000,
    paper_budget='200 epochs of CIFAR at batch 128 (78,000 iterations), lr 0.1 times 0.2 at 30/60/80%'))

register(Sweep(
    name='smoke',
    doc="""The sweep machinery on digits in about a minute: LeNet-5 at two learning rates, 40
iterations each. Nothing to reproduce; checks that runs, resume and the report work here.""",
    config='configs/default.py',
    axes=(Axis('config.optimizer.learning_rate', (0.02, 0.05)),),
    fixed={'config.batch_size': 32, 'config.log_every_steps': 10, 'config.eval_every_epochs': 1,
           'config.data.validation_size': 200, 'config.checkpoint_every_steps': 20},
    plot=Plot(x='config.optimizer.learning_rate'),
    steps=40, steps_key='config.num_train_steps', train_size_key=None,
    cpu_budget='2 runs of 40 iterations: about a minute on 2 CPU cores',
    paper_steps=40, paper_budget='none (a machinery check)'))


register(Sweep(
    name='transfer',
    doc="""Few-shot transfer from Fashion-MNIST to digits (README, "Transfer: init_from and
trainable"; configs/transfer.py): a ResNet-20 trained on Fashion-MNIST with a new classifier
trained on its frozen features (probe) or with every layer trained further (finetune), against the
same network trained from scratch with the same budget, at 1, 5, 20 and all (about 140) training
images per class (--seeds=3 for replicates). Whether features learnt on clothes help on digits,
and with how few examples. Needs the source run: --set=source=DIR (default
/tmp/cnn_jax/fm_resnet20).""",
    config='configs/transfer.py',
    axes=(Axis('recipe', ('probe', 'finetune', 'scratch')), Axis('shots', (1, 5, 20, 'all'))),
    plot=Plot(x='shots', series='recipe'),
    steps=300, train_size_key=None,
    cpu_budget=('12 runs of 300 iterations at batch 32 (10 at one image per class), one after '
                'another: 1-4 min each on 2 CPU cores shared with other work; --seeds=3 triples it'),
    paper_steps=300, paper_budget='none (no paper: a demo of config.init_from and config.trainable)'))


def get(name: str, extra: Iterable[Sweep] = ()) -> Sweep:
  """The sweep called ``name`` among the registered ones and ``extra``; a one-line error else."""
  known = {**SWEEPS, **{s.name: s for s in extra}}
  if name in known:
    return known[name]
  import difflib
  close = difflib.get_close_matches(name, known, n=2)
  hint = f' Did you mean {" or ".join(close)}?' if close else ''
  raise SweepError(f'unknown sweep {name!r}.{hint} Sweeps: {", ".join(sorted(known))} '
                   f'(--list describes them).')


def load_file(path: str) -> list[Sweep]:
  """The sweeps a user's Python file defines as ``SWEEPS`` (a list or dict of Sweep)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location('user_sweeps', path)
  if spec is None or not os.path.exists(path):
    raise SweepError(f'--sweep_file {path} does not exist.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sweeps = getattr(module, 'SWEEPS', None)
  if isinstance(sweeps, Mapping):
    sweeps = list(sweeps.values())
  if not sweeps or not all(isinstance(s, Sweep) for s in sweeps):
    raise SweepError(f'--sweep_file {path} must define SWEEPS, a list of experiments.definitions.Sweep.')
  return list(sweeps)


def describe(sweep: Sweep) -> str:
  """The --list entry: name, doc, grid and budgets."""
  grid = ' x '.join(
      f'{a.key} {"/".join(map(format_value, a.values))}' if isinstance(a, Axis)
      else '(' + ', '.join(f'{k} {"/".join(map(format_value, v))}' for k, v in a.values.items()) + ')'
      for a in sweep.axes)
  count = math.prod(len(a.coordinates()) for a in sweep.axes)
  doc = '\n'.join('    ' + line for line in sweep.doc.strip().splitlines())
  return (f'{sweep.name}  ({count} points: {grid}; config {sweep.config})\n{doc}\n'
          f'    CPU budget: --steps={sweep.steps} ({sweep.cpu_budget}).\n'
          f'    Paper budget: --steps={sweep.paper_steps} ({sweep.paper_budget}).')
