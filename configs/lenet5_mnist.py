"""LeNet-5 on MNIST (LeCun, Bottou, Bengio & Haffner 1998), the paper's network and training schedule.

  python -m cnn_jax.main --config=configs/lenet5_mnist.py --workdir=/tmp/cnn_jax/lenet5_mnist
  python -m cnn_jax.main --config=configs/lenet5_mnist.py:runlocal --workdir=/tmp/x  # smoke

Arguments: ``runlocal`` only. The model is the 1998 network, lenet5_1998: scaled tanh, trainable
subsampling, the sparse C3 table, RBF output.

Paper target: MNIST test error 0.95% (no distortions; sheet section 1).

Recipe: the 28x28 digits centred in a 32x32 field (pad(2)), pixels mapped so the background is
-0.1 and the ink 1.175 (the paper's normalisation: mean about 0, variance about 1); no
augmentation; one example per update ("stochastic" updates: batch 1); 20 passes over the 60,000
training images; the RBF output trained with the paper's criterion, which is softmax cross-entropy
on the negated RBF distances; no weight decay, no momentum.

Departures: the paper's optimiser is the stochastic diagonal Levenberg-Marquardt method, whose
per-parameter step is eta / (mu + h_kk) (mu = 0.02, h_kk a running estimate of the diagonal
Hessian), with a global eta of 0.0005 (passes 1-2), 0.0002 (3-5), 0.0001 (6-8), 0.00005 (9-12),
0.00001 (13-20). Here: plain SGD with the paper's global eta as the learning rate, without the
curvature scaling (the largest step that rule allows, eta / mu = 0.025, saturates the RBF output
and does not train; eta itself trains digits to 95% in 3 passes). The schedule keeps the paper's
boundaries (epochs 2, 5, 8, 12) and its overall decrease (x1/50) with one factor at every boundary,
0.02 ** (1/4) = 0.376, because the schedule takes one factor (the paper's are 0.4, 0.5, 0.5, 0.2). Initial weights: the model's LeCun-normal fan-in scaling,
not the paper's uniform +-2.4 / fan-in. The RBF prototypes are fixed random +-1 codes, not the
paper's 7x12 bitmaps.
"""
import ml_collections

from configs import common

ARGS = {}
# The paper's normalisation: 0 (background) -> -0.1 and 255 (ink) -> 1.175, i.e.
# (x / 255 - mean) / std with std = 1 / 1.275 and mean = 0.1 * std.
NORMALIZE = 'normalize(mean=0.0784313725490196, std=0.7843137254901961)'
PAPER_ETA = (0.0005, 0.0002, 0.0001, 0.00005, 0.00001)   # passes 1-2, 3-5, 6-8, 9-12, 13-20
BOUNDARIES = (2, 5, 8, 12)
PAPER = common.Paper(
    recipe={
        'data.name': 'mnist',
        'model.name': 'lenet5_1998',
        'optimizer.learning_rate': PAPER_ETA[0],
        'optimizer.momentum': 0.0,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0,
        'batch_size': 1,
        'num_epochs': 20,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': BOUNDARIES,
        # One factor at every boundary with the paper's overall decrease (x1/50): 0.376.
        'schedule.decay_factor': (PAPER_ETA[-1] / PAPER_ETA[0]) ** (1 / len(BOUNDARIES)),
    },
    targets={'no distortions': '0.95'})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, recipe='lenet5_mnist')
  config = common.base_config()
  config.data.train_ops = f'pad(2) | {NORMALIZE}'
  config.data.eval_ops = f'pad(2) | {NORMALIZE}'
  config.data.cache = True
  common.apply(config, PAPER.recipe)
  config.log_every_steps = 5000
  config.checkpoint_every_steps = 60_000
  return common.finish(config, a, rgb=False)
