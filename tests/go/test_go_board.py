"""Go rules of cnn_jax/go/board.py: captures, suicide, ko, passes, setup stones, legality, ladders."""
from __future__ import annotations

import numpy as np
import pytest

from cnn_jax.go import features
from cnn_jax.go.board import (BLACK, EMPTY, SIZE, WHITE, Board, IllegalMove, ladder_capture,
                              ladder_escape)


def position(diagram: str, to_play: int = BLACK) -> Board:
  """A board with the diagram's stones (X black, O white) from the top-left corner, as setup."""
  board = Board()
  rows = [line.split() for line in diagram.strip().splitlines()]
  board.place_setup(black=[(r, c) for r, row in enumerate(rows) for c, v in enumerate(row) if v == 'X'],
                    white=[(r, c) for r, row in enumerate(rows) for c, v in enumerate(row) if v == 'O'])
  board.set_to_play(to_play)
  return board


def test_capture_one_stone():
  board = position('''
      . X . .
      X O X .
      . . . .''')
  assert board.play((2, 1)) == 1
  assert board[1, 1] == EMPTY and board.captures[BLACK] == 1 and board.to_play == WHITE


def test_capture_group():
  board = position('''
      O O . .
      X X . .''')
  assert board.play((0, 2)) == 2
  assert board[0, 0] == board[0, 1] == EMPTY and board.captures[BLACK] == 2


def test_suicide_is_illegal_and_leaves_the_board_unchanged():
  board = position('''
      . X .
      X . .''', to_play=WHITE)
  before = board.stones.copy()
  assert not board.is_legal((0, 0))
  with pytest.raises(IllegalMove) as e:
    board.play((0, 0))
  assert e.value.reason == 'suicide'
  np.testing.assert_array_equal(board.stones, before)
  assert board.to_play == WHITE and board.history == []
  # A group's suicide: black (0, 0) joins two black stones and leaves the three without a liberty.
  board = position('''
      . X O
      X O .
      O . .''')
  with pytest.raises(IllegalMove, match='suicide'):
    board.play((0, 0))


def test_move_without_liberties_that_captures_is_not_suicide():
  # White (0, 0) has no empty neighbour, but takes the last liberty of three black stones.
  board = position('''
      . X X O
      X O O .
      O . . .''', to_play=WHITE)
  assert board.is_legal((0, 0))
  assert board.play((0, 0)) == 3
  assert board[0, 1] == board[0, 2] == board[1, 0] == EMPTY and board[0, 0] == WHITE
  assert board.ko is None  # three stones captured: not a ko


KO = '''
    . X O .
    X O . O
    . X O .'''


def test_simple_ko_forbidden_then_allowed_after_a_move_elsewhere():
  board = position(KO)
  assert board.play((1, 2)) == 1          # black takes the ko
  assert board.ko == (1, 1)
  assert not board.is_legal((1, 1))
  with pytest.raises(IllegalMove) as e:
    board.play((1, 1))                     # white may not take back at once
  assert e.value.reason == 'ko'
  board.play((10, 10))                     # a ko threat
  board.play((10, 11))                     # black answers (does not fill the ko)
  assert board.ko is None and board.is_legal((1, 1))
  assert board.play((1, 1)) == 1           # white takes back
  assert board.ko == (1, 2)                # and now black must wait


def test_pass_hands_over_the_turn_and_lifts_the_ko():
  board = position(KO)
  board.play((1, 2))
  board.play(None)
  assert board.to_play == BLACK and board.ko is None and board.history[-1] == (WHITE, None)
  board.play(None)
  assert board.to_play == WHITE and board.is_legal((1, 1)) and board.move_number == 3


def test_occupied_and_off_board():
  board = Board()
  board.play((3, 3))
  with pytest.raises(IllegalMove, match='occupied'):
    board.play((3, 3))
  with pytest.raises(IllegalMove, match='off board'):
    board.play((19, 0))
  assert not board.is_legal((3, 3)) and not board.is_legal((-1, 4)) and board.is_legal(None)


def test_setup_stones_no_captures_turn_unchanged():
  board = Board()
  board.place_setup(black=[(3, 3), (15, 15)], white=[(0, 0)])
  assert board.to_play == BLACK and board.history == [] and board[3, 3] == BLACK
  # Setup does not capture: a white stone placed with no liberties stays.
  board.place_setup(black=[(0, 1), (1, 0)])
  assert board[0, 0] == WHITE
  # Handicap: white moves first by naming its colour.
  board.play((16, 3), WHITE)
  assert board.to_play == BLACK and board.history == [(WHITE, (16, 3))]


def test_copy_is_independent():
  board = Board()
  board.play((3, 3))
  other = board.copy()
  other.play((4, 4))
  assert board[4, 4] == EMPTY and board.move_number == 1 and other.move_number == 2


def test_legal_moves_agree_with_is_legal():
  moves = features.random_game(np.random.default_rng(1), max_moves=150)
  board = Board()
  for colour, point in moves:
    board.play(point, colour)
  legal = {tuple(m) for m in board.legal_moves()}
  expected = {(r, c) for r in range(SIZE) for c in range(SIZE) if board.is_legal((r, c))}
  assert legal == expected and 0 < len(legal) < SIZE * SIZE
  assert board.legal_mask().sum() == len(legal)


# A white stone at (3, 3) with black on two sides and at (4, 2): black (3, 4) ataris it, and every
# extension leaves two liberties, so white is chased down the diagonal to the bottom edge.
LADDER = '''
    . . . . .
    . . . . .
    . . . X .
    . . X O .
    . . X . .'''


def test_working_ladder_and_broken_ladder():
  board = position(LADDER)
  assert ladder_capture(board, (3, 4))
  assert not ladder_capture(board, (4, 3))  # white extends to (3, 4) with three liberties
  board.place_setup(white=[(12, 12)])       # a ladder breaker on the diagonal
  assert not ladder_capture(board, (3, 4))


def test_ladder_escape():
  board = position(LADDER, to_play=WHITE)
  board.place_setup(black=[(3, 4)])         # white is in atari; (4, 3) is its only liberty
  assert not ladder_escape(board, (4, 3))    # running is no use: the ladder works
  board.place_setup(white=[(12, 12)])
  assert ladder_escape(board, (4, 3))        # with the breaker it escapes
  assert not ladder_escape(board, (10, 10))  # a move elsewhere saves nothing


def test_ladder_defender_captures_an_attacker_in_atari():
  # Black's (2, 3) stone is in atari (white at (1, 3), (2, 4)): after black (3, 4) white does not
  # run, it captures (2, 3), so the ladder does not work.
  board = position('''
      . . . . .
      . . . O .
      . . . X O
      . . X O .
      . . X . .''')
  assert not ladder_capture(board, (3, 4))
