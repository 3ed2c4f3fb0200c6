"""cnn_jax's train step against PyTorch's on the same CPU: images/s, first-step time, their ratio.

  python benchmarks/vs_pytorch.py --torch_python=/opt/torch/bin/python [--repeats=3]
      [--cases=resnet20,resnet56,resnet110,resnet50] [--steps=10]

Every measurement is a fresh process, and the sides alternate (cnn_jax, PyTorch NCHW, PyTorch
channels_last, then again), so that both see the same machine; the table gives the median over
``--repeats`` alternations. PyTorch runs at its best here: as many threads as the process may use
cores, and the faster of its two memory layouts. Both sides train the same network (equal parameter
counts, checked) with the same step: softmax cross-entropy, SGD with momentum 0.9 and weight decay
1e-4, on a fixed random batch already in memory, so that only the step is timed.

PyTorch is not a dependency of cnn_jax: ``--torch_python`` is the python of an environment that has
it (``requirements-torch.txt``; the README's "Tests and benchmarks" says how to make one).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (cnn_jax registry name and arguments, input size, batch, torch model)
CASES = {
    'resnet20': (('resnet_cifar', {'depth': 20}), 32, 128, 10),
    'resnet56': (('resnet_cifar', {'depth': 56}), 32, 128, 10),
    'resnet110': (('resnet_cifar', {'depth': 110}), 32, 128, 10),
    'resnet50': (('resnet50', {}), 224, 8, 1000),
}
SIDES = ('cnn_jax', 'torch_nchw', 'torch_channels_last')
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4


def cores() -> int:
  return len(os.sched_getaffinity(0))


# ---------------------------------------------------------------------------------------------
# The cnn_jax side: the project's own train step (train.build, init_state, make_train_step)


def jax_step(case: str):
  """The project's train step for ``case`` with its initial state, zero sums and a fixed random
  batch already on the devices: (step, state, sums, images)."""
  sys.path.insert(0, REPO)
  import numpy as np
  from configs import default
  from cnn_jax import parallel, train
  from cnn_jax.data import pipeline
  (name, kwargs), size, batch, classes = CASES[case]
  config = default.get_config()
  config.model.unlock()
  config.model.update(name=name, **kwargs)
  config.batch_size = batch
  config.num_train_steps = 1_000_000
  config.optimizer.update(name='sgd', learning_rate=LEARNING_RATE, momentum=MOMENTUM,
                          nesterov=False, weight_decay=WEIGHT_DECAY, decay_all_params=True)
  config.schedule.update(name='constant', warmup=0)
  info = pipeline.DatasetInfo(num_classes=classes, image_shape=(size, size, 3), num_train=50_000,
                              num_eval=10_000)
  setup = train.build(config, info=info)
  state = train.init_state(setup, seed=0)
  sums = parallel.replicate(train.zero_train_sums(), setup.mesh)
  rng = np.random.default_rng(0)
  local = {'image': rng.standard_normal((batch, size, size, 3), np.float32),
           'label': rng.integers(0, classes, batch).astype(np.int32)}
  return train.make_train_step(setup, config), state, sums, parallel.global_batch(local, setup.mesh)


def jax_worker(case: str, steps: int) -> dict:
  started = time.perf_counter()
  sys.path.insert(0, REPO)
  from cnn_jax import runtime
  runtime.start()
  import jax
  step, state, sums, images = jax_step(case)
  batch = CASES[case][2]
  imported = time.perf_counter()
  state, sums = step(state, sums, images)
  jax.block_until_ready(state)
  first = time.perf_counter() - imported
  state, sums = step(state, sums, images)  # the second call may still allocate
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state, sums = step(state, sums, images)
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - start
  params = sum(x.size for x in jax.tree.leaves(state.params))
  return {'params': int(params), 'first_step_s': first, 'start_s': imported - started,
          'images_per_sec': steps * batch / elapsed}


# ---------------------------------------------------------------------------------------------
# The PyTorch side: the same networks in PyTorch's own idiom


def torch_model(case: str):
  import torch
  from torch import nn
  import torch.nn.functional as F
  (name, kwargs), _, _, classes = CASES[case]
  if name == 'resnet50':
    import torchvision
    return torchvision.models.resnet50(num_classes=classes)

  class Block(nn.Module):  # He et al.'s CIFAR block with option-A (zero-padding) shortcuts
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.stride, self.pad = stride, cout - cin

    def forward(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
      if self.pad:
        shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
      return F.relu(y + shortcut)

  class CifarResNet(nn.Module):
    def __init__(self, depth):
      super().__init__()
      n = (depth - 2) // 6
      self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
      layers, cin = [], 16
      for width, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
          layers.append(Block(cin, width, stride if i == 0 else 1))
          cin = width
      self.blocks = nn.Sequential(*layers)
      self.fc = nn.Linear(64, classes)

    def forward(self, x):
      return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))

  return CifarResNet(kwargs['depth'])


def torch_worker(case: str, steps: int, channels_last: bool) -> dict:
  started = time.perf_counter()
  import torch
  torch.set_num_threads(cores())
  _, size, batch, classes = CASES[case]
  torch.manual_seed(0)
  model = torch_model(case)
  optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
  images = torch.randn(batch, 3, size, size)
  labels = torch.randint(0, classes, (batch,))
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  model.train()

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()

  imported = time.perf_counter()
  step()
  first = time.perf_counter() - imported
  step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  elapsed = time.perf_counter() - start
  return {'params': sum(p.numel() for p in model.parameters()), 'first_step_s': first,
          'start_s': imported - started, 'images_per_sec': steps * batch / elapsed}


# ---------------------------------------------------------------------------------------------
# The driver


def measure(side: str, case: str, steps: int, torch_python: str) -> dict:
  python = sys.executable if side == 'cnn_jax' else torch_python
  command = [python, os.path.abspath(__file__), f'--worker={side}', f'--cases={case}',
             f'--steps={steps}']
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
  if result.returncode:
    raise SystemExit(f'error: the {side} worker for {case} failed:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cases', default='resnet20,resnet56,resnet110,resnet50')
  parser.add_argument('--steps', type=int, default=10, help='timed steps per measurement')
  parser.add_argument('--repeats', type=int, default=3, help='alternations; the median is shown')
  parser.add_argument('--torch_python', default=sys.executable,
                      help='python of an environment with torch and torchvision')
  parser.add_argument('--worker', choices=SIDES, help=argparse.SUPPRESS)
  args = parser.parse_args()
  cases = args.cases.split(',')
  unknown = [c for c in cases if c not in CASES]
  if unknown:
    parser.error(f'unknown case {unknown[0]!r}; valid: {", ".join(CASES)}')
  if args.worker:
    if args.worker == 'cnn_jax':
      print(json.dumps(jax_worker(cases[0], args.steps)))
    else:
      print(json.dumps(torch_worker(cases[0], args.steps, args.worker == 'torch_channels_last')))
    return
  check = subprocess.run([args.torch_python, '-c', 'import torch, torchvision'], capture_output=True)
  if check.returncode:
    parser.error(f'{args.torch_python} cannot import torch and torchvision: pass --torch_python=PY '
                 'of an environment made from requirements-torch.txt')

  print(f'{cores()} cores; median of {args.repeats} alternations, {args.steps} timed steps each')
  print('| case | batch | params (both) | PyTorch NCHW img/s | PyTorch channels_last img/s | '
        'cnn_jax img/s | cnn_jax / PyTorch best | first step PyTorch / cnn_jax |')
  print('|---|---|---|---|---|---|---|---|')
  for case in cases:
    runs = {side: [] for side in SIDES}
    for _ in range(args.repeats):
      for side in SIDES:
        runs[side].append(measure(side, case, args.steps, args.torch_python))
    counts = {side: {r['params'] for r in rs} for side, rs in runs.items()}
    if len(set.union(*counts.values())) != 1:
      raise SystemExit(f'error: {case}: the two sides have different parameter counts {counts}')
    rate = {side: statistics.median(r['images_per_sec'] for r in rs) for side, rs in runs.items()}
    first = {side: statistics.median(r['first_step_s'] for r in rs) for side, rs in runs.items()}
    best = max(('torch_nchw', 'torch_channels_last'), key=rate.get)
    print(f'| {case} | {CASES[case][2]} | {counts["cnn_jax"].pop():,} | {rate["torch_nchw"]:.3g} | '
          f'{rate["torch_channels_last"]:.3g} | {rate["cnn_jax"]:.3g} | '
          f'{rate["cnn_jax"] / rate[best]:.2f} | {first[best]:.2f} s / {first["cnn_jax"]:.2f} s |',
          flush=True)


if __name__ == '__main__':
  main()
