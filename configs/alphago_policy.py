"""AlphaGo's supervised-learning policy network (Silver et al. 2016, Methods), on KGS or GnuGo games.

  python -m cnn_jax.main --config=configs/alphago_policy.py --config.data.source_dir=KGS_SGF_DIR \\
      --workdir=/tmp/cnn_jax/alphago_policy
  python -m cnn_jax.main --config=configs/alphago_policy.py:gnugo --config.data.source_dir=DIR \\
      --workdir=/tmp/cnn_jax/alphago_gnugo
  python -m cnn_jax.main --config=configs/alphago_policy.py:runlocal --workdir=/tmp/x  # smoke

Arguments: data set (positional) ``kgs`` (the paper's recipe, default) or ``gnugo`` (sized for one
CPU: games of ``python -m cnn_jax.go.generate``); ``k=128|192|256|384`` filters (default 192 on
KGS, 128 on GnuGo); ``runlocal``.

Paper target, KGS test move-prediction error % (Extended Data Table 3): k=128 45.4, k=192 44.6,
k=256 44.1; k=256 with its 8 symmetries averaged 43.0 (accuracies 54.6%, 55.4%, 55.9%, 57.0%).

Recipe: the 48 feature planes of Extended Data Table 2 (cnn_jax.go.features) from 29.4M positions
of 160k KGS games of 6-9 dan players, 8-fold symmetry augmentation (random_dihedral); plain SGD
without momentum, step size 0.003 halved every 80M steps (at 80M, 160M, 240M and 320M), minibatch
16, about 340M steps; no weight decay is mentioned, none is used.

The ``gnugo`` variant: k=128; GnuGo's games are far easier to predict than dan players', and one
CPU trains about 30 positions a second, so it uses Adam (step size 0.001, no weight decay), batch
64 and a cosine decay over 4 epochs: in 60 steps on 28 games Adam took the loss from 5.89 to 5.26
where the paper's plain SGD at 0.05 with momentum left it at 5.83. Its accuracies are not
comparable with the paper's.

Departures: the paper's split of KGS into training and test games is not published; here a game is
a test game when the hash of its file name says so (10%, cnn_jax.data.go_games). Positions whose
move is a pass are not examples (the network predicts board points only).
"""
import hashlib
import os

import ml_collections

from configs import common

FILTERS = (128, 192, 256, 384)
ARGS = {
    'data': common.Arg('kgs', ('kgs', 'gnugo'), str, None),
    'k': common.Arg(0, FILTERS, int, None),
}
# runlocal's data: the SGF games committed with the tests (digits cannot stand in for Go
# positions), prepared in a data dir of their own per checkout (a prepared copy remembers its
# source, and refuses another).
_RUNLOCAL_GAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'tests', 'data', 'go_games')
RUNLOCAL_DATA = {
    'data.source_dir': _RUNLOCAL_GAMES,
    'data.data_dir': os.path.join(
        os.path.expanduser('~'), '.cache', 'cnn_jax', 'runlocal_go',
        hashlib.sha1(_RUNLOCAL_GAMES.encode()).hexdigest()[:12]),
}
STEPS_BETWEEN_HALVINGS = 80_000_000
KGS_FILTERS = 192   # the paper's match network
TRAIN_OPS = 'random_dihedral'
PAPER = common.Paper(
    recipe={
        'data.name': 'go_games',
        'data.train_ops': TRAIN_OPS,
        'model.name': 'alphago_policy',
        'optimizer.learning_rate': 0.003,
        'optimizer.momentum': 0.0,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0,
        'batch_size': 16,
        'num_train_steps': 340_000_000,
        'schedule.name': 'piecewise',
        'schedule.unit': 'steps',
        'schedule.boundaries': tuple(STEPS_BETWEEN_HALVINGS * i for i in range(1, 5)),
        'schedule.decay_factor': 0.5,
    },
    targets={'k=128': '45.4', 'k=192': '44.6', 'k=256': '44.1', 'k=256, 8 symmetries': '43.0'},
    variants={'': {'model.filters': KGS_FILTERS}, 'k=128': {'model.filters': 128}})
GNUGO = {
    'model.filters': 128,
    'optimizer.name': 'adam',
    'optimizer.learning_rate': 0.001,
    'optimizer.weight_decay': 0.0,
    'batch_size': 64,
    'num_train_steps': 0,
    'num_epochs': 4,
    'schedule.name': 'cosine',
    'schedule.unit': 'steps',
    'eval_every_epochs': 1,
}


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='data', recipe='alphago_policy')
  config = common.base_config()
  common.apply(config, PAPER.recipe)
  config.data.eval_ops = ''
  if a.data == 'gnugo':
    common.apply(config, GNUGO)
  else:
    config.model.filters = KGS_FILTERS
  if a.k:
    config.model.filters = a.k
  config.log_every_steps = 100
  return common.finish(config, a, local_data=RUNLOCAL_DATA)
