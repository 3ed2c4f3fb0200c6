"""Speed of AlphaGo's input planes: ``cnn_jax.go.features.positions`` over whole games, on one core.

  python benchmarks/go_features.py [--games 20] [--moves 300] [--sgf_dir DIR] [--cold]

The target is 2,000 positions/s per core: KGS's 29.4 million positions in about 4 hours on one
core. The games are the ``.sgf`` files of ``--sgf_dir`` (19x19 only, read with sgfmill) when given,
else games of uniformly random sensible moves (``features.random_game``, seeded): random play is
harder than real games for the ladder planes (many cramped groups with two liberties), so its figure
is a lower bound. Generating the games is not timed; replaying them (legality check, planes, labels)
is. The process runs on one CPU with one numba thread. numba's first call (loading the cached
machine code, or compiling it: ``--cold`` compiles into an empty cache) is timed apart.
"""
from __future__ import annotations

import argparse
import atexit
import glob
import os
import shutil
import sys
import tempfile
import time

os.environ['NUMBA_NUM_THREADS'] = '1'  # before numba is imported

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 2000.0  # positions per second per core


def sgf_games(directory: str, limit: int) -> list:
  """(setup_black, setup_white, moves) of up to ``limit`` 19x19 records of ``directory``."""
  from sgfmill import sgf, sgf_moves
  colours = {'b': 1, 'w': 2}
  games = []
  for path in sorted(glob.glob(os.path.join(directory, '**', '*.sgf'), recursive=True)):
    with open(path, 'rb') as f:
      try:
        game = sgf.Sgf_game.from_bytes(f.read())
        if game.get_size() != 19:
          continue
        board, plays = sgf_moves.get_setup_and_moves(game)
      except ValueError:
        continue
    black = [p for p in board.list_occupied_points() if p[0] == 'b']
    white = [p for p in board.list_occupied_points() if p[0] == 'w']
    games.append(([p[1] for p in black], [p[1] for p in white],
                  [(colours[c], move) for c, move in plays]))
    if len(games) == limit:
      break
  return games


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--games', type=int, default=20)
  parser.add_argument('--moves', type=int, default=300, help='moves per random game')
  parser.add_argument('--sgf_dir', default='', help='read these records instead of random games')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--cold', action='store_true', help="compile numba's code into an empty cache")
  args = parser.parse_args()
  if args.cold:
    cache = tempfile.mkdtemp(prefix='go_features_numba_')
    atexit.register(shutil.rmtree, cache, True)
    os.environ['NUMBA_CACHE_DIR'] = cache
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  sys.path.insert(0, REPO)
  from cnn_jax import runtime
  runtime.start()  # every program starts so (README, Layout); this one does not use JAX
  import numpy as np
  from cnn_jax.go import features

  start = time.perf_counter()
  list(features.positions([], [], [(3, 3), (15, 15)]))
  first_call = time.perf_counter() - start

  if args.sgf_dir:
    games = sgf_games(args.sgf_dir, args.games)
    source = f'{len(games)} records of {args.sgf_dir}'
  else:
    rng = np.random.default_rng(args.seed)
    games = [([], [], features.random_game(rng, max_moves=args.moves)) for _ in range(args.games)]
    source = f'{len(games)} random games of {args.moves} moves (seed {args.seed})'
  if not games:
    sys.exit(f'no 19x19 records in {args.sgf_dir}')

  count = 0
  start, cpu_start = time.perf_counter(), time.process_time()
  for black, white, moves in games:
    for planes, label in features.positions(black, white, moves):
      count += 1
  elapsed = time.perf_counter() - start
  cpu = time.process_time() - cpu_start
  rate = count / elapsed
  print(f'games: {source}')
  how = 'compiling into an empty cache' if args.cold else 'loading the cache, or compiling what changed'
  print(f'numba first call ({how}): {first_call:.2f} s')
  print(f'{count} positions in {elapsed:.2f} s: {rate:,.0f} positions/s on one core, '
        f'{rate / TARGET:.2f}x the {TARGET:,.0f}/s target')
  # On a shared machine the process waits for its core: per second of its own CPU time is the
  # figure an idle core would give (up to cache sharing).
  print(f'{count / cpu:,.0f} positions per CPU second ({count / cpu / TARGET:.2f}x); the process had '
        f'the CPU {cpu / elapsed:.0%} of the time; load average {os.getloadavg()[0]:.1f} on '
        f'{os.cpu_count()} CPUs')


if __name__ == '__main__':
  main()
