"""DenseNet-BC on CIFAR-10/100 with augmentation, C10+/C100+ (Huang et al. 2017).

  python -m cnn_jax.main --config=configs/densenet_bc_cifar.py --workdir=/tmp/cnn_jax/densenet_bc100
  python -m cnn_jax.main --config=configs/densenet_bc_cifar.py:190-40,dataset=cifar100 --workdir=...
  python -m cnn_jax.main --config=configs/densenet_bc_cifar.py:runlocal --workdir=/tmp/x  # smoke

Arguments: net (positional) 100-12|250-24|190-40 (depth L - growth rate k), default 100-12;
``dataset=cifar10|cifar100``; ``runlocal``.

Paper target, C10+/C100+ test error % (sheet section 12): BC L=100 k=12 4.51/22.27;
BC L=250 k=24 3.62/17.60; BC L=190 k=40 3.46/17.18.

Recipe: SGD with Nesterov momentum 0.9 (no dampening), weight decay 1e-4, batch 64, 300 epochs,
lr 0.1 divided by 10 at 50% and 75% of training (epochs 150 and 225); the standard augmentation
(4-pixel padding, random crop, flip) and therefore no dropout (the paper adds dropout 0.2 only for
the unaugmented C10/C100); He init; compression 0.5, bottleneck 4k.

Departures: none known beyond the shared CIFAR pipeline (per-channel mean/std normalisation, as
the paper).
"""
import ml_collections

from configs import common

NETS = {'100-12': (100, 12), '250-24': (250, 24), '190-40': (190, 40)}
ARGS = {
    'net': common.Arg('100-12', tuple(NETS), str, None),
    'dataset': common.Arg('cifar10', ('cifar10', 'cifar100'), str, None),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'densenet',
        'model.stem': 'cifar',
        'model.bottleneck': True,
        'model.compression': 0.5,
        'model.dropout_rate': 0.0,          # with augmentation (C10+, C100+)
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': True,
        'optimizer.weight_decay': 1e-4,
        'batch_size': 64,
        'num_epochs': 300,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (150, 225),
        'schedule.decay_factor': 0.1,
    },
    targets={'100-12': '4.51/22.27', '250-24': '3.62/17.60', '190-40': '3.46/17.18'},
    variants={
        '': {'data.name': 'cifar10', 'model.depth': 100, 'model.growth_rate': 12},
        '250-24': {'model.depth': 250, 'model.growth_rate': 24},
        '190-40,dataset=cifar100': {'data.name': 'cifar100', 'model.depth': 190,
                                    'model.growth_rate': 40},
    })


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='net', recipe='densenet_bc_cifar')
  depth, k = NETS[a.net]
  config = common.base_config()
  common.cifar_data(config, a.dataset)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': depth, 'model.growth_rate': k})
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
