"""Entry point: flags -> config -> train_and_evaluate.

  python -m cnn_jax.main --workdir=/tmp/cnn_jax/default
  python -m cnn_jax.main --config=configs/resnet_cifar.py --config.model.depth=56 --workdir=...
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import cnn_jax
from cnn_jax import parallel

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/default.py', 'Training config file (file.py[:args]).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and the resolved config go here; '
                    'running again with the same workdir resumes.', required=True)
flags.DEFINE_string('coordinator_address', None, 'Multi-process runs: host:port of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process runs: this process\'s index.')
flags.DEFINE_integer('heartbeat_timeout', 60, 'Multi-process runs: seconds after which a silent '
                     'process counts as dead and the others stop with an error.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not FLAGS['verbosity'].present:  # orbax and tfds log every save and read at INFO
    logging.set_verbosity(logging.WARNING)
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                                  heartbeat_timeout=FLAGS.heartbeat_timeout)
  from cnn_jax import train  # after distributed init: importing TF/JAX backends first is fine, using them is not
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except cnn_jax.ConfigError as e:
    sys.exit(f'error: {e}')  # one line, no traceback: the message names the fix


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, but a bad config file argument ends in its one-line message.

  ml_collections reports an exception raised by a config's get_config as a whole traceback; the
  user needs only its last line, which names the valid values.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    sys.exit(f'error: {lines[-1] if lines else e}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
