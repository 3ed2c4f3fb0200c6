"""ResNeXt-29 8x64d and 16x64d on CIFAR-10/100 (Xie et al. 2016, section 5.3).

  python -m cnn_jax.main --config=configs/resnext29_cifar.py --workdir=/tmp/cnn_jax/resnext29_8x64d
  python -m cnn_jax.main --config=configs/resnext29_cifar.py:16x64d,dataset=cifar100 --workdir=...
  python -m cnn_jax.main --config=configs/resnext29_cifar.py:runlocal --workdir=/tmp/x  # smoke

Arguments: net (positional) 8x64d|16x64d (cardinality x bottleneck width), default 8x64d;
``dataset=cifar10|cifar100``; ``runlocal``.

Paper target, CIFAR-10 / CIFAR-100 test error % (sheet section 13): 8x64d 3.65/17.77;
16x64d 3.58/17.31.

Recipe: batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.1, 300 epochs, divided by 10 at epochs
150 and 225; 4-pixel padding, random crop, flip; three stages of three bottlenecks (stem 3x3 conv
64, outputs 256/512/1024), grouped 3x3, projection shortcuts.

Departures: none from the paper's text. Its public code (fb.resnet.torch based) uses Nesterov
momentum, not stated in the paper; its README says the arXiv CIFAR numbers came from
pre-activation bottlenecks and batch 256, while this is the sheet's (and the paper text's) batch 128
with the original bottleneck. Normalisation is per-channel mean/std.
"""
import ml_collections

from configs import common

NETS = {'8x64d': 8, '16x64d': 16}
ARGS = {
    'net': common.Arg('8x64d', tuple(NETS), str, None),
    'dataset': common.Arg('cifar10', ('cifar10', 'cifar100'), str, None),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'resnext',
        'model.stem': 'cifar',
        'model.depth': 29,
        'model.width_per_group': 64,
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 5e-4,
        'batch_size': 128,
        'num_epochs': 300,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (150, 225),
        'schedule.decay_factor': 0.1,
    },
    targets={'8x64d': '3.65/17.77', '16x64d': '3.58/17.31'},
    variants={'': {'data.name': 'cifar10', 'model.groups': 8},
              '16x64d,dataset=cifar100': {'data.name': 'cifar100', 'model.groups': 16}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='net', recipe='resnext29_cifar')
  config = common.base_config()
  common.cifar_data(config, a.dataset)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.groups': NETS[a.net], 'model.shortcut': 'B',
                        'model.survival_prob_last': 1.0})
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
