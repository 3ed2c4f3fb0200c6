"""Every model family trains through the loop's jitted train step: the loss goes down.

Each family runs its smallest registered variant, shrunk through its own constructor arguments
(widths, depths, input sizes) where the architecture allows, on one fixed batch for a few steps.
GoogLeNet is left to its recipe's smoke run (tests/test_configs.py), which trains it through the
same step at 224 and checks that its auxiliary classifiers learn; the CIFAR ResNet to
tests/test_train.py, whose BatchNorm ResNet lowers the loss at every logged step.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import models, parallel, train
from cnn_jax.data import pipeline
from configs import default

CASES = [
    ('lenet5', {}, (32, 32, 1)),
    ('lenet5_1998', {}, (32, 32, 1)),
    ('alexnet', dict(fc_width=64), (99, 99, 3)),
    ('alexnet_tv', dict(fc_width=64), (96, 96, 3)),
    ('zfnet', dict(fc_width=64), (96, 96, 3)),
    # 48, not 32: at 32x32 the last block's 3x3 convs see 2x2 maps, which XLA:CPU runs through a slow
    # generic convolution (4 s a step here at the tests' flags, against 0.9 s at 48x48).
    ('vgg11_bn', dict(fc_width=64), (48, 48, 3)),
    ('resnet18', dict(base_width=8, survival_prob_last=0.5), (32, 32, 3)),
    ('plain20_cifar', {}, (32, 32, 3)),
    ('preact_resnet', dict(depth=18, base_width=8), (32, 32, 3)),
    ('preact_resnet_cifar', dict(depth=11, block='bottleneck', base_width=4), (16, 16, 3)),
    ('wrn', dict(depth=10, widen_factor=2, dropout_rate=0.3), (32, 32, 3)),
    ('resnext29_8x64d', dict(width_per_group=4), (16, 16, 3)),
    ('densenet_cifar', dict(depth=16, growth_rate=4), (16, 16, 3)),
    ('alphago_policy', dict(filters=16), (19, 19, 48)),
]


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


@pytest.mark.parametrize('name,kwargs,shape', CASES, ids=[c[0] for c in CASES])
def test_family_trains_and_loss_goes_down(name, kwargs, shape):
  num_classes = 361 if name.startswith('alphago') else 5
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
