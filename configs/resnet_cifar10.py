"""ResNet-20/32/44/56/110/1202 on CIFAR-10 (He et al. 2015, section 4.2), and their plain twins.

  python -m cnn_jax.main --config=configs/resnet_cifar10.py:110 --workdir=/tmp/cnn_jax/resnet110
  python -m cnn_jax.main --config=configs/resnet_cifar10.py:56,plain --workdir=/tmp/cnn_jax/plain56
  python -m cnn_jax.main --config=configs/resnet_cifar10.py:runlocal --workdir=/tmp/x  # smoke

Arguments: depth (positional) 20|32|44|56|110|1202, default 20; ``plain`` drops the shortcuts (the
degradation experiment: plain-56 trains and tests worse than plain-20); ``runlocal``.

Paper target, CIFAR-10 test error %: 20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43 (best of 5
runs; the paper's mean is 6.61), 1202: 7.93. Plain nets: figure 6 only (no table).

Recipe (sheet section 8): batch 128 (on two GPUs: BatchNorm statistics over 64 examples, here
model.bn_group_size=64), SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
iterations, stop at 64k (about 164 epochs); ResNet-110 starts at lr 0.01 for 400 iterations
("until the training error is below 80%, about 400 iterations"), then 0.1; 4-pixel zero padding,
random 32 crop, horizontal flip; He init, BatchNorm, no dropout; option-A shortcuts.

Departures: per-channel mean/std normalisation instead of the per-pixel mean; the warm-up is a
fixed 400 steps, not "until the training error is below 80%". The paper trains the 1202-layer net
"as described above" without saying whether that includes the warm-up; it is applied here to
every depth >= 110.
"""
import ml_collections

from configs import common

DEPTHS = (20, 32, 44, 56, 110, 1202)
ARGS = {
    'depth': common.Arg(20, DEPTHS, int, None),
    'plain': common.flag('no shortcuts (the plain twin)'),
}
# ResNet-110's start at lr 0.01 for 400 iterations, here from this depth on (see Departures).
WARMUP_FROM_DEPTH = 110
WARMUP = {'schedule.warmup': 400, 'schedule.warmup_lr': 0.01, 'schedule.warmup_shape': 'constant'}
# He et al.'s CIFAR recipe, which the pre-activation paper keeps (preact_resnet_cifar.py).
CIFAR_RECIPE = {
    'model.bn_group_size': 64,          # batch 128 on two GPUs
    'optimizer.learning_rate': 0.1,
    'optimizer.momentum': 0.9,
    'optimizer.nesterov': False,
    'optimizer.weight_decay': 1e-4,
    'batch_size': 128,
    'num_train_steps': 64_000,
    'schedule.name': 'piecewise',
    'schedule.unit': 'steps',
    'schedule.boundaries': (32_000, 48_000),
    'schedule.decay_factor': 0.1,
}
PAPER = common.Paper(
    recipe={
        'model.name': 'resnet_cifar',
        **CIFAR_RECIPE,
    },
    targets={'20': '8.75', '32': '7.51', '44': '7.17', '56': '6.97', '110': '6.43',
             '1202': '7.93'},
    variants={
        '': {'data.name': 'cifar10', 'model.depth': 20, 'model.residual': True},
        '56': {'model.depth': 56},
        '110': {'model.depth': 110, **WARMUP},
        '1202': {'model.depth': 1202, **WARMUP},
        '56,plain': {'model.depth': 56, 'model.residual': False},
    })


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='depth', recipe='resnet_cifar10')
  config = common.base_config()
  common.cifar_data(config, 'cifar10')
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': a.depth, 'model.residual': not a.plain,
                        'model.survival_prob_last': 1.0})
  if a.depth >= WARMUP_FROM_DEPTH:
    common.apply(config, WARMUP)
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
