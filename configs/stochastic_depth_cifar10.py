"""Stochastic depth (Huang et al. 2016): ResNet-110 and ResNet-1202 on CIFAR-10.

  python -m cnn_jax.main --config=configs/stochastic_depth_cifar10.py --workdir=/tmp/cnn_jax/sd110
  python -m cnn_jax.main --config=configs/stochastic_depth_cifar10.py:1202 --workdir=/tmp/cnn_jax/sd1202
  python -m cnn_jax.main --config=configs/stochastic_depth_cifar10.py:runlocal --workdir=/tmp/x

Arguments: depth (positional) 110|1202, default 110; ``survival=P`` the survival probability of
the last block (default 0.5, the paper's linear decay p_l = 1 - l/L (1 - p_L)); ``runlocal``.

Paper target, CIFAR-10 test error %: ResNet-110 6.41 (constant depth) -> 5.25 (stochastic depth);
ResNet-1202 4.91.

Recipe (sheet section 11): the CIFAR ResNet of He et al. (option-A shortcuts), batch 128, SGD with
Nesterov momentum 0.9, weight decay 1e-4, 500 epochs, lr 0.1 divided by 10 at epochs 250 and 375;
4-pixel padding, random crops and flips; one survival draw per block per mini-batch, residual
scaled by p_l at test time.

Departures: none known beyond the shared CIFAR pipeline (per-channel mean/std normalisation).
BatchNorm statistics are over the whole batch of 128 (the paper mentions no split over GPUs).
"""
import ml_collections

from configs import common

SURVIVAL = 0.5  # of the last block; the paper's linear decay rule
ARGS = {
    'depth': common.Arg(110, (110, 1202), int, None),
    'survival': common.Arg(SURVIVAL, None, float, None),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'resnet_cifar',
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': True,
        'optimizer.weight_decay': 1e-4,
        'batch_size': 128,
        'num_epochs': 500,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (250, 375),
        'schedule.decay_factor': 0.1,
    },
    targets={'110': '5.25', '1202': '4.91'},
    variants={'': {'data.name': 'cifar10', 'model.depth': 110,
                   'model.survival_prob_last': SURVIVAL},
              '1202': {'model.depth': 1202}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='depth', recipe='stochastic_depth_cifar10')
  if not 0.0 < a.survival <= 1.0:
    raise ValueError(f'argument survival={a.survival} must be in (0, 1] (1 = constant depth).')
  config = common.base_config()
  common.cifar_data(config, 'cifar10')
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': a.depth, 'model.residual': True,
                        'model.survival_prob_last': a.survival})
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
