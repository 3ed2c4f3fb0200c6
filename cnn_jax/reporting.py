"""Metrics out of the loop: TensorBoard events, JSON lines and the console; process 0 only.

``workdir/metrics.jsonl`` has one record per log or eval event:
``{"step": 100, "split": "train", "epoch": 2.3, "loss": ..., "accuracy": ..., ...}``.
The console shows a progress bar in an interactive terminal and log lines otherwise.
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


class Reporter:
  """Writes scalars to TensorBoard and JSON lines, and progress to the console."""

  def __init__(self, workdir: str, total_steps: int, steps_per_epoch: int,
               interactive: Optional[bool] = None):
    self.enabled = jax.process_index() == 0
    self.total_steps = total_steps
    self.steps_per_epoch = steps_per_epoch
    self.interactive = sys.stderr.isatty() if interactive is None else interactive
    self._start_time: Optional[float] = None
    self._start_step = 0
    if self.enabled:
      tf.io.gfile.makedirs(workdir)  # tf.io.gfile: local paths and gs:// alike
      self._writer = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))
      path = os.path.join(workdir, run_files.METRICS)
      # GCS cannot append: a resumed run rewrites the earlier records, then adds its own.
      earlier = tf.io.gfile.GFile(path).read() if tf.io.gfile.exists(path) else ''
      self._jsonl = tf.io.gfile.GFile(path, 'w')
      self._jsonl.write(earlier)

  def start(self, step: int) -> None:
    self._start_time, self._start_step = time.time(), step

  def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    with self._writer.as_default(step=step):
      for name, value in metrics.items():
        tf.summary.scalar(f'{split}/{name}', value)
    self._writer.flush()
    record = {'step': step, 'split': split, 'epoch': round(step / self.steps_per_epoch, 3),
              **{k: float(v) for k, v in metrics.items()}}
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
