"""Every registered tfds data set through the real pipeline code, on fake examples.

tfds.testing.mock_data replaces the stored examples with random ones drawn from the data set's
feature spec (from the builder code, available offline). Split names and sizes are metadata that
tfds only has once a data set is prepared, and this pip package ships none (and tfds cannot
download here); MockPolicy.USE_CODE would then accept any split name and report no split sizes,
which the pipeline needs. So the fixture writes the metadata files itself: the builder's own info
plus the real split names (tfds catalogue, 4.9), with NUM_FAKE examples each, and the mock reads
them with MockPolicy.USE_FILES. A wrong split name in DATASETS then fails as it would on real data.
"""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_jax import ConfigError
from cnn_jax.data import DATASETS, pipeline
from tests.conftest import small_config

NUM_FAKE = 24  # examples per split; mock_data yields the same ones for every split
# Data sets that tfds's own builders prepare (facts, split names included, from the registry).
TFDS_DATASETS = sorted(name for name, spec in DATASETS.items() if spec.offline_builder != spec.tfds_name)
IMAGENET_TRAIN = 'inception_crop(224) | flip_lr | lighting | normalize("imagenet")'
IMAGENET_EVAL = 'resize_center_crop(224, 256) | normalize("imagenet")'


def recipe(name: str) -> tuple[str, str, str, tuple, int]:
  """(train_ops, eval_ops, normalize preset, model input shape, classes) of a typical recipe."""
  spec = DATASETS[name]
  if spec.image_shape[0] is None:  # photos of varying size: Inception crops
    return IMAGENET_TRAIN, IMAGENET_EVAL, 'imagenet', (224, 224, 3), spec.num_classes
  return (f'pad_random_crop(2) | flip_lr | normalize("{name}")', f'normalize("{name}")', name,
          spec.image_shape, spec.num_classes)


@pytest.fixture(scope='module')
def metadata_dir(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('tfds_metadata'))
  for spec in map(DATASETS.get, TFDS_DATASETS):
    builder, splits = tfds.builder(spec.tfds_name, data_dir=path), spec.splits
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[NUM_FAKE], num_bytes=0, filename_template=None)
        for split in splits]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
  return path


@pytest.fixture
def mock_dir(metadata_dir):
  """Inside this fixture tfds reads fake examples for every data set; ``metadata_dir`` is its data dir."""
  with tfds.testing.mock_data(num_examples=NUM_FAKE, policy=tfds.testing.MockPolicy.USE_FILES,
                              data_dir=metadata_dir):
    yield metadata_dir


def _config(data_dir, name, train_ops=None, eval_ops=None, **overrides):
  ops = recipe(name)
  return small_config(data_dir, data__name=name,
                      data__train_ops=ops[0] if train_ops is None else train_ops,
                      data__eval_ops=ops[1] if eval_ops is None else eval_ops, **overrides).data


def _train(data, batch, n=1, seed=0):
  layout = pipeline.shard_layout(data, num_examples=NUM_FAKE, global_batch=batch)
  batches = pipeline.train_batches(data, seed=seed, layout=layout)
  return [next(batches) for _ in range(n)]


def _value_bounds(preset, margin=0.0):
  """Per-channel range of normalize(preset) outputs for pixels in 0..255 (+/- margin in 0..1)."""
  mean, std = (np.array(v) for v in pipeline.ops_lib.NORMALIZE_PRESETS[preset])
  return (0 - margin - mean) / std - 1e-5, (1 + margin - mean) / std + 1e-5


def test_registry_facts_match_the_tfds_builders():
  for name in TFDS_DATASETS:
    spec = DATASETS[name]
    features = tfds.builder(spec.tfds_name).info.features
    assert {spec.train_split, spec.eval_split} <= set(spec.splits), name
    assert features[spec.image_key].shape == spec.image_shape, name
    assert features[spec.label_key].num_classes == spec.num_classes, name
    assert spec.mean_std is None or len(spec.mean_std[0]) == spec.image_shape[-1], name


@pytest.mark.parametrize('name', TFDS_DATASETS)
def test_train_and_eval_batches_through_the_pipeline(mock_dir, name):
  train_ops, eval_ops, preset, shape, classes = recipe(name)
  data = _config(mock_dir, name, data__shuffle_buffer=1)  # no shuffle: batches align across seeds
  info = pipeline.dataset_info(data)
  assert info == pipeline.DatasetInfo(num_classes=classes, image_shape=shape, num_train=NUM_FAKE,
                                      num_eval=NUM_FAKE, eval_views=1)
  batch = 4
  seed0 = _train(data, batch, n=2)
  seed1 = _train(data, batch, seed=1)[0]
  for b in seed0 + [seed1]:
    assert b['image'].shape == (batch,) + shape and b['image'].dtype == np.float32
    assert b['label'].dtype == np.int32 and np.all((b['label'] >= 0) & (b['label'] < classes))
    # lighting may push colours a little past 0..255 (at most ~0.1 on the 0..1 scale here).
    low, high = _value_bounds(preset, margin=0.15 if 'lighting' in train_ops else 0.0)
    assert np.all((b['image'] >= low) & (b['image'] <= high))
  # Same examples, different augmentation: another seed, and the next batch of the same run.
  np.testing.assert_array_equal(seed0[0]['label'], seed1['label'])
  # (A few crops may coincide by chance: pad_random_crop(2) has only 25 positions.)
  assert sum(not np.array_equal(a, b) for a, b in zip(seed0[0]['image'], seed1['image'])) >= 3
  assert not np.array_equal(seed0[0]['image'], seed0[1]['image'])

  first = list(pipeline.eval_batches(data, local_batch=10))
  again = list(pipeline.eval_batches(data, local_batch=10))
  assert len(first) == 3 and sum(b['mask'].sum() for b in first) == NUM_FAKE  # 24 = 10 + 10 + 4
  for a, b in zip(first, again):  # evaluation is deterministic
    assert a['image'].shape == (10,) + shape and a['image'].dtype == np.float32
    np.testing.assert_array_equal(a['image'], b['image'])
  low, high = _value_bounds(preset)
  assert all(np.all((b['image'] >= low) & (b['image'] <= high)) for b in first)


@pytest.mark.parametrize('name', ['imagenet2012', 'imagenette'])
def test_fused_jpeg_decode_and_crop_reads_the_encoded_images(mock_dir, name):
  data = _config(mock_dir, name, train_ops=IMAGENET_TRAIN.replace('inception_crop', 'decode_inception_crop'),
                 eval_ops='decode | ' + IMAGENET_EVAL, data__shuffle_buffer=1)
  info = pipeline.dataset_info(data)
  assert info.image_shape == (224, 224, 3) and info.eval_views == 1
  # decode_inception_crop only runs on JPEG bytes: these batches prove tfds skipped decoding.
  seed0, seed1 = _train(data, 4)[0], _train(data, 4, seed=1)[0]
  assert seed0['image'].shape == (4, 224, 224, 3) and seed0['image'].dtype == np.float32
  assert not np.array_equal(seed0['image'], seed1['image'])
  first = list(pipeline.eval_batches(data, local_batch=8))
  again = list(pipeline.eval_batches(data, local_batch=8))
  assert [b['image'].shape for b in first] == [(8, 224, 224, 3)] * 3
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])


def test_decode_from_bytes_equals_tfds_decoding_for_png(mock_dir):
  # CIFAR is stored as PNG (lossless): decoding the skipped bytes ourselves gives tfds's pixels.
  ours = list(pipeline.eval_batches(_config(mock_dir, 'cifar10', eval_ops='decode | normalize'),
                                    local_batch=8))
  tfds_decoded = list(pipeline.eval_batches(_config(mock_dir, 'cifar10', eval_ops='normalize'),
                                            local_batch=8))
  for a, b in zip(ours, tfds_decoded):
    np.testing.assert_array_equal(a['image'], b['image'])
  with pytest.raises(ConfigError, match="'cifar10' stores png images; the fused JPEG ops need JPEG"):
    next(iter(pipeline.eval_batches(_config(mock_dir, 'cifar10', eval_ops='decode_inception_crop(32)'),
                                    local_batch=8)))


def test_ten_crop_eval_batches_hold_ten_views(mock_dir):
  data = _config(mock_dir, 'imagenet2012', eval_ops='resize(64) | ten_crop(56) | normalize("imagenet")')
  info = pipeline.dataset_info(data)
  assert info.image_shape == (56, 56, 3) and info.eval_views == 10
  batches = list(pipeline.eval_batches(data, local_batch=16))
  assert [b['image'].shape for b in batches] == [(16, 10, 56, 56, 3)] * 2
  padded = batches[1]
  assert padded['mask'].sum() == NUM_FAKE - 16 and np.all(padded['image'][padded['mask'] == 0] == 0)
  # The views are the centre crop's neighbours: view 4 is the centre, view 9 its mirror.
  centre = list(pipeline.eval_batches(_config(mock_dir, 'imagenet2012', eval_ops='resize(64) | '
                                              'central_crop(56) | normalize("imagenet")'), local_batch=16))
  np.testing.assert_array_equal(batches[0]['image'][:, 4], centre[0]['image'])
  np.testing.assert_array_equal(batches[0]['image'][:, 9], centre[0]['image'][:, :, ::-1])


def test_flip_lr_flips_about_half_the_training_examples(mock_dir):
  data = _config(mock_dir, 'cifar10', train_ops='flip_lr', eval_ops='', data__shuffle_buffer=1)
  flipped = unflipped = 0
  for seed in range(3):
    train = _train(data, NUM_FAKE, seed=seed)[0]['image']
    original = next(iter(pipeline.eval_batches(data, local_batch=NUM_FAKE)))['image']
    for t, o in zip(train, original):
      flipped += np.array_equal(t, o[:, ::-1])
      unflipped += np.array_equal(t, o)
  assert flipped + unflipped == 3 * NUM_FAKE
  assert 0.3 * 3 * NUM_FAKE < flipped < 0.7 * 3 * NUM_FAKE


def test_eval_ops_must_fix_the_image_size(mock_dir):
  with pytest.raises(ConfigError, match=r'give images of shape \(None, None, 3\).*fixed output size'):
    pipeline.dataset_info(_config(mock_dir, 'imagenet2012', eval_ops='resize_small(256) | normalize'))


def test_ten_crop_is_not_a_train_op(mock_dir):
  with pytest.raises(ConfigError, match='must give one image per example.*ten_crop is an eval op'):
    _train(_config(mock_dir, 'cifar10', train_ops='ten_crop(24) | normalize'), 4)
