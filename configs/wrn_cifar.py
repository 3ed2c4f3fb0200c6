"""Wide ResNets WRN-28-10, WRN-16-8 and WRN-40-4 on CIFAR-10/100 (Zagoruyko & Komodakis 2016).

  python -m cnn_jax.main --config=configs/wrn_cifar.py --workdir=/tmp/cnn_jax/wrn28_10
  python -m cnn_jax.main --config=configs/wrn_cifar.py:28-10,dropout --workdir=/tmp/cnn_jax/wrn28_10_d
  python -m cnn_jax.main --config=configs/wrn_cifar.py:16-8,dataset=cifar100 --workdir=...
  python -m cnn_jax.main --config=configs/wrn_cifar.py:runlocal --workdir=/tmp/x  # smoke

Arguments: net (positional) 28-10|16-8|40-4 (depth-widening factor), default 28-10; ``dropout``
(= dropout=0.3, the paper's rate between the two 3x3 convs) or ``dropout=RATE``, default 0;
``dataset=cifar10|cifar100``; ``runlocal``.

Paper target, CIFAR-10/100 test error % (sheet section 10), without dropout: WRN-40-4 4.53/21.18,
WRN-16-8 4.27/20.43, WRN-28-10 4.00/19.25; WRN-28-10 with dropout 0.3: 3.89/18.85.

Recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 128, lr 0.1 multiplied by 0.2 at
epochs 60, 120 and 160, 200 epochs; random crops of the 4-pixel padded image and flips;
pre-activation basic blocks, 1x1 projection shortcuts where the width changes.

Departures: the paper fills the 4-pixel padding with reflections of the image; pad_random_crop
pads with zeros. Normalisation is per-channel mean/std.
"""
import ml_collections

from configs import common

NETS = {'28-10': (28, 10), '16-8': (16, 8), '40-4': (40, 4)}
DROPOUT = 0.3   # the paper's rate, between the two 3x3 convs of a block
ARGS = {
    'net': common.Arg('28-10', tuple(NETS), str, None),
    'dropout': common.Arg(0.0, None, float, DROPOUT),
    'dataset': common.Arg('cifar10', ('cifar10', 'cifar100'), str, None),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'wrn',
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': True,
        'optimizer.weight_decay': 5e-4,
        'batch_size': 128,
        'num_epochs': 200,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (60, 120, 160),
        'schedule.decay_factor': 0.2,
    },
    targets={'40-4': '4.53/21.18', '16-8': '4.27/20.43', '28-10': '4.00/19.25',
             '28-10,dropout': '3.89/18.85'},
    variants={
        '': {'data.name': 'cifar10', 'model.depth': 28, 'model.widen_factor': 10,
             'model.dropout_rate': 0.0},
        '28-10,dropout': {'model.dropout_rate': DROPOUT},
        '16-8,dataset=cifar100': {'data.name': 'cifar100', 'model.depth': 16,
                                  'model.widen_factor': 8},
        'net=40-4,dropout=0.1': {'model.depth': 40, 'model.widen_factor': 4,
                                 'model.dropout_rate': 0.1},
    })


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='net', recipe='wrn_cifar')
  if not 0.0 <= a.dropout < 1.0:
    raise ValueError(f'argument dropout={a.dropout} must be in [0, 1).')
  depth, k = NETS[a.net]
  config = common.base_config()
  common.cifar_data(config, a.dataset)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': depth, 'model.widen_factor': k,
                        'model.dropout_rate': a.dropout, 'model.survival_prob_last': 1.0})
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
