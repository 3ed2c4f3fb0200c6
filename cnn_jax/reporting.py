"""Metrics out of the loop: TensorBoard events, JSON lines and the console; process 0 only.

``workdir/metrics.jsonl`` has one record per log or eval event:
``{"step": 100, "split": "train", "epoch": 2.3, "loss": ..., "accuracy": ..., ...}``.
The console shows a progress bar in an interactive terminal and log lines otherwise.

A resumed run keeps the records up to the restored step and moves the later ones, which it is about
to log again, to ``metrics_dropped.jsonl``: every step appears once in metrics.jsonl, with the values
an uninterrupted run logs, and nothing is lost when a run falls back to an earlier checkpoint.
tf.summary cannot purge events, so the TensorBoard event files are rewritten from the kept records
on each resume.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import jax
import tensorflow as tf

from cnn_jax import run_files


RECORD_KEYS = ('step', 'split', 'epoch')  # the other keys of a record are its metrics


def read_records(path: str) -> list[dict]:
  """The records of a metrics.jsonl, local or on GCS; a line cut short by a kill is skipped."""
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return run_files.parse_metrics(f)


def _write_records(path: str, records: list[dict]) -> None:
  """Replaces ``path`` with ``records`` through a temporary file: a kill leaves the old or the new
  file, never half of one (GCS cannot append, so files are rewritten whole)."""
  temporary = f'{path}.tmp'
  with tf.io.gfile.GFile(temporary, 'w') as f:
    f.write(''.join(json.dumps(r) + '\n' for r in records))
  tf.io.gfile.rename(temporary, path, overwrite=True)


class Reporter:
  """Writes scalars to TensorBoard and JSON lines, and progress to the console."""

  def __init__(self, workdir: str, total_steps: int, steps_per_epoch: int,
               resumed_step: int = 0, interactive: Optional[bool] = None):
    self.enabled = jax.process_index() == 0
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.interactive = sys.stderr.isatty() if interactive is None else interactive
    self._start_time: Optional[float] = None
    self._start_step = 0
    self.kept: list[dict] = []  # the earlier records this run continues from
    if self.enabled:
      tf.io.gfile.makedirs(workdir)  # tf.io.gfile: local paths and gs:// alike
      path = os.path.join(workdir, run_files.METRICS)
      records = read_records(path)
      self.kept = [r for r in records if r['step'] <= resumed_step]
      dropped = [r for r in records if r['step'] > resumed_step]
      if dropped:
        dropped_path = os.path.join(workdir, run_files.DROPPED_METRICS)
        _write_records(dropped_path, read_records(dropped_path) + dropped)
      tensorboard = os.path.join(workdir, run_files.TENSORBOARD)
      stale = tf.io.gfile.glob(os.path.join(tensorboard, 'events.out.tfevents.*'))
      _write_records(path, self.kept)  # then this run adds its own
      self._writer = tf.summary.create_file_writer(tensorboard)
      for record in self.kept:
        self._summaries(record)
      self._writer.flush()
      for name in stale:  # only once their records are in the new event file
        tf.io.gfile.remove(name)
      self._jsonl = tf.io.gfile.GFile(path, 'a' if '://' not in path else 'w')
      if '://' in path:
        self._jsonl.write(''.join(json.dumps(r) + '\n' for r in self.kept))

  def start(self, step: int) -> None:
    self._start_time, self._start_step = time.time(), step

  def _summaries(self, record: dict) -> None:
    with self._writer.as_default(step=record['step']):
      for name, value in record.items():
        if name not in RECORD_KEYS:
          tf.summary.scalar(f'{record["split"]}/{name}', value)

  def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    record = {'step': step, 'split': split, 'epoch': round(step / self.steps_per_epoch, 3),
              **{k: float(v) for k, v in metrics.items()}}
    self._summaries(record)
    self._writer.flush()
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()

  def progress(self, step: int, metrics: dict[str, float]) -> None:
    """One console update for a training log event."""
    if not self.enabled:
      return
    elapsed = time.time() - (self._start_time or time.time())
    done = step - self._start_step
    eta = elapsed / done * (self.total_steps - step) if done else float('nan')
    text = (f'step {step}/{self.total_steps} epoch {step / self.steps_per_epoch:.2f} '
            f'loss {metrics["loss"]:.4f} acc {metrics["accuracy"]:.4f} '
            f'{metrics.get("images_per_sec", 0):.0f} img/s ETA {_duration(eta)}')
    if self.interactive:
      width = 30
      filled = int(width * step / max(self.total_steps, 1))
      sys.stderr.write(f'\r[{"#" * filled}{"." * (width - filled)}] {text}\033[K')
      sys.stderr.flush()
    else:
      print(text, flush=True)

  def message(self, text: str) -> None:
    """A line for the console that stays (evaluations, the final result)."""
    if not self.enabled:
      return
    if self.interactive:
      sys.stderr.write('\r\033[K')
    print(text, flush=True)

  def close(self) -> None:
    if self.enabled:
      self._writer.close()
      self._jsonl.close()


def _duration(seconds: float) -> str:
  if seconds != seconds:  # nan
    return '?'
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'
