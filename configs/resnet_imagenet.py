"""ResNet-18/34/50/101/152 on ImageNet (He et al. 2015, "Deep residual learning"), the paper's recipe.

  python -m cnn_jax.main --config=configs/resnet_imagenet.py:50 --workdir=/tmp/cnn_jax/resnet50
  python -m cnn_jax.main --config=configs/resnet_imagenet.py:depth=152,ten_crop --workdir=...
  python -m cnn_jax.main --config=configs/resnet_imagenet.py:50,runlocal --workdir=/tmp/x  # smoke

Arguments: depth (positional) 18|34|50|101|152, default 50; ``v1_5`` puts the stride of the
downsampling bottlenecks on the 3x3 (torchvision's ResNet, whose numbers the reference sheet
quotes); ``ten_crop`` evaluates on 10 views; ``runlocal`` (configs/common.py).

Paper target (the reference sheet gives torchvision's single-crop top-1/top-5 error, from a v1.5 net
trained with torchvision's recipe): R18 30.24/10.92, R34 26.69/8.58, R50 23.87/7.14,
R101 22.63/6.45, R152 21.69/5.95.

Recipe (sheet section 7): SGD batch 256, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 when
the error plateaus, about epochs 30 and 60, up to 60x10^4 iterations (the paper; 120 epochs at
batch 256); scale augmentation (shorter side uniform in [256, 480]), random 224 crop, flip, AlexNet
colour noise; He init (the model's), BatchNorm, no dropout; option-B shortcuts.

Departures: the plateau cuts are fixed at epochs 30 and 60, where the sheet places them;
per-channel mean/std normalisation replaces the per-pixel mean; evaluation is the centre 224 crop
of the image resized to 256 (the paper's tables use 10-crop and fully-convolutional multi-scale
testing; ``ten_crop`` gives the former). v1 (stride on the first 1x1) is the default because it is
the paper's network.
"""
import ml_collections

from configs import common

DEPTHS = (18, 34, 50, 101, 152)
ARGS = {
    'depth': common.Arg(50, DEPTHS, int, None),
    'v1_5': common.flag('stride-2 on the 3x3 of downsampling bottlenecks (torchvision)'),
    'ten_crop': common.flag('10-view evaluation'),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'resnet',
        'model.shortcut': 'B',
        'optimizer.learning_rate': 0.1,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 1e-4,
        'batch_size': 256,
        'num_train_steps': 600_000,        # "trained for up to 60 x 10^4 iterations"
        'schedule.name': 'piecewise',
        'schedule.unit': 'epochs',
        'schedule.boundaries': (30, 60),   # the plateaus, where the sheet places them
        'schedule.decay_factor': 0.1,
    },
    targets={'18': '30.24/10.92', '34': '26.69/8.58', '50': '23.87/7.14', '101': '22.63/6.45',
             '152': '21.69/5.95'},
    variants={
        '': {'data.name': 'imagenet2012', 'model.depth': 50, 'model.stride_on_3x3': False},
        '18': {'model.depth': 18},
        '34': {'model.depth': 34},
        'depth=101': {'model.depth': 101},
        '152,v1_5': {'model.depth': 152, 'model.stride_on_3x3': True},
    })


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='depth', recipe='resnet_imagenet')
  config = common.base_config()
  eval_ops = (common.ten_crop_eval('resize_small(256)', 224, common.MEAN_STD) if a.ten_crop
              else f'resize_center_crop(224, 256) | {common.MEAN_STD}')
  common.imagenet_data(
      config,
      train_ops=('decode | resize_small_random(256, 480) | random_crop(224) | flip_lr | '
                 f'lighting(0.1) | {common.MEAN_STD}'),
      eval_ops=eval_ops)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': a.depth, 'model.stride_on_3x3': a.v1_5,
                        'model.residual': True, 'model.survival_prob_last': 1.0})
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
