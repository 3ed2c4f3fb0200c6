"""The names of what a run writes in its workdir, and how to read its metrics, for cnn_jax and for
the tools that read runs (experiments/) without importing jax or TensorFlow."""
from __future__ import annotations

import json
from typing import Iterable

CONFIG = 'config.json'        # the resolved config
METRICS = 'metrics.jsonl'     # one record per log or eval event
RESULT = 'result.json'        # the final metrics; written last, so it marks a finished run
CHECKPOINTS = 'checkpoints'   # orbax's step directories
TENSORBOARD = 'tensorboard'   # TensorBoard events of the run (tools write theirs in subdirectories)
UNREADABLE_CHECKPOINTS = 'checkpoints_unreadable'  # checkpoints that failed to restore, kept
LOCK = 'lock.json'            # held by the run training in the workdir (cnn_jax/workdir.py)
DROPPED_METRICS = 'metrics_dropped.jsonl'  # records after a restored step, kept for a post-mortem


def parse_metrics(lines: Iterable[str]) -> list[dict]:
  """The records of metrics.jsonl lines, in file order; a line cut short by a kill is skipped."""
  records = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and 'step' in record and 'split' in record:
      records.append(record)
  return records
