"""The figures of ``python -m cnn_jax.visualize``: drawings of what :mod:`cnn_jax.visualize`
computes, saved as PNG files and, the same images, as TensorBoard image summaries. They are
matplotlib ``Figure`` objects rendered by its Agg renderer; pyplot (and so the process's matplotlib
backend and global state) is never touched. Images come in as pixels in [0, 1] (``[N, H, W, C]``):
grey images are drawn grey, colour images in colour, and images of other channel counts (a Go
board's planes) as their channel mean.
"""
from __future__ import annotations

import io
import math
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

DPI = 100
TITLE_SIZE = 7


def _show(ax, image: np.ndarray, **kwargs) -> None:
  """Draws an ``[H, W, C]`` image without axes; NaN pixels are left blank."""
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 3:
    ax.imshow(np.nan_to_num(image, nan=1.0), interpolation='nearest', **kwargs)
  else:
    plane = image[..., 0] if image.shape[-1] == 1 else image.mean(axis=-1)
    ax.imshow(np.ma.masked_invalid(plane), cmap='gray', vmin=0.0, vmax=1.0,
              interpolation='nearest', **kwargs)
  ax.set_xticks([])
  ax.set_yticks([])


def _grid_figure(rows: int, columns: int, cell: float = 1.3, extra_height: float = 0.3):
  figure = Figure(figsize=(columns * cell, rows * cell + extra_height), layout='constrained')
  axes = figure.subplots(rows, columns, squeeze=False)
  return figure, axes


def filters(grid: np.ndarray, path: str, kernel_shape: tuple[int, ...]) -> Figure:
  """The first layer's filters (visualize.filter_grid) as one image."""
  height, width, inputs, outputs = kernel_shape
  side = min(8.0, max(2.5, max(grid.shape[:2]) / 15))
  aspect = grid.shape[0] / grid.shape[1]
  figure = Figure(figsize=(side, side * aspect + 0.5), layout='constrained')
  ax = figure.subplots()
  _show(ax, grid)
  layout = '' if inputs in (1, 3) else ' (rows: filters, columns: input channels)'
  ax.set_title(f'{path}: {outputs} filters of {height}x{width}x{inputs}{layout}\n'
               'each scaled to its own range, grey = 0', fontsize=TITLE_SIZE)
  return figure


def top_patches(patches: np.ndarray, units: np.ndarray, values: np.ndarray, layer: str,
                num_scanned: int) -> Figure:
  """A row per unit: the receptive-field patches of the eval images that activate it most."""
  rows, columns = patches.shape[:2]
  figure, axes = _grid_figure(rows, columns, cell=0.9, extra_height=0.5)
  for r in range(rows):
    for c in range(columns):
      _show(axes[r, c], patches[r, c])
      axes[r, c].set_title(f'{values[r, c]:.1f}', fontsize=5, pad=1)
    axes[r, 0].set_ylabel(f'unit {units[r]}', fontsize=TITLE_SIZE)
  figure.suptitle(f'{layer}: the {columns} eval patches (of {num_scanned} images) that most '
                  f'activate each of the {rows} most active units', fontsize=TITLE_SIZE)
  return figure


def saliency(images: np.ndarray, maps: np.ndarray, titles: Sequence[str]) -> Figure:
  """Each image beside its saliency map |d logit / d pixel| (scaled to its maximum)."""
  figure, axes = _grid_figure(len(images), 2, cell=1.8)
  for k, (image, heat) in enumerate(zip(images, maps)):
    _show(axes[k, 0], image)
    axes[k, 0].set_title(titles[k], fontsize=TITLE_SIZE, loc='left')
    axes[k, 1].imshow(heat / max(float(heat.max()), 1e-12), cmap='hot', vmin=0, vmax=1,
                      interpolation='nearest')
    axes[k, 1].set_xticks([])
    axes[k, 1].set_yticks([])
  axes[0, 1].set_title('saliency of the predicted class', fontsize=TITLE_SIZE)
  return figure


def _signed(gradient: np.ndarray) -> np.ndarray:
  """A gradient as an image: 0 is mid-grey, its largest absolute value 0 or 1."""
  return 0.5 + gradient / (2 * max(float(np.abs(gradient).max()), 1e-12))


def reconstructions(images: np.ndarray, deconvnet: np.ndarray, guided: np.ndarray,
                    titles: Sequence[str], layer: str, units: np.ndarray) -> Figure:
  """Each image, then the deconvnet and guided-backprop reconstructions of its strongest unit."""
  figure, axes = _grid_figure(len(images), 3, cell=1.8)
  for k in range(len(images)):
    _show(axes[k, 0], images[k])
    axes[k, 0].set_title(titles[k], fontsize=TITLE_SIZE, loc='left')
    _show(axes[k, 1], _signed(deconvnet[k]))
    _show(axes[k, 2], _signed(guided[k]))
    row, column, channel = units[k]
    axes[k, 1].set_ylabel(f'unit {channel} at ({row}, {column})', fontsize=TITLE_SIZE)
  axes[0, 1].set_title(f'deconvnet\n{layer}', fontsize=TITLE_SIZE)
  axes[0, 2].set_title(f'guided backprop\n{layer}', fontsize=TITLE_SIZE)
  return figure


def occlusion(images: np.ndarray, heat: np.ndarray, size: int, stride: int,
              titles: Sequence[str], unoccluded: np.ndarray, true_names: Sequence[str]) -> Figure:
  """Each image beside the probability of its true class with the grey square centred on each
  pixel of the map (ZFNet's Fig. 7d)."""
  figure, axes = _grid_figure(len(images), 2, cell=1.8)
  height, width = images.shape[1:3]
  for k in range(len(images)):
    _show(axes[k, 0], images[k])
    axes[k, 0].set_title(titles[k], fontsize=TITLE_SIZE, loc='left')
    rows, columns = heat[k].shape
    half = size / 2 - 0.5   # the map's cells are the squares' centres, in pixel coordinates
    shown = axes[k, 1].imshow(heat[k], cmap='jet', vmin=0, vmax=1, interpolation='nearest',
                              extent=(half - stride / 2, half + (columns - 0.5) * stride,
                                      half + (rows - 0.5) * stride, half - stride / 2))
    axes[k, 1].set_xlim(-0.5, width - 0.5)
    axes[k, 1].set_ylim(height - 0.5, -0.5)
    axes[k, 1].set_xticks([])
    axes[k, 1].set_yticks([])
    axes[k, 1].set_title(f'p({true_names[k]})\n{unoccluded[k]:.2f} unoccluded',
                         fontsize=TITLE_SIZE)
    figure.colorbar(shown, ax=axes[k, 1], fraction=0.046, pad=0.04).ax.tick_params(labelsize=5)
  figure.suptitle(f'occluded by a {size}x{size} grey square every {stride} px', fontsize=TITLE_SIZE)
  return figure


def confusion(matrix: np.ndarray, names: Sequence[str]) -> Figure:
  """Counts, true class by row and predicted class by column; numbers shown up to 20 classes."""
  classes = len(names)
  side = min(10.0, max(3.5, 0.45 * classes + 1.5))
  figure = Figure(figsize=(side + 0.8, side), layout='constrained')
  ax = figure.subplots()
  shown = ax.imshow(np.log1p(matrix), cmap='Blues', interpolation='nearest')
  if classes <= 20:
    ax.set_xticks(range(classes), names, rotation=90, fontsize=TITLE_SIZE)
    ax.set_yticks(range(classes), names, fontsize=TITLE_SIZE)
    threshold = np.log1p(matrix).max() / 2
    for i in range(classes):
      for j in range(classes):
        if matrix[i, j]:
          ax.text(j, i, str(matrix[i, j]), ha='center', va='center', fontsize=6,
                  color='white' if np.log1p(matrix[i, j]) > threshold else 'black')
  figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label='log(1 + count)')
  ax.set_xlabel('predicted', fontsize=TITLE_SIZE + 1)
  ax.set_ylabel('true', fontsize=TITLE_SIZE + 1)
  total, right = int(matrix.sum()), int(np.trace(matrix))
  ax.set_title(f'{total} eval images, {right / max(total, 1):.2%} right', fontsize=TITLE_SIZE + 1)
  return figure


def wrong(images: np.ndarray, labels: Sequence[tuple[str, str, float, int]],
          num_scanned: int) -> Figure:
  """The most confidently wrong images, each titled with its index, true and predicted class."""
  count = len(labels)
  columns = max(1, min(8, count))
  rows = max(1, math.ceil(count / columns))
  figure, axes = _grid_figure(rows, columns, cell=1.4, extra_height=0.4)
  for k, ax in enumerate(axes.flat):
    if k >= count:
      ax.axis('off')
      continue
    true, predicted, probability, index = labels[k]
    _show(ax, images[k])
    ax.set_title(f'#{index} {true}\n-> {predicted} ({probability:.2f})', fontsize=6)
  figure.suptitle(f'the {count} most confidently wrong of {num_scanned} eval images'
                  if count else f'no wrong prediction among {num_scanned} eval images',
                  fontsize=TITLE_SIZE)
  return figure


class Output:
  """Saves figures as ``out/NAME.png`` and, when ``tensorboard`` is a directory, the same PNG as a
  TensorBoard image summary ``NAME`` at the checkpoint's ``step``."""

  def __init__(self, out: str, tensorboard: Optional[str], step: int):
    self.out = out
    self.step = step
    self.written: list[str] = []
    tf.io.gfile.makedirs(out)
    self.writer = tf.summary.create_file_writer(tensorboard) if tensorboard else None

  def save(self, name: str, figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=DPI, bbox_inches='tight')
    png = buffer.getvalue()
    path = os.path.join(self.out, f'{name}.png')
    with tf.io.gfile.GFile(path, 'wb') as f:
      f.write(png)
    if self.writer is not None:
      with self.writer.as_default():
        tf.summary.image(name, tf.image.decode_png(png, channels=3)[None], step=self.step)
    self.written.append(path)
    return path

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
