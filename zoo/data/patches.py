"""Fixed-size patches from a dataset of (image, label map) pairs: the one crop for 2D/3D
in-memory data (image/mask folders, arrays, a user's tf.data.Dataset in ``zoo.finetune``).

- training (``random=True``): a uniformly random window per element, drawn anew on every pass
  over the dataset (every epoch) and reproducible from ``seed``: the k-th pass over a dataset
  built with the same seed gives the same crops;
- validation (``random=False``): the centred window, identical every epoch. A centre crop (not
  a resize) keeps the pixel scale the model is trained at.

An element smaller than the patch along an axis is first padded symmetrically (the extra pixel
of an odd difference goes after): the image with its own minimum (as volumes are padded), the
label map with 0 (background). NIfTI/DICOM volumes have their own foreground-aware patch
sampler (``samples_per_volume``, ``fg_fraction``; see :mod:`zoo.data.volumes`).
"""
from zoo.data.checks import check_size


def fit_patch(ds, patch_size, *, random=True, seed=0):
    """``ds`` (unbatched (image, label) pairs, label maps with or without a channel axis) with
    every image and label map cut to ``patch_size`` (an int or one int per spatial axis)."""
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
    image_spec, label_spec = ds.element_spec
    dims = image_spec.shape.rank - 1
    patch = check_size(patch_size, dims)
    label_rank = label_spec.shape.rank

    def cut(image, label, key=None):
        shape = tf.shape(image)[:dims]
        short = tf.maximum(tf.constant(patch) - shape, 0)
        pads = tf.stack([short // 2, short - short // 2], 1)
        image = tf.pad(image, tf.concat([pads, [[0, 0]]], 0), constant_values=tf.reduce_min(image))
        if label_rank >= dims:
            label = tf.pad(label, tf.concat([pads, tf.zeros((label_rank - dims, 2), tf.int32)], 0))
        room = tf.shape(image)[:dims] - patch + 1
        if key is None:
            start = (room - 1) // 2
        else:  # stateless: the same key gives the same window on every machine and run
            u = tf.random.stateless_uniform((dims,), seed=key)
            start = tf.minimum(tf.cast(u * tf.cast(room, tf.float32), tf.int32), room - 1)
        image = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([patch, [-1]], 0))
        image.set_shape((*patch, image_spec.shape[-1]))
        if label_rank >= dims:
            rest = label_rank - dims
            label = tf.slice(label, tf.concat([start, tf.zeros((rest,), tf.int32)], 0),
                             tf.concat([patch, -tf.ones((rest,), tf.int32)], 0))
            label.set_shape((*patch, *label_spec.shape[dims:]))
        return image, label

    if not random:
        return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # one key pair per element; rerandomize_each_iteration draws new keys on each pass
    keys = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, keys)).map(lambda pair, key: cut(*pair, key),
                                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
