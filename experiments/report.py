"""A sweep's results, from whatever its workdirs hold now (finished, running, half missing).

  python -m experiments.report SWEEP_DIR

writes into SWEEP_DIR:

- ``results.json``: the sweep, every point (axis values, status, errors, curves, params, MACs,
  wall time, images/s) and every setting aggregated over seeds (mean, std, n);
- ``results.csv``: one row per setting (the aggregates);
- ``results.md``: the table, what is not finished (failed points with their log's last lines);
- ``final_error.png`` (error against the swept axis) and, for sweeps that ask for it,
  ``curves.png`` (He et al. 2015 Fig. 6 style: training error thin and dashed, test error bold,
  against iterations, one panel per net type, one colour per depth);
- ``tensorboard/``: HParams summaries, one session per point, for TensorBoard's HParams dashboard
  (``tensorboard --logdir=SWEEP_DIR`` shows it beside every point's own training curves).

Errors are 1 - accuracy. In metrics.jsonl a resumed run can log a step twice: the later record
wins. "best validation" is the lowest validation error over the run's evaluations, and
"test at best validation" the test error of that same evaluation (model selection without
looking at the test set).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import statistics
import sys
import time
from typing import Any, Mapping, Optional, Sequence

if __package__ in (None, ''):  # python experiments/report.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

from experiments import runner
from cnn_jax import run_files, runtime
from experiments.definitions import SEED, format_value

METRICS = ('final_train_error', 'final_validation_error', 'best_validation_error',
           'final_test_error', 'test_error_at_best_validation', 'wall_seconds', 'images_per_sec')
MODEL_SIZE = 'model_size.json'


# ---------------------------------------------------------------------------------------------
# Reading one point


def read_metrics(workdir: str) -> dict[str, list[dict]]:
  """split -> records sorted by step, one per step: a step logged twice (a resumed run) counts
  once, its later record. A half-written last line (a running run) is skipped."""
  try:
    with open(os.path.join(workdir, run_files.METRICS)) as f:
      records = run_files.parse_metrics(f)
  except OSError:
    records = []
  by_key = {(r['split'], int(r['step'])): r for r in records}
  splits: dict[str, list[dict]] = {}
  for (split, _), record in sorted(by_key.items(), key=lambda item: item[0][1]):
    splits.setdefault(split, []).append(record)
  return splits


def _error(record: Optional[Mapping[str, Any]]) -> Optional[float]:
  if not record or record.get('accuracy') is None:
    return None
  return 1.0 - float(record['accuracy'])


_size_memo: dict[str, Optional[dict]] = {}


def model_size(workdir: str) -> Optional[dict]:
  """Params and MACs of the point's model at its data's input shape (cnn_jax.summary), cached in
  the workdir; None when the config or the data set's metadata cannot be read here."""
  config = runner.read_json(os.path.join(workdir, run_files.CONFIG))
  if not config or 'model' not in config or 'data' not in config:
    return None
  key = json.dumps({'model': config['model'], 'data': config['data']}, sort_keys=True)
  cached = runner.read_json(os.path.join(workdir, MODEL_SIZE))
  if cached and cached.get('key') == key:
    return cached
  if key not in _size_memo:
    _size_memo[key] = _compute_model_size(config)
  size = _size_memo[key]
  if size is not None:
    runner.write_json(os.path.join(workdir, MODEL_SIZE), {'key': key, **size})
  return size


def _compute_model_size(config: dict) -> Optional[dict]:
  try:  # jax and tfds: imported only when some point is not cached yet
    import ml_collections
    from cnn_jax import summary
    from cnn_jax.data import pipeline
    info = pipeline.dataset_info(ml_collections.ConfigDict(config['data']))
    kwargs = {k: v for k, v in config['model'].items() if k not in ('name', 'dtype')}
    num_classes = kwargs.pop('num_classes', None) or info.num_classes
    totals = summary.summarize(config['model']['name'], input_shape=info.image_shape,
                               num_classes=num_classes, **kwargs)['totals']
    return {'params': int(totals['params']), 'macs': int(totals['macs']),
            'input_shape': list(info.image_shape)}
  except Exception as e:  # noqa: BLE001  (a report must not fail on one unreadable point)
    print(f'report: no params/MACs for model {config["model"].get("name")}: '
          f'{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}', file=sys.stderr)
    return None


def summarize_point(sweep_dir: str, name: str, values: Mapping[str, Any],
                    model_sizes: bool = True) -> dict:
  """Everything the report says about one point."""
  workdir = os.path.join(sweep_dir, name)
  status = runner.point_status(workdir) if os.path.isdir(workdir) else 'pending'
  splits = read_metrics(workdir)
  result = runner.read_json(os.path.join(workdir, run_files.RESULT)) or {}
  train, evals, validation = (splits.get(s, []) for s in ('train', 'eval', 'validation'))
  best = min(validation, key=lambda r: _error(r)) if validation else None
  test_by_step = {r['step']: r for r in evals}
  record = runner.read_json(os.path.join(workdir, runner.POINT_RECORD)) or {}
  attempts = record.get('attempts', [])
  walls = [a['wall_seconds'] for a in attempts if a.get('wall_seconds') is not None]
  speeds = [r['images_per_sec'] for r in train if r.get('images_per_sec')]
  point = {
      'name': name, 'values': dict(values), 'status': status, 'workdir': workdir,
      'step': max([result.get('step', 0)] + [r['step'] for r in train + evals]) or None,
      'final_train_error': _error(train[-1]) if train else None,
      'final_validation_error': _error(result.get('validation') or (validation[-1] if validation else None)),
      'best_validation_error': _error(best),
      'best_validation_step': best['step'] if best else None,
      'final_test_error': _error(result.get('eval') or (evals[-1] if evals else None)),
      'test_error_at_best_validation': _error(test_by_step.get(best['step'])) if best else None,
      'wall_seconds': round(sum(walls), 3) if walls else None,
      'attempts': len(attempts),
      'attempt_wall_seconds': walls,
      'images_per_sec': round(statistics.median(speeds), 2) if speeds else None,
      'params': None, 'macs': None,
      'curves': {split: [[r['step'], _error(r)] for r in records]
                 for split, records in splits.items()},
  }
  if status == 'failed':
    point['log'] = os.path.join(workdir, runner.LOG)
    point['log_tail'] = runner.log_tail(workdir)
  if model_sizes and os.path.isdir(workdir):
    size = model_size(workdir)
    if size:
      point['params'], point['macs'] = size['params'], size['macs']
  return point


# ---------------------------------------------------------------------------------------------
# The sweep


def load_sweep(sweep_dir: str) -> dict:
  """sweep.json as the sweep run wrote it; for a directory without one (runs made by hand), the
  points are the sub-directories with a sweep_point.json or config.json."""
  record = runner.read_json(os.path.join(sweep_dir, runner.SWEEP_RECORD))
  if record:
    return record
  points = []
  for entry in sorted(os.listdir(sweep_dir)) if os.path.isdir(sweep_dir) else []:
    workdir = os.path.join(sweep_dir, entry)
    point_record = runner.read_json(os.path.join(workdir, runner.POINT_RECORD))
    if point_record and 'values' in point_record:
      points.append({'name': entry, 'values': point_record['values']})
    elif os.path.exists(os.path.join(workdir, run_files.CONFIG)):
      points.append({'name': entry, 'values': _values_from_name(entry)})
  keys = list(dict.fromkeys(k for p in points for k in p['values']))
  first = next((k for k in keys if k != SEED), SEED)
  return {'name': os.path.basename(os.path.abspath(sweep_dir)), 'doc': '', 'axes': [[k] for k in keys],
          'plot': {'x': first, 'series': None, 'curves': False, 'panels': None}, 'points': points}


def _values_from_name(name: str) -> dict:
  values = {}
  for part in name.split(','):
    key, sep, text = part.partition('=')
    if sep:
      values[key] = _number(text)
  return values or {'run': name}


def _number(text: str) -> Any:
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def setting_keys(sweep: Mapping[str, Any]) -> list[str]:
  return [k for axis in sweep['axes'] for k in axis if k != SEED]


def aggregate(points: Sequence[dict], keys: Sequence[str]) -> list[dict]:
  """One entry per setting (the non-seed axis values): mean, std and n of each metric over its
  finished seeds, or over the unfinished ones while none has finished (``complete`` False)."""
  groups: dict[tuple, list[dict]] = {}
  for point in points:
    groups.setdefault(tuple(format_value(point['values'].get(k)) for k in keys), []).append(point)
  out = []
  for members in groups.values():
    finished = [p for p in members if p['status'] == 'finished']
    used = finished or [p for p in members if p['step']]
    group = {'values': {k: members[0]['values'].get(k) for k in keys},
             'points': len(members), 'finished': len(finished), 'complete': bool(finished),
             'seeds': [p['values'].get(SEED) for p in used],
             'params': next((p['params'] for p in members if p['params']), None),
             'macs': next((p['macs'] for p in members if p['macs']), None),
             'step': max((p['step'] or 0 for p in used), default=0) or None}
    for metric in METRICS:
      numbers = [p[metric] for p in used if p[metric] is not None]
      group[metric] = {'mean': statistics.fmean(numbers) if numbers else None,
                       'std': statistics.stdev(numbers) if len(numbers) > 1 else None,
                       'n': len(numbers)}
    out.append(group)
  return out


def generate(sweep_dir: str, plots: bool = True, hparams: bool = True,
             model_sizes: bool = True) -> dict:
  """Reads the sweep dir and writes every report file; returns what results.json holds."""
  sweep = load_sweep(sweep_dir)
  points = [summarize_point(sweep_dir, p['name'], p['values'], model_sizes) for p in sweep['points']]
  keys = setting_keys(sweep)
  results = {'sweep': {k: v for k, v in sweep.items() if k != 'points'},
             'generated': time.strftime('%Y-%m-%d %H:%M:%S'), 'host': socket.gethostname(),
             'points': points, 'settings': aggregate(points, keys)}
  runner.write_json(os.path.join(sweep_dir, 'results.json'), results)
  write_csv(os.path.join(sweep_dir, 'results.csv'), results['settings'], keys)
  figures = []
  if plots and any(p['step'] for p in points):
    figures = write_figures(sweep_dir, sweep, points, results['settings'])
  with open(os.path.join(sweep_dir, 'results.md'), 'w') as f:
    f.write(markdown(sweep, points, results['settings'], keys, figures))
  if hparams:
    write_hparams(os.path.join(sweep_dir, 'tensorboard'), sweep, points)
  return results


def write_csv(path: str, settings: Sequence[dict], keys: Sequence[str]) -> None:
  columns = [*keys, 'points', 'finished', 'step', 'params', 'macs']
  columns += [f'{m}_{stat}' for m in METRICS for stat in ('mean', 'std', 'n')]
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    for group in settings:
      row = {**group['values'], **{c: group[c] for c in ('points', 'finished', 'step', 'params', 'macs')}}
      for metric in METRICS:
        for stat in ('mean', 'std', 'n'):
          row[f'{metric}_{stat}'] = group[metric][stat]
      writer.writerow(row)


# ---------------------------------------------------------------------------------------------
# results.md


def _percent(stats: Mapping[str, Any]) -> str:
  if stats['mean'] is None:
    return ''
  text = f'{100 * stats["mean"]:.2f}'
  if stats['std'] is not None:
    text += f' ± {100 * stats["std"]:.2f} (n={stats["n"]})'
  return text


def _count(value: Optional[int]) -> str:
  if value is None:
    return ''
  for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
    if value >= scale:
      return f'{value / scale:.3g}{unit}'
  return str(value)


def markdown(sweep: Mapping[str, Any], points: Sequence[dict], settings: Sequence[dict],
             keys: Sequence[str], figures: Sequence[str]) -> str:
  finished = sum(p['status'] == 'finished' for p in points)
  lines = [f'# Sweep `{sweep["name"]}`', '']
  if sweep.get('doc'):
    lines += [' '.join(sweep['doc'].split()), '']
  if sweep.get('steps'):
    lines += [f'Budget: {sweep["steps"]} iterations'
              + (f', {sweep["train_size"]} training examples' if sweep.get('train_size') else '')
              + (f' (default: {sweep["cpu_budget"]}; the paper: {sweep["paper_steps"]}, '
                 f'{sweep["paper_budget"]})' if sweep.get('cpu_budget') else '') + '.', '']
  lines += [f'{finished} of {len(points)} runs finished. Errors in %, mean ± std over seeds '
            f'(n = seeds); a setting none of whose runs has finished shows its latest values, '
            f'marked with its step.', '']
  header = [*keys, 'runs', 'train err', 'best val err', 'final val err', 'test err',
            'test at best val', 'params', 'MACs', 'wall/run', 'img/s']
  lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for group in settings:
    runs = f'{group["finished"]}/{group["points"]}'
    if not group['complete']:
      runs += f' (step {group["step"]})' if group['step'] else ' (not started)'
    wall = group['wall_seconds']['mean']
    speed = group['images_per_sec']['mean']
    cells = [*(format_value(group['values'][k]) for k in keys), runs,
             *(_percent(group[m]) for m in ('final_train_error', 'best_validation_error',
                                            'final_validation_error', 'final_test_error',
                                            'test_error_at_best_validation')),
             _count(group['params']), _count(group['macs']),
             runner.duration(wall) if wall is not None else '', f'{speed:.0f}' if speed else '']
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines.append('')
  unfinished = [p for p in points if p['status'] != 'finished']
  if unfinished:
    lines += ['## Not finished', '']
    for p in unfinished:
      status = ('running (no end recorded: running now, or its launcher was stopped)'
                if p['status'] == 'running' else p['status'])
      lines.append(f'- `{p["name"]}`: {status}' + (f' at step {p["step"]}' if p['step'] else '')
                   + (f'; log `{p["log"]}`' if p.get('log') else ''))
      if p.get('log_tail'):
        lines += ['', '  ```', *('  ' + line for line in p['log_tail'][-5:]), '  ```']
    lines.append('')
  for figure in figures:
    lines += [f'![{figure}]({figure})', '']
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Figures


def _label(key: str) -> str:
  return key.rsplit('.', 1)[-1]


def _mean_curve(members: Sequence[dict], split: str) -> tuple[list[int], list[float]]:
  """Mean over seeds at the steps every seed logged."""
  curves = [dict((s, e) for s, e in p['curves'].get(split, []) if e is not None) for p in members]
  curves = [c for c in curves if c]
  if not curves:
    return [], []
  steps = sorted(set.intersection(*(set(c) for c in curves)))
  return steps, [100 * statistics.fmean(c[s] for c in curves) for s in steps]


def write_figures(sweep_dir: str, sweep: Mapping[str, Any], points: Sequence[dict],
                  settings: Sequence[dict]) -> list[str]:
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  plot = sweep['plot']
  figures = []
  if plot.get('curves'):
    figures.append(_curves_figure(plt, sweep_dir, sweep, points))
  if plot['x'] not in setting_keys(sweep):  # against the seed: every point is its own setting
    settings = [_as_setting(p) for p in points if p['step']]
  figures.append(_final_figure(plt, sweep_dir, sweep, settings))
  return figures


def _as_setting(point: dict) -> dict:
  return {'values': point['values'], 'params': point['params'], 'macs': point['macs'],
          **{m: {'mean': point[m], 'std': None, 'n': int(point[m] is not None)} for m in METRICS}}


def _curves_figure(plt, sweep_dir: str, sweep: Mapping[str, Any], points: Sequence[dict]) -> str:
  plot = sweep['plot']
  panel_key, line_key = plot.get('panels'), plot.get('series')
  line_key = plot['x'] if line_key == panel_key else line_key  # degradation: panels net, lines depth
  panels = list(dict.fromkeys(p['values'].get(panel_key) for p in points)) if panel_key else [None]
  lines = list(dict.fromkeys(p['values'].get(line_key) for p in points))
  colours = plt.get_cmap('viridis')(
      [0.85 * i / max(1, len(lines) - 1) for i in range(len(lines))])
  # Validation curves where the runs have them (model selection: with config.final_test_only the
  # test split is read once, at the end), test curves otherwise.
  held_out = 'validation' if any(p['curves'].get('validation') for p in points) else 'eval'
  held_out_name = 'validation' if held_out == 'validation' else 'test'
  figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True,
                              squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for colour, line in zip(colours, lines):
      members = [p for p in points if p['values'].get(line_key) == line
                 and (panel_key is None or p['values'].get(panel_key) == panel)]
      label = f'{panel}-{line}' if panel is not None else f'{_label(line_key)}={line}'
      steps, errors = _mean_curve(members, 'train')
      if steps:
        ax.plot(steps, errors, '--', color=colour, linewidth=0.9)
      steps, errors = _mean_curve(members, held_out)
      if steps:
        ax.plot(steps, errors, '-', color=colour, linewidth=2.2, label=label)
    ax.set_title(f'{panel}' if panel is not None else sweep['name'])
    ax.set_xlabel('iterations')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a panel none of whose runs has an evaluation yet
      ax.legend(fontsize=8)
  axes[0][0].set_ylabel('error (%)')
  figure.suptitle(f'{sweep["name"]}: training error (dashed) and {held_out_name} error (bold)')
  figure.tight_layout()
  figure.savefig(os.path.join(sweep_dir, 'curves.png'), dpi=110)
  plt.close(figure)
  return 'curves.png'


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _final_figure(plt, sweep_dir: str, sweep: Mapping[str, Any], settings: Sequence[dict]) -> str:
  plot = sweep['plot']
  x_key, series_key = plot['x'], plot.get('series')
  numeric = all(_is_number(g['values'].get(x_key)) for g in settings)
  order = list(dict.fromkeys(format_value(g['values'].get(x_key)) for g in settings))
  series = list(dict.fromkeys(g['values'].get(series_key) for g in settings)) if series_key else [None]
  figure, ax = plt.subplots(figsize=(6.4, 4.4))
  colours = plt.get_cmap('tab10').colors
  for colour, name in zip(colours, series):
    groups = [g for g in settings if series_key is None or g['values'].get(series_key) == name]
    xs = [g['values'][x_key] if numeric else order.index(format_value(g['values'][x_key]))
          for g in groups]
    suffix = f' ({name})' if name is not None else ''
    for metric, style, width, label in (('final_train_error', '--', 1.0, 'train'),
                                        ('final_test_error', '-', 2.2, 'test')):
      pairs = [(x, g[metric]) for x, g in zip(xs, groups) if g[metric]['mean'] is not None]
      if not pairs:
        continue
      pairs.sort(key=lambda item: item[0])
      ax.errorbar([x for x, _ in pairs], [100 * s['mean'] for _, s in pairs],
                  yerr=[100 * (s['std'] or 0) for _, s in pairs], fmt=style, marker='o',
                  color=colour, linewidth=width, capsize=3, label=f'{label}{suffix}')
    for x, g in zip(xs, groups):  # what else differs (zipped axes) and the model's size
      others = [f'{_label(k)}={format_value(v)}' for k, v in g['values'].items()
                if k not in (x_key, series_key)]
      text = ', '.join(others + ([f'{_count(g["params"])} params'] if g['params'] else []))
      if text and g['final_test_error']['mean'] is not None:
        ax.annotate(text, (x, 100 * g['final_test_error']['mean']), textcoords='offset points',
                    xytext=(4, 4), fontsize=7)
  if not numeric:
    ax.set_xticks(range(len(order)), order)
  ax.set_xlabel(_label(x_key))
  ax.set_ylabel('final error (%)')
  ax.set_title(f'{sweep["name"]}: final error (bars: std over seeds)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(os.path.join(sweep_dir, 'final_error.png'), dpi=110)
  plt.close(figure)
  return 'final_error.png'


# ---------------------------------------------------------------------------------------------
# TensorBoard HParams (written with tensorboard's protos alone: no TensorFlow import)

HPARAM_METRICS = (('final/test_error', 'final_test_error', 'test error (final)'),
                  ('final/train_error', 'final_train_error', 'training error (final)'),
                  ('final/validation_error', 'final_validation_error', 'validation error (final)'),
                  ('best/validation_error', 'best_validation_error', 'validation error (best)'),
                  ('best/test_error_at_best_validation', 'test_error_at_best_validation',
                   'test error at best validation'),
                  ('run/wall_seconds', 'wall_seconds', 'wall time (s)'),
                  ('run/images_per_sec', 'images_per_sec', 'images/s'),
                  ('model/params', 'params', 'parameters'), ('model/macs', 'macs', 'MACs'))


def _hparam_value(value: Any) -> Any:
  return value if isinstance(value, (bool, int, float, str)) else format_value(value)


class _EventWriter:
  def __init__(self, directory: str):
    from tensorboard.summary.writer.record_writer import RecordWriter
    os.makedirs(directory, exist_ok=True)
    name = f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}'
    self._file = open(os.path.join(directory, name), 'wb')
    self._writer = RecordWriter(self._file)
    self.write(file_version='brain.Event:2')

  def write(self, step: int = 0, summary=None, **fields) -> None:
    from tensorboard.compat.proto import event_pb2
    event = event_pb2.Event(wall_time=time.time(), step=step, **fields)
    if summary is not None:
      event.summary.CopyFrom(summary)
    self._writer.write(event.SerializeToString())

  def scalar(self, tag: str, value: float, step: int) -> None:
    from tensorboard.compat.proto import summary_pb2
    self.write(step, summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]))

  def close(self) -> None:
    self._writer.close()


def write_hparams(directory: str, sweep: Mapping[str, Any], points: Sequence[dict]) -> None:
  """Rewrites ``directory``: the experiment (axes and metrics) and one session per point."""
  from tensorboard.plugins.hparams import summary_v2 as hp
  shutil.rmtree(directory, ignore_errors=True)
  keys = [k for axis in sweep['axes'] for k in axis]
  hparams = {}
  for key in keys:
    values = sorted({_hparam_value(p['values'].get(key)) for p in points if key in p['values']},
                    key=lambda v: (str(type(v)), v))
    kinds = {type(v) for v in values}
    domain = hp.Discrete(values) if values and len(kinds) == 1 else None
    hparams[key] = hp.HParam(key, domain)
  writer = _EventWriter(directory)
  writer.write(summary=hp.hparams_config_pb(
      hparams=list(hparams.values()),
      metrics=[hp.Metric(tag, display_name=name) for tag, _, name in HPARAM_METRICS]))
  writer.close()
  for point in points:
    if not point['step']:
      continue
    writer = _EventWriter(os.path.join(directory, point['name']))
    writer.write(summary=hp.hparams_pb(
        {hparams[k]: _hparam_value(v) for k, v in point['values'].items() if k in hparams},
        trial_id=point['name']))
    for tag, field, _ in HPARAM_METRICS:
      if point[field] is not None:
        writer.scalar(tag, float(point[field]), point['step'])
    writer.close()


def main(argv: Sequence[str]) -> None:
  runtime.start()  # the report sizes models with JAX (cnn_jax.summary)
  if not flags.FLAGS['verbosity'].present:  # tfds logs every data set read at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) != 2:
    raise app.UsageError('usage: python -m experiments.report SWEEP_DIR')
  sweep_dir = os.path.abspath(argv[1])
  if not os.path.isdir(sweep_dir):
    sys.exit(f'error: {sweep_dir} is not a directory.')
  results = generate(sweep_dir, plots=flags.FLAGS.plots, hparams=flags.FLAGS.hparams)
  finished = sum(p['status'] == 'finished' for p in results['points'])
  print(f'{finished}/{len(results["points"])} runs finished; wrote '
        f'{os.path.join(sweep_dir, "results.md")} (and results.json, results.csv, figures, tensorboard/)')


if __name__ == '__main__':
  flags.DEFINE_bool('plots', True, 'Draw the figures (matplotlib).')
  flags.DEFINE_bool('hparams', True, 'Write the TensorBoard HParams summaries.')
  app.run(main)
