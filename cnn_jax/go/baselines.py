"""Two move-prediction baselines for the AlphaGo policy network, on the same positions it is tested on.

  python -m cnn_jax.go.baselines --source_dir=DIR [--data_dir=...] [--split=test]

- ``uniform``: a move drawn uniformly from the legal moves;
- ``largest_capture``: the legal move that captures the most stones, ties (most often: every move
  captures nothing) broken uniformly at random: the best single feature of the paper's planes.

Both are reported as expected top-1 and top-5 accuracy, computed exactly rather than sampled: with
``a`` legal moves ranked strictly above the played one and ``e`` tied with it (itself included), a
random tie-break puts it in the top k with probability ``clip((k - a) / e, 0, 1)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cnn_jax.go.features import PLANES


def expected_top_k(scores: np.ndarray, legal: np.ndarray, labels: np.ndarray,
                   k: int) -> np.ndarray:
  """Per position, the probability that ranking the legal moves by ``scores`` (ties broken at
  random) puts the played move in the first ``k``. scores/legal: [N, 361]; labels: [N]."""
  label_scores = np.take_along_axis(scores, labels[:, None], axis=1)
  above = np.sum(legal & (scores > label_scores), axis=1)
  tied = np.sum(legal & (scores == label_scores), axis=1)
  return np.clip((k - above) / np.maximum(tied, 1), 0.0, 1.0)


def capture_sizes(planes: np.ndarray) -> np.ndarray:
  """[N, 19, 19, 48] planes -> [N, 361] stones each move would capture (7 meaning 7 or more)."""
  one_hot = planes[..., PLANES['capture_size']]
  return np.argmax(one_hot, axis=-1).reshape(len(planes), -1)


def evaluate(planes: np.ndarray, labels: np.ndarray, legal: np.ndarray) -> dict[str, float]:
  """Top-1/top-5 accuracy of both baselines on positions ``planes`` with moves ``labels``."""
  legal = legal.astype(bool)
  results = {}
  for name, scores in (('uniform', np.zeros(legal.shape)), ('largest_capture', capture_sizes(planes))):
    for k in (1, 5):
      results[f'{name}_top{k}'] = float(expected_top_k(scores, legal, labels, k).mean())
  return results


def evaluate_split(data, split: str = 'test', batch: int = 4096) -> tuple[dict[str, float], int]:
  """The baselines on a split of the go_games data set named by ``data`` (a config's data)."""
  from cnn_jax.data import pipeline   # pylint: disable=g-import-not-at-top
  _, builder = pipeline.get_builder(data)
  totals, count = {}, 0
  for examples in builder.as_dataset(split=split, batch_size=batch).as_numpy_iterator():
    n = len(examples['label'])
    for key, value in evaluate(examples['image'], examples['label'], examples['label_mask']).items():
      totals[key] = totals.get(key, 0.0) + value * n
    count += n
  return {key: value / count for key, value in totals.items()}, count


def main(argv: Sequence[str]) -> None:
  from absl import flags   # pylint: disable=g-import-not-at-top
  import cnn_jax   # pylint: disable=g-import-not-at-top
  from cnn_jax import runtime   # pylint: disable=g-import-not-at-top
  from configs import default   # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)
    data = default.get_config().data
    data.name, data.source_dir = 'go_games', args.source_dir
    if args.data_dir:
      data.data_dir = args.data_dir
    results, count = evaluate_split(data, args.split)
  print(f'{count} positions of the {args.split} split')
  for key, value in results.items():
    print(f'{key}: {value:.4f}')


if __name__ == '__main__':
  from absl import app, flags   # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('source_dir', None, 'directory or archive of the SGF files', required=True)
  flags.DEFINE_string('data_dir', None, 'tfds data dir (default: the config default)')
  flags.DEFINE_string('split', 'test', 'split to evaluate on')
  app.run(main)
