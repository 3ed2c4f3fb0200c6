"""ZFNet on ImageNet (Zeiler & Fergus 2013, "Visualizing and understanding convolutional networks").

  python -m cnn_jax.main --config=configs/zfnet_imagenet.py --workdir=/tmp/cnn_jax/zfnet
  python -m cnn_jax.main --config=configs/zfnet_imagenet.py:wide,ten_crop --workdir=/tmp/cnn_jax/zfnet512
  python -m cnn_jax.main --config=configs/zfnet_imagenet.py:runlocal --workdir=/tmp/x  # smoke

Arguments: ``wide`` uses 512/1024/512 maps in conv3-5 (the paper's Table 2 variant, model
zfnet_512); ``ten_crop`` evaluates on 10 views; ``runlocal``.

Paper target, ImageNet-2012 validation top-1/top-5 error % (sheet section 3): one net 38.4/16.5.

Recipe: shorter side resized to 256, centre 256x256, per-pixel mean subtracted, 224x224
sub-crops (corners and centre) with and without horizontal flips; SGD batch 128, lr 1e-2,
momentum 0.9, weights 1e-2 and biases 0 (model.weight_init 'gaussian'), dropout 0.5 on fc6/7,
the learning rate annealed by hand when the validation error plateaus, 70 epochs.

Departures: the paper's renormalisation of conv filters whose RMS exceeds 0.1 is not implemented.
Training crops are random 224 windows of the 256x256 image (the paper samples among the 10 fixed
sub-crops). The manual annealing is the plateau rule with factor 0.1, patience 5 epochs, a gain
below 0.1% (schedule.plateau_min_delta 1e-3) as no improvement, at most three cuts (min_scale 1e-3);
none of these numbers is in the paper. The paper mentions no weight decay; none is used. The
per-channel mean replaces the per-pixel mean.
"""
import ml_collections

from configs import common

ARGS = {
    'wide': common.flag('512/1024/512 maps in conv3-5 (zfnet_512)'),
    'ten_crop': common.flag('10-view evaluation'),
}
PAPER = common.Paper(
    recipe={
        'model.weight_init': 'gaussian',
        'model.dropout_rate': 0.5,
        'optimizer.learning_rate': 0.01,
        'optimizer.momentum': 0.9,
        'optimizer.nesterov': False,
        'optimizer.weight_decay': 0.0,
        'batch_size': 128,
        'num_epochs': 70,
        **common.PLATEAU,                  # the manual annealing, made a rule
    },
    targets={'one net': '38.4/16.5'},
    variants={'': {'data.name': 'imagenet2012', 'model.name': 'zfnet'},
              'wide': {'model.name': 'zfnet_512'}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, recipe='zfnet_imagenet')
  config = common.base_config()
  norm = common.MEAN_SUBTRACTION
  eval_ops = (common.ten_crop_eval('resize_small(256) | central_crop(256)', 224, norm)
              if a.ten_crop else f'resize_center_crop(224, 256) | {norm}')
  common.imagenet_data(
      config,
      train_ops=('decode | resize_small(256) | central_crop(256) | random_crop(224) | flip_lr | '
                 f'{norm}'),
      eval_ops=eval_ops)
  common.set_model(config, 'zfnet_512' if a.wide else 'zfnet')
  common.apply(config, PAPER.recipe)
  config.checkpoint_every_steps = 5000
  return common.finish(config, a)
