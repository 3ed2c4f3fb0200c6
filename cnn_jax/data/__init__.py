"""Data sets: every one is read through tfds and tf.data by the same code (see pipeline.py)."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

# TensorFlow only feeds data here; it must never claim accelerator memory that JAX needs.
tf.config.set_visible_devices([], 'GPU')


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How cnn_jax reads one tfds data set."""
  tfds_name: str
  train_split: str = 'train'
  eval_split: str = 'test'
  image_key: str = 'image'
  label_key: str = 'label'
  builds_offline: bool = False   # prepared from files a pip package ships; never downloads
  manual: bool = False           # tfds needs the files placed in manual_dir by hand


# Split names as the tfds 4.9 builders define them (checked on mocked data in
# tests/data/test_datasets_mock.py): ImageNet's labelled held-out split is 'validation'.
DATASETS: dict[str, DatasetSpec] = {
    'digits': DatasetSpec('digits', builds_offline=True),
    'mnist': DatasetSpec('mnist'),
    'cifar10': DatasetSpec('cifar10'),
    'cifar100': DatasetSpec('cifar100'),
    'imagenette': DatasetSpec('imagenette/full-size-v2', eval_split='validation'),
    'imagenet2012': DatasetSpec('imagenet2012', eval_split='validation', manual=True),
}

from cnn_jax.data import digits as _digits  # noqa: E402,F401  (registers the tfds builder)
