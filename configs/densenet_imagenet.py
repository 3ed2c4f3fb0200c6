"""DenseNet-BC 121/169/201/264 (k=32) on ImageNet (Huang et al. 2017).

  python -m cnn_jax.main --config=configs/densenet_imagenet.py --workdir=/tmp/cnn_jax/densenet121
  python -m cnn_jax.main --config=configs/densenet_imagenet.py:201 --workdir=/tmp/cnn_jax/densenet201
  python -m cnn_jax.main --config=configs/densenet_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: depth (positional) 121|169|201|264, default 121; ``ten_crop``; ``runlocal``.

Paper target, single-crop validation top-1/top-5 error % (sheet section 12): 121 25.02/7.71,
169 23.80/6.85, 201 22.58/6.34, 264 22.15/6.12.

Recipe: SGD with Nesterov momentum 0.9 (no dampening), weight decay 1e-4, batch 256, 90 epochs,
lr 0.1 divided by 10 at epochs 30 and 60 (the paper; the sheet gives batch and length only);
the augmentation of fb.resnet.torch, which the paper adopts: scale and aspect-ratio crops
(inception_crop, 8-100% area), flips, AlexNet colour noise; single-crop test: 224 centre of the
image resized to 256; bottleneck layers and compression 0.5 (the BC of DenseNet-BC).

Departures: fb.resnet.torch's colour jitter (brightness, contrast, saturation 0.4) is not
implemented.
"""
import ml_collections

from configs import common

ARGS = {
    'depth': common.Arg(121, (121, 169, 201, 264), int, None),
    'ten_crop': common.flag('10-view evaluation'),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'densenet',
        'model.stem': 'imagenet',
        'model.growth_rate': 32,
        'model.bottleneck': True,
        'model.compression': 0.5,
        'model.dropout_rate': 0.0,
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': True,
        'optimizer.weight_decay': 1e-4,
        'batch_size': 256,
        'num_epochs': 90,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (30, 60),
        'schedule.decay_factor': 0.1,
    },
    targets={'121': '25.02/7.71', '169': '23.80/6.85', '201': '22.58/6.34', '264': '22.15/6.12'},
    variants={'': {'data.name': 'imagenet2012', 'model.depth': 121},
              '264': {'model.depth': 264}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='depth', recipe='densenet_imagenet')
  config = common.base_config()
  norm = common.MEAN_STD
  eval_ops = (common.ten_crop_eval('resize_small(256)', 224, norm) if a.ten_crop
              else f'resize_center_crop(224, 256) | {norm}')
  common.imagenet_data(
      config,
      train_ops=f'decode_inception_crop(224) | flip_lr | lighting(0.1) | {norm}',
      eval_ops=eval_ops)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': a.depth})
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
