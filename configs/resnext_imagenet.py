"""ResNeXt-50 32x4d, ResNeXt-101 32x4d and 64x4d on ImageNet (Xie et al. 2016).

  python -m cnn_jax.main --config=configs/resnext_imagenet.py --workdir=/tmp/cnn_jax/resnext50
  python -m cnn_jax.main --config=configs/resnext_imagenet.py:101-64x4d --workdir=/tmp/cnn_jax/resnext101
  python -m cnn_jax.main --config=configs/resnext_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: net (positional) 50-32x4d|101-32x4d|101-64x4d, default 50-32x4d; ``ten_crop``;
``runlocal``.

Paper target, single-crop (224 of 256) validation top-1 error %: ResNeXt-50 32x4d 22.2 (sheet
section 13); 101 32x4d 21.2 and 101 64x4d 20.4 (the authors' README; not in the sheet).

Recipe: SGD batch 256 on 8 GPUs (32 per GPU: BatchNorm over groups of 32,
model.bn_group_size=32), momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 three times with
the schedule of fb.resnet.torch (after epochs 30, 60 and 90; the authors' code trains 100
epochs); scale and aspect-ratio augmentation (inception_crop) as fb.resnet.torch, flips, AlexNet
colour noise; test on the 224 centre of the image resized to 256; projection shortcuts, stride on
the grouped 3x3.

Departures: fb.resnet.torch's colour jitter is not implemented. The authors' code uses Nesterov
momentum, which the paper does not mention; this follows the paper (plain momentum).
"""
import ml_collections

from configs import common

NETS = {'50-32x4d': (50, 32, 4), '101-32x4d': (101, 32, 4), '101-64x4d': (101, 64, 4)}
ARGS = {
    'net': common.Arg('50-32x4d', tuple(NETS), str, None),
    'ten_crop': common.flag('10-view evaluation'),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'resnext',
        'model.stem': 'imagenet',
        'model.shortcut': 'B',
        'model.stride_on_3x3': True,
        'model.bn_group_size': 32,         # batch 256 on 8 GPUs
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 1e-4,
        'batch_size': 256,
        'num_epochs': 100,
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (30, 60, 90),
        'schedule.decay_factor': 0.1,
    },
    targets={'50-32x4d': '22.2', '101-32x4d': '21.2', '101-64x4d': '20.4'},
    variants={
        '': {'data.name': 'imagenet2012', 'model.depth': 50, 'model.groups': 32,
             'model.width_per_group': 4},
        '101-64x4d': {'model.depth': 101, 'model.groups': 64, 'model.width_per_group': 4},
    })


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='net', recipe='resnext_imagenet')
  depth, groups, width = NETS[a.net]
  config = common.base_config()
  norm = common.MEAN_STD
  eval_ops = (common.ten_crop_eval('resize_small(256)', 224, norm) if a.ten_crop
              else f'resize_center_crop(224, 256) | {norm}')
  common.imagenet_data(
      config,
      train_ops=f'decode_inception_crop(224) | flip_lr | lighting(0.1) | {norm}',
      eval_ops=eval_ops)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': depth, 'model.groups': groups,
                        'model.width_per_group': width})
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
