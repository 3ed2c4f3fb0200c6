"""The start-up function (cnn_jax.runtime.start): the XLA flags it sets, that every entry point
calls it and nothing else sets them, and what the flags do to the compiled programs."""
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import ConfigError, runtime
from cnn_jax.models import layers

from conftest import REPO


@pytest.mark.parametrize('given, expected', [
    ('', '--xla_disable_hlo_passes=cse_barrier_expander '
         '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    # the user's passes are kept and the barrier's pass is added to them
    ('--xla_disable_hlo_passes=foo --xla_force_host_platform_device_count=2',
     '--xla_disable_hlo_passes=foo,cse_barrier_expander --xla_force_host_platform_device_count=2 '
     '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'),
    # the user's own choice of library fusions wins
    ('--xla_cpu_experimental_ynn_fusion_type=individual_dot',
     '--xla_cpu_experimental_ynn_fusion_type=individual_dot '
     '--xla_disable_hlo_passes=cse_barrier_expander'),
])
def test_xla_flags_extend_the_users(given, expected):
  assert runtime.merge_xla_flags(given) == expected
  assert runtime.merge_xla_flags(expected) == expected  # merging again adds nothing


def test_start_is_idempotent_and_refuses_to_come_after_the_backend(monkeypatch):
  jax.devices()  # the backend has started (the tests' conftest called start() before)
  flags = os.environ['XLA_FLAGS']
  runtime.start()  # the flags are in place: nothing to change, no error
  assert os.environ['XLA_FLAGS'] == flags
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  with pytest.raises(RuntimeError, match='after JAX started its backend'):
    runtime.start()
  assert os.environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=2'


# (file, where): every program that runs JAX, and the function (or code) that calls runtime.start().
ENTRY_POINTS = [
    ('cnn_jax/main.py', 'def main('),
    ('cnn_jax/summary.py', 'def main('),
    ('cnn_jax/evaluate.py', 'def main('),
    ('cnn_jax/visualize.py', 'def main('),
    ('cnn_jax/convert.py', 'def main('),
    ('cnn_jax/go/baselines.py', 'def main('),
    ('cnn_jax/go/generate.py', 'def main('),
    ('experiments/sweep.py', 'def main('),
    ('experiments/report.py', 'def main('),
    ('benchmarks/conv_kernels.py', 'def jax_worker('),
    ('benchmarks/go_features.py', 'def main('),
    ('benchmarks/grouped_conv.py', 'def main('),
    ('benchmarks/input_pipeline.py', 'def main('),
    ('benchmarks/profile_step.py', 'def main('),
    ('benchmarks/resnet_depth.py', 'def main('),
    ('benchmarks/vs_pytorch.py', 'def jax_worker('),
    ('benchmarks/warm_start.py', '_START = '),
]


@pytest.mark.parametrize('path, function', ENTRY_POINTS)
def test_entry_points_call_start_first(path, function):
  with open(os.path.join(REPO, path)) as f:
    source = f.read()
  body = source[source.index(function):]
  body = body[:body.index('\n\n\n')] if '\n\n\n' in body else body
  # cnn_jax's programs start with runtime.start_program(argv) (start(), stray arguments as one line)
  call = 'runtime.start_program(argv' if path.startswith('cnn_jax/') else 'runtime.start()'
  assert call in body, f'{path}: {function} does not call {call})'
  # before the first use of JAX in that function
  uses = [m.start() for m in re.finditer(r'import jax|(?<!\w)jax\.|(?<!\w)train\.|step\(', body)]
  assert body.index(call) < min(uses, default=len(body)), path
  if path.startswith('cnn_jax/'):  # its ConfigError is one line too
    assert body.index('with cnn_jax.one_line_errors():') < body.index(call), path


def test_a_stray_argument_is_one_line_naming_the_flag_syntax():
  with pytest.raises(ConfigError, match=r'^unexpected arguments: 0\.1: options are flags, '
                     r'written --name=value\.$'):
    runtime.start_program(['cnn_jax.main', '0.1'])


def test_every_benchmark_is_listed():
  benchmarks = {f'benchmarks/{name}' for name in os.listdir(os.path.join(REPO, 'benchmarks'))
                if name.endswith('.py')}
  assert benchmarks <= {path for path, _ in ENTRY_POINTS}


def test_imports_change_nothing_and_the_summary_program_sets_the_flags():
  """``import cnn_jax`` (and its data and models) leaves XLA_FLAGS alone; running the summary
  program sets them, before JAX's backend starts (start() would raise otherwise)."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  program = ('import atexit, os, runpy\n'
             'import cnn_jax, cnn_jax.data, cnn_jax.models, cnn_jax.train\n'
             'assert "XLA_FLAGS" not in os.environ, os.environ["XLA_FLAGS"]\n'
             'atexit.register(lambda: print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", "")))\n'
             'runpy.run_module("cnn_jax.summary", run_name="__main__")\n')
  result = subprocess.run([sys.executable, '-c', program, '--model=lenet5'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'lenet5' in result.stdout.lower()
  assert result.stdout.strip().splitlines()[-1] == 'XLA_FLAGS=' + runtime.merge_xla_flags('')


def test_compiled_block_keeps_its_barrier_and_eigen_convolutions():
  def block(x, kernel):
    y = layers.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return layers.checkpoint_block_output(x + jax.nn.relu(y))

  def loss(x, kernel):
    return jnp.sum(block(block(x, kernel), kernel) ** 2)

  # big enough for YNNPACK to take the convolutions when allowed
  x, kernel = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32)) * 0.01
  hlo = jax.jit(jax.grad(loss, argnums=1)).lower(x, kernel).compile().as_text()
  assert 'opt-barrier' in hlo, "cse_barrier_expander removed the residual blocks' barriers"
  # the computations that convolve, and those that YNNPACK fusions call
  computations = [c for c in hlo.split('\n\n') if c.strip()]
  convolving = {c.split()[0].lstrip('%') for c in computations if ' convolution(' in c}
  ynn_called = set(re.findall(r'ynn_fusion[.\d]* = .*calls=%([\w.]+)', hlo))
  assert convolving, hlo
  assert not convolving & ynn_called, f'convolutions in YNNPACK fusions: {convolving & ynn_called}'
