"""Preprocessing ops, named and composed in the config as a pipe-separated string.

``"resize(32) | pad_random_crop(4) | flip_lr | normalize(mean=0.5, std=0.25)"`` builds four ops; each
op maps ``(image, seed) -> image`` on one example inside tf.data. Example ops (``register_example_op``,
e.g. ``random_dihedral``) map the whole example instead, ``(example, seed) -> example``, where the
example is a dict of ``image``, ``label`` and the data set's other features: they move the label
with the image. Both kinds mix freely in one pipe and run in its order. Random ops use stateless TF
random functions seeded per example, so a pipeline is a pure function of (seed, epoch, example): a
resumed run sees exactly the augmentation an uninterrupted run would have.

Conventions that ``parse`` enforces, so a wrong order fails at start-up and not in the numbers:

* Pixel scale. Every op before ``normalize`` sees pixel values on the 0..255 scale: uint8 as tfds
  decodes them, or float32 once ``lighting`` has added its (unclipped) colour noise. Resizing ops
  keep the dtype they get (uint8 is rounded back to uint8). ``normalize`` maps 0..255 to the
  model's float input, so the ops that assume 0..255 (resizes, crops that resize, ``lighting``)
  must come before it. Geometric ops (flip_lr, pad_random_crop, central_crop, ten_crop) may follow.
* Encoded input. ``decode`` and ``decode_inception_crop`` take the encoded image bytes; they must
  be the first op, and the pipeline then reads the image feature undecoded (tfds SkipDecoding).
* Views. ``ten_crop`` turns one image into ``[10, H, W, C]``; only ``normalize`` may follow it.
  The eval batch is then ``[B, 10, H, W, C]`` and DatasetInfo.eval_views is 10.
"""
from __future__ import annotations

import ast
import difflib
import functools
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from cnn_jax import ConfigError
from cnn_jax.data import LABEL_MASK, normalize_presets, symmetry

Op = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Example = dict[str, tf.Tensor]
ExampleOp = Callable[[Example, tf.Tensor], Example]
_OPS: dict[str, Callable[..., Op | ExampleOp]] = {}

# Ops whose input must be encoded bytes, and which therefore can only come first.
_ENCODED_INPUT_OPS = frozenset({'decode', 'decode_inception_crop'})
# Ops that assume pixel values on the 0..255 scale, and therefore must come before normalize.
_PIXEL_SCALE_OPS = frozenset({'decode', 'decode_inception_crop', 'inception_crop', 'lighting',
                              'normalize', 'pad', 'resize', 'resize_center_crop', 'resize_small',
                              'resize_small_random'})
# Ops that can work on the [views, H, W, C] output of ten_crop.
_MULTI_VIEW_OPS = frozenset({'normalize'})

# normalize('cifar10') etc.: per-channel (mean, std) of pixel values scaled to [0, 1], from the
# data set registry.
NORMALIZE_PRESETS = normalize_presets()

# AlexNet's PCA colour noise: eigenvalues and eigenvectors (columns) of the covariance of ImageNet
# RGB pixel values in [0, 1], as in fb.resnet.torch (x 255 they are AlexNet's 55.46, 4.794, 1.148).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))


def register_op(fn: Callable[..., Op]) -> Callable[..., Op]:
  """Registers an op factory by its name; the ops it builds map ``(image, seed) -> image``."""
  _OPS[fn.__name__] = fn
  return fn


def register_example_op(fn: Callable[..., ExampleOp]) -> Callable[..., ExampleOp]:
  """Registers a factory of ops that map the whole example, ``(example, seed) -> example``."""
  @functools.wraps(fn)
  def factory(*args, **kwargs) -> ExampleOp:
    op = fn(*args, **kwargs)
    op.transforms_example = True  # how apply_example tells the two kinds apart
    return op
  _OPS[fn.__name__] = factory
  return factory


def op_names() -> list[str]:
  return sorted(_OPS)


def encoded_input(ops: Sequence[Op]) -> str | None:
  """What the first op reads: None (a decoded image), 'any' encoded image or 'jpeg' bytes only."""
  return getattr(ops[0], 'encoded_input', None) if ops else None


def _reads_encoded(op: Op, kind: str) -> Op:
  op.encoded_input = kind
  return op


def _per_channel(value: float | Sequence[float]) -> tf.Tensor:
  return tf.reshape(tf.constant(value, tf.float32), [-1])


def _height_width(size: int | Sequence[int]) -> list[int]:
  return [size, size] if isinstance(size, int) else list(size)


def _resize_to(image: tf.Tensor, height_width, method: str, antialias: bool = False) -> tf.Tensor:
  """Resizes keeping the dtype: integer images are rounded and clipped back to 0..255."""
  resized = tf.image.resize(image, height_width, method, antialias=antialias)
  if image.dtype.is_integer:
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), image.dtype)
  return tf.cast(resized, image.dtype)


def _crop(image: tf.Tensor, top, left, height: int, width: int) -> tf.Tensor:
  # crop_to_bounding_box checks at run time that the window fits: a too-small image fails loudly.
  return tf.image.crop_to_bounding_box(image, top, left, height, width)


@register_op
def resize(size: int | Sequence[int], method: str = 'bilinear') -> Op:
  """Resizes to ``size`` (an int for a square, or (height, width)); keeps uint8 values 0..255."""
  hw = _height_width(size)
  def op(image, seed):
    del seed
    return _resize_to(image, hw, method)
  return op


_LONG_SIDES = ('round', 'floor')


def _short_side_to(image: tf.Tensor, size: int, method: str, antialias: bool,
                   long_side: str = 'round') -> tf.Tensor:
  if long_side == 'floor':  # torchvision's int(size * long / short), in float64 as Python computes it
    shape = tf.shape(image)[:2]
    new_hw = tf.cast(tf.floor(tf.cast(size * shape, tf.float64)
                              / tf.cast(tf.reduce_min(shape), tf.float64)), tf.int32)
  else:
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(shape * (size / tf.reduce_min(shape))), tf.int32)
  return _resize_to(image, new_hw, method, antialias)


@register_op
def resize_small(size: int, method: str = 'bilinear', antialias: bool = True,
                 long_side: str = 'round') -> Op:
  """Resizes so the shorter side is ``size``, keeping the aspect ratio.

  Antialiased by default: it mostly shrinks whole photos, where PIL (the torchvision recipes)
  antialiases too. The longer side is rounded, or with ``long_side='floor'`` truncated as
  torchvision's ``Resize(size)`` does (600x512 to 232: 271 rows, not 272).
  """
  if long_side not in _LONG_SIDES:
    raise ConfigError(f'resize_small: long_side must be one of {", ".join(_LONG_SIDES)}, got '
                      f'{long_side!r}.')
  def op(image, seed):
    del seed
    return _short_side_to(image, size, method, antialias, long_side)
  return op


@register_op
def resize_small_random(min_size: int, max_size: int, method: str = 'bilinear',
                        antialias: bool = True) -> Op:
  """Scale augmentation (VGG, ResNet): the shorter side to a random size in [min_size, max_size].

  One integer size per image, uniform over the range (both ends included), aspect ratio kept.
  ``resize_small_random(256, 480) | random_crop(224)`` is He et al.'s ImageNet training crop.
  """
  if not 0 < min_size <= max_size:
    raise ConfigError(f'resize_small_random({min_size}, {max_size}): need 0 < min_size <= max_size.')
  def op(image, seed):
    size = tf.random.stateless_uniform([], seed, min_size, max_size + 1, dtype=tf.int32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    return _resize_to(image, new_hw, method, antialias)
  return op


@register_op
def random_crop(size: int | Sequence[int]) -> Op:
  """A ``size`` window at a uniformly random position (AlexNet's and VGG's training crops)."""
  height, width = _height_width(size)
  def op(image, seed):
    channels = image.shape[-1] if image.shape[-1] is not None else tf.shape(image)[-1]
    return tf.image.stateless_random_crop(image, [height, width, channels], seed=seed)
  return op


@register_op
def pad(pixels: int) -> Op:
  """Zero-pads ``pixels`` on every side (LeNet-5: 28x28 MNIST digits in a 32x32 field).

  Before ``normalize``, so the padding is the background level 0 of the raw pixels.
  """
  def op(image, seed):
    del seed
    return tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]])
  return op


@register_op
def to_rgb() -> Op:
  """Tiles a 1-channel (grey) image to 3 identical channels; 3-channel images pass unchanged.

  Lets the 1-channel ``digits`` stand in for an RGB data set (the configs' ``runlocal``).
  """
  def op(image, seed):
    del seed
    channels = image.shape[-1]
    if channels == 3:
      return image
    if channels != 1:
      raise ConfigError(f'to_rgb: expected 1- or 3-channel images, got {channels} channels.')
    return tf.tile(image, [1, 1, 3])
  return op


_OFFSETS = ('floor', 'round')


@register_op
def central_crop(size: int | Sequence[int], offset: str = 'floor') -> Op:
  """The centre ``size`` window; the image must be at least that large. Its offsets are rounded
  down, or with ``offset='round'`` rounded half to even as torchvision's ``CenterCrop`` does
  (a margin of 47 pixels: 24 before the window, not 23)."""
  height, width = _height_width(size)
  if offset not in _OFFSETS:
    raise ConfigError(f'central_crop: offset must be one of {", ".join(_OFFSETS)}, got {offset!r}.')
  def start(margin):
    if offset == 'round':  # tf.round rounds half to even, as Python's round
      return tf.cast(tf.round(tf.cast(margin, tf.float64) / 2), tf.int32)
    return margin // 2
  def op(image, seed):
    del seed
    shape = tf.shape(image)
    return _crop(image, start(shape[0] - height), start(shape[1] - width), height, width)
  return op


@register_op
def resize_center_crop(size: int, resize_size: int | None = None, method: str = 'bilinear',
                       antialias: bool = True) -> Op:
  """ImageNet evaluation: shorter side to ``resize_size`` (default size * 256/224), centre crop.

  ``resize_center_crop(224, 256)`` is the standard single-crop protocol of the ResNet/DenseNet era.
  """
  resize_size = resize_size or round(size * 256 / 224)
  if resize_size < size:
    raise ConfigError(f'resize_center_crop({size}, {resize_size}): resize_size must be >= size.')
  def op(image, seed):
    del seed
    image = _short_side_to(image, resize_size, method, antialias)
    shape = tf.shape(image)
    return _crop(image, (shape[0] - size) // 2, (shape[1] - size) // 2, size, size)
  return op


@register_op
def ten_crop(size: int | Sequence[int]) -> Op:
  """AlexNet's test views: [10, h, w, C] = four corners and centre, then the same five mirrored.

  Order: top-left, top-right, bottom-left, bottom-right, centre; view ``i + 5`` is view ``i``
  flipped left-right. The centre offset is rounded down, as in central_crop.
  """
  height, width = _height_width(size)
  def op(image, seed):
    del seed
    shape = tf.shape(image)
    bottom, right = shape[0] - height, shape[1] - width
    corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    five = tf.stack([_crop(image, top, left, height, width) for top, left in corners])
    return tf.concat([five, tf.reverse(five, axis=[2])], axis=0)
  return op


@register_op
def pad_random_crop(pad: int) -> Op:
  """Zero-pads each side by ``pad`` pixels, then crops a random window of the original size."""
  def op(image, seed):
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, shape, seed=seed)
  return op


def _check_crop_ranges(name: str, area_min: float, area_max: float, ratio_min: float,
                       ratio_max: float) -> None:
  if not 0 < area_min <= area_max <= 1:
    raise ConfigError(f'{name}: need 0 < area_min <= area_max <= 1 (fractions of the image area), '
                      f'got area_min={area_min}, area_max={area_max}.')
  if not 0 < ratio_min <= ratio_max:
    raise ConfigError(f'{name}: need 0 < ratio_min <= ratio_max (width / height), got '
                      f'ratio_min={ratio_min}, ratio_max={ratio_max}.')


def _sample_crop_window(image_shape: tf.Tensor, seed: tf.Tensor, area: tuple[float, float],
                        ratio: tuple[float, float]) -> tf.Tensor:
  """[top, left, height, width] of a random window covering ``area`` of the image, aspect ``ratio``.

  Ten attempts, then the whole image (TF's fallback; torchvision falls back to a centre crop).
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.zeros([1, 0, 4], tf.float32), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=ratio, area_range=area, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], size[0], size[1]])


@register_op
def inception_crop(size: int | Sequence[int], area_min: float = 0.08, area_max: float = 1.0,
                   ratio_min: float = 0.75, ratio_max: float = 4 / 3, method: str = 'bilinear',
                   antialias: bool = False) -> Op:
  """GoogLeNet's random-resized crop: a window of 8-100% of the area, aspect 3/4-4/3, resized.

  No antialiasing by default, like TF's reference ImageNet input pipelines (and faster).
  """
  _check_crop_ranges('inception_crop', area_min, area_max, ratio_min, ratio_max)
  hw = _height_width(size)
  def op(image, seed):
    top, left, height, width = tf.unstack(
        _sample_crop_window(tf.shape(image), seed, (area_min, area_max), (ratio_min, ratio_max)))
    window = tf.slice(image, [top, left, 0], [height, width, -1])
    window.set_shape([None, None, image.shape[-1]])  # keep the channel count static
    return _resize_to(window, hw, method, antialias)
  return op


@register_op
def decode_inception_crop(size: int | Sequence[int], area_min: float = 0.08, area_max: float = 1.0,
                          ratio_min: float = 0.75, ratio_max: float = 4 / 3, channels: int = 3,
                          method: str = 'bilinear', antialias: bool = False) -> Op:
  """inception_crop fused with JPEG decoding: decodes only the sampled window (ImageNet training).

  Reads encoded JPEG bytes, so it must be the first op. For the same seed it samples the same
  window as ``decode | inception_crop``; pixels can differ slightly at the window's border, where
  the JPEG decoder upsamples chroma from fewer neighbours.
  """
  _check_crop_ranges('decode_inception_crop', area_min, area_max, ratio_min, ratio_max)
  hw = _height_width(size)
  def op(encoded, seed):
    image_shape = tf.image.extract_jpeg_shape(encoded)
    window = _sample_crop_window(image_shape, seed, (area_min, area_max), (ratio_min, ratio_max))
    crop = tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)
    crop.set_shape([None, None, channels])
    return _resize_to(crop, hw, method, antialias)
  return _reads_encoded(op, 'jpeg')


_DCT_METHODS = ('', 'INTEGER_FAST', 'INTEGER_ACCURATE')


@register_op
def decode(channels: int = 3, dct_method: str = '') -> Op:
  """Decodes encoded image bytes (JPEG, PNG, ...) to uint8; for pipelines that start from bytes.

  ``dct_method`` is TF's JPEG decoding hint: '' (TF's default, libjpeg's fast integer DCT) or
  'INTEGER_ACCURATE', libjpeg's default and PIL's (on a photo the two differ by about one level per
  pixel on average). Other formats ignore it.
  """
  if dct_method not in _DCT_METHODS:
    raise ConfigError(f'decode: dct_method must be one of {", ".join(map(repr, _DCT_METHODS))}, got '
                      f'{dct_method!r}.')
  def op(encoded, seed):
    del seed
    if dct_method:
      image = tf.cond(tf.io.is_jpeg(encoded),
                      lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method=dct_method),
                      lambda: tf.io.decode_image(encoded, channels=channels,
                                                 expand_animations=False))
    else:
      image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image
  return _reads_encoded(op, 'any')


@register_op
def flip_lr() -> Op:
  """Random horizontal flip with probability 1/2."""
  def op(image, seed):
    return tf.image.stateless_random_flip_left_right(image, seed=seed)
  return op


@register_op
def lighting(alphastd: float = 0.1) -> Op:
  """AlexNet's PCA colour noise: adds sum_j eigvec_j * alpha_j * eigval_j, alpha_j ~ N(0, alphastd).

  One draw per image, the same shift for every pixel. The ImageNet eigenvalues are for pixels in
  [0, 1]; here they are scaled by 255 because ops before ``normalize`` see 0..255 values. Returns
  float32, unclipped (as fb.resnet.torch), so it must come before ``normalize``. RGB images only.
  """
  eigval = tf.constant(IMAGENET_PCA_EIGVAL, tf.float32)
  eigvec = tf.constant(IMAGENET_PCA_EIGVEC, tf.float32)
  def op(image, seed):
    alpha = tf.random.stateless_normal([3], seed, stddev=alphastd)
    shift = 255.0 * tf.linalg.matvec(eigvec, alpha * eigval)
    return tf.cast(image, tf.float32) + shift
  return op


@register_example_op
def random_dihedral() -> ExampleOp:
  """One of the 8 symmetries of a square board per example, uniformly (AlphaGo's augmentation).

  The 4 rotations and their transposes (``cnn_jax.data.symmetry``) of the [size, size, C] image;
  the label, a point index ``r * size + c``, moves with its point, and so does the example's
  ``label_mask`` (one entry per point) when it has one. Examples without a label (shape tracing)
  move only the image.
  """
  def op(example, seed):
    image = example['image']
    size = image.shape[0]
    if size is None or image.shape.rank != 3 or image.shape[1] != size:
      raise ConfigError(f'random_dihedral: needs square [size, size, C] images of a fixed size '
                        f'(a board), got {image.shape}: resize or crop to a square before it.')
    t = tf.random.stateless_uniform([], seed, 0, symmetry.NUM_SYMMETRIES, dtype=tf.int32)
    gather = tf.constant(symmetry.permutations(size))[t]
    out = dict(example)
    points = tf.reshape(image, [size * size, -1])
    out['image'] = tf.reshape(tf.gather(points, gather), [size, size, -1])
    if 'label' in example:
      out['label'] = tf.gather(tf.constant(symmetry.inverse_permutations(size))[t], example['label'])
    if LABEL_MASK in example:
      out[LABEL_MASK] = tf.gather(example[LABEL_MASK], gather)
    return out
  return op


def _preset(value: Any, index: int, what: str) -> Any:
  if not isinstance(value, str):
    return value
  if value not in NORMALIZE_PRESETS:
    raise ConfigError(f'normalize: unknown {what} preset {value!r}. Presets: '
                      f'{", ".join(sorted(NORMALIZE_PRESETS))}.')
  return NORMALIZE_PRESETS[value][index]


@register_op
def normalize(mean: float | Sequence[float] | str = 0.5,
              std: float | Sequence[float] | str | None = None) -> Op:
  """0..255 pixels to float32 (x / 255 - mean) / std, per channel where mean/std are sequences.

  ``mean`` or ``std`` may name a preset (``normalize('imagenet')``, see NORMALIZE_PRESETS); the
  std defaults to the preset's when ``mean`` names one, else to 0.25.
  """
  if std is None:
    std = mean if isinstance(mean, str) else 0.25
  mean_t, std_t = _per_channel(_preset(mean, 0, 'mean')), _per_channel(_preset(std, 1, 'std'))
  def op(image, seed):
    del seed
    channels = image.shape[-1]
    for values in (mean_t, std_t):  # broadcasting would silently turn 1 channel into 3
      if channels is not None and values.shape[0] not in (1, channels):
        raise ConfigError(f'normalize: {values.shape[0]} mean/std values for {channels}-channel images.')
    return (tf.cast(image, tf.float32) / 255.0 - mean_t) / std_t
  op.mean_std = (_preset(mean, 0, 'mean'), _preset(std, 1, 'std'))  # read by input_to_pixels
  return op


def _parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
  try:
    node = ast.parse(text.strip(), mode='eval').body
  except SyntaxError as e:
    raise ConfigError(f'cannot parse preprocessing op {text!r}: write it as name(arg, key=value)') from e
  if isinstance(node, ast.Name):
    return node.id, [], {}
  if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
    raise ConfigError(f'cannot parse preprocessing op {text!r}: write it as name(arg, key=value)')
  try:
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
  except ValueError as e:
    raise ConfigError(f'preprocessing op {text!r}: arguments must be literals') from e
  return node.func.id, args, kwargs


def _check_order(spec: str, names: list[str]) -> None:
  """Rejects orders that would run but compute the wrong thing (see the module docstring)."""
  for i, name in enumerate(names):
    before = names[:i]
    if name in _ENCODED_INPUT_OPS and i > 0:
      raise ConfigError(f'preprocessing {spec!r}: {name} reads encoded image bytes, so it must be '
                        f'the first op.')
    if name in _PIXEL_SCALE_OPS and 'normalize' in before:
      raise ConfigError(f'preprocessing {spec!r}: {name} works on 0..255 pixel values, so it must '
                        f'come before normalize.')
    if 'ten_crop' in before and name not in _MULTI_VIEW_OPS:
      raise ConfigError(f'preprocessing {spec!r}: only {", ".join(sorted(_MULTI_VIEW_OPS))} may '
                        f'follow ten_crop (it turns the image into 10 views).')


def parse(spec: str) -> list[Op]:
  """Builds the ops of a pipe-separated spec; unknown names raise ConfigError listing valid ones."""
  ops, names = [], []
  for text in filter(str.strip, spec.split('|')):
    name, args, kwargs = _parse_call(text)
    if name not in _OPS:
      close = difflib.get_close_matches(name, _OPS, n=1)
      hint = f' Did you mean {close[0]}?' if close else ''
      raise ConfigError(f'unknown preprocessing op {name!r}.{hint} Valid ops: {", ".join(op_names())}.')
    try:
      ops.append(_OPS[name](*args, **kwargs))
    except TypeError as e:
      raise ConfigError(f'preprocessing op {text.strip()!r}: {e}') from e
    names.append(name)
  _check_order(spec, names)
  return ops


def input_to_pixels(spec: str) -> tuple[np.ndarray, np.ndarray]:
  """``(scale, offset)``, per channel, such that ``model_input * scale + offset`` is the image as
  pixels in [0, 1]: the inverse of the pipe's ``normalize`` (``/ 255`` without one), for showing
  what the model saw. The ops after normalize are geometric (``parse`` checks), so they keep it."""
  found = [op.mean_std for op in parse(spec) if hasattr(op, 'mean_std')]
  if not found:
    return np.full((1,), 1 / 255.0, np.float32), np.zeros((1,), np.float32)
  mean, std = (np.atleast_1d(np.asarray(v, np.float32)) for v in found[-1])
  return std, mean


def apply_example(ops: Sequence[Op | ExampleOp], example: Example, seed: tf.Tensor) -> Example:
  """Runs ``ops`` in order on one example (``image``, ``label``, other features), giving each its
  own seed split from ``seed``: image ops get ``example['image']``, example ops the whole dict."""
  seeds = tf.random.experimental.stateless_split(seed, num=max(len(ops), 1))
  example = dict(example)
  for i, op in enumerate(ops):
    if getattr(op, 'transforms_example', False):
      example = op(example, seeds[i])
    else:
      example['image'] = op(example['image'], seeds[i])
  return example


def apply(ops: Sequence[Op | ExampleOp], image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """The image ``ops`` make of ``image`` alone (an example without label or other features)."""
  return apply_example(ops, {'image': image}, seed)['image']
