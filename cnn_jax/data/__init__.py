"""Data sets: every one is read through tfds and tf.data by the same code (see pipeline.py).

``DATASETS`` is the one place for a data set's facts: its tfds builder, splits, classes, image
shape, normalisation and the image size the configs' ``runlocal`` stands in for. Adding a data set
is one entry here (plus a builder module when tfds cannot prepare it offline).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# An example feature of shape [num_classes], 1 where the class is allowed (a legal move): when the
# eval batches carry it, evaluation also reports accuracies with the other classes masked out.
LABEL_MASK = 'label_mask'


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How cnn_jax reads one tfds data set, and the facts about it that configs and tests use."""
  tfds_name: str
  num_classes: int
  image_shape: tuple[Optional[int], ...]  # as stored; None where it varies between images
  splits: tuple[str, ...]                 # the builder's split names
  train_split: str = 'train'
  eval_split: str = 'test'
  # Per-channel (mean, std) of the training pixels scaled to [0, 1]: the normalize(NAME) preset.
  mean_std: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None
  runlocal_size: Optional[int] = None     # what runlocal resizes digits to; default image_shape[0]
  image_key: str = 'image'
  label_key: str = 'label'
  # Other features the batches carry, under the same names (e.g. LABEL_MASK); example ops see them.
  extra_features: tuple[str, ...] = ()
  # A cnn_jax builder that prepares the data set without network, used when ``tfds_name`` is not
  # prepared in the data dir (its own name for digits; a reader of local files otherwise).
  offline_builder: Optional[str] = None
  manual: bool = False                    # tfds needs the files placed in manual_dir by hand

  @property
  def source_size(self) -> int:
    return self.runlocal_size or self.image_shape[0]


# Split names as the tfds 4.9 builders define them (checked on mocked data in
# tests/data/test_datasets_mock.py): ImageNet's labelled held-out split is 'validation'.
# The CIFAR stds are of all pixels (not the often-copied 0.2023/0.1994/0.2010, a mean of per-image
# stds); Fashion-MNIST's were measured on its 60,000 training images.
DATASETS: dict[str, DatasetSpec] = {
    'digits': DatasetSpec('digits', 10, (8, 8, 1), ('train', 'test'), offline_builder='digits'),
    'mnist': DatasetSpec('mnist', 10, (28, 28, 1), ('train', 'test'),
                         mean_std=((0.1307,), (0.3081,))),
    'fashion_mnist': DatasetSpec('fashion_mnist', 10, (28, 28, 1), ('train', 'test'),
                                 mean_std=((0.2860,), (0.3530,)),
                                 offline_builder='fashion_mnist_idx'),
    'cifar10': DatasetSpec('cifar10', 10, (32, 32, 3), ('train', 'test'),
                           mean_std=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))),
    'cifar100': DatasetSpec('cifar100', 100, (32, 32, 3), ('train', 'test'),
                            mean_std=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))),
    # ImageNet photos are about 400x350: runlocal's 256 stands for "a photo larger than the crop".
    'imagenette': DatasetSpec('imagenette/full-size-v2', 10, (None, None, 3), ('train', 'validation'),
                              eval_split='validation', mean_std=IMAGENET_MEAN_STD, runlocal_size=256),
    # Go positions (the AlphaGo policy network's 48 planes) from SGF files in data.source_dir.
    'go_games': DatasetSpec('go_games', 361, (19, 19, 48), ('train', 'test'),
                            offline_builder='go_games', extra_features=(LABEL_MASK,)),
    'imagenet2012': DatasetSpec('imagenet2012', 1000, (None, None, 3),
                                ('train', 'validation', 'test'), eval_split='validation',
                                mean_std=IMAGENET_MEAN_STD, runlocal_size=256, manual=True),
}


def normalize_presets() -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
  """``normalize(NAME)`` presets: every data set's statistics, and 'imagenet' for its photos."""
  presets = {name: spec.mean_std for name, spec in DATASETS.items() if spec.mean_std}
  presets['imagenet'] = IMAGENET_MEAN_STD
  return presets


# Register the offline tfds builders.
from cnn_jax.data import digits as _digits  # noqa: E402,F401
from cnn_jax.data import fashion_mnist as _fashion_mnist  # noqa: E402,F401
from cnn_jax.data import go_games as _go_games  # noqa: E402,F401
