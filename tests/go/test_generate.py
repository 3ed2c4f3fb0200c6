"""The GnuGo game generator (cnn_jax.go.generate) on a couple of very short real games."""
import os

import pytest
from sgfmill import sgf

from cnn_jax import ConfigError
from cnn_jax.go import generate


def test_gtp_vertices_round_trip():
  assert generate.to_gtp((3, 3)) == 'D4' and generate.to_gtp((0, 8)) == 'J1'   # GTP has no I
  assert generate.from_gtp('T19') == (18, 18) and generate.from_gtp('pass') is None
  assert all(generate.from_gtp(generate.to_gtp((r, c))) == (r, c) for r in range(19)
             for c in range(19))


def test_two_short_games_resume_and_read_back(tmp_path):
  out = str(tmp_path / 'games')
  paths = generate.generate(out, games=2, processes=2, max_moves=10, log=lambda _: None)
  assert sorted(os.listdir(out)) == ['game_00000.sgf', 'game_00001.sgf']
  records = []
  for path in paths:
    with open(path, 'rb') as f:
      game = sgf.Sgf_game.from_bytes(f.read())
    assert game.get_size() == 19 and game.get_komi() == 7.5
    assert game.get_player_name('b').startswith('GNU Go 3.8 level ')
    moves = [node.get_move() for node in game.get_main_sequence()[1:]]
    assert len(moves) == 10 and [c for c, _ in moves] == ['b', 'w'] * 5
    records.append(moves)
  assert records[0] != records[1]   # different seeds, levels and openings
  # A rerun plays nothing; a deleted game (an interrupted run) is played again, identically.
  log = []
  os.remove(paths[1])
  open(paths[0] + '.partial', 'w').close()   # a game interrupted mid-write
  generate.generate(out, games=2, processes=1, max_moves=10, log=log.append)
  assert log[0].startswith('1 of 2 games already') and len(log) == 2
  assert sorted(os.listdir(out)) == ['game_00000.sgf', 'game_00001.sgf']
  assert generate.signature_of_file(paths[1]) == generate.Game(records[1], '?', '', '', 0).signature()


def test_missing_gnugo_names_the_fix(tmp_path):
  with pytest.raises(ConfigError, match='apt-get install gnugo'):
    generate.generate(str(tmp_path), games=1, gnugo=str(tmp_path / 'no_gnugo'))
