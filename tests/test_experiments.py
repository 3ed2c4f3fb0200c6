"""Sweeps: the grid expands to one valid training command per point."""
import subprocess
import sys

from tests.conftest import REPO


def test_degradation_sweep_dry_run_lists_every_grid_point():
  result = subprocess.run([sys.executable, 'experiments/sweep.py', '--sweep=degradation', '--dry_run',
                           '--base_workdir=/tmp/s'], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 6  # depths 20/32/56 x residual True/False
  assert lines[-1].endswith('-m cnn_jax.main --config=configs/resnet_cifar.py '
                            '--workdir=/tmp/s/degradation/depth=56_residual=False '
                            '--config.model.depth=56 --config.model.residual=False')


def test_sweep_overrides_are_fields_of_the_config():
  """Every swept field exists in its config, so no run fails on a locked config."""
  sys.path.insert(0, REPO)
  from experiments import sweep
  from ml_collections import config_flags  # noqa: F401
  import importlib.util
  for config_path, axes in sweep.SWEEPS.values():
    path, _, arg = config_path.partition(':')
    spec = importlib.util.spec_from_file_location('cfg', f'{REPO}/{path}')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    for key in axes:
      node = config
      for part in key.split('.')[1:]:
        node = node[part]
