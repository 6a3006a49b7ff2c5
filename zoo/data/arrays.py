"""In-memory arrays, .npz files and TensorFlow Datasets (TFDS) builders already on disk."""
import numpy as np

from zoo.data._common import (DataError, as_path, check_channels, check_finite, check_labels,
                                  describe, label_map, require)
from zoo.errors import check_choice


def _shape_images(images, spatial_dims, source):
    if images.ndim == 3 or (images.ndim == 4 and spatial_dims == 3):
        images = images[..., None]  # (N, H, W) or (N, D, H, W): one channel
    if images.ndim not in (4, 5):
        raise DataError(f"{source}: images of shape {images.shape} are not a stack of 2D/3D images; "
                        "expected (N, H, W[, C]) or (N, D, H, W[, C]), channels last.")
    return images


def from_arrays(images, labels=None, *, spatial_dims=None, num_classes=None, in_channels=None,
                source="arrays"):
    """A tf.data.Dataset from NumPy arrays (channels last).

    images: (N, H, W), (N, H, W, C), (N, D, H, W) with ``spatial_dims=3``, or (N, D, H, W, C).
    labels: (N,) class indices, or label maps (N, *spatial) / (N, *spatial, 1); None for
    images only.
    """
    from zoo._keras import tf
    if spatial_dims is not None:
        check_choice("spatial_dims", spatial_dims, (2, 3), "from_arrays")
    images = np.asarray(images)
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise DataError(f"{source}: images have dtype {images.dtype}; numeric arrays expected.")
    images = check_finite(_shape_images(images, spatial_dims, source).astype(np.float32), source)
    d = images.ndim - 2
    check_channels(images.shape[-1], in_channels, source)
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(images)
    labels = np.asarray(labels)
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{source}: {images.shape[0]} images but {labels.shape[0]} labels; pass one "
                        "label per image.")
    if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
        labels = label_map(labels, d + 1)
        if labels.shape[1:-1] != images.shape[1:-1] or labels.shape[-1] != 1:
            raise DataError(f"{source}: label maps of shape {labels.shape[1:]} do not match images of "
                            f"shape {images.shape[1:]}; each label map must cover its image voxel for "
                            "voxel (one channel of class indices).")
    else:
        labels = labels.reshape(-1)
    labels = check_labels(labels, num_classes, source)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def npz(path, *, images_key="images", labels_key="labels", spatial_dims=None, num_classes=None,
        in_channels=None):
    """A .npz file with arrays ``images_key`` and (optionally, if present) ``labels_key``."""
    path = as_path(path, "npz", kind="file")
    try:
        with np.load(path, allow_pickle=False) as data:  # never unpickle
            keys = list(data.keys())
            if images_key not in keys:
                raise DataError(f"{path}: no array named {images_key!r}; the file holds {keys}. Pass "
                                f"images_key= (and labels_key=) to pick them.")
            images = data[images_key]
            labels = data[labels_key] if labels_key in keys else None
    except DataError:
        raise
    except Exception as e:  # BadZipFile, ValueError (pickled objects), EOFError
        raise DataError(f"{path}: cannot read this .npz file ({describe(e)}); it is truncated, "
                        "not an .npz, or holds pickled objects (not allowed).") from None
    return from_arrays(images, labels, spatial_dims=spatial_dims, num_classes=num_classes,
                       in_channels=in_channels, source=str(path))


def tfds(name, *, split="train", data_dir=None, image_key="image", label_key="label",
         num_classes=None, in_channels=None):
    """A prepared TFDS dataset, read with ``tfds.builder(name, data_dir=...)``; never downloads.

    Elements become (float32 image, int32 label): uint8 pixels / 255, uint16 / 65535; a 2D
    label (segmentation mask) gets a trailing channel axis.
    """
    tfds_mod = require("tensorflow_datasets", "Reading TensorFlow Datasets")
    from zoo._keras import tf
    where = f"data_dir={str(data_dir)!r}" if data_dir else "the default data_dir (~/tensorflow_datasets)"
    build = f"tfds build {name.split('/')[0]}" + (f" --data_dir {data_dir}" if data_dir else "")
    try:
        builder = tfds_mod.builder(name, data_dir=None if data_dir is None else str(data_dir))
    except Exception as e:  # DatasetNotFoundError and friends
        raise DataError(f"TFDS dataset {name!r} is neither a registered TFDS name nor found in {where} "
                        f"({type(e).__name__}). Check the name, or prepare it with `{build}`.") from None
    if not builder.is_prepared():
        raise DataError(f"TFDS dataset {name!r} is not prepared in {where}; the zoo never downloads. "
                        f"Run `{build}` (on a machine with internet access if needed) and pass that "
                        "data_dir.")
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise DataError(f"TFDS dataset {name!r} has no feature {key!r}; it has "
                            f"{sorted(features.keys())}. Pass image_key=/label_key=.")
    shape = features[image_key].shape
    if in_channels is not None and shape and shape[-1] is not None:
        check_channels(shape[-1] if len(shape) >= 3 else 1, in_channels, f"TFDS dataset {name!r}")
    if split not in builder.info.splits:
        raise DataError(f"TFDS dataset {name!r} has no split {split!r}; it has "
                        f"{sorted(builder.info.splits.keys())}.")
    declared = getattr(features[label_key], "num_classes", None)
    if num_classes and declared and declared > max(num_classes, 2):
        raise DataError(f"TFDS dataset {name!r}: {label_key!r} has {declared} classes but "
                        f"num_classes={num_classes}; pass num_classes={declared} or remap the labels.")
    scale = {tf.uint8: 255.0, tf.uint16: 65535.0}.get(features[image_key].dtype, 1.0)

    def convert(example):
        image = tf.cast(example[image_key], tf.float32) / scale
        if image.shape.rank == 2:
            image = image[..., None]
        label = tf.cast(example[label_key], tf.int32)
        if label.shape.rank == 2 or (label.shape.rank == 3 and label.shape[-1] != 1):
            label = label[..., None]
        if num_classes:
            with tf.control_dependencies([tf.debugging.assert_less(label, max(num_classes, 2), message=(
                    f"TFDS dataset {name!r}: a label is outside 0..{max(num_classes, 2) - 1} "
                    f"(num_classes={num_classes})"))]):
                label = tf.identity(label)
        return image, label

    return builder.as_dataset(split=split, shuffle_files=False).map(convert)
