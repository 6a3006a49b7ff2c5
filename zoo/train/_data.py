"""Data preparation for ``zoo.finetune`` after ``zoo.data.from_source`` resolved and checked a
data argument: targets for auxiliary heads, shuffle/batch/shard for tf.distribute, count steps."""
from zoo._keras import tf
from zoo.errors import InvalidArgumentError, check_positive_int


def _spec(ds):
    spec = ds.element_spec
    return (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)


def main_output_shape(model):
    """The shape of the model's first output: its prediction. Further outputs (DeepLab's
    ``aux``, GoogLeNet's ``aux1``/``aux2``) are auxiliary heads trained on the same labels."""
    return tuple(model.outputs[0].shape)


def with_aux_targets(ds, n_outputs):
    """(image, label) -> (image, (label,) * n_outputs): every head learns the same labels."""
    if n_outputs == 1:
        return ds
    return ds.map(lambda image, label: (image, (label,) * n_outputs), num_parallel_calls=tf.data.AUTOTUNE)


def _shuffle_buffer(ds, budget=256 * 2 ** 20):
    """Elements in a shuffle buffer of at most ~``budget`` bytes (at least 8): the whole
    dataset when it fits, else as many as fit (256 3D patches of 96^3 voxels and their labels
    would hold ~1.7 GB and delay the first step by 256 reads)."""
    n = int(tf.data.experimental.cardinality(ds))
    cap = n if n > 0 else 256  # a known-size dataset is shuffled whole when it fits the budget
    size = 0
    for s in tf.nest.flatten(ds.element_spec):
        if not s.shape.is_fully_defined():
            return min(cap, 16)
        size += s.shape.num_elements() * s.dtype.size
    return int(max(1, min(cap, max(8, budget // max(size, 1)))))


def as_batched_dataset(ds, *, global_batch, training, batched, seed=0, shuffle_buffer=None):
    """Shuffle (training), batch with the global batch size, shard by data across workers."""
    if not batched:
        if training:
            ds = ds.shuffle(shuffle_buffer or _shuffle_buffer(ds), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(global_batch, drop_remainder=training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _steps(ds, steps, name):
    if steps is not None:
        return check_positive_int("steps_per_epoch" if name == "training" else "validation_steps",
                                  steps, "finetune")
    n = int(tf.data.experimental.cardinality(ds))
    if n == tf.data.experimental.INFINITE_CARDINALITY:
        raise InvalidArgumentError(
            f"finetune: the {name} data is an endless stream (e.g. random patches); pass "
            f"{'steps_per_epoch' if name == 'training' else 'validation_steps'}=N.")
    if n == 0:
        raise InvalidArgumentError(f"finetune: the {name} data has no complete batch; use a smaller "
                                   "batch_size or more samples.")
    return None if n < 0 else n  # unknown: Keras counts the first epoch
