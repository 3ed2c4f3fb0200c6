"""AlphaGo's 48 input planes (cnn_jax/go/features.py) on positions a Go player can check, and the
training pairs of a record."""
from __future__ import annotations

import types

import numpy as np
import pytest

from cnn_jax.go import features
from cnn_jax.go.board import BLACK, SIZE, WHITE, Board, IllegalMove, ladder_capture, ladder_escape
from cnn_jax.go.features import NUM_PLANES, PLANES, planes

from tests.go.test_go_board import KO, LADDER, position


def feature(p: np.ndarray, name: str, point) -> np.ndarray:
  """The planes of feature ``name`` at ``point``."""
  return p[point[0], point[1], PLANES[name]]


def one_hot(name: str, value_index: int) -> np.ndarray:
  size = PLANES[name].stop - PLANES[name].start
  return np.eye(size, dtype=np.uint8)[value_index]


def test_plane_layout():
  assert NUM_PLANES == 48 and PLANES['stone_colour'] == slice(0, 3) and PLANES['zeros'] == slice(47, 48)
  p = planes(Board())
  assert p.shape == (SIZE, SIZE, 48) and p.dtype == np.uint8
  assert (p[..., PLANES['ones']] == 1).all() and (p[..., PLANES['zeros']] == 0).all()


def test_side_to_move_view_swaps_colours():
  board = Board()
  board.play((3, 3))                                   # black; now white to move
  p = planes(board)
  np.testing.assert_array_equal(feature(p, 'stone_colour', (3, 3)), [0, 1, 0])  # opponent's stone
  board.play((15, 15))                                 # white; black to move
  p = planes(board)
  np.testing.assert_array_equal(feature(p, 'stone_colour', (3, 3)), [1, 0, 0])
  np.testing.assert_array_equal(feature(p, 'stone_colour', (15, 15)), [0, 1, 0])
  np.testing.assert_array_equal(feature(p, 'stone_colour', (9, 9)), [0, 0, 1])


def test_capture_size():
  board = position('''
      . X . . . . . . .
      X O X . . . . . .
      . . . . . . . . .''')
  p = planes(board)
  np.testing.assert_array_equal(feature(p, 'capture_size', (2, 1)), one_hot('capture_size', 1))
  np.testing.assert_array_equal(feature(p, 'capture_size', (9, 9)), one_hot('capture_size', 0))
  assert feature(p, 'capture_size', (1, 1)).sum() == 0  # a stone
  # Eight stones on the edge: the 7+ plane.
  board = position('''
      O O O O O O O O .
      X X X X X X X X .''')
  np.testing.assert_array_equal(feature(planes(board), 'capture_size', (0, 8)),
                                one_hot('capture_size', 7))


def test_ko_point_has_no_move_features():
  board = position(KO)
  board.play((1, 2))                                   # black takes; white may not retake
  p = planes(board)
  for name in ('capture_size', 'self_atari_size', 'liberties_after', 'sensibleness',
               'ladder_capture', 'ladder_escape'):
    assert feature(p, name, (1, 1)).sum() == 0, name
  assert not features.legal_mask(board)[1 * SIZE + 1]
  board.play((10, 10))
  board.play((10, 11))
  p = planes(board)                                    # white to move: now it captures one
  np.testing.assert_array_equal(feature(p, 'capture_size', (1, 1)), one_hot('capture_size', 1))
  assert feature(p, 'sensibleness', (1, 1)) == 1
  assert features.legal_mask(board)[1 * SIZE + 1]


def test_ladder_planes():
  p = planes(position(LADDER))
  assert feature(p, 'ladder_capture', (3, 4)) == 1 and feature(p, 'ladder_capture', (4, 3)) == 0
  assert p[..., PLANES['ladder_capture']].sum() == 1
  board = position(LADDER)
  board.place_setup(white=[(12, 12)])                  # ladder breaker
  assert planes(board)[..., PLANES['ladder_capture']].sum() == 0
  # The escape plane, white to move in atari.
  board = position(LADDER, to_play=WHITE)
  board.place_setup(black=[(3, 4)])
  assert planes(board)[..., PLANES['ladder_escape']].sum() == 0
  board.place_setup(white=[(12, 12)])
  p = planes(board)
  assert feature(p, 'ladder_escape', (4, 3)) == 1 and p[..., PLANES['ladder_escape']].sum() == 1
  assert ladder_escape(board, (4, 3)) and not ladder_capture(board, (4, 3))


def test_sensibleness_and_eyes():
  board = position('''
      . X . . . . .
      X X . . . . .
      . . . . X . .
      . . . X . X .
      . . . . X . .''')
  p = planes(board)
  assert feature(p, 'sensibleness', (0, 0)) == 0           # black's own corner eye: legal, not sensible
  assert feature(p, 'liberties_after', (0, 0)).sum() == 1  # but a legal move
  assert feature(p, 'sensibleness', (3, 4)) == 0           # an eye in the centre
  assert feature(p, 'sensibleness', (5, 5)) == 1
  # One white diagonal in the centre: still an eye; two: not an eye.
  board.place_setup(white=[(2, 3)])
  assert feature(planes(board), 'sensibleness', (3, 4)) == 0
  board.place_setup(white=[(4, 5)])
  assert feature(planes(board), 'sensibleness', (3, 4)) == 1
  # White to move: black's corner eye is suicide for white: not legal, so not sensible.
  board.set_to_play(WHITE)
  p = planes(board)
  assert feature(p, 'sensibleness', (0, 0)) == 0 and feature(p, 'liberties_after', (0, 0)).sum() == 0
  np.testing.assert_array_equal(features.sensible_mask(board), p[..., 46].reshape(-1) == 1)


def test_corner_false_eye_is_sensible():
  board = position('''
      . X .
      X O .''')
  assert feature(planes(board), 'sensibleness', (0, 0)) == 1


def test_self_atari_and_liberties_after():
  board = position('''
      . X O .
      . O . .''')
  p = planes(board)
  # Black (0, 0) joins (0, 1): two stones with one liberty, (1, 0).
  np.testing.assert_array_equal(feature(p, 'self_atari_size', (0, 0)), one_hot('self_atari_size', 1))
  np.testing.assert_array_equal(feature(p, 'liberties_after', (0, 0)), one_hot('liberties_after', 0))
  np.testing.assert_array_equal(feature(p, 'liberties', (0, 1)), one_hot('liberties', 0))
  assert feature(p, 'self_atari_size', (9, 9)).sum() == 0
  np.testing.assert_array_equal(feature(p, 'liberties_after', (9, 9)), one_hot('liberties_after', 3))
  np.testing.assert_array_equal(feature(p, 'liberties_after', (18, 18)), one_hot('liberties_after', 1))
  board = position('''
      . . . . .
      . . . . .
      . . X O .''')
  p = planes(board)
  # Next to its own stone: (2, 2) keeps two of its three liberties, the new stone adds three: 5.
  # Next to the opponent's stone: 3.
  np.testing.assert_array_equal(feature(p, 'liberties_after', (1, 2)), one_hot('liberties_after', 4))
  np.testing.assert_array_equal(feature(p, 'liberties_after', (2, 1)), one_hot('liberties_after', 4))
  np.testing.assert_array_equal(feature(p, 'liberties_after', (1, 3)), one_hot('liberties_after', 2))


def test_liberties():
  board = position('''
      X . . . . . . . . .
      . . . . . . . . . .
      . . . . . . . . . .
      . . . . O . . . . .
      . . . . . . . . . .
      . X X X X X X . . .''')
  p = planes(board)
  np.testing.assert_array_equal(feature(p, 'liberties', (0, 0)), one_hot('liberties', 1))
  np.testing.assert_array_equal(feature(p, 'liberties', (3, 4)), one_hot('liberties', 3))
  np.testing.assert_array_equal(feature(p, 'liberties', (5, 3)), one_hot('liberties', 7))  # 14: 8+
  assert feature(p, 'liberties', (4, 4)).sum() == 0  # empty


def test_turns_since():
  board = Board()
  board.place_setup(black=[(9, 9)])                     # setup: before the first move
  for move in [(3, 3), (15, 15), (3, 15), None, (15, 3)]:
    board.play(move)
  p = planes(board)
  for point, turns in [((15, 3), 1), ((3, 15), 3), ((15, 15), 4), ((3, 3), 5), ((9, 9), 8)]:
    np.testing.assert_array_equal(feature(p, 'turns_since', point), one_hot('turns_since', turns - 1))
  assert feature(p, 'turns_since', (0, 0)).sum() == 0
  for _ in range(4):
    board.play(None)
  np.testing.assert_array_equal(feature(planes(board), 'turns_since', (3, 3)), one_hot('turns_since', 7))


def _reference(board: Board, point) -> tuple:
  """(captured, liberties after, group size after) by playing the move on a copy, or None."""
  if not board.is_legal(point):
    return None
  trial = board.copy()
  captured = trial.play(point)
  stones, libs = trial.group(point)
  return captured, libs, len(stones)


@pytest.mark.parametrize('seed', [0, 1])
def test_planes_against_playing_each_move(seed):
  """Every one-hot group sums to one where it applies, and the move planes match playing it out."""
  moves = features.random_game(np.random.default_rng(seed), max_moves=300)
  board = Board()
  checked = ladders = escapes = 0
  for number, (colour, point) in enumerate(moves):
    if number % 23 == 22:
      p = planes(board)
      legal = features.legal_mask(board).reshape(SIZE, SIZE)
      stones = board.stones != 0
      np.testing.assert_array_equal(p[..., PLANES['stone_colour']].sum(-1), 1)
      for name in ('turns_since', 'liberties'):
        np.testing.assert_array_equal(p[..., PLANES[name]].sum(-1), stones, err_msg=name)
      for name in ('capture_size', 'liberties_after'):
        np.testing.assert_array_equal(p[..., PLANES[name]].sum(-1), legal, err_msg=name)
      for name in ('self_atari_size', 'ladder_capture', 'ladder_escape', 'sensibleness'):
        assert (p[..., PLANES[name]].sum(-1) <= legal).all(), name
      ladders += p[..., PLANES['ladder_capture']].sum()
      escapes += p[..., PLANES['ladder_escape']].sum()
      for r in range(SIZE):
        for c in range(SIZE):
          ref = _reference(board, (r, c))
          if ref is None:
            continue
          captured, libs, size = ref
          assert p[r, c, PLANES['capture_size']].argmax() == min(captured, 7)
          assert p[r, c, PLANES['liberties_after']].argmax() == min(libs, 8) - 1
          assert p[r, c, PLANES['self_atari_size']].sum() == (libs == 1)
          if libs == 1:
            assert p[r, c, PLANES['self_atari_size']].argmax() == min(size, 8) - 1
          # The planes skip reading where the answer is plain; the functions always read.
          assert p[r, c, PLANES['ladder_capture']] == ladder_capture(board, (r, c))
          assert p[r, c, PLANES['ladder_escape']] == ladder_escape(board, (r, c))
          checked += 1
    board.play(point, colour)
  assert checked > 1000
  assert ladders > 0 and escapes > 0


def test_positions_replay_and_skip_passes():
  moves = [(3, 3), (15, 15), None, (3, 15), (15, 3)]    # black passes at move 3
  pairs = list(features.positions([(9, 9)], [(9, 10)], moves))
  assert [label for _, label in pairs] == [3 * 19 + 3, 15 * 19 + 15, 3 * 19 + 15, 15 * 19 + 3]
  board = Board()
  board.place_setup(black=[(9, 9)], white=[(9, 10)])
  board.play((3, 3))
  board.play((15, 15))
  board.play(None)
  np.testing.assert_array_equal(pairs[2][0], planes(board))  # white to move after black's pass
  assert pairs[0][0][9, 9, 0] == 1 and pairs[2][0][9, 9, 1] == 1  # (9, 9) black's, then white's view
  # The same record as an object with coloured moves; handicap: white moves first.
  record = types.SimpleNamespace(setup_black=[(3, 3), (15, 15)], setup_white=[],
                                 moves=[(WHITE, (2, 2)), (BLACK, (16, 16)), (WHITE, None)])
  pairs = list(features.positions(record))
  assert [label for _, label in pairs] == [2 * 19 + 2, 16 * 19 + 16]
  assert pairs[0][0][3, 3, 1] == 1                     # white's view: (3, 3) is the opponent's


def test_positions_raise_on_an_illegal_record_before_any_position():
  with pytest.raises(IllegalMove, match='occupied.*move 3'):
    features.positions([], [], [(3, 3), (4, 4), (3, 3)])
  with pytest.raises(IllegalMove, match='suicide'):
    features.positions([(0, 1), (1, 0)], [], [(WHITE, (0, 0))])


def test_positions_take_sgfmill_setup_and_plays():
  from sgfmill import sgf, sgf_moves
  game = sgf.Sgf_game.from_bytes(b'(;GM[1]FF[4]SZ[19]HA[2]AB[dd][pp];W[dp];B[pd];W[])')
  board, plays = sgf_moves.get_setup_and_moves(game)   # plays: ('w', (3, 3)), ... row 0 at the bottom
  black = [point for colour, point in board.list_occupied_points() if colour == 'b']
  pairs = list(features.positions(black, [], plays))
  assert [label for _, label in pairs] == [3 * 19 + 3, 15 * 19 + 15]
  assert pairs[0][0][15, 3, 1] == 1 and pairs[1][0][15, 3, 0] == 1  # 'dd': white's view, then black's
