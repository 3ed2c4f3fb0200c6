"""Reading game records (cnn_jax.go.sgf): the SGF cases a KGS archive holds."""
import io
import tarfile
import zipfile

import pytest

from cnn_jax.go import sgf

HANDICAP = b'(;GM[1]FF[4]SZ[19]HA[2]KM[0.5]RE[W+R]AB[dp][pd];W[qp];B[dd];W[];B[tt];W[cc])'
NINE = b'(;GM[1]FF[4]SZ[9];B[ee];W[cc])'
MALFORMED = b'(;GM[1]FF[4]SZ[19];B[dd];W[qq'
LATE_SETUP = b'(;GM[1]FF[4]SZ[19];B[dd];AW[qq];W[pp])'
EMPTY = b'(;GM[1]FF[4]SZ[19]RE[B+R])'


def test_handicap_passes_and_resignation():
  record = sgf.parse(HANDICAP, 'handicap.sgf')
  # sgfmill's coordinates: (row, col), row 0 at the bottom; 'dp' is column d, row 4 from the bottom.
  assert record.setup_black == ((3, 3), (15, 15)) and record.setup_white == ()
  assert record.handicap == 2 and record.result == 'W+R'
  assert record.moves == (('w', (3, 16)), ('b', (15, 3)), ('w', None), ('b', None),
                          ('w', (16, 2)))   # W[] and B[tt] are passes


@pytest.mark.parametrize('data, reason', [(NINE, 'not 19x19'), (MALFORMED, 'unreadable SGF'),
                                          (LATE_SETUP, 'unsupported setup'), (EMPTY, 'no moves')])
def test_unusable_records_say_why(data, reason):
  with pytest.raises(ValueError, match=reason):
    sgf.parse(data, 'x.sgf')


def _archive_files():
  return {'a/handicap.sgf': HANDICAP, 'a/nine.sgf': NINE, 'b/broken.sgf': MALFORMED,
          'b/readme.txt': b'not a game', 'c/late.SGF': LATE_SETUP}


def test_a_directory_and_archives_read_alike_and_count_what_they_skip(tmp_path):
  files = _archive_files()
  directory = tmp_path / 'games'
  for name, data in files.items():
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
  zipped = tmp_path / 'games.zip'
  with zipfile.ZipFile(zipped, 'w') as archive:
    for name, data in files.items():
      archive.writestr(name, data)
  tarred = tmp_path / 'games.tar.gz'
  with tarfile.open(tarred, 'w:gz') as archive:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  for source in (directory, zipped, tarred):
    report = sgf.ReadReport()
    games = list(sgf.read_games(str(source), report))
    assert [g.name.endswith('a/handicap.sgf') for g in games] == [True]
    assert report.games == 1
    assert dict(report.skipped) == {'not 19x19': 1, 'unreadable SGF': 1, 'unsupported setup': 1}
    assert '3 skipped' in report.summary() and 'nine.sgf: not 19x19 (9x9)' in report.summary()


def test_not_a_source_names_what_it_needs(tmp_path):
  (tmp_path / 'x.txt').write_text('hello')
  with pytest.raises(FileNotFoundError, match='zip or tar'):
    list(sgf.read_games(str(tmp_path / 'x.txt')))
