"""Game records from SGF files: a directory, or a .zip / .tar(.gz|.bz2|.xz) archive of them.

The paper's data are KGS game records; users have such archives, and this reads them as it reads
the GnuGo games of :mod:`cnn_jax.go.generate`. A record is kept only if it is a 19x19 game whose
moves can be read; every other file is skipped with its reason (not 19x19, unreadable SGF, setup
stones after the first node, no moves, ...) and counted, never ending the build.

Coordinates are sgfmill's: (row, col), row 0 at the bottom. Setup stones (``AB``/``AW``, handicap
stones included) are placed before the first move; the side to move first is the colour of the
first recorded move (white after a handicap).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import tarfile
import zipfile
from typing import Iterator, Optional

SIZE = 19
Point = tuple[int, int]
Move = Optional[Point]   # None: a pass


@dataclasses.dataclass(frozen=True)
class GameRecord:
  name: str                               # the file (and member of an archive) it came from
  setup_black: tuple[Point, ...]
  setup_white: tuple[Point, ...]
  moves: tuple[tuple[str, Move], ...]     # ('b' | 'w', point or None)
  result: str                             # SGF RE: 'B+R', 'W+3.5', '' when absent
  handicap: int


@dataclasses.dataclass
class ReadReport:
  """What a read kept and skipped, and why."""
  games: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: dict[str, str] = dataclasses.field(default_factory=dict)   # reason -> a file

  def skip(self, name: str, reason: str, detail: str, was_read: bool = False) -> None:
    """Counts a skipped file; ``was_read`` for a game read here and found unusable later (an
    illegal move), which no longer counts as read."""
    self.games -= was_read
    self.skipped[reason] += 1
    self.examples.setdefault(reason, f'{name}: {detail}')

  def summary(self) -> str:
    text = f'{self.games} games read'
    if self.skipped:
      reasons = '; '.join(f'{count} {reason} (e.g. {self.examples[reason]})'
                          for reason, count in self.skipped.most_common())
      text += f', {sum(self.skipped.values())} skipped: {reasons}'
    return text


def parse(data: bytes, name: str) -> GameRecord:
  """One SGF game; raises ValueError with the reason it cannot be used."""
  from sgfmill import sgf, sgf_moves   # pylint: disable=g-import-not-at-top
  try:
    game = sgf.Sgf_game.from_bytes(data)
  except ValueError as error:
    raise ValueError(f'unreadable SGF ({error})') from None
  if game.get_size() != SIZE:
    raise ValueError(f'not 19x19 ({game.get_size()}x{game.get_size()})')
  try:
    board, plays = sgf_moves.get_setup_and_moves(game)
  except ValueError as error:   # setup stones in later nodes, or an illegal setup
    raise ValueError(f'unsupported setup ({error})') from None
  if not plays:
    raise ValueError('no moves')
  black = tuple(sorted(p for p in board.list_occupied_points() if p[0] == 'b'))
  white = tuple(sorted(p for p in board.list_occupied_points() if p[0] == 'w'))
  root = game.get_root()
  handicap = root.get('HA') if root.has_property('HA') else 0
  result = root.get('RE') if root.has_property('RE') else ''
  return GameRecord(name, tuple(p for _, p in black), tuple(p for _, p in white), tuple(plays),
                    result, int(handicap))


def _files(source: str) -> Iterator[tuple[str, bytes]]:
  """(name, contents) of every .sgf file under a directory or inside an archive, sorted by name."""
  if os.path.isdir(source):
    names = sorted(os.path.join(root, f) for root, _, files in os.walk(source) for f in files
                   if f.lower().endswith('.sgf'))
    for name in names:
      with open(name, 'rb') as f:
        yield name, f.read()
  elif zipfile.is_zipfile(source):
    with zipfile.ZipFile(source) as archive:
      for name in sorted(n for n in archive.namelist() if n.lower().endswith('.sgf')):
        yield f'{source}:{name}', archive.read(name)
  elif tarfile.is_tarfile(source):
    with tarfile.open(source) as archive:
      members = sorted((m for m in archive.getmembers()
                        if m.isfile() and m.name.lower().endswith('.sgf')), key=lambda m: m.name)
      for member in members:
        yield f'{source}:{member.name}', archive.extractfile(member).read()
  else:
    raise FileNotFoundError(f'{source} is neither a directory of SGF files nor a zip or tar '
                            'archive of them')


def read_games(source: str, report: Optional[ReadReport] = None) -> Iterator[GameRecord]:
  """The usable games of ``source`` in file-name order; ``report`` counts what was skipped."""
  report = report if report is not None else ReadReport()
  for name, data in _files(source):
    try:
      record = parse(data, name)
    except ValueError as error:   # counted under its reason without the detail
      report.skip(name, str(error).split(' (')[0], str(error))
      continue
    report.games += 1
    yield record
