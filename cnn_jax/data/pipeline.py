"""The tf.data input pipeline: this process's shard, seeded shuffle, augmentation, batches.

Training batches are a pure function of (seed, step): epoch ``e`` shuffles with seed (seed, e) and
seeds each example's augmentation with (seed, e, example index), so resuming at step ``s`` rebuilds
the very batches an uninterrupted run would see. Evaluation covers every example of the split
exactly once: the last batch is padded and the padding carries ``mask == 0``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_jax import ConfigError
from cnn_jax.data import DATASETS, DatasetSpec, ops as ops_lib

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  image_shape: tuple[int, ...]   # after eval preprocessing: what the model sees
  num_train: int
  num_eval: int


def _network_reachable(host: str = 'storage.googleapis.com', timeout: float = 5.0) -> bool:
  socket.setdefaulttimeout(timeout)
  try:
    socket.getaddrinfo(host, 443)
    return True
  except OSError:
    return False
  finally:
    socket.setdefaulttimeout(None)


def _spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise ConfigError(f'unknown data set {name!r}. Valid names: {", ".join(sorted(DATASETS))}.')
  return DATASETS[name]


def _how_to_prepare(name: str, spec: DatasetSpec, data_dir: str) -> str:
  if spec.manual:
    return (f'Place the ImageNet archives (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar) in '
            f'{os.path.join(data_dir, "downloads", "manual")} (or --config.data.manual_dir), then run '
            f'`tfds build {spec.tfds_name} --data_dir={data_dir}`.')
  return (f'On a machine with network run `tfds build {spec.tfds_name} --data_dir=DIR`, copy DIR '
          f'here and pass --config.data.data_dir=DIR (now {data_dir}).')


def get_builder(data: ml_collections.ConfigDict) -> tuple[DatasetSpec, tfds.core.DatasetBuilder]:
  """Returns the data set's builder, prepared; explains how to prepare it when that cannot be done."""
  spec = _spec(data.name)
  data_dir = os.path.expanduser(data.data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  if builder.is_prepared():
    return spec, builder
  if spec.builds_offline:
    builder.download_and_prepare()
    return spec, builder
  how = _how_to_prepare(data.name, spec, data_dir)
  if not data.download:
    raise ConfigError(f'data set {data.name!r} is not prepared in {data_dir} and downloads are off '
                      f'(config.data.download=False). {how}')
  if spec.manual:
    manual_dir = data.manual_dir or os.path.join(data_dir, 'downloads', 'manual')
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
      raise ConfigError(f'data set {data.name!r} must be downloaded by hand: {how}')
  elif not _network_reachable():
    raise ConfigError(f'data set {data.name!r} is not prepared in {data_dir} and this machine '
                      f'cannot download it (no network). {how}')
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=data.manual_dir))
  except Exception as e:  # tfds raises many kinds; the user needs one explanation
    raise ConfigError(f'preparing data set {data.name!r} failed ({type(e).__name__}: '
                      f'{str(e).splitlines()[0][:200]}). {how}') from e
  return spec, builder


def _preprocess_fn(spec: DatasetSpec, ops: list, with_mask: bool = False):
  def fn(seed, example):
    image = ops_lib.apply(ops, example[spec.image_key], seed)
    out = {'image': image, 'label': tf.cast(example[spec.label_key], tf.int32)}
    if with_mask:
      out['mask'] = tf.constant(1.0, tf.float32)
    return out
  return fn


def dataset_info(data: ml_collections.ConfigDict) -> DatasetInfo:
  """Classes, model input shape and split sizes, without reading the data."""
  spec, builder = get_builder(data)
  features = builder.info.features
  eval_ops = ops_lib.parse(data.eval_ops)
  example = {spec.image_key: tf.zeros(features[spec.image_key].shape, features[spec.image_key].tf_dtype),
             spec.label_key: tf.constant(0, tf.int64)}
  image_shape = _preprocess_fn(spec, eval_ops)(tf.constant([0, 0], tf.int64), example)['image'].shape
  return DatasetInfo(num_classes=features[spec.label_key].num_classes,
                     image_shape=tuple(image_shape),
                     num_train=builder.info.splits[spec.train_split].num_examples,
                     num_eval=builder.info.splits[spec.eval_split].num_examples)


def _process_split(split: str, process_index: int, process_count: int) -> str:
  return tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)


def train_batches(data: ml_collections.ConfigDict, *, seed: int, local_batch: int,
                  steps_per_epoch: int, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> Iterator[Batch]:
  """Yields this process's training batches from ``start_step`` on, forever."""
  spec, builder = get_builder(data)
  train_ops = ops_lib.parse(data.train_ops)
  split = _process_split(spec.train_split, process_index, process_count)
  # Enumerate before the shuffle: the index names the example in its augmentation seed.
  base = builder.as_dataset(split=split, shuffle_files=False).enumerate()
  if data.cache:
    base = base.cache()
  num_local = builder.info.splits[split].num_examples
  buffer = min(data.shuffle_buffer, num_local)
  preprocess = _preprocess_fn(spec, train_ops)

  def epoch_dataset(epoch: int) -> tf.data.Dataset:
    epoch_seed = (seed * 1_000_003 + epoch * 7_919 + process_index) % 2**31
    ds = base.shuffle(buffer, seed=int(epoch_seed), reshuffle_each_iteration=False)
    ds = ds.map(lambda i, ex: preprocess(tf.stack([tf.cast(epoch_seed, tf.int64), i]), ex),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True).take(steps_per_epoch)
    return ds.prefetch(data.prefetch or tf.data.AUTOTUNE)

  epoch, skip = divmod(start_step, steps_per_epoch)
  while True:
    yield from epoch_dataset(epoch).skip(skip).as_numpy_iterator()
    epoch, skip = epoch + 1, 0


def eval_batches(data: ml_collections.ConfigDict, *, local_batch: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[Batch]:
  """This process's share of the eval split, in batches padded to ``local_batch`` with mask 0.

  Every process yields the same number of batches (from the largest process shard), so the jitted
  eval step runs in lockstep on all hosts.
  """
  spec, builder = get_builder(data)
  eval_ops = ops_lib.parse(data.eval_ops)
  split = _process_split(spec.eval_split, process_index, process_count)
  total = builder.info.splits[spec.eval_split].num_examples
  num_batches = math.ceil(math.ceil(total / process_count) / local_batch)
  ds = builder.as_dataset(split=split, shuffle_files=False).enumerate()
  preprocess = _preprocess_fn(spec, eval_ops, with_mask=True)
  ds = ds.map(lambda i, ex: preprocess(tf.stack([tf.constant(0, tf.int64), i]), ex),
              num_parallel_calls=tf.data.AUTOTUNE)
  if data.cache:
    ds = ds.cache()
  ds = ds.batch(local_batch).prefetch(tf.data.AUTOTUNE)
  count = 0
  template = None
  for batch in ds.as_numpy_iterator():
    template = template or batch
    yield _pad(batch, local_batch)
    count += 1
  if template is None:
    raise ConfigError(f'process {process_index} got no {spec.eval_split!r} examples: the split has '
                      f'{total}, fewer than the {process_count} processes.')
  for _ in range(num_batches - count):
    yield _pad({k: v[:0] for k, v in template.items()}, local_batch)


def _pad(batch: Batch, size: int) -> Batch:
  n = len(batch['label'])
  if n == size:
    return batch
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
