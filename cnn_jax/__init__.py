"""cnn_jax: classic convolutional networks in JAX/Flax, one train loop for all of them."""
import os as _os

# XLA flags the project sets, each for a reason measured on its platform (the README's speed
# section); they must be in XLA_FLAGS before the backend starts, hence here. A flag the user's
# XLA_FLAGS already sets keeps the user's value, extended by ours where it is a list of passes.
_XLA_FLAGS = {
    # Residual blocks end in an optimization_barrier (models/layers.py) that keeps XLA:CPU from
    # re-fusing the whole residual chain into every backward fusion (quadratic step cost in depth).
    # XLA's cse_barrier_expander pass would remove the barriers.
    '--xla_disable_hlo_passes': 'cse_barrier_expander',
    # XLA:CPU's Eigen convolutions: ResNet-20's train step 394 ms against 598 ms with the
    # convolutions in YNNPACK fusions (this jaxlib's default).
    '--xla_cpu_experimental_ynn_fusion_type': '-individual_convolution',
}
_LIST_FLAGS = ('--xla_disable_hlo_passes',)  # comma lists: the user's value is extended


def _set_xla_flags() -> None:
  flags = _os.environ.get('XLA_FLAGS', '').split()
  for name, value in _XLA_FLAGS.items():
    given = [i for i, f in enumerate(flags) if f.split('=', 1)[0] == name]
    if not given:
      flags.append(f'{name}={value}')
    elif name in _LIST_FLAGS:
      i = given[-1]  # XLA reads the last occurrence
      current = flags[i].partition('=')[2]
      if value not in current.split(','):
        flags[i] = f'{name}={current},{value}' if current else f'{name}={value}'
  _os.environ['XLA_FLAGS'] = ' '.join(flags)


_set_xla_flags()


class ConfigError(ValueError):
  """A mistake the user can fix in the config or flags; reported as one line, before compiling."""


class RunError(RuntimeError):
  """A run that cannot go on (divergence, a failed save, a locked workdir, a signal), reported as
  one line that says what was kept and what to do; ``exit_code`` is the process's exit status."""

  def __init__(self, message: str, exit_code: int = 1):
    super().__init__(message)
    self.exit_code = exit_code
