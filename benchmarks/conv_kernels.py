"""The convolutions of a CIFAR ResNet alone: cnn_jax's (XLA:CPU) against PyTorch's, shape by shape.

  python benchmarks/conv_kernels.py --torch_python=/opt/torch/bin/python [--batch=128] [--repeats=3]

Times the forward convolution, the input gradient and the kernel gradient of every distinct 3x3
convolution of a CIFAR ResNet (the three stages and their strided first convs), each on its own
and already compiled, as ``layers.conv_general_dilated`` runs them in the train step and as PyTorch
runs them (``convolution_backward``, the faster of NCHW and channels_last, threads = cores). The
last line adds them up as ResNet-20 uses them: how long its convolutions alone take a step on
each side, which bounds what the whole step can reach against PyTorch's. Each side is a fresh
process; the sides alternate ``--repeats`` times and the table gives medians.
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

# (input size, in channels, out channels, stride, how many ResNet-20 has); 3x3, padding 1.
SHAPES = [(32, 3, 16, 1, 1), (32, 16, 16, 1, 6), (32, 16, 32, 2, 1), (16, 32, 32, 1, 5),
          (16, 32, 64, 2, 1), (8, 64, 64, 1, 5)]
PARTS = ('forward', 'input_grad', 'kernel_grad')


def _median_ms(fn, runs: int = 7) -> float:
  fn()
  fn()
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def jax_worker(batch: int) -> dict:
  sys.path.insert(0, REPO)
  from cnn_jax import runtime
  runtime.start()
  import jax
  from cnn_jax.models import layers
  numbers = ('NHWC', 'HWIO', 'NHWC')
  results = {}
  for size, cin, cout, stride, _ in SHAPES:
    x = jax.random.normal(jax.random.key(0), (batch, size, size, cin))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, cin, cout))
    conv = lambda x, k, stride=stride: layers.conv_general_dilated(
        x, k, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=numbers)
    dy = jax.random.normal(jax.random.key(2), conv(x, kernel).shape)
    fns = {'forward': jax.jit(conv),
           'input_grad': jax.jit(lambda x, k, dy: jax.vjp(lambda x: conv(x, k), x)[1](dy)[0]),
           'kernel_grad': jax.jit(lambda x, k, dy: jax.vjp(lambda k: conv(x, k), k)[1](dy)[0])}
    args = {'forward': (x, kernel), 'input_grad': (x, kernel, dy), 'kernel_grad': (x, kernel, dy)}
    results[str((size, cin, cout, stride))] = {
        part: _median_ms(lambda: jax.block_until_ready(fns[part](*args[part]))) for part in PARTS}
  return results


def torch_worker(batch: int) -> dict:
  import torch
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  results = {}
  for size, cin, cout, stride, _ in SHAPES:
    best = {}
    for layout in (torch.contiguous_format, torch.channels_last):
      x = torch.randn(batch, cin, size, size).contiguous(memory_format=layout)
      weight = torch.randn(cout, cin, 3, 3).contiguous(memory_format=layout)
      dy = torch.nn.functional.conv2d(x, weight, stride=stride, padding=1).contiguous(
          memory_format=layout)
      backward = lambda mask: torch.ops.aten.convolution_backward(
          dy, x, weight, None, [stride, stride], [1, 1], [1, 1], False, [0, 0], 1, mask)
      times = {'forward': _median_ms(lambda: torch.nn.functional.conv2d(x, weight, stride=stride,
                                                                        padding=1)),
               'input_grad': _median_ms(lambda: backward([True, False, False])),
               'kernel_grad': _median_ms(lambda: backward([False, True, False]))}
      best = {part: min(best.get(part, float('inf')), times[part]) for part in PARTS}
    results[str((size, cin, cout, stride))] = best
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--torch_python', help='python of an environment with torch '
                      '(requirements-torch.txt)')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--worker', choices=('jax', 'torch'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker = jax_worker if args.worker == 'jax' else torch_worker
    print(json.dumps(worker(args.batch)))
    return
  if not args.torch_python:
    parser.error('--torch_python is required: the python of an environment with torch '
                 '(python -m venv /opt/torch && /opt/torch/bin/pip install -r requirements-torch.txt)')
  runs = {'jax': [], 'torch': []}
  for _ in range(args.repeats):
    for side, python in (('jax', sys.executable), ('torch', args.torch_python)):
      out = subprocess.run([python, os.path.abspath(__file__), f'--worker={side}',
                            f'--batch={args.batch}'], capture_output=True, text=True, check=True)
      runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
  median = {side: {shape: {part: statistics.median(run[shape][part] for run in runs[side])
                           for part in PARTS} for shape in runs[side][0]} for side in runs}
  print(f'batch {args.batch}, {len(os.sched_getaffinity(0))} cores, median of {args.repeats} '
        'alternations; ms, cnn_jax / PyTorch')
  print('| input | channels | stride | forward | input gradient | kernel gradient |')
  print('|---|---|---|---|---|---|')
  totals = {'jax': 0.0, 'torch': 0.0}
  for size, cin, cout, stride, count in SHAPES:
    key = str((size, cin, cout, stride))
    cells = []
    for part in PARTS:
      ours, theirs = median['jax'][key][part], median['torch'][key][part]
      cells.append(f'{ours:.1f} / {theirs:.1f} ({ours / theirs:.1f}x)')
      if not (part == 'input_grad' and cin == 3):  # the first conv needs no input gradient
        totals['jax'] += count * ours
        totals['torch'] += count * theirs
    print(f'| {size}x{size} | {cin}->{cout} | {stride} | ' + ' | '.join(cells) + ' |')
  print(f'ResNet-20 convolutions a step: cnn_jax {totals["jax"]:.0f} ms, PyTorch '
        f'{totals["torch"]:.0f} ms ({totals["jax"] / totals["torch"]:.2f}x)')


if __name__ == '__main__':
  main()
