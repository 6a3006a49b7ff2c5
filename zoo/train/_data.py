"""Data preparation for ``zoo.finetune``: resolve a data argument, check it against the model,
shuffle/batch/shard for tf.distribute, count steps."""
from pathlib import Path

from zoo._keras import tf
from zoo.errors import InvalidArgumentError, check_positive_int


def _spec(ds):
    spec = ds.element_spec
    return (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)


def resolve_data(source, *, training, what, task, spatial_dims, num_classes, in_channels, patch_size,
                 seed, augment, **options):
    """``(dataset, unbatched)`` for a user data argument; ``unbatched`` is None when unknown (a
    user's tf.data.Dataset: batched if its elements have the batch rank)."""
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], tf.data.Dataset):
        from zoo.data import from_arrays
        ds, unbatched = from_arrays(source[0], source[1], spatial_dims=spatial_dims,
                                    num_classes=num_classes, source=f"{what} arrays"), True
    elif isinstance(source, tf.data.Dataset):
        ds, unbatched = source, None
    else:
        from zoo.data import from_source
        return from_source(source, training=training, task=task, spatial_dims=spatial_dims,
                           num_classes=num_classes, in_channels=in_channels, patch_size=patch_size,
                           seed=seed, augment=augment, **options), True
    if augment and training:
        from zoo.data.augment import augment_dataset
        ds = augment_dataset(ds, augment, seed=seed)
    return ds, unbatched


def main_output_shape(model):
    """The shape of the model's first output: its prediction. Further outputs (DeepLab's
    ``aux``, GoogLeNet's ``aux1``/``aux2``) are auxiliary heads trained on the same labels."""
    return tuple(model.outputs[0].shape)


def with_aux_targets(ds, n_outputs):
    """(image, label) -> (image, (label,) * n_outputs): every head learns the same labels."""
    if n_outputs == 1:
        return ds
    return ds.map(lambda image, label: (image, (label,) * n_outputs), num_parallel_calls=tf.data.AUTOTUNE)


def check_data(ds, model, what, source, unbatched=None):
    """The data's image rank/channels and label kind fit ``model``; else name the fix.
    Returns whether the dataset is already batched."""
    image, label = _spec(ds)
    dims = len(model.input_shape) - 2
    rank = image.shape.rank
    src = source if isinstance(source, (str, Path)) else type(source).__name__
    if rank not in ((dims + 1,) if unbatched else (dims + 1, dims + 2)):
        raise InvalidArgumentError(
            f"finetune: the {what} data ({src}) gives images of shape {image.shape} but model "
            f"{model.name!r} takes {dims}D images (spatial..., channels): elements need {dims + 1} "
            f"axes (or batches {dims + 2}). Use {dims}D data or a model with spatial_dims="
            f"{rank - 1 if unbatched or rank <= dims + 1 else rank - 2}.")
    have, want = image.shape[-1], model.input_shape[-1]
    if have is not None and want is not None and have != want:
        raise InvalidArgumentError(
            f"finetune: the {what} data ({src}) has {have} channel(s) but model {model.name!r} takes "
            f"{want}. Load the model with in_channels={have} (e.g. zoo.load(name, in_channels={have}))"
            f" or convert the data to {want} channel(s).")
    if label is None:
        raise InvalidArgumentError(f"finetune: the {what} data ({src}) has no labels; it must give "
                                   "(image, label) pairs.")
    batched = rank == dims + 2
    seg = len(main_output_shape(model)) > 2
    lrank = label.shape.rank - (1 if batched else 0)
    if seg and lrank not in (dims, dims + 1):
        raise InvalidArgumentError(
            f"finetune: model {model.name!r} segments, but the {what} data ({src}) has labels of "
            f"shape {label.shape}, not label maps; use image/mask data (or a classification model).")
    if not seg and lrank > 1:
        raise InvalidArgumentError(
            f"finetune: model {model.name!r} classifies, but the {what} data ({src}) has label maps "
            f"{label.shape}; use one class index per image (or a segmentation model).")
    return batched


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
