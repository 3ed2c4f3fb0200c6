"""Entry point: flags -> config -> train_and_evaluate.

  python -m cnn_jax.main --workdir=/tmp/cnn_jax/default
  python -m cnn_jax.main --config=configs/digits_resnet.py --config.model.depth=56 --workdir=...
"""
import difflib
import importlib.util
import re
import sys

from absl import app, flags
from ml_collections import config_flags

import cnn_jax
from cnn_jax import parallel, runtime

FLAGS = flags.FLAGS
DEFAULT_CONFIG = 'configs/default.py'
flags.DEFINE_string('workdir', None, 'Checkpoints, metrics and the resolved config go here; '
                    'running again with the same workdir resumes.', required=True)
flags.DEFINE_string('coordinator_address', None, 'Multi-process runs: host:port of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process runs: this process\'s index.')
flags.DEFINE_integer('heartbeat_timeout', 60, 'Multi-process runs: seconds after which a silent '
                     'process counts as dead and the others stop with an error.')
flags.DEFINE_bool('allow_config_change', False, 'Resume even though the flags change the recipe '
                  'saved in workdir/config.json (the old file is kept as config.stepN.json).')
flags.DEFINE_bool('override_lock', False, 'Take the workdir lock even from a run that looks alive '
                  '(when you know it is dead, e.g. on another host).')


def main(argv):
  with cnn_jax.one_line_errors():
    runtime.start_program(argv)  # before initialize_distributed starts the backend
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id, heartbeat_timeout=FLAGS.heartbeat_timeout)
    from cnn_jax import train  # after distributed init: importing TF/JAX backends first is fine, using them is not
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change,
                             override_lock=FLAGS.override_lock)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, but every mistake in the config flags ends in one line.

  ml_collections reports an exception raised by a config's get_config, a missing config file and an
  override of a field that does not exist as whole tracebacks; the user needs one line naming the
  fix.
  """
  try:
    rest = FLAGS(argv)
    FLAGS.config.keys()  # the file is loaded, and the overrides applied, on first use
    return rest
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    sys.exit(f'error: {lines[-1] if lines else e}')
  except (OSError, AttributeError, KeyError) as e:
    sys.exit(f'error: {config_error_message(argv, e)}')


def _config_spec(argv: list[str]) -> str:
  specs = [a.split('=', 1)[1] for a in argv if a.startswith('--config=')]
  return specs[-1] if specs else DEFAULT_CONFIG


def config_error_message(argv: list[str], error: Exception) -> str:
  """One line for a config file that cannot be loaded (OSError) or an override that names a field
  the config does not have (AttributeError, KeyError from ml_collections)."""
  spec = _config_spec(argv)
  path, _, arg = spec.partition(':')
  if isinstance(error, OSError):
    found = re.search(r'\[Errno \d+\] ([^:\n]+)', str(error))  # ml_collections lists the attempts
    reason = found.group(1).strip() if found else str(error).strip().splitlines()[-1]
    return (f'--config={spec}: {reason}; config files are in configs/ '
            f'(e.g. --config={DEFAULT_CONFIG})')
  found = re.search(r"'([A-Za-z_]\w*)", str(error))
  missing = found.group(1) if found else str(error)
  flag = next((a.split('=')[0] for a in argv
               if a.startswith('--config.') and missing in a.split('=')[0].split('.')),
              f'--config.{missing}')
  loader = importlib.util.spec_from_file_location('config_file', path)
  module = importlib.util.module_from_spec(loader)
  loader.loader.exec_module(module)
  node = module.get_config(arg) if arg else module.get_config()
  for part in flag[len('--config.'):].split('.'):
    if part == missing or part not in node or not hasattr(node[part], 'keys'):
      break
    node = node[part]
  fields = sorted(node.keys())
  close = difflib.get_close_matches(missing, fields, n=3)
  hint = f'did you mean {" or ".join(close)}? ' if close else ''
  return f'{flag}: the config has no field {missing!r}; {hint}its fields: {", ".join(fields)}'


try:  # ml_collections reads the default file and the overrides here, at definition
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Training config file (file.py[:args]).',
                                  lock_config=True)
except (OSError, AttributeError, KeyError) as _error:
  sys.exit(f'error: {config_error_message(sys.argv, _error)}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
