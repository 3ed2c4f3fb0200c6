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

from absl import logging
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
  image_shape: tuple[int, ...]   # after eval preprocessing: what the model sees (one view)
  num_train: int
  num_eval: int
  eval_views: int = 1            # views per eval image (ten_crop: 10); eval images are then
                                 # [B, views, H, W, C] and the logits are averaged over views
  num_validation: int = 0        # examples held out of the training split (data.validation_size)


def _network_reachable(host: str = 'storage.googleapis.com') -> bool:
  """Whether DNS resolves tfds's download host; without it tfds would retry for minutes."""
  try:
    socket.getaddrinfo(host, 443)
    return True
  except OSError:
    return False


def _spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise ConfigError(f'unknown data set {name!r}. Valid names: {", ".join(sorted(DATASETS))}.')
  return DATASETS[name]


def split_names(data: ml_collections.ConfigDict, spec: DatasetSpec,
                builder: tfds.core.DatasetBuilder) -> dict[str, str]:
  """The tfds split (with slicing) of each role: 'train', 'eval' and, if held out, 'validation'.

  ``data.validation_size`` holds out the last examples of the training split for model selection
  (best error, plateau schedules), so that nothing but the final report reads the eval split;
  ``data.train_size`` then keeps the first examples of the rest (a training subset), or
  ``data.train_per_class`` the first N of each class (a class-balanced subset, see
  :func:`per_class_split`).
  """
  train = data.train_split or spec.train_split
  names = {'eval': data.eval_split or spec.eval_split}
  held, size = data.get('validation_size') or 0, data.get('train_size') or 0
  per_class = data.get('train_per_class') or 0
  if held < 0 or size < 0 or per_class < 0:
    raise ConfigError(f'config.data.validation_size ({held}), train_size ({size}) and '
                      f'train_per_class ({per_class}) must be >= 0 (0: no validation split, all '
                      'training examples).')
  if size and per_class:
    raise ConfigError(f'config.data.train_size={size} and train_per_class={per_class} both choose '
                      'the training subset: set one of them to 0.')
  if held or size or per_class:
    if '[' in train or '+' in train:
      raise ConfigError(f'config.data.validation_size and train_size cut a whole split, and '
                        f'config.data.train_split is {train!r}: set it to a split name (e.g. '
                        f'{spec.train_split!r}) or set both to 0 and slice it yourself.')
    total = builder.info.splits[train].num_examples
    if held >= total:
      raise ConfigError(f'config.data.validation_size={held} leaves none of the {total} examples '
                        f'of {train!r} for training: use fewer than {total}.')
    rest = total - held
    if size > rest:
      raise ConfigError(f'config.data.train_size={size} is more than the {rest} training examples '
                        f'left after validation_size={held}: use at most {rest} (0 = all).')
    if held:
      names['validation'] = f'{train}[{rest}:]'
    train = f'{train}[:{size or rest}]'
    if per_class:
      train = per_class_split(builder, spec, train, per_class)
  names['train'] = train
  return names


_LABELS: dict[tuple[str, ...], np.ndarray] = {}


def _labels(builder: tfds.core.DatasetBuilder, spec: DatasetSpec, split: str) -> np.ndarray:
  """The labels of ``split`` in its stored order (images not decoded), read once per process."""
  key = (str(builder.data_dir), spec.tfds_name, split)
  if key not in _LABELS:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={spec.image_key: tfds.decode.SkipDecoding()})
    batches = ds.map(lambda ex: ex[spec.label_key]).batch(4096).as_numpy_iterator()
    _LABELS[key] = np.concatenate(list(batches) or [np.zeros((0,), np.int64)])
  return _LABELS[key]


def per_class_split(builder: tfds.core.DatasetBuilder, spec: DatasetSpec, split: str,
                    per_class: int) -> str:
  """A tfds split of the first ``per_class`` examples of each class of ``split`` (a name or a
  ``name[:N]`` slice), in its stored order: the same examples on every machine and for every seed,
  the first ones of each class also in a larger subset. ConfigError if a class has fewer."""
  name, _, cut = split.partition('[')
  start = 0 if not cut else int(cut.rstrip(']').split(':')[0] or 0)
  labels = _labels(builder, spec, split)
  classes, counts = np.unique(labels, return_counts=True)
  num_classes = builder.info.features[spec.label_key].num_classes
  if len(classes) < num_classes or counts.min() < per_class:
    fewest = 0 if len(classes) < num_classes else int(counts.min())
    raise ConfigError(f'config.data.train_per_class={per_class}: a class of {split!r} has only '
                      f'{fewest} examples: use at most {fewest} (0 = all examples).')
  chosen = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes]))
  # consecutive indices as one slice: 'train[0:3]+train[5:9]+...'
  breaks = np.flatnonzero(np.diff(chosen) != 1) + 1
  runs = np.split(chosen, breaks)
  return '+'.join(f'{name}[{start + run[0]}:{start + run[-1] + 1}]' for run in runs)


def _how_to_prepare(name: str, spec: DatasetSpec, data_dir: str) -> str:
  if spec.manual:
    return (f'Place the ImageNet archives (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar) in '
            f'{os.path.join(data_dir, "downloads", "manual")} (or --config.data.manual_dir), then run '
            f'`tfds build {spec.tfds_name} --data_dir={data_dir}`.')
  return (f'On a machine with network run `tfds build {spec.tfds_name} --data_dir=DIR`, copy DIR '
          f'here and pass --config.data.data_dir=DIR (now {data_dir}).')


def get_builder(data: ml_collections.ConfigDict) -> tuple[DatasetSpec, tfds.core.DatasetBuilder]:
  """Returns the data set's builder, prepared; explains how to prepare it when that cannot be done.

  A copy prepared by tfds's own builder wins; otherwise a data set with an offline builder is
  prepared from local files (digits: scikit-learn's; Fashion-MNIST: ``data.source_dir``).
  """
  spec = _spec(data.name)
  data_dir = os.path.expanduser(data.data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  # (Where tfds's builder never ran, asking it would only log a warning about the missing folder.)
  tfds_folder = os.path.join(data_dir, spec.tfds_name.split('/')[0])
  source_dir = os.path.expanduser(data.source_dir) if data.get('source_dir') else None
  if not spec.offline_builder or tf.io.gfile.exists(tfds_folder):
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
      if hasattr(builder, 'check_prepared'):
        builder.check_prepared(source_dir)  # built from the source the config names
      return spec, builder
  if spec.offline_builder:
    builder = tfds.builder(spec.offline_builder, data_dir=data_dir)
    if source_dir and hasattr(builder, 'source_dir'):
      builder.source_dir = source_dir
    if not builder.is_prepared():
      if hasattr(builder, 'check_source'):
        builder.check_source()  # one ConfigError naming the fix, before tfds writes anything
      builder.download_and_prepare()
      if getattr(builder, 'report', None) is not None:   # what a build from records skipped
        logging.info('%s: %s', spec.tfds_name, builder.report.summary())
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


def _example(spec: DatasetSpec, features: dict) -> dict:
  """What the ops see of a tfds example: ``image``, an int32 ``label`` and the extra features."""
  return {'image': features[spec.image_key], 'label': tf.cast(features[spec.label_key], tf.int32),
          **{name: features[name] for name in spec.extra_features}}


def _preprocess_fn(spec: DatasetSpec, ops: list, with_mask: bool = False):
  def fn(seed, example):
    out = ops_lib.apply_example(ops, _example(spec, example), seed)
    if with_mask:
      out['mask'] = tf.constant(1.0, tf.float32)
    return out
  return fn


def _as_dataset(builder: tfds.core.DatasetBuilder, spec: DatasetSpec, split,
                ops: list) -> tf.data.Dataset:
  """Reads ``split``, leaving the image encoded when the first op decodes it (e.g. fused crop)."""
  wants = ops_lib.encoded_input(ops)
  if wants is None:
    return builder.as_dataset(split=split, shuffle_files=False)
  encoding = getattr(builder.info.features[spec.image_key], 'encoding_format', None) or 'png'
  if wants == 'jpeg' and encoding != 'jpeg':
    raise ConfigError(f'data set {spec.tfds_name!r} stores {encoding} images; the fused JPEG ops '
                      f'need JPEG: use decode | inception_crop(...) instead.')
  return builder.as_dataset(split=split, shuffle_files=False,
                            decoders={spec.image_key: tfds.decode.SkipDecoding()})


def _output_shape(spec: DatasetSpec, builder: tfds.core.DatasetBuilder, ops: list) -> tf.TensorShape:
  """The static shape ``ops`` give one example, found by tracing them (no data is read)."""
  features = builder.info.features
  # The whole example, so that example ops trace as they run (a label to move, the extra features).
  input_spec = {name: tf.TensorSpec(features[name].shape, features[name].tf_dtype)
                for name in (spec.label_key, *spec.extra_features)}
  if ops_lib.encoded_input(ops):
    input_spec[spec.image_key] = tf.TensorSpec([], tf.string)
  else:  # dimensions that vary between images (ImageNet) stay None
    feature = features[spec.image_key]
    input_spec[spec.image_key] = tf.TensorSpec(feature.shape, feature.tf_dtype)
  trace = tf.function(lambda example: ops_lib.apply_example(
      ops, _example(spec, example), tf.constant([0, 0], tf.int64))['image'])
  return trace.get_concrete_function(input_spec).structured_outputs.shape


def dataset_info(data: ml_collections.ConfigDict) -> DatasetInfo:
  """Classes, model input shape (one view) and split sizes, without reading the data."""
  spec, builder = get_builder(data)
  features = builder.info.features
  shape = _output_shape(spec, builder, ops_lib.parse(data.eval_ops))
  if not shape.is_fully_defined() or shape.rank not in (3, 4):
    raise ConfigError(f'eval_ops {data.eval_ops!r} give images of shape {shape}: end them with an '
                      f'op of fixed output size (resize, central_crop, resize_center_crop, ten_crop).')
  views = shape[0] if shape.rank == 4 else 1
  splits = split_names(data, spec, builder)
  size = lambda role: builder.info.splits[splits[role]].num_examples if role in splits else 0
  return DatasetInfo(num_classes=features[spec.label_key].num_classes,
                     image_shape=tuple(shape[-3:]), num_train=size('train'), num_eval=size('eval'),
                     eval_views=views, num_validation=size('validation'))


def _process_split(split: str, process_index: int, process_count: int) -> str:
  return tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)


@dataclasses.dataclass(frozen=True)
class ShardLayout:
  """How the training split is cut: ``num_shards`` even tfds splits, each feeding its own slice
  of every global batch. The data order depends on the shard count, not on the process layout, so
  1 process x 8 devices and 2 processes x 4 devices see the same global batches (same num_shards).
  """
  num_shards: int
  shard_batch: int
  steps_per_epoch: int
  local_shards: tuple[int, ...]


def shard_layout(data: ml_collections.ConfigDict, *, num_examples: int, global_batch: int,
                 process_index: int = 0, process_count: int = 1) -> ShardLayout:
  shards = data.num_shards or process_count
  if shards % process_count:
    raise ConfigError(f'config.data.num_shards={shards} must be a multiple of the {process_count} '
                      f'processes (each process reads whole shards).')
  if global_batch % shards:
    raise ConfigError(f'batch size {global_batch} does not split over config.data.num_shards='
                      f'{shards} data shards: use a multiple of {shards}.')
  shard_batch = global_batch // shards
  steps = (num_examples // shards) // shard_batch
  if steps == 0:
    raise ConfigError(f'batch size {global_batch} is larger than the {num_examples} training '
                      f'examples of {data.name!r}.')
  per_process = shards // process_count
  local = tuple(range(process_index * per_process, (process_index + 1) * per_process))
  return ShardLayout(shards, shard_batch, steps, local)


def train_batches(data: ml_collections.ConfigDict, *, seed: int, layout: ShardLayout,
                  start_step: int = 0) -> Iterator[Batch]:
  """Yields this process's slice of every global training batch from ``start_step`` on, forever.

  Each local shard is shuffled with seed (seed, epoch, shard) and augments example ``i`` with seed
  (seed, epoch, shard, i); the process's batch is its shards' batches, concatenated in order.
  """
  spec, builder = get_builder(data)
  train_ops = ops_lib.parse(data.train_ops)
  if _output_shape(spec, builder, train_ops).rank != 3:
    raise ConfigError(f'train_ops {data.train_ops!r} must give one image per example '
                      f'(ten_crop is an eval op).')
  splits = tfds.even_splits(split_names(data, spec, builder)['train'], n=layout.num_shards)
  preprocess = _preprocess_fn(spec, train_ops)

  def shard_bases(shard: int) -> tf.data.Dataset:
    # Enumerate before the shuffle: the index names the example in its augmentation seed.
    base = _as_dataset(builder, spec, splits[shard], train_ops).enumerate()
    return base.cache() if data.cache else base

  bases = {shard: shard_bases(shard) for shard in layout.local_shards}
  buffer = min(data.shuffle_buffer, builder.info.splits[splits[0]].num_examples)

  def shard_epoch(shard: int, epoch: int) -> tf.data.Dataset:
    shard_seed = (seed * 1_000_003 + epoch * 7_919 + shard) % 2**31
    ds = bases[shard].shuffle(buffer, seed=shard_seed, reshuffle_each_iteration=False)
    ds = ds.map(lambda i, ex: preprocess(tf.stack([tf.constant(shard_seed, tf.int64), i]), ex),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(layout.shard_batch, drop_remainder=True).take(layout.steps_per_epoch)

  def epoch_dataset(epoch: int) -> tf.data.Dataset:
    parts = tuple(shard_epoch(shard, epoch) for shard in layout.local_shards)
    ds = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(parts).map(
        lambda *batches: {k: tf.concat([b[k] for b in batches], 0) for k in batches[0]})
    return ds.prefetch(data.prefetch or tf.data.AUTOTUNE)

  epoch, skip = divmod(start_step, layout.steps_per_epoch)
  while True:
    yield from epoch_dataset(epoch).skip(skip).as_numpy_iterator()
    epoch, skip = epoch + 1, 0


def eval_batches(data: ml_collections.ConfigDict, *, local_batch: int, role: str = 'eval',
                 process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """This process's share of the ``role`` split ('eval' or 'validation', see split_names), in
  batches padded to ``local_batch`` with mask 0, preprocessed by the eval ops.

  Every process yields the same number of batches (from the largest process shard), so the jitted
  eval step runs in lockstep on all hosts.
  """
  spec, builder = get_builder(data)
  eval_ops = ops_lib.parse(data.eval_ops)
  whole = split_names(data, spec, builder)[role]
  split = _process_split(whole, process_index, process_count)
  total = builder.info.splits[whole].num_examples
  num_batches = math.ceil(math.ceil(total / process_count) / local_batch)
  ds = _as_dataset(builder, spec, split, eval_ops).enumerate()
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
    raise ConfigError(f'process {process_index} got no {whole!r} examples: the split has '
                      f'{total}, fewer than the {process_count} processes.')
  for _ in range(num_batches - count):
    yield _pad({k: v[:0] for k, v in template.items()}, local_batch)


def _pad(batch: Batch, size: int) -> Batch:
  n = len(batch['label'])
  if n == size:
    return batch
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
