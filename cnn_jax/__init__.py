"""cnn_jax: classic convolutional networks in JAX/Flax, one train loop for all of them."""
import os as _os

# Residual blocks end in an optimization_barrier (models/layers.py) that keeps XLA:CPU from
# re-fusing the whole residual chain into every backward fusion (quadratic step cost in depth).
# XLA's cse_barrier_expander pass would remove the barriers; disabling it must happen before the
# backend starts, hence here.
_FLAG = '--xla_disable_hlo_passes=cse_barrier_expander'
if _FLAG not in _os.environ.get('XLA_FLAGS', ''):
  _os.environ['XLA_FLAGS'] = (_os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()


class ConfigError(ValueError):
  """A mistake the user can fix in the config or flags; reported as one line, before compiling."""


class RunError(RuntimeError):
  """A run that cannot go on (divergence, a failed save, a locked workdir, a signal), reported as
  one line that says what was kept and what to do; ``exit_code`` is the process's exit status."""

  def __init__(self, message: str, exit_code: int = 1):
    super().__init__(message)
    self.exit_code = exit_code
