"""Where the train step's time goes: a jax.profiler trace, its ops grouped by what they compute.

  python benchmarks/profile_step.py [--case=resnet20] [--steps=3] [--top=10]

Builds the step as ``benchmarks/vs_pytorch.py`` does (the same cases: the project's own train step
on a fixed random batch), traces ``--steps`` steps and matches each op of the trace to the
optimised HLO of the compiled step. An op is a convolution when its fusion contains one, a
reduction when it reduces (BatchNorm's statistics, the metric sums), a copy or transpose when it
only moves data, and element-wise otherwise. Times are summed over XLA's threads, per step.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vs_pytorch  # noqa: E402  (the cases and the step)

_INSTRUCTION = re.compile(r'^\s+(?:ROOT )?%([\w.\-]+) = \S+ ([\w\-]+)\(')
_MOVES = {'copy', 'transpose', 'parameter', 'bitcast', 'reshape', 'slice', 'pad', 'concatenate',
          'broadcast', 'constant'}


def _computations(hlo: str) -> dict[str, list[str]]:
  bodies, current = {}, None
  for line in hlo.splitlines():
    header = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
    if header:
      current = header.group(1)
      bodies[current] = []
    elif current and line.startswith('  '):
      bodies[current].append(line)
  return bodies


def classify(hlo: str) -> dict[str, str]:
  """Each instruction name of the optimised HLO -> what it computes."""
  bodies = _computations(hlo)

  def opcodes(computation: str) -> set[str]:
    found = set()
    for line in bodies.get(computation, []):
      match = _INSTRUCTION.match(line)
      if match:
        found.add(match.group(2))
      for called in re.findall(r'calls=%([\w.\-]+)', line):
        found |= opcodes(called)
    return found

  kinds = {}
  for lines in bodies.values():
    for line in lines:
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      name, opcode = match.groups()
      called = re.search(r'calls=%([\w.\-]+)', line)
      inner = opcodes(called.group(1)) if opcode == 'fusion' and called else {opcode}
      if 'convolution' in inner:
        kinds[name] = 'convolutions'
      elif 'dot' in inner:
        kinds[name] = 'matrix products'
      elif inner & {'reduce', 'reduce-window'}:
        kinds[name] = 'reductions (BatchNorm statistics, sums)'
      elif inner <= _MOVES:
        kinds[name] = 'copies and transposes'
      else:
        kinds[name] = 'element-wise'
  return kinds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--case', default='resnet20', choices=sorted(vs_pytorch.CASES))
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--top', type=int, default=10, help='the slowest ops to list')
  args = parser.parse_args()
  sys.path.insert(0, vs_pytorch.REPO)
  from cnn_jax import runtime
  runtime.start()
  import jax
  step, state, sums, images = vs_pytorch.jax_step(args.case)
  kinds = classify(step.lower(state, sums, images).compile().as_text())
  for _ in range(3):
    state, sums = step(state, sums, images)
  jax.block_until_ready(state)
  times = []
  for _ in range(5):
    start = time.perf_counter()
    state, sums = step(state, sums, images)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(args.steps):
        state, sums = step(state, sums, images)
      jax.block_until_ready(state)
    trace = jax.profiler.ProfileData.from_file(
        glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)[0])
  per_op = collections.Counter()
  for plane in trace.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name in kinds:
          per_op[event.name] += event.duration_ns / 1e6 / args.steps
  per_kind = collections.Counter()
  for name, ms in per_op.items():
    per_kind[kinds[name]] += ms
  total = sum(per_kind.values())
  print(f'{args.case}: step {1000 * statistics.median(times):.1f} ms (median of 5); op time '
        f'{total:.1f} ms a step, summed over threads')
  for kind, ms in per_kind.most_common():
    print(f'  {kind:42s} {ms:8.1f} ms  {100 * ms / total:5.1f}%')
  print(f'slowest ops (ms a step):')
  for name, ms in per_op.most_common(args.top):
    print(f'  {name:30s} {ms:8.2f}  {kinds[name]}')


if __name__ == '__main__':
  main()
