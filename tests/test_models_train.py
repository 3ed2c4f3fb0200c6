"""Every model family trains through the loop's jitted train step: the loss goes down.

Each family file's small instances (the ``smoke`` of its registry entries: the variant shrunk
through its own constructor arguments and input size) train on one fixed batch for a few steps.
GoogLeNet's auxiliary classifiers are trained by its recipe's smoke run (tests/test_configs.py),
at 224; the BatchNorm CIFAR ResNet's loss at every logged step by tests/test_train.py.
"""
import numpy as np
import optax
import pytest

from cnn_jax import models, parallel, train
from cnn_jax.data import pipeline
from configs import default

SMOKE = [name for name in models.names() if models.info(name).smoke]


def _setup(name, kwargs, shape, num_classes, aux_weight=0.3):
  config = default.get_config()
  config.loss.aux_weight = aux_weight
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.0
  config.schedule.name, config.schedule.warmup = 'constant', 0
  model = models.get_model(name, num_classes=num_classes, **kwargs)
  schedule = optax.constant_schedule(1e-3)
  from cnn_jax import optim
  setup = train.TrainSetup(model=model, tx=optim.make_optimizer(config, schedule), plateau_tx=None,
                           schedule=schedule, info=pipeline.DatasetInfo(num_classes, shape, 8, 8),
                           mesh=parallel.make_mesh(), local_batch=8, layout=None, total_steps=10)
  return setup, config


def _batch(shape, num_classes):
  rng = np.random.default_rng(0)
  return {'image': rng.normal(size=(8,) + shape).astype(np.float32),
          'label': (np.arange(8) % num_classes).astype(np.int32)}


@pytest.mark.parametrize('name', SMOKE)
def test_family_trains_and_loss_goes_down(name):
  info = models.info(name)
  kwargs, shape = info.smoke.kwargs, info.smoke.input_shape
  num_classes = info.num_classes
  setup, config = _setup(name, kwargs, shape, num_classes)
  state = train.init_state(setup, seed=0)
  step = train.make_train_step(setup, config)
  batch = parallel.global_batch(_batch(shape, num_classes), setup.mesh)
  losses = []
  for _ in range(6):
    sums = parallel.replicate(train.zero_train_sums(), setup.mesh)
    state, sums = step(state, sums, batch)
    losses.append(float(sums['loss'] / sums['count']))
  assert np.all(np.isfinite(losses)), losses
  assert min(losses[-2:]) < losses[0], losses
