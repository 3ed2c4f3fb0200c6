"""LeNet-5 on digits: the quick start, end to end on real data with no network.

  python -m cnn_jax.main --workdir=/tmp/cnn_jax/default

Expected: about 98-99% test accuracy on the 360 test digits, in under a minute on 2 CPU cores.
Every other config starts from this one and overrides what its paper changes.
"""
import ml_collections
from ml_collections.config_dict import placeholder  # None that --config.X=... can override


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = 'digits'           # any name in cnn_jax.data.DATASETS
  config.data.data_dir = placeholder(str)    # tfds data dir; None = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.manual_dir = placeholder(str)  # for data sets tfds cannot download (imagenet2012)
  config.data.download = True
  config.data.source_dir = placeholder(str)  # local files of a data set cnn_jax prepares itself
                                             # (fashion_mnist's idx files); None = its default place
  config.data.train_split = ''          # tfds split syntax, e.g. 'train[:90%]'; '' = the data set's
  config.data.eval_split = ''           # e.g. 'test[:64]' for a smoke run; '' = the data set's
  config.data.validation_size = 0       # hold out the last N training examples for model selection
                                        # (evaluated beside the eval split; drives plateau); 0 = none
  config.data.train_size = 0            # train on the first N of the remaining examples; 0 = all
  config.data.train_per_class = 0       # train on the first N examples of each class (in the
                                        # split's stored order; few-shot); 0 = all
  config.data.train_ops = 'resize(32) | pad_random_crop(2) | normalize(mean=0.3, std=0.4)'
  config.data.eval_ops = 'resize(32) | normalize(mean=0.3, std=0.4)'
  config.data.shuffle_buffer = 50_000
  config.data.num_shards = 0            # training data shards; 0 = one per process. The data order
                                        # depends on it, not on the devices: fix it to compare layouts
  config.data.cache = True              # keep decoded examples in memory (small data sets)
  config.data.prefetch = 0              # batches to prefetch; 0 = autotune

  config.model = ml_collections.ConfigDict()
  config.model.name = 'lenet5'          # any name in cnn_jax.models.names(); other fields go to it

  # Transfer (cnn_jax/transfer.py). Patterns are comma-separated regexes searched in variable
  # paths such as 'stage3_block2/conv1/kernel' ('^fc/': the classifier of the ResNets).
  config.init_from = ''                 # a trained run's workdir (or its checkpoints/<step>, or a
                                        # python -m cnn_jax.convert directory): a fresh run starts
                                        # from its parameters and BatchNorm statistics, matched by
                                        # path; a shape that differs is initialised afresh. '' = none
  config.init_from_skip = ''            # variables not loaded from init_from (initialised afresh),
                                        # e.g. '^fc/' for a new head over as many classes
  config.trainable = ''                 # parameters that train; the others stay as loaded, their
                                        # layers in inference mode. '' = all

  config.loss = ml_collections.ConfigDict()
  config.loss.label_smoothing = 0.0
  config.loss.aux_weight = 0.3          # auxiliary classifiers (GoogLeNet), training only

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'         # sgd, adam, adamw
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 5e-4
  config.optimizer.weight_decay_mode = 'coupled'  # coupled (L2 in the gradient) or decoupled
  config.optimizer.decay_all_params = False       # False: no decay on biases and BatchNorm

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'cosine'       # constant, piecewise, cosine, plateau
  config.schedule.unit = 'epochs'       # unit of warmup and boundaries: epochs or steps
  config.schedule.warmup = 1
  config.schedule.warmup_lr = placeholder(float)  # warm-up start (linear) or level (constant); None = 0
  config.schedule.warmup_shape = 'linear'  # linear or constant
  config.schedule.boundaries = ()       # piecewise: where the rate is multiplied by decay_factor
  config.schedule.decay_factor = 0.1
  config.schedule.final_fraction = 0.0  # cosine: final rate as a fraction of the base rate
  config.schedule.patience = 5          # plateau: evaluations without improvement before a cut
  config.schedule.cooldown = 0          # plateau: evaluations to wait after a cut
  config.schedule.plateau_min_delta = 1e-3  # plateau: error decrease that counts as improvement
  config.schedule.min_scale = 1e-3      # plateau: the rate never falls below base * min_scale

  config.mixed_precision = False        # bfloat16 compute; float32 params, optimiser, BatchNorm stats

  config.compilation_cache_dir = placeholder(str)  # XLA programs kept for every later run of
                                        # this user; None = $JAX_COMPILATION_CACHE_DIR, else
                                        # ~/.cache/cnn_jax/xla; '' = off
  config.batch_size = 64                # global, over all devices of all hosts
  config.num_epochs = 30
  config.num_train_steps = 0            # > 0 overrides num_epochs
  config.log_every_steps = 20
  config.eval_every_epochs = 5.0       # may be fractional (0.5: twice an epoch)
  config.final_test_only = False        # True: evaluations before the last step read only the
                                        # validation split (when there is one), not the test split
  config.eval_symmetries = 1            # 8: score each eval board by the mean of its 8 symmetries'
                                        # probabilities (AlphaGo); square images, a class per point
  config.checkpoint_every_steps = 200
  config.keep_checkpoints = 2
  config.skip_nonfinite_steps = False   # False: a non-finite loss or gradient stops the run (no
                                        # checkpoint of it is written); True: skip that update
  return config
