"""ResNeXt (Xie et al. 2016): ResNet bottlenecks whose 3x3 is a grouped conv of ``C`` groups.

A ResNeXt is :class:`cnn_jax.models.resnet.ResNet` with ``groups`` = cardinality C and
``width_per_group`` = d: the inner width of a stage-s block is ``64 * 2**s * d / 64 * C`` (stage 1 of
32x4d: 128), stride on the 3x3, projection shortcuts where the shape changes (option B). The
ImageNet counts equal torchvision's (resnext50_32x4d 25,028,904).

CIFAR ResNeXt-29 (``stem='cifar'``): 3x3 conv 64-BN-ReLU, three stages of three blocks with outputs
256/512/1024 and inner widths C*d, 2C*d, 4C*d; 8x64d has 34.4M parameters, 16x64d 68.1M.
"""
from __future__ import annotations

from cnn_jax.models import CIFAR_INPUT, IMAGENET_INPUT, Published, Smoke, register
from cnn_jax.models.resnet import ResNet

_PAPER = 'Xie et al. 2016, "Aggregated residual transformations for deep neural networks"'
_IMAGENET = {  # torchvision's counts; the paper's Table 3 multiply-adds for 50 32x4d
    (50, 32, 4): (Published('torchvision', params=25_028_904),
                  Published('Xie et al. 2016, Table 3', gmacs=4.2)),
    (101, 32, 4): (),
    (101, 32, 8): (Published('torchvision', params=88_791_336),),
    (101, 64, 4): (Published('torchvision', params=83_455_272),),
}
_CIFAR_MILLIONS = {8: 34.4, 16: 68.1}   # Table 7

register('resnext', ResNet, depth=50, groups=32, width_per_group=4, input_shape=IMAGENET_INPUT,
         paper=_PAPER, published=())
# The paper's ImageNet nets (50 32x4d; 101 32x4d and 64x4d) and torchvision's 101 32x8d.
for (_depth, _groups, _width), _published in _IMAGENET.items():
  register(f'resnext{_depth}_{_groups}x{_width}d', ResNet, depth=_depth, groups=_groups,
           width_per_group=_width, input_shape=IMAGENET_INPUT, paper=_PAPER, published=_published)
for _groups in (8, 16):
  register(f'resnext29_{_groups}x64d', ResNet, stem='cifar', depth=29, groups=_groups,
           width_per_group=64, num_classes=10, input_shape=CIFAR_INPUT, paper=_PAPER,
           published=(Published('Xie et al. 2016, Table 7', params_m=_CIFAR_MILLIONS[_groups]),),
           smoke=Smoke(dict(width_per_group=4), (16, 16, 3)) if _groups == 8 else None)
