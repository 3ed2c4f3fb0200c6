"""AlphaGo's 48 input planes of a Go position (Silver et al. 2016, Extended Data Table 2), and the
(planes, next move) training pairs of a game record.

``planes(board)`` is uint8 [19, 19, 48], from the view of the side to move ("player"), in the
table's order; ``PLANES`` names the slices:

| name | planes | value at a point |
|---|---|---|
| stone_colour | 0-2 | player stone, opponent stone, empty |
| ones | 3 | 1 |
| turns_since | 4-11 | stones only: moves since the stone was played, 1, 2, ..., 7, >=8 |
| liberties | 12-19 | stones only: liberties of the stone's group, 1, 2, ..., 7, >=8 |
| capture_size | 20-27 | legal points: opponent stones the move captures, 0, 1, ..., 6, >=7 |
| self_atari_size | 28-35 | legal points whose move leaves its group with one liberty: the group's size, 1, ..., 7, >=8 |
| liberties_after | 36-43 | legal points: liberties of the move's group after it (captures done), 1, ..., 7, >=8 |
| ladder_capture | 44 | legal points: the move starts a working ladder on an opponent group (board.ladder_capture) |
| ladder_escape | 45 | legal points: the move saves an own group in atari from any ladder (board.ladder_escape) |
| sensibleness | 46 | legal and not filling one of the player's own eyes |
| zeros | 47 | 0 |

The paper says only that "each integer feature value is split into multiple 19x19 planes of binary
values (one-hot encoding)", e.g. 1, 2, ..., >=8 liberties. Decisions for what it leaves open:
  * Every one-hot group is all zero where it does not apply: stone planes (turns since, liberties)
    on empty points; move planes (capture size, self-atari, liberties after, ladders, sensibleness)
    on stones and illegal points (occupied, suicide, the ko point). So on the points where a group
    applies exactly one of its planes is 1, except self-atari, which is 1 only on self-atari moves.
  * Capture size counts from 0 (plane 20: the move captures nothing), because most legal moves
    capture nothing and a feature that is zero there would not tell them from illegal points;
    liberties, self-atari size and liberties after count from 1 (0 cannot occur on a legal move).
  * Turns since: the last move played is 1 turn ago. Passes count as turns. Setup stones (handicap,
    AB/AW) count as played before the first move: >=8 plane.
  * Eye (for sensibleness): an empty point whose on-board orthogonal neighbours are all the
    player's stones, and with no opponent stone on its diagonals if it is on the edge or in a
    corner, at most one if it is in the centre (the usual "true eye" rule of Go programs; false
    eyes made of two groups that are both alive in other ways count as eyes too).
  * Ladder reading: board.py's module docstring (depth and node limits, simple ko).

``positions`` replays a record and yields ``(planes, label)`` for every position whose next move is
on the board (passes are not targets: the network predicts board points only), label = row * 19 +
col. ``legal_mask`` gives the side to move's legal points, for masked accuracy.

Speed: all planes of a position are computed by one numba function (groups and their liberty lists
once per position; the liberties after a move from those lists, unless it captures, when the move is
played on a copy; ladders read only where a move ataris a two-liberty opponent group whose escape
is not plain, or saves an own group in atari that does not get three liberties at once).
``benchmarks/go_features.py`` measures it: on 2026-12-04, one core of a 2-core machine shared
with other jobs (load 4.6; the process had its core 99% of the time), 3,677 positions/s (1.84x the
2,000/s target) over random games, which are the hard case, and 10,025/s over 28 GNU Go games.

"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple

import numba
import numpy as np

from cnn_jax.go.board import (BLACK, EMPTY, SIZE, WHITE, Board, IllegalMove, _flood, _is_eye,
                              _ladder_at, _play_core, _workspace)

NUM_PLANES = 48
PLANES = {
    'stone_colour': slice(0, 3),
    'ones': slice(3, 4),
    'turns_since': slice(4, 12),
    'liberties': slice(12, 20),
    'capture_size': slice(20, 28),
    'self_atari_size': slice(28, 36),
    'liberties_after': slice(36, 44),
    'ladder_capture': slice(44, 45),
    'ladder_escape': slice(45, 46),
    'sensibleness': slice(46, 47),
    'zeros': slice(47, 48),
}
assert sum(s.stop - s.start for s in PLANES.values()) == NUM_PLANES

# Plane offsets as plain ints, for the numba kernel.
_COLOUR, _ONES, _TURNS, _LIBS, _CAPTURE, _SELF_ATARI, _LIBS_AFTER = 0, 3, 4, 12, 20, 28, 36
_LADDER_CAPTURE, _LADDER_ESCAPE, _SENSIBLE = 44, 45, 46


@numba.njit(cache=True)
def _planes(b, played, move_number, colour, ko, out):
  """Fills ``out`` (zeros, [size, size, 48]) with the planes of ``colour`` to move."""
  W = int(np.sqrt(b.shape[0]))
  size = W - 2
  N = W * W
  other = 3 - colour
  boards, scratch, cand, info = _workspace(N)
  mark, stones, libs = scratch[0], scratch[2], scratch[3]
  # Every group once: its id at each stone, size, liberty count and liberty list.
  gid = np.full(N, -1, np.int32)
  gsize = np.empty(N, np.int32)
  glibs = np.empty(N, np.int32)
  gcolour = np.empty(N, np.int8)
  lib_start = np.empty(N + 1, np.int32)
  lib_list = np.empty(4 * N, np.int32)
  ngroups = 0
  total = 0
  own_atari = False
  for p in range(N):
    v = b[p]
    if (v == BLACK or v == WHITE) and gid[p] < 0:
      n, nl = _flood(b, p, mark, stones, libs)
      for k in range(n):
        gid[stones[k]] = ngroups
      gsize[ngroups] = n
      glibs[ngroups] = nl
      gcolour[ngroups] = v
      lib_start[ngroups] = total
      for k in range(nl):
        lib_list[total + k] = libs[k]
      total += nl
      if v == colour and nl == 1:
        own_atari = True
      ngroups += 1
  lib_start[ngroups] = total

  seen = np.zeros(N, np.int32)  # stamps for the liberty unions
  stamp = 0
  scratch_played = np.zeros(N, np.int32)
  adj = np.empty(4, np.int32)
  for r in range(size):
    for c in range(size):
      p = (r + 1) * W + c + 1
      v = b[p]
      out[r, c, _ONES] = 1
      if v != EMPTY:
        out[r, c, _COLOUR + (0 if v == colour else 1)] = 1
        turns = 8 if played[p] == 0 else min(move_number + 1 - played[p], 8)
        out[r, c, _TURNS + turns - 1] = 1
        out[r, c, _LIBS + min(glibs[gid[p]], 8) - 1] = 1
        continue
      out[r, c, _COLOUR + 2] = 1
      if p == ko:
        continue
      # The distinct groups next to p.
      nadj = 0
      captured = 0
      own_size = 0
      touches_own_atari = False
      ataris_two_lib_group = False
      for q in (p - 1, p + 1, p - W, p + W):
        g = gid[q]
        if g < 0:
          continue
        dup = False
        for k in range(nadj):
          if adj[k] == g:
            dup = True
        if dup:
          continue
        adj[nadj] = g
        nadj += 1
        if gcolour[g] == other:
          if glibs[g] == 1:
            captured += gsize[g]
          elif glibs[g] == 2:
            # A ladder needs reading unless the group's extension at its other liberty has three
            # free points around it (then it escapes at once): board._ladder_at's own test, made
            # here from the liberty lists to skip the call.
            other_lib = lib_list[lib_start[g]]
            if other_lib == p:
              other_lib = lib_list[lib_start[g] + 1]
            free = 0
            for r2 in (other_lib - 1, other_lib + 1, other_lib - W, other_lib + W):
              if b[r2] == EMPTY and r2 != p:
                free += 1
            if free < 3:
              ataris_two_lib_group = True
        else:
          own_size += gsize[g]
          if glibs[g] == 1:
            touches_own_atari = True
      if captured == 0:
        # Liberties after: the union of the joined groups' liberties and p's empty neighbours,
        # without p itself.
        stamp += 1
        seen[p] = stamp
        libs_after = 0
        for q in (p - 1, p + 1, p - W, p + W):
          if b[q] == EMPTY and seen[q] != stamp:
            seen[q] = stamp
            libs_after += 1
        for k in range(nadj):
          g = adj[k]
          if gcolour[g] == colour:
            for i in range(lib_start[g], lib_start[g + 1]):
              q = lib_list[i]
              if seen[q] != stamp:
                seen[q] = stamp
                libs_after += 1
        if libs_after == 0:
          continue  # suicide: illegal
      else:
        # Captures free points next to the new group: play it out on a copy.
        trial = b.copy()
        _play_core(trial, scratch_played, p, colour, 0, mark, stones)
        n, libs_after = _flood(trial, p, mark, stones, libs[:0])
      out[r, c, _CAPTURE + min(captured, 7)] = 1
      out[r, c, _LIBS_AFTER + min(libs_after, 8) - 1] = 1
      if libs_after == 1:
        out[r, c, _SELF_ATARI + min(own_size + 1, 8) - 1] = 1
      if ataris_two_lib_group and _ladder_at(b, p, colour, True, boards, scratch, cand, info):
        out[r, c, _LADDER_CAPTURE] = 1
      if own_atari and (touches_own_atari or captured > 0):
        # Joining a group in atari with three liberties after is an escape without reading; with
        # one (and no capture) it is none. Two, or a capture that may free a group, need reading.
        if captured == 0 and libs_after >= 3:
          out[r, c, _LADDER_ESCAPE] = 1
        elif (captured > 0 or libs_after == 2) and _ladder_at(b, p, colour, False, boards, scratch,
                                                              cand, info):
          out[r, c, _LADDER_ESCAPE] = 1
      if not _is_eye(b, p, colour):
        out[r, c, _SENSIBLE] = 1


def planes(state: Board) -> np.ndarray:
  """uint8 [size, size, 48]: AlphaGo's input planes for the side to move (module docstring)."""
  out = np.zeros((state.size, state.size, NUM_PLANES), np.uint8)
  _planes(state._b, state._played, state.move_number, state.to_play, state._ko_pos(), out)
  return out


def legal_mask(state: Board) -> np.ndarray:
  """bool [size * size], index row * size + col: where the side to move may play."""
  return state.legal_mask()


def sensible_mask(state: Board) -> np.ndarray:
  """bool [size * size]: legal moves that do not fill the mover's own eye (the sensibleness plane)."""
  return state.legal_mask(exclude_eyes=True)


Point = Tuple[int, int]


_COLOURS = {BLACK: BLACK, WHITE: WHITE, 'b': BLACK, 'w': WHITE, 'B': BLACK, 'W': WHITE}


def _moves(moves: Iterable[Any]) -> Iterator[Tuple[Optional[int], Optional[Point]]]:
  """(colour or None, point or None) from either form a record's moves may take."""
  for item in moves:
    if item is None:
      yield None, None                       # a pass by the side to move
    elif len(item) == 2 and (item[1] is None or not isinstance(item[1], (int, np.integer))):
      colour, point = item                   # (colour, (row, col) or None)
      if colour not in _COLOURS:
        raise ValueError(f'a move colour is BLACK (1), WHITE (2), "b" or "w", got {colour!r}')
      yield _COLOURS[colour], (None if point is None else (int(point[0]), int(point[1])))
    else:
      yield None, (int(item[0]), int(item[1]))  # (row, col) by the side to move


def positions(setup_black: Any = (), setup_white: Sequence[Point] = (),
              moves: Optional[Iterable[Any]] = None, size: int = SIZE,
              first: Optional[int] = None, with_legal_mask: bool = False
              ) -> Iterator[Tuple[np.ndarray, ...]]:
  """Replays a game; yields ``(planes uint8 [19, 19, 48], label)`` before each board move, and
  the position's :func:`legal_mask` third with ``with_legal_mask``.

  Either ``positions(setup_black, setup_white, moves)`` or ``positions(record)`` with a record that
  has those three attributes (and optionally ``first``, the colour to move first; default black, or
  the colour of the first move when moves name their colours). A move is ``(row, col)``, None (a
  pass), or ``(colour, (row, col) or None)`` with colour BLACK, WHITE or sgfmill's 'b', 'w' (so
  sgfmill's ``sgf_moves.get_setup_and_moves`` plays can be passed as they are); moves without a
  colour alternate. Positions whose move
  is a pass are replayed but not yielded. ``label = row * size + col``.

  The whole record is replayed once by the call itself, before it returns the iterator, so an
  illegal move (``IllegalMove``, with its reason and move number; 'off board' for a point outside
  the board) is raised before any position of the game reaches the caller, who can skip the game.
  """
  if moves is None and hasattr(setup_black, 'moves'):
    record = setup_black
    setup_black, setup_white, moves = record.setup_black, record.setup_white, record.moves
    first = getattr(record, 'first', first)
  moves = list(_moves(() if moves is None else moves))
  start = Board(size)
  start.place_setup(black=() if setup_black is None else setup_black,
                    white=() if setup_white is None else setup_white)
  if first is not None:
    start.set_to_play(first)
  board = start.copy()
  for index, (colour, point) in enumerate(moves):
    try:
      board.play(point, colour)
    except IllegalMove as e:
      e.args = (f'{e.args[0]} at move {index + 1}',)
      raise
  return _replay(start, moves, with_legal_mask)


def _replay(board: Board, moves: list, with_legal_mask: bool) -> Iterator[Tuple[np.ndarray, ...]]:
  for colour, point in moves:
    if colour is not None:
      board.set_to_play(colour)
    if point is not None:
      label = point[0] * board.size + point[1]
      yield (planes(board), label) + ((legal_mask(board),) if with_legal_mask else ())
    board.play(point)


def random_game(rng: np.random.Generator, max_moves: int = 400,
                size: int = SIZE) -> list:
  """A game of uniformly random sensible moves (legal, not filling an own eye), as ``(colour,
  point)`` moves for ``positions``; a side with no sensible move passes, two passes end it.

  For benchmarks and tests when no game records are around: random play fills the board and makes
  captures, kos and ataris, as real games do, though few real ladders.
  """
  board = Board(size)
  moves = []
  passes = 0
  while len(moves) < max_moves and passes < 2:
    choices = np.flatnonzero(sensible_mask(board))
    colour = board.to_play
    if len(choices) == 0:
      point = None
      passes += 1
    else:
      index = int(rng.choice(choices))
      point = (index // size, index % size)
      passes = 0
    board.play(point)
    moves.append((colour, point))
  return moves
