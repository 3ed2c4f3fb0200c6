"""Looking inside a trained network: first-layer filters, the eval images that most activate a
layer's units, saliency, deconvnet and guided backprop, occlusion, the confusion matrix and the most
confidently wrong images. The run's files are only read; the images go to WORKDIR/visualize/ and
WORKDIR/tensorboard/visualize/ unless --out and --tensorboard name other directories.

  python -m cnn_jax.visualize --workdir=DIR
  python -m cnn_jax.visualize --workdir=DIR --layer=stage2_block1 --images=0,5,17 \
      --what=top_patches,saliency,occlusion

The computations are pure JAX functions of a model, its variables and images (this module's first
part; the tests call them directly); :mod:`cnn_jax.figures` draws them. They read any registered
model the same way, with no per-model code:

- a module is named by its path in the Flax module tree (``stage2_block1``, ``stage2_block1/conv1``,
  ``conv1``); :func:`module_calls` lists them in the order the forward pass first calls them
  (``nn.intercept_methods`` while ``jax.eval_shape`` traces ``init``), and :func:`forward` reads
  one's output with Flax's ``capture_intermediates``;
- the *first layer's filters* are the 4-D ``kernel`` of the first module, in that call order, that
  owns one (parameter dicts are stored sorted by name, so their order says nothing);
- deconvnet and guided backprop rebuild the model with ``act`` (every registered model takes it) set
  to a ReLU whose backward pass is replaced (:data:`BACKPROP_RULES`);
- a unit's receptive field is found empirically, as the support of the gradient of its activation
  with respect to the input, with the nonlinearities made the identity (``act``) so that no ReLU
  hides part of it (:func:`receptive_fields`).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import sys
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

import cnn_jax
from cnn_jax import ConfigError, run_files, runtime
from cnn_jax import workdir as workdir_lib

# What the command draws (--what), in the order it draws them.
WHAT = ('filters', 'top_patches', 'saliency', 'guided_backprop', 'occlusion', 'confusion', 'wrong')

Variables = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# The model's modules, in the order the forward pass calls them


@dataclasses.dataclass(frozen=True)
class ModuleCall:
  """A submodule as the forward pass first calls it."""
  path: str                             # 'stage2_block1/conv1'
  kind: str                             # its class name, 'Conv'
  output_shape: Optional[tuple]         # its output's shape for a batch of one (None: not an array)
  kernel_shape: Optional[tuple] = None  # its own 4-D 'kernel' parameter (HWIO), if it has one
  has_kernels: bool = False             # it or a module inside it has a 'kernel' (conv, dense)

  @property
  def is_feature_map(self) -> bool:
    """Its output is a batch of H x W x C maps: a layer whose units have positions."""
    return self.output_shape is not None and len(self.output_shape) == 4


def module_calls(model: nn.Module, input_shape: Sequence[int]) -> list[ModuleCall]:
  """Every submodule the eval-mode forward pass calls, in the order of their first calls, with the
  shape of that call's output; traced with ``jax.eval_shape`` (nothing is computed)."""
  from cnn_jax import train  # pylint: disable=g-import-not-at-top (after runtime.start)
  first: dict[tuple[str, ...], Optional[tuple]] = {}

  def record(next_fun, args, kwargs, context):
    path = tuple(context.module.path)
    if context.method_name != '__call__' or not path or path in first:
      return next_fun(*args, **kwargs)
    first[path] = None  # its place in the order is its call's start; its children come after it
    out = next_fun(*args, **kwargs)
    first[path] = (type(context.module).__name__, getattr(out, 'shape', None))
    return out

  with nn.intercept_methods(record):
    variables = train.variable_shapes(model, input_shape)
  calls = []
  for path, (kind, shape) in first.items():
    params = subtree(variables.get('params', {}), '/'.join(path))
    kernel = params.get('kernel') if isinstance(params, Mapping) else None
    has_kernels = any(getattr(key, 'key', None) == 'kernel' for leaf_path, _ in
                      jax.tree_util.tree_flatten_with_path(params or {})[0] for key in leaf_path)
    calls.append(ModuleCall('/'.join(path), kind, None if shape is None else tuple(shape),
                            tuple(kernel.shape) if kernel is not None and kernel.ndim == 4 else None,
                            has_kernels))
  return calls


def subtree(tree: Mapping[str, Any], path: str) -> Any:
  """The node of a variables tree at a module path ('a/b'); None where there is none."""
  node: Any = tree
  for part in path.split('/'):
    if not isinstance(node, Mapping) or part not in node:
      return None
    node = node[part]
  return node


def first_conv(calls: Sequence[ModuleCall]) -> ModuleCall:
  """The first module in call order that owns a 4-D convolution kernel."""
  for call in calls:
    if call.kernel_shape is not None:
      return call
  raise ConfigError('the model has no convolution with a 4-D kernel: leave filters out of --what.')


def feature_layers(calls: Sequence[ModuleCall]) -> list[ModuleCall]:
  """The modules whose output is a map of units, in call order: the valid ``--layer`` values."""
  return [call for call in calls if call.is_feature_map]


def find_layer(calls: Sequence[ModuleCall], path: str) -> ModuleCall:
  """The feature layer at ``path``; ConfigError naming the valid ones (on one line) if none."""
  layers = feature_layers(calls)
  for call in layers:
    if call.path == path:
      return call
  names = [call.path for call in layers]
  close = difflib.get_close_matches(path, names, n=3)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  top = [name for name in names if '/' not in name]
  if len(names) > 40 and top:  # deep nets: the top-level ones, and how to name the others
    nested = next(name for name in names if '/' in name) if len(top) < len(names) else None
    listed = (f'{", ".join(top)}, and the modules inside them as PATH/NAME (e.g. {nested})'
              if nested else ', '.join(top))
  else:
    listed = ', '.join(names)
  raise ConfigError(f'--layer={path} is not a layer of this model with a map of units.{hint} '
                    f'Valid layers: {listed}.')


def default_layer(calls: Sequence[ModuleCall]) -> ModuleCall:
  """The last top-level convolution, or block of them, whose output is a map of units (ResNet-20:
  stage3_block3, AlexNet: conv5, LeNet-5: C3)."""
  layers = [call for call in feature_layers(calls) if '/' not in call.path and call.has_kernels]
  if not layers:
    raise ConfigError('the model has no top-level convolution with a map of units: pass '
                      '--layer=PATH.')
  return layers[-1]


# ---------------------------------------------------------------------------------------------
# Reading a layer; the computations


def forward(model: nn.Module, variables: Variables, images: jax.Array,
            layer: Optional[str] = None) -> tuple[jax.Array, Optional[jax.Array]]:
  """``(logits, activations)``: the eval-mode logits and the output of the module at path ``layer``
  (None without one), read with ``capture_intermediates``; differentiable in ``images``."""
  images = jnp.asarray(images, jnp.float32)
  if layer is None:
    return model.apply(variables, images, train=False), None
  target = tuple(layer.split('/'))
  logits, state = model.apply(
      variables, images, train=False, mutable=['intermediates'],
      capture_intermediates=lambda module, method: method == '__call__' and module.path == target)
  return logits, subtree(state['intermediates'], layer)['__call__'][0]


def filter_grid(kernel: jax.Array, columns: Optional[int] = None, pad: int = 1) -> jax.Array:
  """The filters of an HWIO ``kernel`` tiled into one image in [0, 1], white between tiles.

  Each output filter is scaled on its own so that 0 is mid-grey and its largest weight in absolute
  value is 0 or 1 (AlexNet's Fig. 3 stretches each filter's contrast likewise). One tile per filter
  (colour for 3 input channels, grey for 1, ``columns`` to a row, default a square grid); other input
  counts give a grey tile per (filter, input channel), a row per filter.
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  height, width, inputs, outputs = kernel.shape
  scale = jnp.maximum(jnp.abs(kernel).max(axis=(0, 1, 2)), 1e-12)
  tiles = 0.5 + kernel / (2 * scale)                  # per output filter
  if inputs in (1, 3):
    tiles = tiles.transpose(3, 0, 1, 2)                # [filter, H, W, C]
    columns = columns or math.ceil(math.sqrt(outputs))
  else:
    tiles = tiles.transpose(3, 2, 0, 1)[..., None].reshape(outputs * inputs, height, width, 1)
    columns = inputs
  rows = math.ceil(len(tiles) / columns)
  tiles = jnp.pad(tiles, ((0, rows * columns - len(tiles)), (0, pad), (0, pad), (0, 0)),
                  constant_values=1.0)
  channels = tiles.shape[-1]
  grid = tiles.reshape(rows, columns, height + pad, width + pad, channels).transpose(0, 2, 1, 3, 4)
  grid = grid.reshape(rows * (height + pad), columns * (width + pad), channels)
  return grid[:grid.shape[0] - pad, :grid.shape[1] - pad]


def saliency(model: nn.Module, variables: Variables, images: jax.Array,
             classes: jax.Array) -> jax.Array:
  """Simonyan et al. 2013: |d score(class) / d image|, the maximum over channels, ``[N, H, W]``.
  The score is the class's logit (before the softmax), as in the paper."""
  def score(x, variables, classes):
    logits, _ = forward(model, variables, x)
    return jnp.take_along_axis(logits, classes[:, None], axis=1).sum()  # examples are independent
  grads = jax.jit(jax.grad(score))(jnp.asarray(images, jnp.float32), variables,
                                   jnp.asarray(classes, jnp.int32))
  return jnp.abs(grads).max(axis=-1)


def _relu_with_backward(backward: Callable[[jax.Array, jax.Array], jax.Array],
                        name: str) -> Callable[[jax.Array], jax.Array]:
  @jax.custom_vjp
  def relu(x):
    return jnp.maximum(x, 0)
  relu.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (backward(x, g),))
  relu.__name__ = relu.__qualname__ = name
  return relu


# ReLUs whose forward pass is the ReLU and whose backward pass passes on, of the gradient g arriving
# at a ReLU of input x: deconvnet (Zeiler & Fergus 2013) relu(g), the reconstruction rectified
# whatever x was; guided backprop (Springenberg et al. 2014) g where both x > 0 and g > 0.
BACKPROP_RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    'deconvnet': _relu_with_backward(lambda x, g: jnp.maximum(g, 0), 'deconvnet_relu'),
    'guided': _relu_with_backward(lambda x, g: jnp.where((x > 0) & (g > 0), g, 0), 'guided_relu'),
}


def nonlinearity_change(model: nn.Module, variables: Variables, images: jax.Array) -> float:
  """How much the logits move when every nonlinearity is a ReLU (the forward pass of
  :data:`BACKPROP_RULES`), relative to their size: 0 for a ReLU network."""
  swapped = model.clone(act=BACKPROP_RULES['guided'])
  plain, _ = jax.jit(functools.partial(forward, model))(variables, images)
  relu, _ = jax.jit(functools.partial(forward, swapped))(variables, images)
  return float(jnp.abs(plain - relu).max() / (1.0 + jnp.abs(plain).max()))


def reconstruct(model: nn.Module, variables: Variables, images: jax.Array, layer: str,
                rule: str) -> tuple[jax.Array, np.ndarray]:
  """Deconvnet (``rule='deconvnet'``) or guided backprop (``'guided'``) reconstructions of each
  image's strongest unit of ``layer``: the gradient of that one activation with respect to the image
  through ReLUs whose backward pass follows ``rule``. Returns ``([N, H, W, C], units)``, the unit of
  each image as ``(row, column, channel)`` of the layer's map."""
  swapped = model.clone(act=BACKPROP_RULES[rule])

  def strongest(x, variables):
    _, activations = forward(swapped, variables, x, layer)
    flat = activations.reshape(activations.shape[0], -1)
    index = jnp.argmax(jax.lax.stop_gradient(flat), axis=1)
    return jnp.take_along_axis(flat, index[:, None], axis=1).sum(), (index, activations.shape)

  images = jnp.asarray(images, jnp.float32)
  grads, (index, shape) = jax.jit(jax.grad(strongest, has_aux=True))(images, variables)
  units = np.stack(np.unravel_index(np.asarray(index), tuple(shape[1:])), axis=-1)
  return grads, units


def occlusion(model: nn.Module, variables: Variables, images: jax.Array, labels: jax.Array,
              size: int, stride: int, fill: float = 0.0, chunk: int = 64) -> jax.Array:
  """Zeiler & Fergus 2013, Fig. 7: the probability of each image's ``labels`` class with a
  ``size`` x ``size`` square of ``fill`` (0: the data set's mean after normalisation) over it, its
  top-left corner every ``stride`` pixels; ``[N, rows, columns]``, row r covering the pixel rows
  r * stride to r * stride + size - 1."""
  images = jnp.asarray(images, jnp.float32)
  labels = jnp.asarray(labels, jnp.int32)
  count, height, width, channels = images.shape
  tops, lefts = np.arange(0, height - size + 1, stride), np.arange(0, width - size + 1, stride)
  corners = jnp.asarray(np.stack(np.meshgrid(tops, lefts, indexing='ij'), -1).reshape(-1, 2))
  square = jnp.full((count, size, size, channels), fill, jnp.float32)

  def probabilities(variables, images, labels, corners):
    def probability(corner):
      occluded = jax.lax.dynamic_update_slice(images, square, (0, corner[0], corner[1], 0))
      logits, _ = forward(model, variables, occluded)
      return jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], axis=1)[:, 0]
    batch = max(1, chunk // count)  # positions per step: about ``chunk`` images at a time
    return jax.lax.map(probability, corners, batch_size=batch)

  probs = jax.jit(probabilities)(variables, images, labels, corners)
  return probs.T.reshape(count, len(tops), len(lefts))


def channel_maxima(activations: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Of a layer's ``[N, h, w, C]`` output: each image's largest activation of each unit (channel),
  ``[N, C]``, and where in the map it is, ``[N, C, 2]`` (row, column)."""
  count, _, width, channels = activations.shape
  flat = activations.reshape(count, -1, channels)
  where = jnp.argmax(flat, axis=1)
  return flat.max(axis=1), jnp.stack([where // width, where % width], axis=-1)


def top_activations(maxima: jax.Array, num_units: int,
                    per_unit: int) -> tuple[jax.Array, jax.Array]:
  """ZFNet's top-9: the ``num_units`` units with the largest activation over all images, and for
  each the ``per_unit`` images that activate it most, strongest first: ``([U], [U, P])``."""
  maxima = jnp.asarray(maxima)
  _, units = jax.lax.top_k(maxima.max(axis=0), min(num_units, maxima.shape[1]))
  _, images = jax.lax.top_k(maxima[:, units].T, min(per_unit, maxima.shape[0]))
  return units, images


def receptive_fields(model: nn.Module, variables: Variables, input_shape: Sequence[int],
                     layer: str, positions: np.ndarray, probes: int = 4, seed: int = 0,
                     chunk: int = 16) -> np.ndarray:
  """The input box each ``positions`` entry ``(row, column)`` of ``layer``'s map sees, ``[P, 4]`` as
  ``(top, left, bottom, right)``, bottom and right exclusive, cut at the image's edges.

  Found empirically: the bounding box of the pixels where the gradient of the unit's activations (all
  channels) with respect to the input is not zero, on ``probes`` random inputs at once, with every
  nonlinearity made the identity (``act``) so that no ReLU hides a path. A max-pool passes the
  gradient to one input of its window; the random probes differ in which, and their union covers it.
  """
  linear = model.clone(act=lambda x: x)
  inputs = jax.random.normal(jax.random.PRNGKey(seed), (probes,) + tuple(input_shape))

  def boxes(variables, inputs, positions):
    activations, pullback = jax.vjp(lambda x: forward(linear, variables, x, layer)[1], inputs)

    def box(position):
      unit = jnp.zeros(activations.shape, activations.dtype)
      unit = unit.at[:, position[0], position[1], :].set(1.0)
      support = jnp.any(pullback(unit)[0] != 0, axis=(0, 3))    # [H, W]
      rows, cols = support.any(axis=1), support.any(axis=0)
      return jnp.stack([jnp.argmax(rows), jnp.argmax(cols), len(rows) - jnp.argmax(rows[::-1]),
                        len(cols) - jnp.argmax(cols[::-1])])
    return jax.lax.map(box, positions, batch_size=chunk)
  return np.asarray(jax.jit(boxes)(variables, inputs, jnp.asarray(positions, jnp.int32)))


def crop_patches(images: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """The ``boxes`` (``[P, 4]``, of :func:`receptive_fields`) of ``images`` (``[P, H, W, C]``, one per
  box), in tiles of the largest box's size; a box cut by the image's edge is placed against that
  side of its tile, the rest of which is NaN (drawn blank)."""
  boxes = np.asarray(boxes)
  tile_h = int((boxes[:, 2] - boxes[:, 0]).max())
  tile_w = int((boxes[:, 3] - boxes[:, 1]).max())
  height, width = images.shape[1:3]
  tiles = np.full((len(boxes), tile_h, tile_w, images.shape[-1]), np.nan, np.float32)
  for i, (top, left, bottom, right) in enumerate(boxes):
    patch = images[i, top:bottom, left:right]
    # where the field runs past the top (left) edge only, the missing part is above (left of) it
    row = tile_h - patch.shape[0] if top == 0 and bottom < height else 0
    col = tile_w - patch.shape[1] if left == 0 and right < width else 0
    tiles[i, row:row + patch.shape[0], col:col + patch.shape[1]] = patch
  return tiles


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int) -> jax.Array:
  """Counts, ``[true class, predicted class]``."""
  return jnp.zeros((num_classes, num_classes), jnp.int32).at[
      jnp.asarray(labels), jnp.asarray(predictions)].add(1)


def most_confident_wrong(probs: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
  """The indices of the (at most ``count``) misclassified examples whose predicted (wrong) class
  has the highest probability, most confident first."""
  probs, labels = np.asarray(probs), np.asarray(labels)
  predicted = probs.argmax(axis=1)
  confidence = np.where(predicted != labels, probs.max(axis=1), -1.0)
  order = np.argsort(-confidence, kind='stable')
  return order[:min(count, int((predicted != labels).sum()))]


# ---------------------------------------------------------------------------------------------
# The command: a run's config and checkpoint in, PNG files and TensorBoard images out


@dataclasses.dataclass(frozen=True)
class Options:
  """What to draw and where (the command's flags)."""
  out: str                              # directory of the PNG files
  tensorboard: Optional[str] = None     # directory of the TensorBoard images; None: none
  what: tuple[str, ...] = WHAT
  layer: Optional[str] = None           # top patches and reconstructions; None: default_layer
  images: tuple[int, ...] = (0, 1, 2, 3)  # eval images for saliency, reconstructions, occlusion
  occlusion_size: int = 0               # the grey square's side; 0: a quarter of the image's
  occlusion_stride: int = 0             # 0: a quarter of the square's side
  num_eval: int = 0                     # eval images scanned (confusion, wrong, top patches); 0: all
  num_units: int = 8                    # units shown by top_patches
  per_unit: int = 9                     # images per unit (ZFNet: 9)
  num_wrong: int = 16


def check_options(options: Options) -> None:
  unknown = [w for w in options.what if w not in WHAT]
  if unknown or not options.what:
    raise ConfigError(f'--what={",".join(options.what)}: choose among {",".join(WHAT)}.')
  for name in ('occlusion_size', 'occlusion_stride', 'num_eval'):
    if getattr(options, name) < 0:
      raise ConfigError(f'--{name} must be >= 0 (0: the default); got {getattr(options, name)}.')
  for name in ('num_units', 'per_unit', 'num_wrong'):
    if getattr(options, name) < 1:
      raise ConfigError(f'--{name} must be >= 1; got {getattr(options, name)}.')
  if any(i < 0 for i in options.images) or not options.images:
    raise ConfigError(f'--images={",".join(map(str, options.images))}: give indices >= 0 into the '
                      'eval split, e.g. --images=0,5,17.')


def occlusion_geometry(options: Options, image_shape: Sequence[int]) -> tuple[int, int]:
  """``(size, stride)`` of the occluding square for images of ``image_shape``; ConfigError if it
  does not fit."""
  side = min(image_shape[:2])
  size = options.occlusion_size or max(1, side // 4)
  stride = options.occlusion_stride or max(1, size // 4)
  if size > side:
    raise ConfigError(f'--occlusion_size={size} is larger than the {side}-pixel images: use at most '
                      f'{side}.')
  return size, stride


def _eval_examples(config: ml_collections.ConfigDict, local_batch: int,
                   limit: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """``(first index, images, labels)`` of the eval split in order, padding dropped, up to ``limit``
  images (0: all)."""
  from cnn_jax.data import pipeline  # pylint: disable=g-import-not-at-top (after runtime.start)
  seen = 0
  for batch in pipeline.eval_batches(config.data, local_batch=local_batch):
    real = int(batch['mask'].sum())
    if limit:
      real = min(real, limit - seen)
    if real > 0:
      yield seen, batch['image'][:real], batch['label'][:real]
    seen += real
    if limit and seen >= limit:
      return


def _gather(config: ml_collections.ConfigDict, local_batch: int,
            indices: Sequence[int]) -> dict[int, tuple[np.ndarray, int]]:
  """``{index: (image, label)}`` of the eval examples at ``indices``, reading no further than the
  last of them."""
  wanted, found = set(int(i) for i in indices), {}
  if not wanted:
    return found
  for start, images, labels in _eval_examples(config, local_batch, max(wanted) + 1):
    for i in range(len(images)):
      if start + i in wanted:
        found[start + i] = (images[i], int(labels[i]))
  return found


def class_names(config: ml_collections.ConfigDict, num_classes: int) -> list[str]:
  """The tfds builder's label names where it has them, else the class numbers."""
  from cnn_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  spec, builder = pipeline.get_builder(config.data)
  names = getattr(builder.info.features[spec.label_key], 'names', None)
  return list(names) if names and len(names) == num_classes else [str(i) for i in range(num_classes)]


@dataclasses.dataclass(frozen=True)
class _Context:
  """What every output of :func:`run` reads."""
  model: nn.Module
  variables: Variables
  config: ml_collections.ConfigDict
  options: Options
  local_batch: int
  layer: Optional[str]           # the layer of top_patches and guided_backprop
  names: list[str]               # class names
  to_pixels: Callable[[np.ndarray], np.ndarray]


def run(config: ml_collections.ConfigDict, workdir: str, options: Options) -> list[str]:
  """Draws ``options.what`` for ``workdir``'s newest checkpoint; returns the PNG files written.

  Computes in float32 whatever the run trained in (bfloat16 would round the gradients and the
  occlusion's differences away). Every mistake in the options is a ConfigError before anything is
  written or the eval split scanned.
  """
  from cnn_jax import evaluate, figures  # pylint: disable=g-import-not-at-top (after runtime.start)
  from cnn_jax.data import ops as ops_lib  # pylint: disable=g-import-not-at-top
  check_options(options)
  config = ml_collections.ConfigDict(config.to_dict())
  config.mixed_precision = False
  config.data.cache = False  # the split is read once or twice, the second time only in part
  setup, state = evaluate.restore(config, workdir)
  info = setup.info
  if info.eval_views > 1:
    raise ConfigError(f'the eval ops {config.data.eval_ops!r} give {info.eval_views} views of each '
                      'image; visualisation needs one: pass --config.data.eval_ops=... without '
                      'ten_crop.')
  calls = module_calls(setup.model, info.image_shape)
  what = set(options.what)
  layer = None
  if what & {'top_patches', 'guided_backprop'}:
    layer = (find_layer(calls, options.layer) if options.layer else default_layer(calls)).path
  per_image = what & {'saliency', 'guided_backprop', 'occlusion'}
  if per_image:
    outside = [i for i in options.images if i >= info.num_eval]
    if outside:
      raise ConfigError(f'--images={",".join(map(str, outside))}: the eval split has '
                        f'{info.num_eval} images (indices 0 to {info.num_eval - 1}).')
  if 'occlusion' in what:
    occlusion_geometry(options, info.image_shape)
  scale, offset = ops_lib.input_to_pixels(config.data.eval_ops)
  context = _Context(
      setup.model, {'params': state.params, 'batch_stats': state.batch_stats}, config, options,
      setup.local_batch, layer, class_names(config, info.num_classes),
      lambda x: np.clip(np.asarray(x, np.float32) * scale + offset, 0.0, 1.0))
  chosen = _gather(config, setup.local_batch, options.images) if per_image else {}
  images = np.stack([chosen[i][0] for i in options.images]).astype(np.float32) if chosen else None
  if 'guided_backprop' in what:
    change = nonlinearity_change(setup.model, context.variables, images)
    if change > 1e-4:
      raise ConfigError(f'guided backprop and deconvnet need a ReLU network, and {config.model.name}'
                        f'\'s nonlinearity is not ReLU (its logits move by {change:.2g} with ReLU '
                        'in its place): leave guided_backprop out of --what.')

  output = figures.Output(options.out, options.tensorboard, int(state.step))
  try:
    if 'filters' in what:
      conv = first_conv(calls)
      kernel = subtree(context.variables['params'], conv.path)['kernel']
      output.save('filters', figures.filters(np.asarray(filter_grid(kernel)), conv.path,
                                             tuple(kernel.shape)))
    if what & {'confusion', 'wrong', 'top_patches'}:
      _draw_scanned(context, output, info.num_classes, info.image_shape)
    if per_image:
      _draw_per_image(context, output, images, np.array([chosen[i][1] for i in options.images]))
  finally:
    output.close()
  return output.written


def _draw_scanned(context: _Context, output, num_classes: int,
                  image_shape: Sequence[int]) -> None:
  """The outputs that scan the eval split: confusion, wrong, top_patches."""
  from cnn_jax import figures  # pylint: disable=g-import-not-at-top
  what, options, names = set(context.options.what), context.options, context.names
  layer = context.layer if 'top_patches' in what else None
  batches, maxima, positions = _scan(context.model, context.variables, context.config,
                                     context.local_batch, options.num_eval, layer)
  probs = np.concatenate([b[0] for b in batches])
  labels = np.concatenate([b[1] for b in batches])
  predicted = probs.argmax(axis=1)
  wrong = most_confident_wrong(probs, labels, options.num_wrong) if 'wrong' in what else []
  units = winners = None
  if layer is not None:
    units, winners = map(np.asarray, top_activations(maxima, options.num_units, options.per_unit))
  found = _gather(context.config, context.local_batch,
                  list(wrong) + ([] if winners is None else list(winners.reshape(-1))))
  stack = lambda indices: context.to_pixels(np.stack([found[i][0] for i in indices]))
  if 'confusion' in what:
    matrix = np.asarray(confusion_matrix(labels, predicted, num_classes))
    output.save('confusion', figures.confusion(matrix, names))
  if 'wrong' in what:
    output.save('wrong', figures.wrong(
        stack(wrong) if len(wrong) else np.zeros((0,)),
        [(names[labels[i]], names[predicted[i]], float(probs[i, predicted[i]]), int(i))
         for i in wrong], num_scanned=len(labels)))
  if layer is not None:
    where = positions[winners, units[:, None]]                     # [U, P, 2]
    boxes = receptive_fields(context.model, context.variables, image_shape, layer,
                             where.reshape(-1, 2))
    patches = crop_patches(stack(winners.reshape(-1)), boxes)
    output.save('top_patches', figures.top_patches(
        patches.reshape(winners.shape + patches.shape[1:]), units,
        maxima[winners, units[:, None]], layer, num_scanned=len(labels)))


def _draw_per_image(context: _Context, output, images: np.ndarray, labels: np.ndarray) -> None:
  """The outputs of the chosen images: saliency, guided_backprop, occlusion."""
  from cnn_jax import figures  # pylint: disable=g-import-not-at-top
  what, names = set(context.options.what), context.names
  model, variables = context.model, context.variables
  logits, _ = jax.jit(functools.partial(forward, model))(variables, images)
  predicted = np.asarray(jnp.argmax(logits, axis=1))
  probs = np.asarray(jax.nn.softmax(logits))
  titles = [f'#{i} {names[t]}\n-> {names[p]} ({probs[k, p]:.2f})'
            for k, (i, t, p) in enumerate(zip(context.options.images, labels, predicted))]
  pixels = context.to_pixels(images)
  if 'saliency' in what:
    maps = np.asarray(saliency(model, variables, images, predicted))
    output.save('saliency', figures.saliency(pixels, maps, titles))
  if 'guided_backprop' in what:
    deconvnet, units = reconstruct(model, variables, images, context.layer, 'deconvnet')
    guided, _ = reconstruct(model, variables, images, context.layer, 'guided')
    output.save('guided_backprop', figures.reconstructions(
        pixels, np.asarray(deconvnet), np.asarray(guided), titles, context.layer, units))
  if 'occlusion' in what:
    size, stride = occlusion_geometry(context.options, images.shape[1:])
    heat = np.asarray(occlusion(model, variables, images, labels, size, stride))
    output.save('occlusion', figures.occlusion(
        pixels, heat, size, stride, titles, probs[np.arange(len(labels)), labels],
        [names[t] for t in labels]))


def _scan(model: nn.Module, variables: Variables, config: ml_collections.ConfigDict,
          local_batch: int, limit: int, layer: Optional[str]):
  """One pass over the eval images: ``([(probs, labels) per batch], maxima [N, C], positions
  [N, C, 2])``, the last two of ``layer``'s units (None without a layer)."""
  @jax.jit
  def step(variables, images):
    logits, activations = forward(model, variables, images, layer)
    stats = channel_maxima(activations) if activations is not None else (None, None)
    return jax.nn.softmax(logits), *stats

  batches, maxima, positions = [], [], []
  for _, images, labels in _eval_examples(config, local_batch, limit):
    count = len(images)
    padded = np.concatenate([images, np.zeros((local_batch - count,) + images.shape[1:],
                                              images.dtype)]) if count < local_batch else images
    probs, batch_maxima, batch_positions = jax.device_get(step(variables, padded))
    batches.append((probs[:count], labels))
    if layer is not None:
      maxima.append(batch_maxima[:count])
      positions.append(batch_positions[:count])
  if not batches:
    raise ConfigError('the eval split has no images to scan.')
  if layer is None:
    return batches, None, None
  return batches, np.concatenate(maxima), np.concatenate(positions)


# ---------------------------------------------------------------------------------------------
# Command line. The flags are defined when the module runs as the program; --config defaults to
# the workdir's own config (workdir.define_config_flag), as in cnn_jax.evaluate.

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'The run to look inside; its files are only read.',
                      required=True)
  flags.DEFINE_string('out', None, 'Directory of the PNG files; default WORKDIR/visualize.')
  flags.DEFINE_string('tensorboard', None, 'Directory of the same images as TensorBoard image '
                      'summaries; default WORKDIR/tensorboard/visualize (skipped with a warning if '
                      'it cannot be written); empty: none.')
  flags.DEFINE_list('what', list(Options.what), f'What to draw, among {",".join(WHAT)}.')
  flags.DEFINE_string('layer', None, 'Module path of the layer for top_patches and '
                      'guided_backprop (e.g. stage2_block1, conv1); default the last top-level '
                      'convolution or block with a map of units.')
  flags.DEFINE_list('images', [str(i) for i in Options.images], 'Eval image indices for '
                    'saliency, guided_backprop and occlusion.')
  flags.DEFINE_integer('occlusion_size', Options.occlusion_size, 'Side of the grey square; 0: a '
                       'quarter of the image\'s.')
  flags.DEFINE_integer('occlusion_stride', Options.occlusion_stride, 'Its step; 0: a quarter of its '
                       'side.')
  flags.DEFINE_integer('num_eval', Options.num_eval, 'Eval images scanned for confusion, wrong and '
                       'top_patches; 0: the whole split.')
  flags.DEFINE_integer('num_units', Options.num_units, 'Units shown by top_patches.')
  flags.DEFINE_integer('per_unit', Options.per_unit, 'Images per unit in top_patches.')
  flags.DEFINE_integer('num_wrong', Options.num_wrong, 'Images shown by wrong.')
  workdir_lib.define_config_flag(sys.argv)


def _tensorboard_dir(workdir: str) -> Optional[str]:
  """The --tensorboard directory: as given ('' for none), else the workdir's if it can be
  written."""
  if FLAGS.tensorboard is not None:
    if FLAGS.tensorboard:
      workdir_lib.check_writable(FLAGS.tensorboard)
    return FLAGS.tensorboard or None
  path = os.path.join(workdir, run_files.TENSORBOARD, 'visualize')
  try:
    workdir_lib.check_writable(path)
  except ConfigError as e:
    print(f'warning: no TensorBoard images: {e}', file=sys.stderr, flush=True)
    return None
  return path


def main(argv: list[str]) -> None:
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)
    from cnn_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.check_overrides(workdir_lib.load_config(FLAGS.workdir), FLAGS.config)
    try:
      images = tuple(int(i) for i in FLAGS.images)
    except ValueError:
      raise ConfigError(f'--images={",".join(FLAGS.images)}: give eval image indices, e.g. '
                        '--images=0,5,17.') from None
    options = Options(
        out=FLAGS.out or os.path.join(FLAGS.workdir, 'visualize'), what=tuple(FLAGS.what),
        layer=FLAGS.layer, images=images, occlusion_size=FLAGS.occlusion_size,
        occlusion_stride=FLAGS.occlusion_stride, num_eval=FLAGS.num_eval,
        num_units=FLAGS.num_units, per_unit=FLAGS.per_unit, num_wrong=FLAGS.num_wrong)
    check_options(options)
    options = dataclasses.replace(options, tensorboard=_tensorboard_dir(FLAGS.workdir))
    written = run(FLAGS.config, FLAGS.workdir, options)
  for path in written:
    print(path, flush=True)
  if options.tensorboard:
    print(f'TensorBoard images: {options.tensorboard}', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
