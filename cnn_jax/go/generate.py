"""Real Go games from GnuGo, as SGF files: the training data this machine can make for AlphaGo.

  python -m cnn_jax.go.generate --out=/work/data/gnugo_games --games=200 --processes=2

GnuGo 3.8 (``apt-get install gnugo``) plays both sides over GTP, about 80 ms a move at levels 0-3.
Games are varied three ways, all drawn from the game's index (so a rerun makes the same games): the
engine's random seed for each side, each side's level (0-3), and 0-4 random legal opening moves
played before GnuGo takes over (recorded in the SGF like any move). A game ends with two passes in
a row, a resignation, or ``--max_moves``; its result is GnuGo's ``final_score``.

Resumable: game N is ``game_NNNNN.sgf``, written under a temporary name and renamed when complete,
so an interrupted run loses at most the games being played; the same command plays only the
missing ones. Duplicates (the same move sequence as an earlier game) are dropped and replayed with
another seed. GnuGo's moves are far easier to predict than human dan players' (the paper's KGS
data): accuracies on these games are not comparable with the paper's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import random
import subprocess
import time
from typing import Optional, Sequence

from cnn_jax import ConfigError

GNUGO = '/usr/games/gnugo'
SIZE = 19
KOMI = 7.5
LEVELS = (0, 1, 2, 3)
COLUMNS = 'ABCDEFGHJKLMNOPQRST'   # GTP skips I
MAX_OPENING_MOVES = 4


class GtpError(RuntimeError):
  """GnuGo answered a command with an error, or died."""


class Gtp:
  """A GnuGo process spoken to in the Go Text Protocol (one command, one answer)."""

  def __init__(self, level: int, seed: int, gnugo: str = GNUGO):
    self.process = subprocess.Popen(
        [gnugo, '--mode', 'gtp', '--level', str(level), '--seed', str(seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        bufsize=1)

  def ask(self, command: str) -> str:
    """The answer's text; raises GtpError for a '?' answer."""
    self.process.stdin.write(command + '\n')
    self.process.stdin.flush()
    lines = []
    while True:
      line = self.process.stdout.readline()
      if not line:
        raise GtpError(f'GnuGo exited while answering {command!r}')
      if not line.strip():
        if lines:
          break
        continue
      lines.append(line.rstrip('\n'))
    answer = '\n'.join(lines)
    if answer.startswith('?'):
      raise GtpError(f'{command!r}: {answer[1:].strip()}')
    return answer[1:].strip()

  def close(self) -> None:
    try:
      self.ask('quit')
    except (GtpError, OSError):
      pass
    self.process.kill()
    self.process.wait()


def to_gtp(move: Optional[tuple[int, int]]) -> str:
  """(row, col), row 0 at the bottom as in sgfmill -> GTP's vertex ('D4' is (3, 3)); None -> 'pass'."""
  if move is None:
    return 'pass'
  row, col = move
  return f'{COLUMNS[col]}{row + 1}'


def from_gtp(vertex: str) -> Optional[tuple[int, int]]:
  """'D4' -> (row, col) with row counted from the bottom (sgfmill's convention); 'pass' -> None."""
  vertex = vertex.strip().upper()
  if vertex == 'PASS':
    return None
  return int(vertex[1:]) - 1, COLUMNS.index(vertex[0])


@dataclasses.dataclass
class Game:
  moves: list[tuple[str, Optional[tuple[int, int]]]]   # ('b' | 'w', (row, col) or None)
  result: str                                          # SGF RE, e.g. 'B+3.5', 'W+R', '?'
  black: str                                           # player names for PB/PW
  white: str
  opening_moves: int

  def signature(self) -> str:
    return hashlib.sha1(repr(self.moves).encode()).hexdigest()

  def to_sgf(self, comment: str) -> bytes:
    from sgfmill import sgf   # pylint: disable=g-import-not-at-top
    game = sgf.Sgf_game(size=SIZE)
    root = game.get_root()
    root.set('KM', KOMI)
    root.set('PB', self.black)
    root.set('PW', self.white)
    root.set('RE', self.result)
    root.set('C', comment)
    for colour, move in self.moves:
      game.extend_main_sequence().set_move(colour, move)
    return game.serialise()


def game_plan(index: int, attempt: int = 0) -> dict:
  """Seeds, levels and opening length of game ``index`` (``attempt`` > 0 after a duplicate)."""
  rng = random.Random(f'gnugo-{index}-{attempt}')
  return {'seed_black': rng.randrange(1, 2**31), 'seed_white': rng.randrange(1, 2**31),
          'level_black': rng.choice(LEVELS), 'level_white': rng.choice(LEVELS),
          'opening_moves': rng.randint(0, MAX_OPENING_MOVES), 'opening_seed': rng.randrange(2**31)}


def play_game(plan: dict, max_moves: int, gnugo: str = GNUGO) -> Game:
  """One game between two GnuGo processes (each side its own level and seed)."""
  players = {'b': Gtp(plan['level_black'], plan['seed_black'], gnugo),
             'w': Gtp(plan['level_white'], plan['seed_white'], gnugo)}
  try:
    for gtp in players.values():
      gtp.ask(f'boardsize {SIZE}')
      gtp.ask('clear_board')
      gtp.ask(f'komi {KOMI}')
    moves: list[tuple[str, Optional[tuple[int, int]]]] = []
    rng = random.Random(plan['opening_seed'])
    colour = 'b'
    # Random legal opening moves: the black player's engine is the referee of legality.
    while len(moves) < plan['opening_moves']:
      move = (rng.randrange(SIZE), rng.randrange(SIZE))
      try:
        players['b'].ask(f'play {colour} {to_gtp(move)}')
      except GtpError:
        continue   # occupied (or illegal): draw again
      players['w'].ask(f'play {colour} {to_gtp(move)}')
      moves.append((colour, move))
      colour = 'w' if colour == 'b' else 'b'
    result = '?'
    passes = 0
    while len(moves) < max_moves:
      vertex = players[colour].ask(f'genmove {colour}')
      if vertex.lower() == 'resign':
        result = f'{"W" if colour == "b" else "B"}+R'
        break
      move = from_gtp(vertex)
      other = 'w' if colour == 'b' else 'b'
      players[other].ask(f'play {colour} {to_gtp(move)}')
      moves.append((colour, move))
      passes = passes + 1 if move is None else 0
      colour = other
      if passes == 2:
        break
    if result == '?' and passes == 2:
      result = players['b'].ask('final_score')   # 'B+3.5', 'W+0.5' or '0' (a draw)
    name = lambda level: f'GNU Go 3.8 level {level}'
    return Game(moves, result, name(plan['level_black']), name(plan['level_white']),
                plan['opening_moves'])
  finally:
    for gtp in players.values():
      gtp.close()


def _path(out: str, index: int) -> str:
  return os.path.join(out, f'game_{index:05d}.sgf')


def _play_and_write(job: tuple[str, int, int, int, str]) -> tuple[int, int, Optional[str], float]:
  """Worker: plays game ``index`` (``attempt``) and writes it under a temporary name."""
  out, index, attempt, max_moves, gnugo = job
  start = time.time()
  plan = game_plan(index, attempt)
  game = play_game(plan, max_moves, gnugo)
  comment = (f'cnn_jax.go.generate game {index} attempt {attempt}: {plan["opening_moves"]} random '
             f'opening moves, seeds {plan["seed_black"]}/{plan["seed_white"]}')
  partial = _path(out, index) + '.partial'
  with open(partial, 'wb') as f:
    f.write(game.to_sgf(comment))
  return index, attempt, game.signature(), time.time() - start


def signature_of_file(path: str) -> str:
  """The move-sequence signature of an SGF file this module wrote (for duplicate detection)."""
  from sgfmill import sgf   # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as f:
    game = sgf.Sgf_game.from_bytes(f.read())
  moves = [node.get_move() for node in game.get_main_sequence()[1:]]
  return hashlib.sha1(repr(moves).encode()).hexdigest()


def generate(out: str, games: int, processes: int = 1, max_moves: int = 500,
             gnugo: str = GNUGO, log=print) -> list[str]:
  """Plays games 0..``games``-1 that ``out`` does not have yet; returns every game's path."""
  if not os.path.exists(gnugo):
    raise ConfigError(f'GnuGo is not at {gnugo}: install it with `apt-get install gnugo` (Debian) '
                      'or pass --gnugo=PATH.')
  if games < 1 or processes < 1 or max_moves < 2:
    raise ConfigError('--games, --processes must be >= 1 and --max_moves >= 2.')
  os.makedirs(out, exist_ok=True)
  for name in os.listdir(out):
    if name.endswith('.partial'):   # a game interrupted mid-write: replayed below
      os.remove(os.path.join(out, name))
  seen = {signature_of_file(_path(out, i)): i for i in range(games) if os.path.exists(_path(out, i))}
  todo = [(out, i, 0, max_moves, gnugo) for i in range(games) if not os.path.exists(_path(out, i))]
  log(f'{len(seen)} of {games} games already in {out}; playing {len(todo)} with {processes} '
      f'process(es)')
  done, start = 0, time.time()
  with multiprocessing.Pool(processes) as pool:
    while todo:
      retry = []
      for index, attempt, signature, seconds in pool.imap_unordered(_play_and_write, todo):
        partial = _path(out, index) + '.partial'
        if signature in seen:
          os.remove(partial)
          retry.append((out, index, attempt + 1, max_moves, gnugo))
          log(f'game {index}: the same moves as game {seen[signature]}; replaying with another seed')
          continue
        os.replace(partial, _path(out, index))
        seen[signature] = index
        done += 1
        log(f'game {index} ({seconds:.0f} s): {done}/{len(todo)} new, '
            f'{(time.time() - start) / done:.1f} s a game')
      todo = retry
  return [_path(out, i) for i in range(games)]


def main(argv: Sequence[str]) -> None:
  from absl import flags   # pylint: disable=g-import-not-at-top
  import cnn_jax   # pylint: disable=g-import-not-at-top
  from cnn_jax import runtime   # pylint: disable=g-import-not-at-top
  args = flags.FLAGS
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)
    generate(args.out, args.games, args.processes, args.max_moves, args.gnugo)


if __name__ == '__main__':
  from absl import app, flags   # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('out', None, 'directory of the SGF files (created; resumed if it exists)',
                      required=True)
  flags.DEFINE_integer('games', 200, 'number of games the directory should hold')
  flags.DEFINE_integer('processes', max(1, os.cpu_count() or 1), 'games played in parallel')
  flags.DEFINE_integer('max_moves', 500, 'a game stops after this many moves')
  flags.DEFINE_string('gnugo', GNUGO, 'the GnuGo binary')
  app.run(main)
