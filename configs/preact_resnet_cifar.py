"""Pre-activation ResNet-164 and ResNet-1001 on CIFAR-10/100 (He et al. 2016, "Identity mappings").

  python -m cnn_jax.main --config=configs/preact_resnet_cifar.py --workdir=/tmp/cnn_jax/preact164
  python -m cnn_jax.main --config=configs/preact_resnet_cifar.py:1001,dataset=cifar100 --workdir=...
  python -m cnn_jax.main --config=configs/preact_resnet_cifar.py:runlocal --workdir=/tmp/x  # smoke

Arguments: depth (positional) 164|1001 (bottleneck units, 9n+2), default 164;
``dataset=cifar10|cifar100``; ``runlocal``.

Paper target, test error % (sheet section 9): CIFAR-10: ResNet-164 5.46, ResNet-1001 4.92;
CIFAR-100: ResNet-1001 22.71 (ResNet-164 24.33 is the paper's Table 3; the sheet does not list it).
All are medians of 5 runs (Table 4). The abstract's 4.62% for ResNet-1001 on CIFAR-10 is a batch of
64 (Table 4, and the authors' resnet-1k-layers code).

Recipe: the reference sheet gives the architecture and results but no recipe; this follows the
paper's appendix, which keeps the CIFAR recipe of He et al. 2015: batch 128 on 2 GPUs (64 each:
model.bn_group_size=64), SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
iterations, stop at 64k (the appendix keeps He et al.'s settings, which stop there); a warm-up at
lr 0.01 for the first 400 iterations, "for all CIFAR experiments";
4-pixel padding, random 32 crop, flip; He init.

Departures: per-channel mean/std normalisation instead of the per-pixel mean. The public Torch
code (resnet-1k-layers) uses batch 64 for the 1001-layer net, which gives 4.62% on CIFAR-10; this
config keeps the paper's 128.
"""
import ml_collections

from configs import common
from configs import resnet_cifar10

ARGS = {
    'depth': common.Arg(164, (164, 1001), int, None),
    'dataset': common.Arg('cifar10', ('cifar10', 'cifar100'), str, None),
}
PAPER = common.Paper(
    recipe={
        'model.name': 'preact_resnet',
        'model.stem': 'cifar',
        'model.block': 'bottleneck',
        **resnet_cifar10.CIFAR_RECIPE,
        **resnet_cifar10.WARMUP,            # at lr 0.01, "for all CIFAR experiments"
    },
    targets={'164': '5.46', '1001': '4.92', '1001, batch 64': '4.62',
             '164,dataset=cifar100': '24.33', '1001,dataset=cifar100': '22.71'},
    variants={'': {'data.name': 'cifar10', 'model.depth': 164},
              '1001,dataset=cifar100': {'data.name': 'cifar100', 'model.depth': 1001}})


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='depth', recipe='preact_resnet_cifar')
  config = common.base_config()
  common.cifar_data(config, a.dataset)
  common.apply(config, PAPER.recipe)
  common.apply(config, {'model.depth': a.depth, 'model.shortcut': 'B', 'model.dropout_rate': 0.0,
                        'model.survival_prob_last': 1.0})
  config.checkpoint_every_steps = 2000
  return common.finish(config, a)
