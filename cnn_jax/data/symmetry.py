"""The 8 symmetries of a square board (the dihedral group D4) as permutations of its points.

One table serves both sides: the ``random_dihedral`` training op (tf.data) and 8-fold evaluation
(the jitted eval step). Point ``(r, c)`` of a ``size`` x ``size`` board is index ``r * size + c``.
Transform ``t`` is ``np.rot90`` by ``t % 4`` quarter turns, then a transpose when ``t >= 4``;
``t = 0`` is the identity.
"""
from __future__ import annotations

import numpy as np

NUM_SYMMETRIES = 8


def permutations(size: int) -> np.ndarray:
  """[8, size * size] int32 gather indices: ``transformed.ravel() == board.ravel()[perm[t]]``."""
  index = np.arange(size * size, dtype=np.int32).reshape(size, size)
  views = [np.rot90(index, t % 4) for t in range(NUM_SYMMETRIES)]
  return np.stack([(v.T if t >= 4 else v).ravel() for t, v in enumerate(views)])


def inverse_permutations(size: int) -> np.ndarray:
  """[8, size * size] int32: ``inverse[t][i]`` is where point ``i`` lands under transform ``t``.

  So a point label ``i`` moves to ``inverse[t][i]``, and per-point values of the transformed board
  (a view's logits) return to the original board with ``values[inverse[t]]``.
  """
  return np.argsort(permutations(size), axis=1).astype(np.int32)
