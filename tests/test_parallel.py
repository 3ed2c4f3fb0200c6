"""parallel.device_batches: the loop's batches, in order, each made ahead of its step."""
import numpy as np

from cnn_jax import parallel


def test_device_batches_keep_order_and_stay_ahead_by_the_given_count():
  mesh = parallel.make_mesh()
  pulled = []
  def local_batches():
    for i in range(6):
      pulled.append(i)
      yield {'image': np.full((2, 3), i, np.float32), 'label': np.array([i, i], np.int32)}
  batches = parallel.device_batches(local_batches(), mesh, ahead=2)
  first = next(batches)
  assert pulled == [0, 1, 2]   # batches 1 and 2 are already global arrays when step 0 gets its own
  got = [first] + list(batches)
  assert [int(b['label'][0]) for b in got] == list(range(6))
  for i, batch in enumerate(got):
    assert batch['image'].sharding == parallel.batch_sharded(mesh)
    np.testing.assert_array_equal(batch['image'], np.full((2, 3), i))
