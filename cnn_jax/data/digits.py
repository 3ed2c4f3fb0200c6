"""The `digits` data set: scikit-learn's 1,797 handwritten digits as a tfds builder.

scikit-learn ships the images, so preparing needs no network. Images are 8x8 grey levels 0..16,
stored as uint8 0..255 (x * 255 / 16, rounded). The split is fixed: a stratified 1,437 / 360
train/test split with seed 0, the same on every machine.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_TEST = 360


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits (UCI optdigits test set), 8x8x1 uint8, 10 classes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 1,437 / 360 split, seed 0.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    index = np.arange(len(images))
    train_index, test_index = model_selection.train_test_split(
        index, test_size=NUM_TEST, random_state=0, stratify=digits.target)
    return {
        'train': self._generate_examples(images, digits.target, np.sort(train_index)),
        'test': self._generate_examples(images, digits.target, np.sort(test_index)),
    }

  def _generate_examples(self, images, labels, index):
    for i in index:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
