"""Go rules for AlphaGo's data: stones, captures, suicide, simple ko, passes, and a ladder reader.

A ``Board`` holds one position of a game record being replayed: the stones, whose turn it is, the
simple-ko point, the move history (for the "turns since" planes), when each stone was played, and
how many stones each colour has captured. It is made for replaying records and computing features
fast, not for playing games: it has no scoring and no superko.

Rules (decisions):
  * Suicide is illegal (as under Chinese and Japanese rules; KGS games under New Zealand rules may
    contain one, and replaying such a record raises ``IllegalMove``, which the caller counts and skips).
  * Simple ko only: a move that captures exactly one stone with a lone stone left with exactly one
    liberty makes the captured point illegal for the opponent's next move. Any other move, a pass
    included, lifts it. Positional superko is not checked (records from a server are legal under it
    already; repetition is not a concern for a replay).
  * Passes are moves: they go into the history (they count as turns for "turns since") and hand
    the turn over.
  * Setup stones (handicap, SGF AB/AW) are placed without any rule check, do not change the turn
    and have no move number: they count as played before the first move.
  * A move may name its colour (SGF records can have two moves of one colour in a row); the turn is
    then that colour's.

Coordinates are ``(row, col)`` with ``0 <= row, col < size``; the point's index in the policy
network's 361 outputs is ``row * size + col``. Which edge row 0 is on does not matter to the rules or
the features (both are symmetric), so sgfmill's ``(row, col)`` (row 0 at the bottom) can be passed as
they are.

Internally the board is a flat int8 array of the board padded with one ring of ``BORDER`` points,
``(size + 2) ** 2`` long, so that the four neighbours of a point are ``p - 1, p + 1, p - W, p + W``
without bounds checks (``W = size + 2``). The hot loops are numba functions on those arrays, shared
with ``features.py``.

Ladders (``ladder_capture``, ``ladder_escape``): the reader follows the usual ladder search. The
defender, with one liberty, tries to extend at it and to capture any attacking group in atari next
to its group; the attacker, when the defender has two liberties, tries an atari on each (first the
one that leaves the defender's extension point fewer free neighbours). The defender escapes as soon
as it has three or more liberties; it is captured when every defence leaves it in atari. Simple ko
is respected inside the reading (a ko just taken cannot be retaken at once; without it ko shapes
were read back and forth to the limit), superko is not. The reading stops after
``LADDER_MAX_DEPTH`` plies or ``LADDER_MAX_NODES`` positions and then counts the defender as
escaped (the ladder does not work). A ladder from one corner to the other reads 65 positions.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numba
import numpy as np

SIZE = 19
EMPTY, BLACK, WHITE, BORDER = 0, 1, 2, 3
COLOUR_NAMES = {BLACK: 'black', WHITE: 'white'}

LADDER_MAX_DEPTH = 100   # plies of reading; a corner-to-corner ladder is about 65
LADDER_MAX_NODES = 100   # positions read per question; bounds fights that are not ladders

Move = Optional[Tuple[int, int]]  # (row, col), or None for a pass


class IllegalMove(ValueError):
  """A move the rules forbid; ``reason`` is 'occupied', 'suicide', 'ko' or 'off board'."""

  def __init__(self, move: Move, reason: str, colour: int = 0):
    self.move = move
    self.reason = reason
    who = f'{COLOUR_NAMES[colour]} ' if colour in COLOUR_NAMES else ''
    super().__init__(f'illegal move: {who}{move} ({reason})')


# ---------------------------------------------------------------------------------------------
# numba kernels on the padded flat board. ``mark`` is an int32 scratch array of length W*W + 1
# whose last element holds the last stamp used: a point is "seen" when mark[p] == stamp, so no
# clearing is needed between flood fills.


@numba.njit(cache=True)
def _flood(b, start, mark, stones, libs, limit=1 << 30):
  """Fills ``stones`` (and ``libs`` if it is long enough) with the group at ``start``.

  Returns (number of stones, number of liberties). ``libs`` may have length 0 when only the count
  matters. The fill stops once it has found ``limit`` liberties (then both counts are partial):
  most questions are "none, one, two or more?", and big groups answer them after a few stones.
  """
  W = int(np.sqrt(b.shape[0]))
  stamp = mark[-1] + 1
  mark[-1] = stamp
  colour = b[start]
  stones[0] = start
  mark[start] = stamp
  n = 1
  nlibs = 0
  i = 0
  keep_libs = libs.shape[0] > 0
  while i < n:
    p = stones[i]
    i += 1
    for q in (p - 1, p + 1, p - W, p + W):
      if mark[q] == stamp:
        continue
      v = b[q]
      if v == colour:
        mark[q] = stamp
        stones[n] = q
        n += 1
      elif v == EMPTY:
        mark[q] = stamp
        if keep_libs:
          libs[nlibs] = q
        nlibs += 1
        if nlibs >= limit:
          return n, nlibs
  return n, nlibs


@numba.njit(cache=True)
def _play_core(b, played, pos, colour, ply, mark, stones):
  """Plays ``colour`` at empty ``pos`` (no ko or occupancy check).

  Returns (captured stones, new ko point or -1); captured is -1 for a suicide, which leaves the
  board unchanged. ``played[p]`` gets ``ply`` (the move number) for the new stone.
  """
  W = int(np.sqrt(b.shape[0]))
  other = 3 - colour
  none = stones[:0]
  b[pos] = colour
  captured = 0
  last_captured = -1
  first_stamp = mark[-1] + 1
  for q in (pos - 1, pos + 1, pos - W, pos + W):
    # A neighbour stamped by this call's earlier fill belongs to a group already found alive.
    if b[q] == other and mark[q] < first_stamp:
      n, nl = _flood(b, q, mark, stones, none, 1)
      if nl == 0:
        for k in range(n):
          b[stones[k]] = EMPTY
        captured += n
        last_captured = q
  n, nl = _flood(b, pos, mark, stones, none, 2)
  if nl == 0:
    b[pos] = EMPTY
    return -1, -1
  played[pos] = ply
  ko = -1
  if captured == 1 and n == 1 and nl == 1:
    ko = last_captured
  return captured, ko


@numba.njit(cache=True)
def _is_eye(b, pos, colour):
  """Whether empty ``pos`` is an eye of ``colour`` (see features.py: sensibleness)."""
  W = int(np.sqrt(b.shape[0]))
  for q in (pos - 1, pos + 1, pos - W, pos + W):
    v = b[q]
    if v != colour and v != BORDER:
      return False
  bad = 0
  edge = False
  for q in (pos - W - 1, pos - W + 1, pos + W - 1, pos + W + 1):
    v = b[q]
    if v == BORDER:
      edge = True
    elif v == 3 - colour:
      bad += 1
  if edge:
    return bad == 0
  return bad <= 1


@numba.njit(cache=True)
def _legal_mask(b, colour, ko, exclude_eyes, out):
  """out[row * size + col] = 1 where ``colour`` may play (and, if exclude_eyes, not in its own eye)."""
  W = int(np.sqrt(b.shape[0]))
  size = W - 2
  mark = np.zeros(W * W + 1, np.int32)
  stones = np.empty(W * W, np.int32)
  none = np.empty(0, np.int32)
  other = 3 - colour
  for r in range(size):
    for c in range(size):
      p = (r + 1) * W + c + 1
      ok = False
      if b[p] == EMPTY and p != ko:
        for q in (p - 1, p + 1, p - W, p + W):
          v = b[q]
          if v == EMPTY:
            ok = True
          elif v == colour or v == other:
            n, nl = _flood(b, q, mark, stones, none, 2)
            # An own neighbour with a second liberty, or an opponent neighbour in atari (captured).
            if (v == colour and nl >= 2) or (v == other and nl == 1):
              ok = True
          if ok:
            break
        if ok and exclude_eyes and _is_eye(b, p, colour):
          ok = False
      out[r * size + c] = 1 if ok else 0


@numba.njit(cache=True)
def _ladder_frame(b, stone, attacker_to_move, cands, mark, seen, stones, libs, group):
  """Sets up one node of the ladder search: (result, number of candidate moves in ``cands``).

  result: 1 captured, 0 escaped, -1 open (the candidates must be tried). ``seen`` is a stamp array
  like ``mark``; ``stones``, ``libs`` and ``group`` are scratch.
  """
  W = int(np.sqrt(b.shape[0]))
  n, nl = _flood(b, stone, mark, group, libs, 3 if attacker_to_move else 1 << 30)
  if attacker_to_move:
    # The defender has two liberties: the attacker tries an atari on each.
    if nl <= 1:
      return 1, 0
    if nl >= 3:
      return 0, 0
    # First the atari that leaves the defender's extension point the fewest free neighbours:
    # the usual ladder move, so a working ladder is found without reading the other.
    free0 = 0
    free1 = 0
    for q in (libs[1] - 1, libs[1] + 1, libs[1] - W, libs[1] + W):
      if b[q] == EMPTY:
        free0 += 1  # extension at libs[1], after an atari at libs[0]
    for q in (libs[0] - 1, libs[0] + 1, libs[0] - W, libs[0] + W):
      if b[q] == EMPTY:
        free1 += 1
    first = 0 if free0 <= free1 else 1
    cands[0] = libs[first]
    cands[1] = libs[1 - first]
    return -1, 2
  # The defender is in atari: it extends at its liberty or captures an attacking group in atari
  # next to it.
  if nl == 0:
    return 1, 0
  if nl >= 2:
    return 0, 0
  attacker = 3 - int(b[stone])
  nc = 1
  cands[0] = libs[0]
  stamp = seen[-1] + 1
  seen[-1] = stamp
  for i in range(n):
    p = group[i]
    for q in (p - 1, p + 1, p - W, p + W):
      if b[q] == attacker and seen[q] != stamp and nc < cands.shape[0]:
        n2, nl2 = _flood(b, q, mark, stones, libs, 2)
        for k in range(n2):
          seen[stones[k]] = stamp  # each attacking group once
        if nl2 == 1:
          dup = False
          for k in range(nc):
            if cands[k] == libs[0]:
              dup = True
          if not dup:
            cands[nc] = libs[0]
            nc += 1
  return -1, nc


@numba.njit(cache=True)
def _workspace(N):
  """Scratch arrays for the ladder reader, made once per position (allocating them per question
  cost more than most questions): the stack of boards (one more row for ``_ladder_at``'s trial
  move), int32 rows (mark, seen: stamp arrays; stones, libs, group, played: scratch), the
  candidate moves and the (number of candidates, next candidate, attacker to move, ko point) of
  each frame.
  """
  D = LADDER_MAX_DEPTH
  return (np.empty((D + 2, N), np.int8), np.zeros((6, N + 1), np.int32),
          np.empty((D + 1, 8), np.int32), np.empty((D + 1, 4), np.int64))


@numba.njit(cache=True)
def _ladder(b, stone, attacker_to_move, ko, boards, scratch, cand, info):
  """Whether the group at ``stone`` is captured in a ladder (module docstring).

  ``attacker_to_move``: the group has two liberties and the attacker plays next; otherwise it has
  one and the defender plays next; ``ko`` is the point the side to move may not take (simple ko,
  or -1). An AND-OR search, depth first, with an explicit stack of
  positions (numba cannot cache recursive functions): a node where the attacker moves is captured
  if one of its moves leads to a captured node, a node where the defender moves if all of its moves
  do. Past ``LADDER_MAX_DEPTH`` plies or ``LADDER_MAX_NODES`` nodes a node counts as escaped.
  The other arguments are ``_workspace()``.
  """
  D = LADDER_MAX_DEPTH
  defender = int(b[stone])
  attacker = 3 - defender
  mark, seen, stones, libs, group, played = (scratch[0], scratch[1], scratch[2], scratch[3],
                                             scratch[4], scratch[5])
  none = libs[:0]
  ncand = info[:, 0]
  nxt = info[:, 1]
  att = info[:, 2]
  kos = info[:, 3]
  boards[0, :] = b
  att[0] = attacker_to_move
  kos[0] = ko
  res, n = _ladder_frame(boards[0], stone, attacker_to_move, cand[0], mark, seen, stones, libs,
                         group)
  if res >= 0:
    return res == 1
  ncand[0] = n
  nxt[0] = 0
  budget = LADDER_MAX_NODES
  d = 0
  child = -1  # the value of frame d's last tried move, once known
  while True:
    if child >= 0:
      # An attacker node is settled by one capturing move, a defender node by one escaping move.
      if (att[d] == 1 and child == 1) or (att[d] == 0 and child == 0):
        if d == 0:
          return child == 1
        d -= 1
        continue
      child = -1
    if nxt[d] >= ncand[d]:
      value = 0 if att[d] == 1 else 1  # every move tried: the attacker failed, or the defender did
      if d == 0:
        return value == 1
      d -= 1
      child = value
      continue
    move = cand[d, nxt[d]]
    nxt[d] += 1
    if move == kos[d]:
      child = 0 if att[d] == 1 else 1  # an illegal move helps neither side
      continue
    c = boards[d + 1]
    c[:] = boards[d]
    captured, new_ko = _play_core(c, played, int(move), attacker if att[d] == 1 else defender, 0,
                                  mark, stones)
    if captured < 0:
      child = 0 if att[d] == 1 else 1
      continue
    n, nl = _flood(c, stone, mark, stones, none, 3)
    if att[d] == 1:
      if nl != 1:
        child = 0
        continue
    else:
      if nl >= 3:
        child = 0
        continue
      if nl <= 1:
        child = 1
        continue
    budget -= 1
    if d + 1 >= D or budget <= 0:
      child = 0
      continue
    att[d + 1] = 1 - att[d]
    kos[d + 1] = new_ko  # without it a ko would be taken back and forth to the depth limit
    res, n = _ladder_frame(c, stone, att[d + 1] == 1, cand[d + 1], mark, seen, stones, libs, group)
    if res >= 0:
      child = res
      continue
    ncand[d + 1] = n
    nxt[d + 1] = 0
    d += 1


@numba.njit(cache=True)
def _ladder_at(b, pos, colour, capture, boards, scratch, cand, info):
  """Whether ``colour`` playing at ``pos`` (legal, not checked) is a working ladder capture
  (``capture``) or a working ladder escape (not ``capture``); see ``ladder_capture``. The last
  four arguments are ``_workspace()``."""
  W = int(np.sqrt(b.shape[0]))
  D = LADDER_MAX_DEPTH
  other = 3 - colour
  mark, stones, libs = scratch[0], scratch[2], scratch[3]
  none = libs[:0]
  # The groups the move can start a ladder against (capture: opponent neighbours with two
  # liberties) or rescue from one (escape: own groups in atari next to the move, or next to an
  # opponent group in atari the move captures).
  cands = np.empty(16, np.int64)
  nc = 0
  for q in (pos - 1, pos + 1, pos - W, pos + W):
    v = b[q]
    if capture and v == other:
      n, nl = _flood(b, q, mark, stones, libs, 3)
      if nl == 2:
        # The defender's extension at its other liberty: three free points around it there
        # and it escapes at once, no reading needed (the usual case).
        other_lib = libs[0] if libs[0] != pos else libs[1]
        free = 0
        for r in (other_lib - 1, other_lib + 1, other_lib - W, other_lib + W):
          if b[r] == EMPTY and r != pos:
            free += 1
        if free < 3:
          cands[nc] = q
          nc += 1
    elif not capture and v == colour:
      n, nl = _flood(b, q, mark, stones, none, 2)
      if nl == 1:
        cands[nc] = q
        nc += 1
    elif not capture and v == other:
      n, nl = _flood(b, q, mark, libs, none, 2)
      if nl == 1:
        for i in range(n):
          p = libs[i]
          for r in (p - 1, p + 1, p - W, p + W):
            if b[r] == colour and nc < 16:
              n2, nl2 = _flood(b, r, mark, stones, none, 2)
              if nl2 == 1:
                cands[nc] = r
                nc += 1
  if nc == 0:
    return False
  c = boards[D + 1]
  c[:] = b
  captured, ko = _play_core(c, scratch[5], pos, colour, 0, mark, stones)
  if captured < 0:
    return False
  for k in range(nc):
    s = cands[k]
    if c[s] != b[s]:
      continue  # captured by the move (capture) -- not a ladder
    n, nl = _flood(c, s, mark, stones, none, 3)
    if capture:
      if nl == 1 and _ladder(c, s, False, ko, boards, scratch, cand, info):
        return True
    else:
      if nl >= 3:
        return True
      if nl == 2 and not _ladder(c, s, True, ko, boards, scratch, cand, info):
        return True
  return False


def _pos(move: Tuple[int, int], size: int) -> int:
  row, col = move
  return (row + 1) * (size + 2) + col + 1


class Board:
  """A Go position and its history. ``size`` other than 19 is for tests."""

  def __init__(self, size: int = SIZE):
    self.size = size
    self.W = size + 2
    b = np.full((self.W, self.W), BORDER, np.int8)
    b[1:-1, 1:-1] = EMPTY
    self._b = b.reshape(-1)
    # Move number (1-based ply) of the stone on each point; setup stones and empty points: 0.
    self._played = np.zeros(self.W * self.W, np.int32)
    self.to_play = BLACK
    self.ko: Move = None               # the point the side to move may not play (simple ko)
    self.history: list = []            # (colour, move) of every move played, passes included
    self.captures = {BLACK: 0, WHITE: 0}  # stones captured by each colour
    self._mark = np.zeros(self.W * self.W + 1, np.int32)
    self._stones = np.empty(self.W * self.W, np.int32)

  # -- views
  @property
  def stones(self) -> np.ndarray:
    """[size, size] int8 view of the stones (EMPTY, BLACK, WHITE)."""
    return self._b.reshape(self.W, self.W)[1:-1, 1:-1]

  @property
  def move_number(self) -> int:
    """Moves played so far (passes included); the next move gets move_number + 1."""
    return len(self.history)

  def _ko_pos(self) -> int:
    return -1 if self.ko is None else _pos(self.ko, self.size)

  def __getitem__(self, point: Tuple[int, int]) -> int:
    return int(self._b[_pos(point, self.size)])

  def __str__(self) -> str:
    chars = {EMPTY: '.', BLACK: 'X', WHITE: 'O'}
    return '\n'.join(' '.join(chars[int(v)] for v in row) for row in self.stones)

  def copy(self) -> 'Board':
    new = Board.__new__(Board)
    new.__dict__.update(self.__dict__)
    new._b = self._b.copy()
    new._played = self._played.copy()
    new.history = list(self.history)
    new.captures = dict(self.captures)
    new._mark = np.zeros_like(self._mark)
    new._stones = np.empty_like(self._stones)
    return new

  # -- rules
  def _check(self, move: Tuple[int, int]) -> int:
    row, col = move
    if not (0 <= row < self.size and 0 <= col < self.size):
      raise IllegalMove(move, 'off board', self.to_play)
    pos = _pos(move, self.size)
    if self._b[pos] != EMPTY:
      raise IllegalMove(move, 'occupied', self.to_play)
    if move == self.ko:
      raise IllegalMove(move, 'ko', self.to_play)
    return pos

  def play(self, move: Move, colour: Optional[int] = None) -> int:
    """Plays ``move`` (``(row, col)`` or None to pass) for the side to move, or for ``colour``.

    Returns the number of stones captured; raises ``IllegalMove`` and leaves the board unchanged if
    the move is illegal.
    """
    if colour is not None:
      self.set_to_play(colour)
    if move is None:
      self.history.append((self.to_play, None))
      self.ko = None
      self.to_play = 3 - self.to_play
      return 0
    move = (int(move[0]), int(move[1]))
    pos = self._check(move)
    captured, ko = _play_core(self._b, self._played, pos, self.to_play, len(self.history) + 1,
                              self._mark, self._stones)
    if captured < 0:
      raise IllegalMove(move, 'suicide', self.to_play)
    self.history.append((self.to_play, move))
    self.captures[self.to_play] += captured
    self.ko = None if ko < 0 else divmod(ko, self.W)
    if self.ko is not None:
      self.ko = (self.ko[0] - 1, self.ko[1] - 1)
    self.to_play = 3 - self.to_play
    return int(captured)

  def is_legal(self, move: Move) -> bool:
    """Whether the side to move may play ``move`` (a pass always may)."""
    if move is None:
      return True
    try:
      pos = self._check((int(move[0]), int(move[1])))
    except IllegalMove:
      return False
    trial = self._b.copy()
    return _play_core(trial, self._played.copy(), pos, self.to_play, 0, self._mark,
                      self._stones)[0] >= 0

  def set_to_play(self, colour: int) -> None:
    """Makes it ``colour``'s turn (records may have two moves of one colour in a row)."""
    if colour not in (BLACK, WHITE):
      raise ValueError(f'colour must be BLACK (1) or WHITE (2), got {colour}')
    if colour != self.to_play:
      self.to_play = colour
      self.ko = None  # the ko binds the opponent's next move only; this is not that move

  def legal_mask(self, exclude_eyes: bool = False) -> np.ndarray:
    """bool[size * size], index row * size + col: the side to move's legal board moves.

    ``exclude_eyes`` also drops moves into the mover's own eyes (features.py's "sensibleness").
    """
    out = np.zeros(self.size * self.size, np.uint8)
    _legal_mask(self._b, self.to_play, self._ko_pos(), exclude_eyes, out)
    return out.astype(bool)

  def legal_moves(self) -> np.ndarray:
    """int array [n, 2] of the (row, col) the side to move may play, row-major; passes not included."""
    idx = np.flatnonzero(self.legal_mask())
    return np.stack([idx // self.size, idx % self.size], axis=1)

  def place_setup(self, black: Iterable[Tuple[int, int]] = (),
                  white: Iterable[Tuple[int, int]] = (),
                  empty: Iterable[Tuple[int, int]] = ()) -> None:
    """Places setup stones (handicap, SGF AB/AW; ``empty``: AE) over whatever is there: no
    captures checked, turn and history unchanged, and the ko lifted."""
    for colour, points in ((EMPTY, empty), (BLACK, black), (WHITE, white)):
      for point in points:
        row, col = int(point[0]), int(point[1])
        if not (0 <= row < self.size and 0 <= col < self.size):
          raise IllegalMove((row, col), 'off board', colour)
        pos = _pos((row, col), self.size)
        self._b[pos] = colour
        self._played[pos] = 0
    self.ko = None

  def group(self, point: Tuple[int, int]) -> Tuple[list, int]:
    """(the (row, col) stones of the group at ``point``, its number of liberties)."""
    pos = _pos(point, self.size)
    if self._b[pos] not in (BLACK, WHITE):
      raise ValueError(f'no stone at {point}')
    n, nl = _flood(self._b, pos, self._mark, self._stones, np.empty(0, np.int32))
    return [divmod(int(p), self.W) for p in self._stones[:n]], int(nl)


def ladder_capture(board: Board, move: Tuple[int, int]) -> bool:
  """Whether the side to move playing ``move`` is a successful ladder capture.

  True when the move is legal, leaves an adjacent opponent group that had two liberties in atari,
  and the ladder reading (module docstring) captures that group whatever the opponent does.
  """
  return _ladder_move(board, move, capture=True)


def ladder_escape(board: Board, move: Tuple[int, int]) -> bool:
  """Whether the side to move playing ``move`` is a successful ladder escape.

  True when the move is legal, one of the mover's groups was in atari before it and is not after it
  (the move extended it or captured a neighbour), and the opponent cannot then capture that group
  in a ladder (module docstring).
  """
  return _ladder_move(board, move, capture=False)


def _ladder_move(board: Board, move: Tuple[int, int], capture: bool) -> bool:
  if not board.is_legal(move):
    return False
  return bool(_ladder_at(board._b, _pos(move, board.size), board.to_play, capture,
                         *_workspace(board.W * board.W)))
