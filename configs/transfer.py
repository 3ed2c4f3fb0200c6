"""A demo, not a paper recipe: a Fashion-MNIST network transferred to digits, as a linear probe,
fine-tuned, or trained from scratch with the same budget (README, "Transfer: init_from and
trainable").

  python -m cnn_jax.main --config=configs/fashion_mnist.py:resnet20,pad=2 \\
      --workdir=/tmp/cnn_jax/fm_resnet20                                  # the source, once
  python -m cnn_jax.main --config=configs/transfer.py:probe,shots=5 --workdir=/tmp/cnn_jax/probe5
  python -m cnn_jax.main --config=configs/transfer.py:finetune,source=DIR --workdir=...
  python -m cnn_jax.main --config=configs/transfer.py:scratch,shots=20 --workdir=...

Arguments:
  recipe (positional)  probe: the source's layers frozen (their BatchNorm in inference mode), a
                       new classifier trained on them; finetune: every layer trained from the
                       source's values, the classifier new; scratch: the same network and budget
                       from a random start. Default probe.
  shots=N              training images per class: the first N of each class of digits' 1,437
                       (config.data.train_per_class); all (default) = every training image.
  source=DIR           the trained Fashion-MNIST run (config.init_from); default
                       /tmp/cnn_jax/fm_MODEL. Read when the run starts, not here.
  model=NAME           the source's model, as configs/fashion_mnist.py names it (default
                       resnet20): its network and its input preprocessing are used here.
  steps=N              iterations (default 300), at batch 32 (or 10 x shots when smaller).
  runlocal             the smoke run of configs/common.py on the same data: 2 steps at batch 2,
                       2 test images (probe and finetune still read the source).

Digits (8x8 grey, 0..16 ink on a 0 background, stored as 0..255) go through the source's own
evaluation preprocessing, first resized to Fashion-MNIST's 28x28 (bright object on a dark
background in both, normalised with Fashion-MNIST's mean and std); training adds random 2-pixel
shifts. The classifier (``fc``; LeNet-5's ``output``) is always initialised afresh: digits have as
many classes as Fashion-MNIST, but other ones. SGD with momentum 0.9, a cosine schedule without
warm-up, the source recipe's weight decay; learning rate 0.1 for probe and scratch, 0.01 for
finetune (not tuned). The test split (360 digits) is evaluated once, at the end.
"""
from __future__ import annotations

import ml_collections

from cnn_jax.data import DATASETS
from configs import common, fashion_mnist

RECIPES = ('probe', 'finetune', 'scratch')
LEARNING_RATES = {'probe': 0.1, 'finetune': 0.01, 'scratch': 0.1}
# The classifier of each model family of configs/fashion_mnist.py (its top-level module).
HEADS = {'lenet5': 'output'}
DEFAULT_HEAD = 'fc'   # layers.classifier_head: the ResNets and Wide ResNets
BATCH = 32
STEPS = 300
SHIFT = 2             # pixels of the random shifts in training
DEFAULT_SOURCE = '/tmp/cnn_jax/fm_{model}'


def parse_shots(text: str) -> int:
  """'all' -> 0 (every example), else a positive number of examples per class."""
  if text.strip() == 'all':
    return 0
  if int(text) < 1:
    raise ValueError(text)
  return int(text)


ARGS = {
    'recipe': common.Arg('probe', RECIPES, str, None, 'probe | finetune | scratch'),
    'shots': common.Arg(0, None, parse_shots, None, 'training images per class, or all'),
    'source': common.Arg('', None, str, None, 'the trained Fashion-MNIST run (init_from)'),
    'model': common.Arg('resnet20', None, fashion_mnist.parse_model, None,
                        'the source\'s model, as configs/fashion_mnist.py names it'),
    'steps': common.Arg(STEPS, None, int, None, 'iterations'),
}


def get_config(args: str = '') -> ml_collections.ConfigDict:
  a = common.parse_args(args, ARGS, positional='recipe', recipe='transfer')
  if a.steps < 1:
    raise ValueError(f'argument steps={a.steps} must be >= 1.')
  source = fashion_mnist.get_config(a.model)  # the source recipe: its network and preprocessing
  config = common.base_config()
  config.model = source.model
  digits = DATASETS['digits']
  size = DATASETS[source.data.name].image_shape[0]
  config.data.name = 'digits'
  eval_ops = common.local_ops(source.data.eval_ops, size, rgb=False)  # resize(28) | ...
  config.data.eval_ops = eval_ops
  config.data.train_ops = eval_ops.replace(f'resize({size})',
                                           f'resize({size}) | pad_random_crop({SHIFT})', 1)
  config.data.train_per_class = a.shots
  config.data.cache = True
  config.batch_size = min(BATCH, digits.num_classes * a.shots) if a.shots else BATCH
  head = f'^{HEADS.get(fashion_mnist.family(a.model), DEFAULT_HEAD)}/'
  if a.recipe != 'scratch':
    config.init_from = a.source or DEFAULT_SOURCE.format(model=a.model)
    config.init_from_skip = head
  if a.recipe == 'probe':
    config.trainable = head
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = source.optimizer.weight_decay
  config.optimizer.learning_rate = LEARNING_RATES[a.recipe]
  config.schedule.name = 'cosine'
  config.schedule.unit = 'steps'
  config.schedule.warmup = 0
  config.num_train_steps = a.steps
  config.eval_every_epochs = common.NEVER   # the test split once, after the last step
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  # runlocal: this recipe's own data already (digits), shortened to the smoke run
  return common.finish(config, a, local_data={'data.name': 'digits'})
