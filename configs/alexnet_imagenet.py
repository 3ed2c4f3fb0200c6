"""AlexNet on ImageNet (Krizhevsky, Sutskever & Hinton 2012), the paper's two-tower network and recipe.

  python -m cnn_jax.main --config=configs/alexnet_imagenet.py --workdir=/tmp/cnn_jax/alexnet
  python -m cnn_jax.main --config=configs/alexnet_imagenet.py:ten_crop --workdir=/tmp/cnn_jax/alexnet
  python -m cnn_jax.main --config=configs/alexnet_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: ``ten_crop`` evaluates on the paper's 10 test views (4 corners + centre, and mirrors)
and averages their logits; ``runlocal``.

Paper target, ILSVRC-2012 validation top-1/top-5 error % (sheet section 2): one CNN 40.7/18.2
(10-view test).

Recipe: images rescaled (shorter side 256) and centre-cropped to 256x256; random crops and their
horizontal reflections; PCA colour noise with alpha ~ N(0, 0.1); the mean image subtracted (no
std division). SGD batch 128, momentum 0.9, weight decay 5e-4 inside the momentum update
(coupled), weights N(0, 0.01^2), bias 1 in conv2/4/5 and fc6/7 (model.weight_init
'gaussian_unit_bias'), dropout 0.5 on fc6/fc7, lr 0.01 divided by 10 when the validation error
stops improving (three times), about 90 epochs.

Departures: crops are 227x227, the size the layer arithmetic needs (the paper says 224); the
per-channel mean replaces the mean image; "stops improving" is made concrete as: no decrease of
the validation error by 0.1% (schedule.plateau_min_delta 1e-3) over 5 epochs (schedule.patience, not in
the paper), at most three cuts (min_scale 1e-3). Weight decay skips the biases (as the Caffe
reference model; the paper's update rule does not say).
"""
import ml_collections

from configs import common

ARGS = {'ten_crop': common.flag('10-view evaluation')}
PAPER = common.Paper(
    recipe={
        'model.name': 'alexnet',
        'model.towers': 2,
        'model.weight_init': 'gaussian_unit_bias',
        'model.dropout_rate': 0.5,
        'model.lrn': True,
        'optimizer.learning_rate': 0.01,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 5e-4,
        'batch_size': 128,
        'num_epochs': 90,
        **common.PLATEAU,                  # /10 when the validation error stops improving
    },
    targets={'one CNN': '40.7/18.2'},
    variants={'': {'data.name': 'imagenet2012'}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, recipe='alexnet_imagenet')
  config = common.base_config()
  norm = common.MEAN_SUBTRACTION
  eval_ops = (common.ten_crop_eval('resize_small(256) | central_crop(256)', 227, norm)
              if a.ten_crop else f'resize_center_crop(227, 256) | {norm}')
  common.imagenet_data(
      config,
      train_ops=('decode | resize_small(256) | central_crop(256) | random_crop(227) | flip_lr | '
                 f'lighting(0.1) | {norm}'),
      eval_ops=eval_ops)
  common.apply(config, PAPER.recipe)
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
