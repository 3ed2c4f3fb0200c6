"""Optimisers and learning-rate schedules from the config, built from optax pieces.

Every optimiser is ``direction -> (weight decay) -> scale by -learning_rate``. Weight decay is either
*coupled* (L2 added to the gradient before the momentum/Adam statistics, as the classic papers and
Caffe do) or *decoupled* (added to the update after them, Loshchilov & Hutter; ``adamw``). The decay
mask skips BatchNorm parameters and biases (every 1-D parameter) unless ``decay_all_params``.
"""
from __future__ import annotations

import difflib
from typing import Any

import jax
import ml_collections
import optax

from cnn_jax import ConfigError

OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'piecewise', 'cosine', 'plateau')


def _unknown(kind: str, name: str, valid: tuple[str, ...]) -> ConfigError:
  close = difflib.get_close_matches(name, valid, n=1)
  hint = f' Did you mean {close[0]!r}?' if close else ''
  return ConfigError(f'unknown {kind} {name!r}.{hint} Valid names: {", ".join(valid)}.')


def _to_steps(values: Any, unit: str, steps_per_epoch: int) -> list[int]:
  values = list(values or [])
  if unit == 'epochs':
    return [int(round(v * steps_per_epoch)) for v in values]
  if unit == 'steps':
    return [int(v) for v in values]
  raise ConfigError(f"schedule.unit must be 'epochs' or 'steps', not {unit!r}.")


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                  total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step: warm-up, then constant, piecewise or cosine."""
  sched = config.schedule
  base_lr = config.optimizer.learning_rate
  warmup = _to_steps([sched.warmup], sched.unit, steps_per_epoch)[0]
  if sched.name in ('constant', 'plateau'):  # plateau: constant, times make_plateau_tx's scale
    main = optax.constant_schedule(base_lr)
  elif sched.name == 'piecewise':
    boundaries = _to_steps(sched.boundaries, sched.unit, steps_per_epoch)
    if boundaries != sorted(boundaries):
      raise ConfigError(f'schedule.boundaries must increase, got {list(sched.boundaries)}.')
    # Boundaries count from the start of training, warm-up included.
    main = optax.piecewise_constant_schedule(
        base_lr, {b - warmup: sched.decay_factor for b in boundaries if b > warmup})
  elif sched.name == 'cosine':
    main = optax.cosine_decay_schedule(base_lr, max(total_steps - warmup, 1), alpha=sched.final_fraction)
  else:
    raise _unknown('schedule', sched.name, SCHEDULES)
  if not warmup:
    return main
  start = sched.warmup_lr if sched.warmup_lr is not None else 0.0
  if sched.warmup_shape == 'constant':   # He et al.: 0.01 for ~400 iterations, then 0.1
    ramp = optax.constant_schedule(start)
  else:
    ramp = optax.linear_schedule(start, base_lr, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def make_plateau_tx(config: ml_collections.ConfigDict
                    ) -> optax.GradientTransformationExtraArgs | None:
  """The transform behind "divide by 10 when validation accuracy plateaus" (AlexNet, VGG), or None.

  Driven by the validation error after each evaluation, not by the training loss: ``patience`` and
  ``cooldown`` count evaluations. Its state (the current scale) is part of the checkpoint.
  """
  sched = config.schedule
  if sched.name != 'plateau':
    return None
  return optax.contrib.reduce_on_plateau(factor=sched.decay_factor, patience=sched.patience,
                                         rtol=0.0, atol=sched.plateau_min_delta,
                                         cooldown=sched.cooldown, min_scale=sched.min_scale)


def decay_mask(params: Any, decay_all: bool) -> Any:
  return jax.tree.map(lambda p: decay_all or p.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  opt = config.optimizer
  if opt.name not in OPTIMIZERS:
    raise _unknown('optimizer', opt.name, OPTIMIZERS)
  if opt.name == 'sgd':
    direction = optax.trace(decay=opt.momentum, nesterov=opt.nesterov) if opt.momentum else optax.identity()
  else:
    direction = optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)
  mode = 'decoupled' if opt.name == 'adamw' else opt.weight_decay_mode
  if mode not in ('coupled', 'decoupled'):
    raise ConfigError(f"optimizer.weight_decay_mode must be 'coupled' or 'decoupled', not {mode!r}.")
  chain = [direction]
  if opt.weight_decay:
    decay = optax.add_decayed_weights(
        opt.weight_decay, mask=lambda p: decay_mask(p, opt.decay_all_params))
    chain.insert(0 if mode == 'coupled' else 1, decay)
  chain.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*chain)
