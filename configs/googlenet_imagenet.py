"""GoogLeNet / Inception v1 on ImageNet (Szegedy et al. 2014), with both auxiliary classifiers.

  python -m cnn_jax.main --config=configs/googlenet_imagenet.py --workdir=/tmp/cnn_jax/googlenet
  python -m cnn_jax.main --config=configs/googlenet_imagenet.py:ten_crop --workdir=/tmp/cnn_jax/googlenet
  python -m cnn_jax.main --config=configs/googlenet_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: ``ten_crop`` evaluates on 10 views; ``runlocal``.

Paper target, ILSVRC-2014 validation top-5 error % (sheet section 5): 1 model, 1 crop 10.07
(7 models x 144 crops 6.67). The paper gives no single-model top-1.

Recipe: the paper states SGD with momentum 0.9, a learning rate decreased by 4% every 8 epochs,
crops of 8-100% of the image area with aspect ratio in [3/4, 4/3] resized to 224 (inception_crop),
photometric distortions, dropout 0.4 before the classifier, auxiliary heads (dropout 0.7) whose
losses are weighted 0.3 and dropped at inference. It does not give the base rate, batch size,
weight decay or length; those come from the BVLC Caffe replication made with the authors' help
(models/bvlc_googlenet/solver.prototxt): lr 0.01, batch 32, weight decay 2e-4, x0.96 every
320,000 iterations (= 8 epochs of 1.28M images at batch 32), 10M iterations (250 epochs).
The 4% cut is a piecewise schedule with a boundary every 8 epochs and factor 0.96.

Departures: Howard's photometric distortions are not implemented; horizontal flips (the Caffe
replication's "mirror") are used. Pixel-mean subtraction on the 0..255 scale, as the Caffe model.
Evaluation: the centre 224 crop of the image resized to 256 (the paper's single-crop protocol is
not specified further).
"""
import ml_collections

from configs import common

ARGS = {'ten_crop': common.flag('10-view evaluation')}
EPOCHS = 250
DECAY_EVERY = 8
PAPER = common.Paper(
    recipe={
        'model.name': 'googlenet',
        'model.aux_heads': True,
        'model.dropout_rate': 0.4,
        'model.aux_dropout_rate': 0.7,
        'loss.aux_weight': 0.3,
        'optimizer.learning_rate': 0.01,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 2e-4,
        'batch_size': 32,
        'num_epochs': EPOCHS,
        'schedule.name': 'piecewise',      # -4% every 8 epochs
        'schedule.unit': 'epochs',
        'schedule.boundaries': tuple(range(DECAY_EVERY, EPOCHS, DECAY_EVERY)),
        'schedule.decay_factor': 0.96,
    },
    targets={'1 model, 1 crop, top-5': '10.07'},
    variants={'': {'data.name': 'imagenet2012'}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, recipe='googlenet_imagenet')
  config = common.base_config()
  norm = common.MEAN_SUBTRACTION
  eval_ops = (common.ten_crop_eval('resize_small(256)', 224, norm) if a.ten_crop
              else f'resize_center_crop(224, 256) | {norm}')
  common.imagenet_data(
      config,
      train_ops=(f'decode_inception_crop(224, area_min=0.08, area_max=1.0, ratio_min=0.75, '
                 f'ratio_max={4 / 3!r}) | flip_lr | {norm}'),
      eval_ops=eval_ops)
  common.apply(config, PAPER.recipe)
  config.checkpoint_every_steps = 10_000
  config.log_every_steps = 200
  return common.finish(config, a)
