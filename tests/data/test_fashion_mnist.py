"""Fashion-MNIST from local idx files, and the validation split held out of a training split.

The idx files here are tiny ones written by the test (the Debian package is not needed); their
MD5s replace the real ones, so the checks run as they do on the real files.
"""
import gzip
import hashlib
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax import ConfigError
from cnn_jax.data import DATASETS, fashion_mnist, pipeline
from tests.conftest import small_config

SIZES = {'train': 30, 't10k': 12}


def _idx(values: np.ndarray) -> bytes:
  magic = fashion_mnist.IMAGE_MAGIC if values.ndim == 3 else fashion_mnist.LABEL_MAGIC
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in values.shape)
  return header + values.astype(np.uint8).tobytes()


def _write_source(path, monkeypatch, gzipped=('train',)):
  """Writes the four idx files (train gzipped, as Debian ships them; t10k not) and their MD5s."""
  rng = np.random.default_rng(0)
  arrays, md5s = {}, {}
  for prefix, n in SIZES.items():
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    for kind, values in (('images-idx3', images), ('labels-idx1', labels)):
      name = f'{prefix}-{kind}-ubyte'
      data = _idx(values)
      md5s[name] = hashlib.md5(data).hexdigest()
      if prefix in gzipped:
        with gzip.open(os.path.join(path, name + '.gz'), 'wb') as f:
          f.write(data)
      else:
        with open(os.path.join(path, name), 'wb') as f:
          f.write(data)
    arrays[prefix] = (images, labels)
  monkeypatch.setattr(fashion_mnist, 'FILES', md5s)
  return arrays


def _data(tmp_path, **overrides):
  return small_config(str(tmp_path / 'tfds'), data__name='fashion_mnist',
                      data__source_dir=str(tmp_path / 'idx'), data__train_ops='normalize',
                      data__eval_ops="normalize('fashion_mnist')", **overrides).data


@pytest.fixture
def source(tmp_path, monkeypatch):
  (tmp_path / 'idx').mkdir()
  return _write_source(str(tmp_path / 'idx'), monkeypatch)


def test_prepares_offline_with_tfds_features_splits_and_pixels(tmp_path, source):
  spec, builder = pipeline.get_builder(_data(tmp_path))
  assert builder.name == 'fashion_mnist_idx'
  ours, theirs = builder.info.features, tfds.builder('fashion_mnist').info.features
  assert ours['image'].shape == theirs['image'].shape == spec.image_shape
  assert ours['label'].names == theirs['label'].names and ours['label'].num_classes == spec.num_classes
  assert {s: builder.info.splits[s].num_examples for s in spec.splits} == {'train': 30, 'test': 12}
  for split, prefix in (('train', 'train'), ('test', 't10k')):
    # tfds stores examples in the order of its key hash (as its own fashion_mnist does).
    stored = sorted((e['image'][..., 0].tobytes(), int(e['label']))
                    for e in builder.as_dataset(split=split).as_numpy_iterator())
    images, labels = source[prefix]
    assert stored == sorted((image.tobytes(), int(label)) for image, label in zip(images, labels))


def test_a_copy_prepared_by_tfds_wins(tmp_path, source):
  builder = tfds.builder('fashion_mnist', data_dir=str(tmp_path / 'tfds'))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[4], num_bytes=0, filename_template=None)
      for s in ('train', 'test')]))
  os.makedirs(builder.data_dir)
  builder.info.write_to_directory(builder.data_dir)
  assert pipeline.get_builder(_data(tmp_path))[1].name == 'fashion_mnist'


@pytest.mark.parametrize('damage, message', [
    ('missing', r'train-labels-idx1-ubyte\[.gz\] is missing from .*apt-get install '
                r'dataset-fashion-mnist.*--config.data.source_dir'),
    ('checksum', r't10k-images-idx3-ubyte is damaged: MD5 of its idx data is [0-9a-f]{32}, expected '
                 r'.*apt-get install dataset-fashion-mnist'),
    ('truncated_gzip', r'train-images-idx3-ubyte.gz is damaged'),
])
def test_missing_or_damaged_files_are_one_error_naming_the_fix(tmp_path, source, damage, message):
  idx = tmp_path / 'idx'
  if damage == 'missing':
    os.remove(idx / 'train-labels-idx1-ubyte.gz')
  elif damage == 'checksum':
    data = bytearray((idx / 't10k-images-idx3-ubyte').read_bytes())
    data[-1] ^= 1
    (idx / 't10k-images-idx3-ubyte').write_bytes(bytes(data))
  else:
    data = (idx / 'train-images-idx3-ubyte.gz').read_bytes()
    (idx / 'train-images-idx3-ubyte.gz').write_bytes(data[:len(data) // 2])
  with pytest.raises(ConfigError, match=message):
    pipeline.get_builder(_data(tmp_path))
  assert not (tmp_path / 'tfds' / 'fashion_mnist_idx').exists() or not tfds.builder(
      'fashion_mnist_idx', data_dir=str(tmp_path / 'tfds')).is_prepared()


def test_idx_format_errors(tmp_path, monkeypatch):
  path = tmp_path / 'x-labels-idx1-ubyte'
  for data, message in ((b'\x00\x00\x0d\x03' + b'\x00' * 12, 'not an idx file of unsigned bytes'),
                        (_idx(np.arange(5))[:-1], 'holds 4 values, its header says \\(5,\\)')):
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message):
      fashion_mnist.read_idx(str(tmp_path), path.name, hashlib.md5(data).hexdigest())
  labels = np.full(SIZES['train'], 10)  # a class that Fashion-MNIST does not have
  monkeypatch.setattr(fashion_mnist, 'FILES', {})
  _write_source(str(tmp_path), monkeypatch)
  (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(gzip.compress(_idx(labels)))
  fashion_mnist.FILES['train-labels-idx1-ubyte'] = hashlib.md5(_idx(labels)).hexdigest()
  with pytest.raises(ConfigError, match='labels .* go up to 10, not 0..9'):
    fashion_mnist.load_split(str(tmp_path), 'train')


def test_registry_facts_hold_for_the_prepared_data(tmp_path, source):
  spec = DATASETS['fashion_mnist']
  info = pipeline.dataset_info(_data(tmp_path))
  assert info.image_shape == spec.image_shape and info.num_classes == spec.num_classes
  assert pipeline.ops_lib.NORMALIZE_PRESETS['fashion_mnist'] == spec.mean_std


# ---------------------------------------------------------------------------------------------
# Validation split (on digits: 1,437 training examples)


def test_validation_is_the_end_of_the_training_split_and_never_trained_on(data_dir):
  data = small_config(data_dir, data__validation_size=337, data__train_size=0,
                      data__train_ops='normalize', data__eval_ops='normalize').data
  info = pipeline.dataset_info(data)
  assert (info.num_train, info.num_validation, info.num_eval) == (1100, 337, 360)
  layout = pipeline.shard_layout(data, num_examples=info.num_train, global_batch=100)
  train = pipeline.train_batches(data, seed=0, layout=layout)
  train_images = np.concatenate([next(train)['image'] for _ in range(layout.steps_per_epoch)])
  validation = list(pipeline.eval_batches(data, local_batch=100, role='validation'))
  held = np.concatenate([b['image'][b['mask'] == 1] for b in validation])
  assert len(held) == 337 and sum(b['mask'].sum() for b in validation) == 337
  whole = small_config(data_dir, data__eval_split='train', data__eval_ops='normalize').data
  everything = np.concatenate([b['image'][b['mask'] == 1]
                               for b in pipeline.eval_batches(whole, local_batch=500)])
  np.testing.assert_array_equal(held, everything[1100:])  # the last 337, in order
  held_bytes = {image.tobytes() for image in held}
  assert not held_bytes & {image.tobytes() for image in train_images}

  subset = small_config(data_dir, data__validation_size=337, data__train_size=200).data
  assert pipeline.dataset_info(subset).num_train == 200


@pytest.mark.parametrize('overrides, message', [
    (dict(data__validation_size=1437), 'validation_size=1437 leaves none of the 1437 examples'),
    (dict(data__validation_size=400, data__train_size=1100), r'train_size=1100 is more than the 1037'),
    (dict(data__validation_size=100, data__train_split='train[:50%]'), "train_split is 'train\\[:50%\\]'"),
    (dict(data__validation_size=-1), 'must be >= 0'),
])
def test_validation_split_errors_name_the_fix(data_dir, overrides, message):
  with pytest.raises(ConfigError, match=message):
    pipeline.dataset_info(small_config(data_dir, **overrides).data)
