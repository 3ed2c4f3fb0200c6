"""The names of what a run writes in its workdir, for cnn_jax and for the tools that read runs
(experiments/) without importing jax or TensorFlow."""

CONFIG = 'config.json'        # the resolved config
METRICS = 'metrics.jsonl'     # one record per log or eval event
RESULT = 'result.json'        # the final metrics; written last, so it marks a finished run
CHECKPOINTS = 'checkpoints'   # orbax's step directories
UNREADABLE_CHECKPOINTS = 'checkpoints_unreadable'  # checkpoints that failed to restore, kept
LOCK = 'lock.json'            # held by the run training in the workdir (cnn_jax/workdir.py)
