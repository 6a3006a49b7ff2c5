"""In-memory arrays and .npz files (TFDS data sets: :mod:`zoo.datasets.reader`)."""
import numpy as np

from zoo.data.checks import DataError, as_path, check_channels, check_finite, check_labels, describe, label_map
from zoo.errors import check_choice


def _shape_images(images, spatial_dims, source):
    if images.ndim == 3 or (images.ndim == 4 and spatial_dims == 3):
        images = images[..., None]  # (N, H, W) or (N, D, H, W): one channel
    if images.ndim not in (4, 5):
        raise DataError(f"{source}: images of shape {images.shape} are not a stack of 2D/3D images; "
                        "expected (N, H, W[, C]) or (N, D, H, W[, C]), channels last.")
    return images


def from_arrays(images, labels=None, *, spatial_dims=None, num_classes=None, in_channels=None,
                source="arrays", ignore_label=None):
    """A tf.data.Dataset from NumPy arrays (channels last).

    images: (N, H, W), (N, H, W, C), (N, D, H, W) with ``spatial_dims=3``, or (N, D, H, W, C).
    labels: (N,) class indices, or label maps (N, *spatial) / (N, *spatial, 1); None for
    images only.
    """
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
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
    labels = check_labels(labels, num_classes, source, ignore_label)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def npz(path, *, images_key="images", labels_key="labels", spatial_dims=None, num_classes=None,
        in_channels=None, ignore_label=None):
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
                       in_channels=in_channels, source=str(path), ignore_label=ignore_label)
