"""cnn_jax: classic convolutional networks in JAX/Flax, one train loop for all of them.

Importing cnn_jax changes nothing in the process; programs call :func:`cnn_jax.runtime.start` first
(XLA flags, TensorFlow's devices).
"""


class ConfigError(ValueError):
  """A mistake the user can fix in the config or flags; reported as one line, before compiling."""


class RunError(RuntimeError):
  """A run that cannot go on (divergence, a failed save, a locked workdir, a signal), reported as
  one line that says what was kept and what to do; ``exit_code`` is the process's exit status."""

  def __init__(self, message: str, exit_code: int = 1):
    super().__init__(message)
    self.exit_code = exit_code
