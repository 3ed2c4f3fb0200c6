"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) prepared offline from its four idx files.

tfds's own ``fashion_mnist`` builder downloads; this one reads a local directory of Zalando's idx
files, by default where Debian's ``dataset-fashion-mnist`` package puts them. The files may be
gzipped (Zalando's, or Debian's re-compressed ones, whose .gz bytes differ) or not: what is checked
is the MD5 of the decompressed idx data, the same for both. The prepared data set has tfds's
features, splits and class names, so ``fashion_mnist`` reads the same from either builder.
"""
from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax import ConfigError

DEFAULT_SOURCE_DIR = '/usr/share/datasets/fashion-mnist'
INSTALL_HINT = ('run `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or set '
                '--config.data.source_dir to a directory holding the four idx files')
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
               'Bag', 'Ankle boot')
# File name -> MD5 of the decompressed idx file (measured on Debian's and Zalando's copies).
FILES = {
    'train-images-idx3-ubyte': 'f4a8712d7a061bf5bd6d2ca38dc4d50a',
    'train-labels-idx1-ubyte': '9018921c3c673c538a1fc5bad174d6f9',
    't10k-images-idx3-ubyte': '8181f5470baa50b63fa0f6fddb340f0a',
    't10k-labels-idx1-ubyte': '15d484375f8d13e6eb1aabb0c3f46965',
}
SPLIT_FILES = {'train': 'train', 'test': 't10k'}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(source_dir: str, name: str, expected_md5: str) -> np.ndarray:
  """Reads ``name`` or ``name.gz`` from ``source_dir``; ConfigError if missing or damaged."""
  path = next((p for p in (os.path.join(source_dir, name + '.gz'), os.path.join(source_dir, name))
               if os.path.isfile(p)), None)
  if path is None:
    raise ConfigError(f'Fashion-MNIST file {name}[.gz] is missing from {source_dir}: {INSTALL_HINT}.')
  try:
    with open(path, 'rb') as f:
      raw = f.read()
    data = gzip.decompress(raw) if path.endswith('.gz') else raw
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise ConfigError(f'Fashion-MNIST file {path} is damaged ({e}): {INSTALL_HINT}.') from None
  digest = hashlib.md5(data).hexdigest()
  if digest != expected_md5:
    raise ConfigError(f'Fashion-MNIST file {path} is damaged: MD5 of its idx data is {digest}, '
                      f'expected {expected_md5}. Reinstall it: {INSTALL_HINT}.')
  return _parse_idx(data, path)


def _parse_idx(data: bytes, path: str) -> np.ndarray:
  magic = int.from_bytes(data[:4], 'big') if len(data) >= 4 else 0
  rank = magic & 0xff
  if magic not in (IMAGE_MAGIC, LABEL_MAGIC) or len(data) < 4 + 4 * rank:
    raise ConfigError(f'{path} is not an idx file of unsigned bytes (magic {magic:#x}): {INSTALL_HINT}.')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank))
  values = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
  if values.size != int(np.prod(shape)):
    raise ConfigError(f'{path} holds {values.size} values, its header says {shape}: {INSTALL_HINT}.')
  return values.reshape(shape)


def load_split(source_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, 28, 28, 1] uint8, labels [N] uint8) of ``split`` ('train' or 'test'), verified."""
  prefix = SPLIT_FILES[split]
  images_name, labels_name = f'{prefix}-images-idx3-ubyte', f'{prefix}-labels-idx1-ubyte'
  images = read_idx(source_dir, images_name, FILES[images_name])
  labels = read_idx(source_dir, labels_name, FILES[labels_name])
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ConfigError(f'Fashion-MNIST {split} files in {source_dir} disagree: images {images.shape}, '
                      f'labels {labels.shape}: {INSTALL_HINT}.')
  if labels.size and labels.max() >= len(CLASS_NAMES):
    raise ConfigError(f'Fashion-MNIST {split} labels in {source_dir} go up to {labels.max()}, '
                      f'not 0..9: {INSTALL_HINT}.')
  return images[..., None], labels


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST from local idx files: 60,000 / 10,000 28x28x1 uint8 images, 10 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': "tfds fashion_mnist 3.0.1's features and splits, from local idx files."}
  def __init__(self, *, source_dir: str | None = None, **kwargs):
    self.source_dir = source_dir or DEFAULT_SOURCE_DIR
    self._loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    super().__init__(**kwargs)

  def check_source(self) -> None:
    """Raises ConfigError now if the files are missing or damaged (before tfds starts writing);
    the verified arrays are kept for the examples, so each file is read once."""
    self._loaded = {split: load_split(self.source_dir, split) for split in SPLIT_FILES}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://github.com/zalandoresearch/fashion-mnist',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(*(self._loaded.get(split)
                                             or load_split(self.source_dir, split)))
            for split in SPLIT_FILES}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': int(label)}
