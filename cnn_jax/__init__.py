"""cnn_jax: classic convolutional networks in JAX/Flax, one train loop for all of them.

Importing cnn_jax changes nothing in the process; programs call :func:`cnn_jax.runtime.start` first
(XLA flags, TensorFlow's devices).
"""
import contextlib
import sys
from typing import Iterator


class ConfigError(ValueError):
  """A mistake the user can fix in the config or flags; reported as one line, before compiling."""


class RunError(RuntimeError):
  """A run that cannot go on (divergence, a failed save, a locked workdir, a signal), reported as
  one line that says what was kept and what to do; ``exit_code`` is the process's exit status."""

  def __init__(self, message: str, exit_code: int = 1):
    super().__init__(message)
    self.exit_code = exit_code


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
  """The programs' contract for the two errors above: a ConfigError exits with ``error: ...`` (status
  1, no traceback: the message names the fix), a RunError prints its line to stderr and exits with its
  ``exit_code``. Anything else is a bug and keeps its traceback."""
  try:
    yield
  except ConfigError as e:
    sys.exit(f'error: {e}')
  except RunError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
