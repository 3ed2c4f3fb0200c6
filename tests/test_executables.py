"""Steps' executables kept between runs (cnn_jax/executables.py): what the key leaves out cannot
change a program, and a stored executable is used only when it fits."""
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import executables, parallel, train
from conftest import small_config

# A changed value for every host-only field (data: fields that leave the data set's facts alone).
CHANGES = {'seed': 7, 'data__train_ops': 'resize(32) | normalize(mean=0.5, std=0.5)',
           'data__shuffle_buffer': 10, 'data__cache': False, 'log_every_steps': 3,
           'eval_every_epochs': 2.0, 'checkpoint_every_steps': 7, 'keep_checkpoints': 5,
           'compilation_cache_dir': '/elsewhere', 'final_test_only': True,
           'init_from': '/a/trained/run', 'init_from_skip': '^output/'}


def _lowered_steps(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  setup = train.build(config)
  state = train.abstract_state(setup, config.seed)
  sums = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                      train.zero_train_sums())
  data = parallel.batch_sharded(setup.mesh)
  batch = {'image': jax.ShapeDtypeStruct((config.batch_size,) + setup.info.image_shape,
                                         jnp.float32, sharding=data),
           'label': jax.ShapeDtypeStruct((config.batch_size,), jnp.int32, sharding=data)}
  eval_sums = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                           train._zero_metrics(train.EVAL_SUMS))
  eval_batch = dict(batch, mask=jax.ShapeDtypeStruct((config.batch_size,), jnp.float32,
                                                     sharding=data))
  return (train.make_train_step(setup, config).lower(state, sums, batch).as_text(),
          train.make_eval_step(setup).lower(state, eval_sums, eval_batch).as_text())


def test_every_host_only_field_leaves_the_lowered_steps_alone(data_dir):
  assert {key.split('__')[0] for key in CHANGES} == set(executables.HOST_ONLY_FIELDS)
  base = small_config(data_dir, batch_size=8)
  reference = _lowered_steps(base)
  for key, value in CHANGES.items():
    config = small_config(data_dir, batch_size=8, **{key: value})
    assert executables.program_config(config) == executables.program_config(base)
    assert _lowered_steps(config) == reference, f'{key} changes a step: it is not host-only'
  # and a field outside the list does reach both the key and the program
  config = small_config(data_dir, batch_size=8, loss__label_smoothing=0.1)
  assert executables.program_config(config) != executables.program_config(base)
  assert _lowered_steps(config)[0] != reference[0]


def test_a_stored_executable_is_used_only_when_it_fits(tmp_path, caplog):
  jitted = jax.jit(lambda x, y: x * 2 + y, donate_argnums=(0,))
  key, x, y = 'double-0', np.arange(6, dtype=np.float32), np.ones(6, np.float32)

  first = executables.CachedStep(jitted, key, str(tmp_path))
  np.testing.assert_array_equal(first(jnp.asarray(x), y), x * 2 + 1)
  executables.wait()
  assert not first.loaded and (tmp_path / key).exists()

  second = executables.CachedStep(jitted, key, str(tmp_path))
  np.testing.assert_array_equal(second(jnp.asarray(x), y), x * 2 + 1)
  assert second.loaded
  # arguments of another shape than the stored program's go to the jitted step
  np.testing.assert_array_equal(second(jnp.ones(3), np.ones(3, np.float32)), [3, 3, 3])

  other_shape = executables.CachedStep(jitted, key, str(tmp_path))
  np.testing.assert_array_equal(other_shape(jnp.ones(2), np.ones(2, np.float32)), [3, 3])
  assert not other_shape.loaded  # compiled for its own arguments, and stored over the old file
  executables.wait()

  (tmp_path / key).write_bytes(b'not an executable')
  with caplog.at_level(logging.WARNING):
    damaged = executables.CachedStep(jitted, key, str(tmp_path))
    np.testing.assert_array_equal(damaged(jnp.asarray(x), y), x * 2 + 1)
  assert not damaged.loaded
  assert any('cannot read the cached executable' in r.getMessage() for r in caplog.records)
  executables.wait()
  assert executables.CachedStep(jitted, key, str(tmp_path))(jnp.asarray(x), y).shape == (6,)

  uncached = executables.CachedStep(jitted, key, None)
  np.testing.assert_array_equal(uncached(jnp.asarray(x), y), x * 2 + 1)


def test_the_key_names_the_step_and_changes_with_the_program(data_dir):
  config = small_config(data_dir)
  setup = train.build(config)
  key = executables.step_key('train_step', config, setup.mesh, setup.model)
  assert key.startswith('train_step-')
  assert key == executables.step_key('train_step', config, setup.mesh, setup.model)
  assert key != executables.step_key('eval_step', config, setup.mesh, setup.model)
  config.optimizer.learning_rate = 0.5
  assert key != executables.step_key('train_step', config, setup.mesh, setup.model)
