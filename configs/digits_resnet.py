"""A demo, not a paper recipe: the CIFAR ResNet (He et al. 2015, depth 6n+2) on digits, with the
paper's optimiser settings.

  python -m cnn_jax.main --config=configs/digits_resnet.py --workdir=/tmp/cnn_jax/resnet20
  python -m cnn_jax.main --config=configs/digits_resnet.py:56 --workdir=/tmp/cnn_jax/resnet56

The argument is the depth (default 20). Expected on digits: about 98% test accuracy for ResNet-20
after 15 epochs (a few minutes on 2 CPU cores). The paper's CIFAR-10 recipe is
configs/resnet_cifar10.py.
"""
import ml_collections

from configs import default


def get_config(depth: str = '20') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model = ml_collections.ConfigDict({
      'name': 'resnet_cifar', 'depth': int(depth), 'base_width': 16, 'residual': True,
      'survival_prob_last': 1.0,
      # None: BatchNorm over the global batch; a placeholder, so that a flag can set a group size
      'bn_group_size': ml_collections.config_dict.placeholder(int)})
  config.data.train_ops = 'resize(32) | pad_random_crop(4) | normalize(mean=0.3, std=0.4)'
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 1e-4
  config.optimizer.nesterov = False
  config.batch_size = 128
  config.num_epochs = 15
  config.schedule.name = 'piecewise'
  config.schedule.boundaries = (8, 12)      # /10 at about half and three quarters, as the paper
  config.schedule.warmup = 0
  config.eval_every_epochs = 5
  config.log_every_steps = 10
  return config
