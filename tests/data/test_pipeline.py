"""The input pipeline: shapes, dtypes, augmentation, determinism, exact eval coverage."""
import collections

import numpy as np
import pytest

from cnn_jax import ConfigError
from cnn_jax.data import pipeline
from tests.conftest import small_config


def _batches(it, n):
  return [next(it) for _ in range(n)]


def _train(config, *, seed=0, batch, steps=None, start_step=0, shards=1):
  layout = pipeline.ShardLayout(num_shards=shards, shard_batch=batch // shards,
                                steps_per_epoch=steps or 1437 // batch, local_shards=tuple(range(shards)))
  return pipeline.train_batches(config.data, seed=seed, layout=layout, start_step=start_step)


def test_digits_builder_splits_and_dtypes(data_dir):
  import tensorflow_datasets as tfds
  builder = tfds.builder('digits', data_dir=data_dir)
  assert builder.info.splits['train'].num_examples == 1437
  assert builder.info.splits['test'].num_examples == 360
  example = next(iter(builder.as_dataset(split='train').as_numpy_iterator()))
  assert example['image'].dtype == np.uint8 and example['image'].shape == (8, 8, 1)
  assert example['image'].max() <= 255 and 0 <= example['label'] < 10


def test_process_slices_concatenate_to_the_single_process_batch(data_dir):
  """With num_shards fixed, 2 processes read disjoint shards whose slices form the same batch."""
  config = small_config(data_dir, data__num_shards=2)
  layouts = [pipeline.shard_layout(config.data, num_examples=1437, global_batch=32, process_index=p,
                                   process_count=n) for n, p in ((1, 0), (2, 0), (2, 1))]
  assert [l.local_shards for l in layouts] == [(0, 1), (0,), (1,)]
  whole, first, second = (_batches(pipeline.train_batches(config.data, seed=0, layout=l), 3)
                          for l in layouts)
  for w, a, b in zip(whole, first, second):
    np.testing.assert_array_equal(w['image'], np.concatenate([a['image'], b['image']]))
    np.testing.assert_array_equal(w['label'], np.concatenate([a['label'], b['label']]))


def test_shard_layout_errors_name_the_fix(data_dir):
  config = small_config(data_dir, data__num_shards=3)
  with pytest.raises(ConfigError, match='num_shards=3 must be a multiple of the 2 processes'):
    pipeline.shard_layout(config.data, num_examples=1437, global_batch=30, process_count=2)
  with pytest.raises(ConfigError, match='batch size 32 does not split over .*use a multiple of 3'):
    pipeline.shard_layout(config.data, num_examples=1437, global_batch=32)


def test_dataset_info_gives_model_input(data_dir):
  info = pipeline.dataset_info(small_config(data_dir).data)
  assert info == pipeline.DatasetInfo(num_classes=10, image_shape=(32, 32, 1), num_train=1437,
                                      num_eval=360)


def test_train_batches_shapes_and_normalisation(data_dir):
  config = small_config(data_dir)
  batch = next(_train(config, batch=16))
  assert batch['image'].shape == (16, 32, 32, 1) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (16,) and batch['label'].dtype == np.int32
  # normalize(mean=0.3, std=0.4): black pixels map to -0.75, white to 1.75.
  assert batch['image'].min() == pytest.approx(-0.75) and batch['image'].max() <= 1.75 + 1e-6


def test_train_batches_are_a_function_of_seed_and_step(data_dir):
  config = small_config(data_dir)
  first = _batches(_train(config, batch=32), 50)
  again = _batches(_train(config, batch=32), 50)
  resumed = _batches(_train(config, batch=32, start_step=47), 3)
  other_seed = next(_train(config, batch=32, seed=1))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
  for a, b in zip(first[47:], resumed):  # resuming inside epoch 2 gives the same batches
    np.testing.assert_array_equal(a['image'], b['image'])
  assert not np.array_equal(first[0]['label'], other_seed['label'])
  # Epochs are reshuffled: epoch 1 does not repeat epoch 0's order.
  assert not np.array_equal(first[0]['label'], first[44]['label'])


def test_random_crop_varies_and_eval_is_deterministic(data_dir):
  config = small_config(data_dir, data__shuffle_buffer=1)  # no shuffle: same examples every epoch
  train = _batches(_train(config, batch=32, steps=1), 2)
  np.testing.assert_array_equal(train[0]['label'], train[1]['label'])
  assert not np.array_equal(train[0]['image'], train[1]['image'])  # different crops per epoch
  eval_a = list(pipeline.eval_batches(config.data, local_batch=32))
  eval_b = list(pipeline.eval_batches(config.data, local_batch=32))
  for a, b in zip(eval_a, eval_b):
    np.testing.assert_array_equal(a['image'], b['image'])


def test_flip_op_flips_half_the_images(data_dir):
  import tensorflow as tf
  from cnn_jax.data import ops
  flip, = ops.parse('flip_lr')
  image = tf.reshape(tf.cast(tf.range(12), tf.uint8), (2, 6, 1))
  flipped = sum(bool(tf.reduce_all(flip(image, tf.constant([0, i], tf.int64)) == image[:, ::-1]))
                for i in range(200))
  assert 70 < flipped < 130


@pytest.mark.parametrize('process_count', [1, 3])
def test_eval_covers_every_example_exactly_once(data_dir, process_count):
  import tensorflow_datasets as tfds
  config = small_config(data_dir)
  local_batch = 48  # 360 is not a multiple: the last batch is padded
  seen = collections.Counter()
  per_process_batches = []
  for p in range(process_count):
    batches = list(pipeline.eval_batches(config.data, local_batch=local_batch, process_index=p,
                                         process_count=process_count))
    per_process_batches.append(len(batches))
    for batch in batches:
      assert batch['image'].shape[0] == local_batch
      real = batch['mask'] == 1
      assert np.all(batch['mask'][~real] == 0)
      for image, label in zip(batch['image'][real], batch['label'][real]):
        seen[(image.tobytes(), int(label))] += 1
  assert len(set(per_process_batches)) == 1  # processes run the eval step in lockstep
  assert sum(seen.values()) == 360
  expected = collections.Counter()
  eval_ops = pipeline.ops_lib.parse(config.data.eval_ops)
  for ex in tfds.builder('digits', data_dir=data_dir).as_dataset(split='test'):
    image = pipeline.ops_lib.apply(eval_ops, ex['image'], np.array([0, 0]))
    expected[(image.numpy().tobytes(), int(ex['label']))] += 1
  assert seen == expected


def test_unknown_dataset_lists_valid_names(data_dir):
  with pytest.raises(ConfigError, match=r"unknown data set 'cifar11'.*cifar10, cifar100, digits"):
    pipeline.dataset_info(small_config(data_dir, data__name='cifar11').data)


def test_dataset_that_needs_a_download_says_how_to_prepare_it(tmp_path):
  config = small_config(str(tmp_path), data__name='cifar10', data__download=False)
  with pytest.raises(ConfigError, match=r'not prepared in .* `tfds build cifar10 --data_dir=DIR`'):
    pipeline.get_builder(config.data)


def test_manual_dataset_names_the_archives(tmp_path):
  config = small_config(str(tmp_path), data__name='imagenet2012')
  with pytest.raises(ConfigError, match=r'downloaded by hand.*ILSVRC2012_img_train.tar'):
    pipeline.get_builder(config.data)


def test_unknown_preprocessing_op(data_dir):
  config = small_config(data_dir, data__train_ops='resize(32) | pad_crop(4)')
  with pytest.raises(ConfigError, match=r"unknown preprocessing op 'pad_crop'.*pad_random_crop"):
    next(_train(config, batch=8))


def test_extra_features_reach_the_batch_and_move_with_example_ops():
  """A data set's extra_features (label_mask) are carried under their names and transformed by
  example ops; features it does not list are left out; data sets without any are as before."""
  import dataclasses
  import tensorflow as tf
  from cnn_jax.data import DATASETS
  size = 5
  stone = np.zeros((size, size, 1), np.uint8)
  stone[1, 3, 0] = 1
  label_mask = np.zeros(size * size, np.uint8)
  label_mask[1 * size + 3] = 1
  examples = tf.data.Dataset.from_tensors({
      'image': stone, 'label': np.int64(1 * size + 3), 'label_mask': label_mask,
      'file_name': b'game.sgf'})
  spec = dataclasses.replace(DATASETS['digits'], extra_features=('label_mask',))
  preprocess = pipeline._preprocess_fn(spec, pipeline.ops_lib.parse('random_dihedral'),
                                       with_mask=True)
  for i in range(8):
    out, = examples.map(lambda ex: preprocess(tf.constant([0, i], tf.int64), ex)).as_numpy_iterator()
    assert set(out) == {'image', 'label', 'label_mask', 'mask'}
    assert out['label'].dtype == np.int32 and out['image'].ravel()[out['label']] == 1
    np.testing.assert_array_equal(out['label_mask'], out['image'].ravel())
  # Shapes are traced on the whole example too (the features as tfds declares them).
  import types
  import tensorflow_datasets as tfds
  features = {'image': tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
              'label': tfds.features.ClassLabel(num_classes=size * size),
              'label_mask': tfds.features.Tensor(shape=(size * size,), dtype=np.uint8)}
  builder = types.SimpleNamespace(info=types.SimpleNamespace(features=features))
  assert pipeline._output_shape(spec, builder, pipeline.ops_lib.parse(
      'random_dihedral | normalize')) == (size, size, 1)
  plain = pipeline._preprocess_fn(DATASETS['digits'], pipeline.ops_lib.parse('normalize'))
  out, = examples.map(lambda ex: plain(tf.constant([0, 0], tf.int64), ex)).as_numpy_iterator()
  assert set(out) == {'image', 'label'}
