"""VGG configurations A, A-LRN, B, C, D, E on ImageNet (Simonyan & Zisserman 2014), single-scale S=256.

  python -m cnn_jax.main --config=configs/vgg_imagenet.py --workdir=/tmp/cnn_jax/vgg16          # D
  python -m cnn_jax.main --config=configs/vgg_imagenet.py:E,scale=multi --workdir=/tmp/cnn_jax/vgg19
  python -m cnn_jax.main --config=configs/vgg_imagenet.py:D,bn --workdir=/tmp/cnn_jax/vgg16_bn
  python -m cnn_jax.main --config=configs/vgg_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: variant (positional) A|A-LRN|B|C|D|E, default D (VGG-16); ``scale=256|384|multi``
the training scale S (multi: S uniform in [256, 512]), default 256; ``bn`` adds BatchNorm
(torchvision's vgg*_bn, not in the paper; not for A-LRN); ``ten_crop``; ``runlocal``.

Paper target, single-scale validation top-1/top-5 error % at S=Q=256 (sheet section 4):
A 29.6/10.4, A-LRN 29.7/10.5, B 28.7/9.9, C 28.1/9.4, D 27.0/8.8, E 27.3/9.0. (Other training
scales: the paper's Table 3; the sheet does not list them.)

Recipe: SGD batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5 on the first two FC layers,
lr 1e-2 divided by 10 when the validation accuracy stops improving (three times, 74 epochs);
shorter side rescaled to S, random 224 crops, horizontal flips, random RGB colour shift (AlexNet's
PCA noise); test scale Q = S (Q = 384 for multi-scale training).

Departures: the model's He (fan-out) init replaces the paper's N(0, 0.01^2) start and its
initialisation of B-E from a trained A (the paper notes Glorot-style init works without it), so
the input is normalised by the per-channel mean and std (not only the mean RGB) to keep the
activations at unit scale. Evaluation is the centre 224 crop at Q instead of the paper's dense
(fully-convolutional) evaluation. "Stops improving" = no 0.1% gain over 5 epochs (not in the
paper; schedule.plateau_min_delta 1e-3, patience 5; at most three cuts: min_scale 1e-3). S=384
nets were initialised from the S=256 net with lr 1e-3 in the paper; here they train from scratch
with the same recipe.
"""
import ml_collections

from configs import common

MODELS = {'A': 'vgg11', 'A-LRN': 'vgg11_lrn', 'B': 'vgg13', 'C': 'vgg16_c', 'D': 'vgg16',
          'E': 'vgg19'}
# Training scale -> (the op that sets it, the test scale Q).
SCALES = {'256': ('resize_small(256)', 256), '384': ('resize_small(384)', 384),
          'multi': ('resize_small_random(256, 512)', 384)}
ARGS = {
    'variant': common.Arg('D', tuple(MODELS), str, None),
    'scale': common.Arg('256', tuple(SCALES), str, None),
    'bn': common.flag('BatchNorm after every conv (torchvision vgg*_bn)'),
    'ten_crop': common.flag('10-view evaluation'),
}


PAPER = common.Paper(
    recipe={
        'model.dropout_rate': 0.5,
        'optimizer.learning_rate': 0.01,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 5e-4,
        'batch_size': 256,
        'num_epochs': 74,
        **common.PLATEAU,                  # /10 when the validation accuracy stops improving
    },
    targets={'A': '29.6/10.4', 'A-LRN': '29.7/10.5', 'B': '28.7/9.9', 'C': '28.1/9.4',
             'D': '27.0/8.8', 'E': '27.3/9.0'},
    variants={'': {'data.name': 'imagenet2012', 'model.name': 'vgg16'},
              **{variant: {'model.name': model} for variant, model in MODELS.items()},
              'D,bn': {'model.name': 'vgg16_bn'}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='variant', recipe='vgg_imagenet')
  if a.bn and a.variant == 'A-LRN':
    raise ValueError('argument bn: A-LRN has no BatchNorm variant; use A,bn.')
  scale_op, test_scale = SCALES[a.scale]
  config = common.base_config()
  norm = common.MEAN_STD
  eval_ops = (common.ten_crop_eval(f'resize_small({test_scale})', 224, norm) if a.ten_crop
              else f'resize_center_crop(224, {test_scale}) | {norm}')
  common.imagenet_data(
      config,
      train_ops=f'decode | {scale_op} | random_crop(224) | flip_lr | lighting(0.1) | {norm}',
      eval_ops=eval_ops)
  common.set_model(config, MODELS[a.variant] + ('_bn' if a.bn else ''))
  common.apply(config, PAPER.recipe)
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
