"""The go_games data set (cnn_jax.data.go_games) built from SGF files, and the baselines on it."""
import os
import shutil

import numpy as np
import pytest

from cnn_jax import ConfigError
from cnn_jax.data import go_games, pipeline
from cnn_jax.go import baselines, sgf
from configs import default

GAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data', 'go_games')
# A record whose fourth move plays on an occupied point.
ILLEGAL = b'(;GM[1]FF[4]SZ[19];B[dd];W[pp];B[dp];W[dd])'


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """The committed games plus an illegal record and a 9x9 game, prepared once."""
  root = tmp_path_factory.mktemp('go')
  source = root / 'games'
  shutil.copytree(GAMES, source)
  (source / 'illegal.sgf').write_bytes(ILLEGAL)
  (source / 'small.sgf').write_bytes(b'(;GM[1]FF[4]SZ[9];B[ee])')
  data = default.get_config().data
  data.name, data.source_dir, data.data_dir = 'go_games', str(source), str(root / 'tfds')
  _, builder = pipeline.get_builder(data)
  splits = {split: list(builder.as_dataset(split=split).as_numpy_iterator())
            for split in ('train', 'test')}
  return data, builder, splits


def test_every_board_move_is_an_example_split_by_game(built):
  _, builder, splits = built
  records = {r.name: r for r in sgf.read_games(GAMES)}
  for split, examples in splits.items():
    games = {e['game'].decode() for e in examples}
    assert {go_games.split_of(g) for g in games} == {split}
  by_game = {}
  for e in splits['train'] + splits['test']:
    by_game.setdefault(os.path.basename(e['game'].decode()), []).append(e)
  assert sorted(by_game) == sorted(os.path.basename(n) for n in records)  # illegal, 9x9 skipped
  for name, record in records.items():
    examples = by_game[os.path.basename(name)]
    assert len(examples) == sum(point is not None for _, point in record.moves)
  for e in splits['train'] + splits['test']:
    assert e['image'].shape == (19, 19, 48) and e['image'].dtype == np.uint8
    assert e['label_mask'][e['label']]   # the move played was legal
    # Stone colour planes: player, opponent, empty, one-hot on every point.
    assert (e['image'][..., :3].sum(-1) == 1).all()
  report = builder.report.summary()
  assert 'an illegal move' in report and 'illegal.sgf' in report and 'not 19x19' in report


def test_another_source_in_the_same_data_dir_names_the_fix(built, tmp_path):
  data = built[0].copy_and_resolve_references()
  data.source_dir = str(tmp_path)
  with pytest.raises(ConfigError, match='use another --config.data.data_dir'):
    pipeline.get_builder(data)


def test_missing_source_names_the_generator(tmp_path):
  data = default.get_config().data
  data.name, data.data_dir = 'go_games', str(tmp_path)
  with pytest.raises(ConfigError, match='cnn_jax.go.generate'):
    pipeline.get_builder(data)


def test_baselines_hand_computed():
  legal = np.zeros((2, 361), bool)
  legal[:, :4] = True
  scores = np.array([[0, 2, 0, 0] + [0] * 357, [1, 1, 0, 0] + [0] * 357])
  labels = np.array([1, 0])
  # Position 0: the played move is the only capture; position 1: tied with one other.
  np.testing.assert_allclose(baselines.expected_top_k(scores, legal, labels, 1), [1.0, 0.5])
  np.testing.assert_allclose(baselines.expected_top_k(np.zeros((2, 361)), legal, labels, 1),
                             [0.25, 0.25])
  np.testing.assert_allclose(baselines.expected_top_k(np.zeros((2, 361)), legal, labels, 5),
                             [1.0, 1.0])


def test_baselines_on_the_built_split(built):
  data = built[0]
  results, count = baselines.evaluate_split(data, 'test')
  test = built[2]['test']
  assert count == len(test)
  uniform = np.mean([1 / e['label_mask'].sum() for e in test])
  assert results['uniform_top1'] == pytest.approx(uniform)
  assert 0 <= results['largest_capture_top1'] <= results['largest_capture_top5'] <= 1
