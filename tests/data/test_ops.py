"""Preprocessing ops one example at a time: crops, views, colour noise, presets, order rules."""
import numpy as np
import pytest
import tensorflow as tf

from cnn_jax import ConfigError
from cnn_jax.data import ops


def _seed(i: int, base: int = 0) -> tf.Tensor:
  return tf.constant([base, i], tf.int64)


def _run(spec: str, image, seed: int = 0) -> np.ndarray:
  return ops.apply(ops.parse(spec), tf.convert_to_tensor(image), _seed(seed)).numpy()


def _smooth_image(height: int = 90, width: int = 120) -> np.ndarray:
  """Gradients in every channel: JPEG keeps it almost exactly and every window looks different."""
  y, x = np.mgrid[0:height, 0:width]
  return np.stack([x * 2, y * 2, x + y], -1).astype(np.uint8)


def test_inception_crop_windows_cover_the_configured_area_and_aspect():
  shape = tf.constant([90, 120, 3])
  windows = np.array([ops._sample_crop_window(shape, _seed(i), (0.08, 1.0), (0.75, 4 / 3)).numpy()
                      for i in range(300)])
  top, left, height, width = windows.T
  assert np.all((top >= 0) & (left >= 0) & (top + height <= 90) & (left + width <= 120))
  area = height * width / (90 * 120)
  assert area.min() >= 0.08 - 0.01 and area.max() <= 1.0
  assert area.min() < 0.2 and area.max() > 0.8  # the whole range is used, not one scale
  ratio = width / height
  whole_image = area == 1.0  # the fallback after ten failed attempts
  assert np.all((ratio[~whole_image] > 0.75 - 0.05) & (ratio[~whole_image] < 4 / 3 + 0.05))
  assert len({tuple(w) for w in windows}) > 250
  # The range is configurable: about a quarter of the area, about square.
  quarter = np.array([ops._sample_crop_window(shape, _seed(i), (0.2, 0.3), (0.9, 1.1)).numpy()
                      for i in range(20)])
  area, ratio = quarter[:, 2] * quarter[:, 3] / (90 * 120), quarter[:, 3] / quarter[:, 2]
  assert np.all((area >= 0.2) & (area <= 0.3)) and np.all((ratio > 0.85) & (ratio < 1.15))


def test_inception_crop_resizes_the_sampled_window():
  image = _smooth_image()
  crop, = ops.parse('inception_crop(32)')
  outputs = []
  for i in range(5):
    top, left, height, width = ops._sample_crop_window(tf.constant(image.shape), _seed(i),
                                                       (0.08, 1.0), (0.75, 4 / 3)).numpy()
    expected = tf.image.resize(image[top:top + height, left:left + width], [32, 32])
    out = crop(tf.constant(image), _seed(i)).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.clip(np.round(expected.numpy()), 0, 255))
    outputs.append(out)
  np.testing.assert_array_equal(crop(tf.constant(image), _seed(0)).numpy(), outputs[0])  # same seed
  assert all(not np.array_equal(outputs[0], other) for other in outputs[1:])  # other seeds differ


def test_fused_decode_and_crop_matches_decode_then_crop():
  image = _smooth_image()
  encoded = tf.io.encode_jpeg(image, quality=95)
  fused, = ops.parse('decode_inception_crop(32)')
  decode, crop = ops.parse('decode | inception_crop(32)')
  assert ops.encoded_input([fused]) == 'jpeg' and ops.encoded_input([decode]) == 'any'
  assert ops.encoded_input([crop]) is None
  decoded = decode(encoded, None)
  np.testing.assert_array_equal(decoded.numpy(), tf.io.decode_jpeg(encoded).numpy())
  for i in range(6):
    a = fused(encoded, _seed(i)).numpy().astype(int)
    b = crop(decoded, _seed(i)).numpy().astype(int)
    other = crop(decoded, _seed(i, base=1)).numpy().astype(int)
    # Same window; only chroma upsampling at the window border may differ by a level or two.
    assert a.shape == (32, 32, 3) and np.abs(a - b).max() <= 3 and np.abs(a - b).mean() < 0.1
    assert np.abs(a - other).mean() > 3  # a different window is far off: the check has teeth


def test_ten_crop_gives_corners_centre_and_their_mirrors():
  image = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3)
  views = _run('ten_crop((4, 6))', image)
  assert views.shape == (10, 4, 6, 3) and views.dtype == np.uint8
  five = [image[0:4, 0:6], image[0:4, 3:9], image[3:7, 0:6], image[3:7, 3:9], image[1:5, 1:7]]
  expected = np.stack(five + [view[:, ::-1] for view in five])
  np.testing.assert_array_equal(views, expected)
  # A square size and normalize after it: each view is normalised alike.
  normalised = _run('ten_crop(4) | normalize(mean=0.5, std=0.5)', image)
  np.testing.assert_allclose(normalised[4], (image[1:5, 2:6] / 255.0 - 0.5) / 0.5, atol=1e-6)


def test_central_crop_and_resize_small_keep_the_middle_and_the_aspect():
  image = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3)
  np.testing.assert_array_equal(_run('central_crop(3)', image), image[2:5, 3:6])
  np.testing.assert_array_equal(_run('central_crop((2, 5))', image), image[2:4, 2:7])
  assert _run('resize_small(16)', np.zeros((32, 64, 3), np.uint8)).shape == (16, 32, 3)
  assert _run('resize_small(16)', np.zeros((64, 32, 3), np.uint8)).shape == (32, 16, 3)
  assert _run('resize_small(16)', np.zeros((30, 45, 1), np.uint8)).shape == (16, 24, 1)
  # Columns encode their position: the centre crop of the resized image holds the middle columns.
  columns = np.broadcast_to((np.arange(64) * 4).astype(np.uint8)[None, :, None], (32, 64, 3))
  crop = _run('resize_center_crop(8, 16)', columns)
  assert crop.shape == (8, 8, 3) and crop.dtype == np.uint8
  assert np.all(np.diff(crop[0, :, 0].astype(int)) > 0)  # still left-to-right increasing
  assert abs(crop.mean() - columns.mean()) < 8  # the middle, not an edge
  np.testing.assert_array_equal(crop, _run('resize_small(16) | central_crop(8)', columns))
  assert _run('resize_center_crop(224)', np.zeros((300, 400, 3), np.uint8)).shape == (224, 224, 3)


def test_torchvisions_arithmetic_for_the_resized_size_and_the_crop_offsets():
  # 600x512 to a shorter side of 232: 271.875 rows, rounded by default, truncated by torchvision
  assert _run('resize_small(232)', np.zeros((600, 512, 1), np.uint8)).shape == (272, 232, 1)
  assert _run("resize_small(232, long_side='floor')",
              np.zeros((600, 512, 1), np.uint8)).shape == (271, 232, 1)
  # exact quotients stay exact (float32 would make 300 of 256 * 600 / 512 = 299.99...)
  assert _run("resize_small(256, long_side='floor')",
              np.zeros((600, 512, 1), np.uint8)).shape == (300, 256, 1)
  # margins of 3 and 5: floor puts 1 and 2 rows before the window, half to even 2 and 2
  rows = np.arange(8 * 10, dtype=np.uint8).reshape(8, 10, 1)
  np.testing.assert_array_equal(_run('central_crop((5, 5))', rows), rows[1:6, 2:7])
  np.testing.assert_array_equal(_run("central_crop((5, 5), offset='round')", rows), rows[2:7, 2:7])
  np.testing.assert_array_equal(_run("central_crop((4, 4), offset='round')", rows), rows[2:6, 3:7])
  for spec in ("resize_small(8, long_side='ceil')", "central_crop(8, offset='ceil')",
               "decode(dct_method='FAST')"):
    with pytest.raises(ConfigError, match='must be one of'):
      ops.parse(spec)


def test_decode_with_the_accurate_dct_differs_from_tfs_default_and_passes_png_through():
  image = (np.random.RandomState(0).rand(48, 64, 3) * 255).astype(np.uint8)
  jpeg = tf.io.encode_jpeg(image, quality=90)
  accurate, = ops.parse("decode(dct_method='INTEGER_ACCURATE')")
  default, = ops.parse('decode')
  np.testing.assert_array_equal(accurate(jpeg, None).numpy(),
                                tf.io.decode_jpeg(jpeg, dct_method='INTEGER_ACCURATE').numpy())
  assert not np.array_equal(accurate(jpeg, None).numpy(), default(jpeg, None).numpy())
  np.testing.assert_array_equal(accurate(tf.io.encode_png(image), None).numpy(), image)


def test_central_crop_of_a_too_small_image_fails():
  with pytest.raises(tf.errors.InvalidArgumentError):
    _run('central_crop(10)', np.zeros((8, 8, 3), np.uint8))


def test_lighting_shifts_colour_along_the_imagenet_principal_components():
  image = np.full((4, 5, 3), 100, np.uint8)
  light, = ops.parse('lighting(0.1)')
  shifts = []
  for i in range(400):
    out = light(tf.constant(image), _seed(i)).numpy()
    assert out.dtype == np.float32
    shift = out - 100.0
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)
    shifts.append(shift[0, 0])
  shifts = np.array(shifts)
  assert abs(shifts.mean(0)).max() < 1.0  # zero-mean noise
  # The dominant direction is the first eigenvector (a column: the brightness axis), with standard
  # deviation 255 * 0.1 * 0.2175 = 5.5 pixel levels, as in AlexNet (0.1 * 55.46).
  _, singular, directions = np.linalg.svd(shifts - shifts.mean(0), full_matrices=False)
  brightness = np.array([0.5675, 0.5808, 0.5836])
  assert abs(directions[0] @ brightness) / np.linalg.norm(brightness) > 0.99
  assert singular[0] / np.sqrt(len(shifts)) == pytest.approx(255 * 0.1 * 0.2175, rel=0.12)
  np.testing.assert_array_equal(_run('lighting(0.0)', image), image.astype(np.float32))


def test_normalize_presets_and_explicit_values():
  white = np.full((2, 2, 3), 255, np.uint8)
  black = np.zeros((2, 2, 3), np.uint8)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(_run('normalize("imagenet")', white)[0, 0], (1 - mean) / std, rtol=1e-6)
  np.testing.assert_allclose(_run('normalize(mean="imagenet")', black)[0, 0], -mean / std, rtol=1e-6)
  cifar_mean, cifar_std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
  np.testing.assert_allclose(_run('normalize("cifar10")', black)[0, 0], -cifar_mean / cifar_std, rtol=1e-5)
  # An explicit std overrides the preset's; without a preset the std defaults to 0.25.
  np.testing.assert_allclose(_run('normalize("imagenet", std=0.5)', black)[0, 0], -mean / 0.5, rtol=1e-6)
  np.testing.assert_allclose(_run('normalize(mean=0.5)', black), -2.0)
  np.testing.assert_allclose(_run('normalize("mnist")', black[..., :1]), -0.1307 / 0.3081, rtol=1e-5)
  # normalize takes lighting's float output on the same 0..255 scale.
  np.testing.assert_allclose(_run('lighting(0.0) | normalize("imagenet")', white),
                             _run('normalize("imagenet")', white), rtol=1e-6)
  with pytest.raises(ConfigError, match=r"unknown mean preset 'imagenet1k'.*Presets: cifar10, cifar100, .*imagenet, .*mnist"):
    ops.parse('normalize("imagenet1k")')
  with pytest.raises(ConfigError, match='3 mean/std values for 1-channel images'):
    _run('normalize("imagenet")', black[..., :1])


@pytest.mark.parametrize('spec, message', [
    ('flip_lr | decode', 'decode reads encoded image bytes, so it must be the first op'),
    ('resize(8) | decode_inception_crop(4)', 'decode_inception_crop reads encoded image bytes'),
    ('normalize | lighting', 'lighting works on 0..255 pixel values, so it must come before normalize'),
    ('normalize("imagenet") | resize_center_crop(4)', 'resize_center_crop works on 0..255'),
    ('ten_crop(4) | flip_lr | normalize', 'only normalize may follow ten_crop'),
    ('inception_crop(4, area_min=0.0)', 'need 0 < area_min <= area_max <= 1'),
    ('inception_crop(4, ratio_min=1.5, ratio_max=1.0)', 'need 0 < ratio_min <= ratio_max'),
    ('resize_center_crop(224, 200)', 'resize_size must be >= size'),
])
def test_op_order_and_argument_mistakes_are_config_errors(spec, message):
  with pytest.raises(ConfigError, match=message):
    ops.parse(spec)


def test_geometric_ops_may_follow_normalize():
  image = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
  out = _run('normalize | central_crop(4) | ten_crop(2)', image)
  assert out.shape == (10, 2, 2, 3) and out.dtype == np.float32


def _dihedral(board: np.ndarray, t: int) -> np.ndarray:
  """Transform ``t`` of cnn_jax.data.symmetry, written with numpy's own rotations."""
  turned = np.rot90(board, t % 4)
  return np.swapaxes(turned, 0, 1) if t >= 4 else turned


def test_symmetry_tables_are_the_eight_rotations_and_transposes():
  from cnn_jax.data import symmetry
  board = np.arange(5 * 5).reshape(5, 5)
  perms, inverse = symmetry.permutations(5), symmetry.inverse_permutations(5)
  assert len({tuple(p) for p in perms}) == 8
  for t in range(8):
    np.testing.assert_array_equal(board.ravel()[perms[t]], _dihedral(board, t).ravel())
    np.testing.assert_array_equal(perms[t][inverse[t]], np.arange(25))


def test_random_dihedral_moves_the_label_and_its_mask_with_the_board():
  """A stone at (r, c) and label r*19+c: after the op the label's point holds the stone, under
  every one of the 8 transforms; the per-point label_mask moves like the planes."""
  size, r, c = 19, 3, 11  # off every axis and diagonal: the 8 images of the point all differ
  rng = np.random.default_rng(0)
  planes = rng.integers(0, 200, (size, size, 3)).astype(np.uint8)
  planes[..., 0] = 0
  planes[r, c, 0] = 1
  label_mask = rng.integers(0, 2, size * size).astype(np.uint8)
  example = {'image': tf.constant(planes), 'label': tf.constant(r * size + c, tf.int32),
             'label_mask': tf.constant(label_mask), 'other': tf.constant(7)}
  op, = ops.parse('random_dihedral')
  seen = set()
  for i in range(64):
    out = {k: v.numpy() for k, v in op(example, _seed(i)).items()}
    t, = [t for t in range(8) if np.array_equal(out['image'], _dihedral(planes, t))]
    seen.add(t)
    row, col = divmod(int(out['label']), size)
    assert out['image'][row, col, 0] == 1 and out['image'][..., 0].sum() == 1
    np.testing.assert_array_equal(out['label_mask'],
                                  _dihedral(label_mask.reshape(size, size), t).ravel())
    assert out['label'].dtype == np.int32 and out['other'] == 7  # other features pass unchanged
    again = op(example, _seed(i))  # deterministic per seed
    np.testing.assert_array_equal(again['image'].numpy(), out['image'])
  assert seen == set(range(8))


def test_example_ops_and_image_ops_share_one_pipe():
  """Image ops see the image of the example, in the pipe's order, with the seeds they always had."""
  image = np.arange(8 * 8 * 2, dtype=np.uint8).reshape(8, 8, 2)
  image_only = ops.parse('pad_random_crop(2) | flip_lr | normalize')
  for i in range(4):
    example = ops.apply_example(image_only, {'image': tf.constant(image), 'label': tf.constant(3)},
                                _seed(i))
    np.testing.assert_array_equal(example['image'].numpy(), _run('pad_random_crop(2) | flip_lr | '
                                                                'normalize', image, seed=i))
    assert example['label'].numpy() == 3
  flip, dihedral, normalize = mixed = ops.parse('flip_lr | random_dihedral | normalize')
  label = tf.constant(13)
  for i in range(8):
    out = ops.apply_example(mixed, {'image': tf.constant(image), 'label': label}, _seed(i))
    seeds = tf.random.experimental.stateless_split(_seed(i), 3)
    by_hand = dihedral({'image': flip(tf.constant(image), seeds[0]), 'label': label}, seeds[1])
    np.testing.assert_array_equal(out['image'].numpy(),
                                  normalize(by_hand['image'], seeds[2]).numpy())
    assert out['label'].numpy() == by_hand['label'].numpy()
  with pytest.raises(ConfigError, match=r'random_dihedral: needs square .* got \(6, 8, 1\)'):
    _run('random_dihedral', np.zeros((6, 8, 1), np.uint8))
