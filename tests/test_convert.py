"""torchvision's weights in cnn_jax (cnn_jax.convert): the same logits as torchvision for every
family, every torchvision-layout registry entry mapped variable for variable, the workdir it writes,
and one-line errors.

The logits tests use random torchvision weights (BatchNorm statistics and biases random too, so that
a swapped mean and variance shows) on small inputs; the every-entry check uses shapes only: the
torchvision models are built on PyTorch's meta device and ours traced with ``jax.eval_shape``.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import jax
import matplotlib.cbook
import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf
from PIL import Image

# torchvision imports torch._dynamo, which loads triton, whose own LLVM crashes a process that has
# loaded TensorFlow's (the test modules collected before this one import TensorFlow). Nothing here
# compiles with torch: triton stays out, as in PyTorch's CPU-only wheels.
sys.modules.setdefault('triton', None)
import torch  # noqa: E402
import torchvision  # noqa: E402

from cnn_jax import ConfigError, checkpoint, convert, evaluate, models, summary, train
from cnn_jax import workdir as workdir_lib
from cnn_jax.data import IMAGENET_MEAN_STD, ops as ops_lib
from tests.conftest import REPO, xla_flags

README = os.path.join(REPO, 'README.md')
# One thread per xdist worker: PyTorch's threads spin against the other worker's (DenseNet-121's
# forward pass at 32x32 took 0.6 s with 2 threads, 0.06 s with 1, on this 2-core machine).
torch.set_num_threads(1)
TORCHVISION_LAYOUT = [n for n in models.names()
                      if any(p.source == convert.TORCHVISION for p in models.info(n).published)]


def torch_model(name: str, seed: int = 0) -> torch.nn.Module:
  """torchvision's network of the registry entry ``name`` in eval mode, every tensor random: conv
  and dense weights N(0, 1/fan_in), biases and BatchNorm means N(0, 0.1), BatchNorm scales and
  variances U(0.5, 1.5). Built on the meta device first: nothing is initialised twice."""
  with torch.device('meta'):
    model = torchvision.models.get_model(convert.torchvision_name(name))
  model = model.to_empty(device='cpu').eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for key, tensor in model.state_dict().items():
      if not tensor.is_floating_point():
        tensor.zero_()
      elif tensor.ndim > 1:
        tensor.normal_(0, tensor[0].numel() ** -0.5, generator=generator)
      elif key.endswith(('running_var', 'weight')):
        tensor.uniform_(0.5, 1.5, generator=generator)
      else:
        tensor.normal_(0, 0.1, generator=generator)
  return model


def state_dict_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {key: tensor.numpy() for key, tensor in model.state_dict().items()}


def torch_logits(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()


def our_logits(name: str, variables, images: np.ndarray) -> np.ndarray:
  model = models.get_model(name)
  return np.asarray(jax.jit(functools.partial(model.apply, train=False))(variables, images))


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
  return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def images(height: int, width: int, batch: int = 2) -> np.ndarray:
  return np.random.RandomState(1).randn(batch, height, width, 3).astype(np.float32)


def meta_shapes(name: str) -> dict[str, tuple[int, ...]]:
  with torch.device('meta'):
    model = torchvision.models.get_model(convert.torchvision_name(name))
  return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def legacy_densenet_name(key: str) -> str:
  """The name a published DenseNet file gives the tensor (norm1 -> norm.1, ...)."""
  return re.sub(r'(denselayer\d+\.(?:norm|conv))([12])\.', r'\1.\2.', key)


# ---------------------------------------------------------------------------------------------
# The logits


# The smallest member of each family; VGG and AlexNet at sizes whose last maps (2x3, 3x2) the
# adaptive pool stretches to 7x7 / 6x6, so that the (C, H, W) -> (H, W, C) permutation of the first
# dense layer meets a map that varies along both axes. ResNet-18 is checked through a file below.
@pytest.mark.parametrize('name, height, width', [
    ('vgg11', 64, 96), ('vgg11_bn', 64, 96), ('alexnet_tv', 127, 95), ('densenet121', 32, 32),
    ('resnext50_32x4d', 32, 32), ('wide_resnet50_2', 32, 32)])
def test_converted_model_gives_torchvisions_logits(name, height, width):
  theirs = torch_model(name)
  x = images(height, width)
  # as torchvision publishes the weights: its DenseNet files have the legacy names
  tensors = {legacy_densenet_name(key): value for key, value in state_dict_arrays(theirs).items()}
  variables = convert.convert_state_dict(name, tensors)
  assert relative_difference(our_logits(name, variables, x), torch_logits(theirs, x)) < 1e-4


# ---------------------------------------------------------------------------------------------
# Every torchvision-layout registry entry, shapes only


@pytest.mark.parametrize('name', TORCHVISION_LAYOUT)
def test_every_variable_is_filled_once_from_a_tensor_and_every_tensor_used(name):
  if name not in convert.torchvision_models():
    # torchvision's counts, not its network: the paper's v1 ResNets, which torchvision does not have
    assert convert.torchvision_name(name) not in torchvision.models.list_models()
    with pytest.raises(ConfigError, match=r'not its network .* convert into resnet\d+\.'):
      convert.plan(name, {})
    return
  shapes = meta_shapes(name)
  assignments = convert.plan(name, shapes)
  ours = convert.registry_variable_shapes(name)
  assert sorted((a.collection, *a.path) for a in assignments) == sorted(ours)
  used = [a.key for a in assignments]
  assert len(set(used)) == len(used)
  assert set(used) == {k for k in shapes if not k.endswith('num_batches_tracked')}
  if name.startswith('densenet'):  # the files torchvision publishes, with their legacy names
    legacy = {legacy_densenet_name(k): v for k, v in shapes.items()}
    assert legacy != shapes
    assert [a.key for a in convert.plan(name, legacy)] == used


# ---------------------------------------------------------------------------------------------
# The weights' evaluation transforms and published accuracies


def torchvision_weights(name: str):
  """torchvision's enum members of ``name``'s ImageNet weights that convert writes a config for."""
  return [w for w in torchvision.models.get_model_weights(convert.torchvision_name(name))
          if w.name in convert.WEIGHTS_VERSIONS]


def test_the_weights_table_is_torchvisions_own():
  table = {}
  for name in convert.torchvision_models():
    for w in torchvision_weights(name):
      transform = w.transforms()
      assert transform.interpolation == torchvision.transforms.InterpolationMode.BILINEAR
      assert transform.antialias is True
      assert (tuple(transform.mean), tuple(transform.std)) == IMAGENET_MEAN_STD
      table[w.url.rsplit('/', 1)[1].removesuffix('.pth')] = (
          convert.torchvision_name(name), w.name, transform.resize_size[0], transform.crop_size[0])
  ours = {w.file: (w.model, w.version, w.resize_size, w.crop_size)
          for w in convert.TORCHVISION_WEIGHTS}
  assert ours == table
  # normalize('imagenet'), which the configs' eval ops name, holds torchvision's numbers
  assert ops_lib.NORMALIZE_PRESETS['imagenet'] == IMAGENET_MEAN_STD


@pytest.mark.parametrize('version', convert.WEIGHTS_VERSIONS)
def test_eval_ops_give_the_input_torchvisions_transform_gives_a_photo(version):
  """A 600x512 JPEG through the converted config's eval ops and through torchvision's own
  transform (PIL, as its accuracies were measured): within one level of 255 everywhere. At 232 the
  long side (271.875) and the crop's margin (47) are where rounding rules differ."""
  path = matplotlib.cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
  weights = next(w for w in convert.TORCHVISION_WEIGHTS
                 if w.model == 'resnet50' and w.version == version)
  with open(path, 'rb') as f:
    ours = ops_lib.apply(ops_lib.parse(weights.eval_ops), tf.constant(f.read()),
                         tf.constant([0, 0], tf.int64)).numpy()
  published = torchvision.models.get_weight(f'ResNet50_Weights.{version}')
  theirs = published.transforms()(Image.open(path).convert('RGB')).numpy().transpose(1, 2, 0)
  levels = np.abs(ours - theirs) * np.asarray(IMAGENET_MEAN_STD[1]) * 255
  assert ours.shape == theirs.shape == (224, 224, 3)
  assert levels.max() < 1.01 and levels.mean() < 0.25


def readme_table_rows() -> list[str]:
  """The README's table of converted weights, from the registry and torchvision's metadata."""
  rows = []
  for name in convert.torchvision_models():
    for w in torchvision_weights(name):
      ours = next(x for x in convert.TORCHVISION_WEIGHTS
                  if x.model == convert.torchvision_name(name) and x.version == w.name)
      metrics = w.meta['_metrics']['ImageNet-1K']
      rows.append(f'| `{name}` | {w.name} | `{ours.file}.pth` | {ours.resize_size} / '
                  f'{ours.crop_size} | {metrics["acc@1"]:.3f} | {metrics["acc@5"]:.3f} |')
  return rows


def test_readme_states_torchvisions_published_accuracies():
  with open(README) as f:
    section = f.read().split("## torchvision's ImageNet weights")[1].split('\n## ')[0]
  rows = [line for line in section.splitlines() if re.match(r'\| `\w+` \| IMAGENET1K', line)]
  assert rows == readme_table_rows()


# ---------------------------------------------------------------------------------------------
# The workdir


@pytest.fixture(scope='module')
def resnet18_run(tmp_path_factory):
  """ResNet-18's random weights saved as torchvision saves them, converted into a workdir."""
  theirs = torch_model('resnet18')
  folder = tmp_path_factory.mktemp('resnet18')
  path = str(folder / 'resnet18-f37072fd.pth')   # the name torchvision's V1 download has
  torch.save(theirs.state_dict(), path)
  out = str(folder / 'run')
  weights, _ = convert.convert('resnet18', path, out)
  return theirs, path, out, weights


def test_converted_workdir_evaluates_and_resumes_as_a_run(resnet18_run, data_dir):
  theirs, _, out, weights = resnet18_run
  assert weights.version == 'IMAGENET1K_V1' and weights.resize_size == 256
  saved = workdir_lib.load_config(out)
  assert saved.data.name == 'imagenet2012' and saved.data.eval_ops == weights.eval_ops
  assert saved.model.to_dict() == {'name': 'resnet18', 'num_classes': 1000}
  # load_variables (what init_from and visualisation read): the variables giving torchvision's logits
  tensors = state_dict_arrays(theirs)
  step, variables = checkpoint.load_variables(out)
  assert step == 0
  np.testing.assert_array_equal(variables['batch_stats']['stage4_block2']['bn2']['var'],
                                tensors['layer4.1.bn2.running_var'])
  x = images(32, 32)
  assert relative_difference(our_logits('resnet18', variables, x), torch_logits(theirs, x)) < 1e-4
  # evaluation, with the data pointed elsewhere (ImageNet is not here)
  config = workdir_lib.load_config(out)
  config.data.name = 'digits'
  config.data.data_dir = data_dir
  config.data.eval_ops = "to_rgb | resize(32) | normalize('imagenet')"
  config.data.eval_split = 'test[:4]'
  config.batch_size = 8
  evaluate.check_overrides(saved, config)
  results = evaluate.evaluate(config, out)
  assert results['step'] == 0 and results['eval']['num_examples'] == 4
  # resuming restores the whole train state: the weights and a fresh optimiser state
  state = jax.device_get(train.latest_state(config, out))
  assert state.step == 0
  np.testing.assert_array_equal(state.params['fc']['kernel'], tensors['fc.weight'].T)
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(state.opt_state))
  # summary --workdir: the model and the input its eval ops give
  assert summary.workdir_model(out) == ('resnet18', (224, 224, 3), {'num_classes': 1000})


def test_a_safetensors_file_converts_from_the_command_line_without_torch(tmp_path):
  """The command, in a process where importing torch fails; the file's name does not say which
  weights it holds, and ResNet-18 has only one (V1)."""
  arrays = state_dict_arrays(torch_model('resnet18', seed=1))
  path = str(tmp_path / 'my_resnet18.safetensors')
  safetensors.numpy.save_file(arrays, path)
  blocked = tmp_path / 'no_torch' / 'torch'
  blocked.mkdir(parents=True)
  (blocked / '__init__.py').write_text('raise ImportError("torch is not installed")\n')
  env = dict(os.environ, XLA_FLAGS=xla_flags(1),
             PYTHONPATH=os.pathsep.join([str(tmp_path / 'no_torch'), REPO]))
  out = str(tmp_path / 'run')
  result = subprocess.run([sys.executable, '-m', 'cnn_jax.convert', '--from=torchvision',
                           '--model=resnet18', f'--weights={path}', f'--out={out}'],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'IMAGENET1K_V1' in result.stdout and 'python -m cnn_jax.evaluate' in result.stdout
  _, variables = checkpoint.load_variables(out)
  expected = convert.convert_state_dict('resnet18', arrays)
  jax.tree.map(np.testing.assert_array_equal, variables, expected)


# ---------------------------------------------------------------------------------------------
# Mistakes: one line each


def test_a_missing_an_extra_and_a_misshapen_tensor_are_named():
  shapes = meta_shapes('resnet18')
  missing = dict(shapes)
  del missing['layer2.0.downsample.0.weight']
  with pytest.raises(ConfigError, match=r"no tensor 'layer2\.0\.downsample\.0\.weight' for "
                                        r"resnet18's params/stage2_block1/proj_conv/kernel"):
    convert.plan('resnet18', missing)
  with pytest.raises(ConfigError, match=r"1 tensor\(s\) that resnet18 has no variable for, e\.g\. "
                                        r"'layer5\.0\.conv1\.weight'"):
    convert.plan('resnet18', {**shapes, 'layer5.0.conv1.weight': (3, 3, 1, 1)})
  with pytest.raises(ConfigError, match=r"tensor 'fc\.weight' has shape \(10, 512\), resnet18's "
                                        r"params/fc/kernel needs \(1000, 512\)"):
    convert.plan('resnet18', {**shapes, 'fc.weight': (10, 512)})
  # weights left untrained as NaN (vgg16's IMAGENET1K_FEATURES classifier): never converted
  arrays = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}
  arrays['fc.bias'] = np.full((1000,), np.nan, np.float32)
  with pytest.raises(ConfigError, match=r"1 tensor\(s\) hold NaN or infinite values, e\.g\. "
                                        r"'fc\.bias'.*pass the IMAGENET1K_V1 file\."):
    convert.convert_state_dict('resnet18', arrays)
  # another architecture's state dict: its first missing tensor, and a question naming the model
  with pytest.raises(ConfigError, match=r'is it a torchvision resnet18 state dict\?'):
    convert.plan('resnet18', meta_shapes('vgg11'))


def test_wrong_models_and_weights_are_named(resnet18_run, tmp_path):
  _, path, out, _ = resnet18_run
  with pytest.raises(ConfigError, match=r"torchvision's resnet18 IMAGENET1K_V1 file, not "
                                        r"resnet34's: pass --model=resnet18"):
    convert.convert('resnet34', path, str(tmp_path / 'a'))
  with pytest.raises(ConfigError, match=r'vgg16_c is not one of torchvision.s networks that cnn_jax.convert knows'):
    convert.convert('vgg16_c', path, str(tmp_path / 'b'))
  with pytest.raises(ConfigError, match=r'already holds a cnn_jax run'):
    convert.convert('resnet18', path, out)
  with pytest.raises(ConfigError, match=r'but --weights_version=IMAGENET1K_V2'):
    convert.find_weights('resnet18', path, 'IMAGENET1K_V2')
  with pytest.raises(ConfigError, match=r'does not say which .*\(IMAGENET1K_V1, IMAGENET1K_V2.*'
                                        r'pass --weights_version'):
    convert.find_weights('resnet50', 'my_resnet50.safetensors')
  assert convert.find_weights('resnet50', 'my.pth', 'IMAGENET1K_V2').resize_size == 232
  assert convert.find_weights('vgg16', 'my.safetensors').version == 'IMAGENET1K_V1'  # its only one
  with pytest.raises(ConfigError, match=r'no IMAGENET1K_V2 weights of vgg16; it has IMAGENET1K_V1'):
    convert.find_weights('vgg16', 'my.pth', 'IMAGENET1K_V2')
  not_a_state_dict = str(tmp_path / 'list.pth')
  torch.save([torch.zeros(2)], not_a_state_dict)
  with pytest.raises(ConfigError, match=r'holds a list, not a state dict'):
    convert.read_state_dict(not_a_state_dict)
  with pytest.raises(ConfigError, match=r'is not a file'):
    convert.read_state_dict(str(tmp_path / 'absent.pth'))
  assert not os.path.exists(tmp_path / 'a') and not os.path.exists(tmp_path / 'b')
