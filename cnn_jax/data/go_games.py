"""Go positions from SGF game records: the AlphaGo policy network's data (Silver et al. 2016).

``data.name='go_games'`` with ``data.source_dir`` a directory or archive of SGF files: the GnuGo
games of ``python -m cnn_jax.go.generate``, or a KGS archive (the paper's data). Each position whose
next move is a board point becomes one example:

- ``image``: the paper's 48 feature planes from the side to move's view (:mod:`cnn_jax.go.features`),
  uint8 [19, 19, 48], stored zlib-compressed (the planes are one-hot and mostly zero: 750 bytes a
  position with its mask and game name, measured on 5,803 positions of 28 GnuGo games, instead of
  17 KB, so KGS's 29.4M positions would take about 22 GB);
- ``label``: the move played, ``row * 19 + col`` (361 classes);
- ``label_mask``: the legal moves of the position (evaluation reports accuracy with illegal moves
  masked as well as without);
- ``game``: the record it comes from.

The split is by game, never by position: a game goes to ``test`` when the SHA-1 of its file name
falls in the first ``TEST_PERMILLE`` per mille, so no position of a test game is trained on and
adding games never moves an old game between splits. Records that cannot be used (not 19x19,
unreadable, an illegal move) are skipped, counted and reported with their reasons. The prepared
copy remembers its source: asking for another ``source_dir`` in the same data dir is an error that
names the fix.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax import ConfigError

BOARD = 19
TEST_PERMILLE = 100   # 10% of the games
HINT = ('set --config.data.source_dir to a directory (or zip/tar archive) of SGF files, e.g. the '
        'games of `python -m cnn_jax.go.generate --out=DIR`')


def split_of(game_name: str) -> str:
  """'test' or 'train', from the record's file name alone (stable as games are added)."""
  digest = hashlib.sha1(os.path.basename(game_name.split(':')[-1]).encode()).digest()
  return 'test' if int.from_bytes(digest[:4], 'big') % 1000 < TEST_PERMILLE else 'train'


class GoGames(tfds.core.GeneratorBasedBuilder):
  """Go positions (48 planes, the move, the legal moves) from a directory or archive of SGF files."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'AlphaGo SL policy planes from SGF records, split by game.'}

  def __init__(self, *, source_dir: Optional[str] = None, **kwargs):
    self.source_dir = source_dir
    super().__init__(**kwargs)

  def check_source(self) -> None:
    """ConfigError now (before tfds writes anything) if there is no usable source."""
    if not self.source_dir:
      raise ConfigError(f'data set go_games needs its game records: {HINT}.')
    if not os.path.exists(self.source_dir):
      raise ConfigError(f'data.source_dir {self.source_dir} does not exist: {HINT}.')

  def check_prepared(self, source_dir: Optional[str]) -> None:
    """ConfigError if the prepared copy was built from another source than ``source_dir``."""
    built_from = self.info.metadata.get('source_dir') if self.info.metadata else None
    if source_dir and built_from and os.path.abspath(source_dir) != built_from:
      raise ConfigError(f'the go_games data in {self.data_dir} were built from {built_from}, not '
                        f'{os.path.abspath(source_dir)}: use another --config.data.data_dir for '
                        'another set of games (or delete that directory to rebuild).')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(BOARD, BOARD, 48), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            'label': tfds.features.ClassLabel(num_classes=BOARD * BOARD),
            'label_mask': tfds.features.Tensor(shape=(BOARD * BOARD,), dtype=np.bool_,
                                               encoding=tfds.features.Encoding.ZLIB),
            'game': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    from cnn_jax.go import sgf   # pylint: disable=g-import-not-at-top
    self.check_source()
    report = sgf.ReadReport()
    games = {'train': [], 'test': []}
    for record in sgf.read_games(self.source_dir, report):
      games[split_of(record.name)].append(record)
    self.info.metadata['source_dir'] = os.path.abspath(self.source_dir)
    self.report = report   # completed while the examples are written; printed by the pipeline
    return {split: self._generate_examples(records) for split, records in games.items()}

  def _generate_examples(self, records) -> Iterator[tuple[str, dict]]:
    from cnn_jax.go import board as go_board   # pylint: disable=g-import-not-at-top
    from cnn_jax.go import features   # pylint: disable=g-import-not-at-top
    for record in records:
      try:   # the whole record is replayed before the first position comes
        positions = features.positions(record, with_legal_mask=True)
      except (go_board.IllegalMove, ValueError) as error:
        self.report.skip(record.name, 'an illegal move', str(error), was_read=True)
        continue
      for index, (planes, label, legal) in enumerate(positions):
        yield f'{record.name}#{index}', {'image': planes, 'label': label, 'label_mask': legal,
                                          'game': record.name}
