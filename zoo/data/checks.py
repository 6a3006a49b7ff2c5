"""Shared checks for the data sources: every bad input names the file it came from."""
import os
from pathlib import Path

import numpy as np

from zoo.errors import InvalidArgumentError


class DataError(InvalidArgumentError):
    """An input file, array or dataset cannot be used as training data (the message names it)."""




def as_path(path, arg, *, kind="file or folder"):
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DataError(f"{arg}={str(path)!r}: no such {kind}. Check the path (it is resolved "
                        f"relative to {os.getcwd()!r}).")
    return p


def list_files(folder, arg, suffixes):
    """Sorted non-hidden files in ``folder`` whose lower-case name ends with one of ``suffixes``."""
    folder = as_path(folder, arg, kind="folder")
    if not folder.is_dir():
        raise DataError(f"{arg}={str(folder)!r} is a file; pass the folder that holds the data.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith(tuple(suffixes)))
    if not files:
        raise DataError(f"{arg}: folder {str(folder)!r} holds no {'/'.join(suffixes)} files "
                        "(empty folder?). Put the data files there or pass another folder.")
    return files


def stem(path, suffixes=(".nii.gz", ".nii", ".npy")):
    name = Path(path).name
    for s in suffixes:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def describe(exc):
    """``Type: message`` on one line (library messages often span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def check_finite(array, source):
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"{source}: the data holds {int(bad.sum())} NaN/Inf value(s) (first at "
                            f"index {tuple(int(i) for i in np.argwhere(bad)[0])}). Clean or replace "
                            "them (e.g. np.nan_to_num) before training.")
    return array


def check_labels(labels, num_classes, source, ignore_label=None):
    """Integer labels; values must lie in [0, num_classes) when num_classes is given, except
    ``ignore_label`` (a voxel nobody annotated, e.g. 255), which is not a class."""
    labels = np.asarray(labels)
    if np.issubdtype(labels.dtype, np.floating):
        check_finite(labels, source)
        if not np.all(labels == np.round(labels)):
            raise DataError(f"{source}: labels must be whole numbers (class indices); found "
                            f"fractional values such as {labels[labels != np.round(labels)][0]!r}.")
    labels = labels.astype(np.int32)
    if num_classes:
        n = max(int(num_classes), 2)  # one sigmoid output still means classes {0, 1}
        bad = (labels < 0) | (labels >= n)
        if ignore_label is not None:
            bad &= labels != int(ignore_label)
        if bad.any():
            found = np.unique(labels[bad])[:8].tolist()
            hint = "" if ignore_label is not None else (", or pass ignore_label=VALUE when a value marks "
                                                        "unannotated voxels")
            raise DataError(f"{source}: label values {found} are outside the class range 0..{n - 1} "
                            f"(num_classes={num_classes}). Remap the labels (e.g. 255 -> 1) or pass "
                            f"the right num_classes{hint}.")
    return labels


def check_channels(channels, in_channels, source, fix=""):
    if in_channels is not None and channels != in_channels:
        raise DataError(f"{source}: has {channels} channel(s) but in_channels={in_channels} was "
                        f"expected. {fix or 'Convert the data or pass the matching in_channels.'}")


def label_map(labels, spatial_dims):
    """Segmentation labels get a trailing channel axis: (*spatial, 1) int32."""
    labels = np.asarray(labels)
    return labels[..., None] if labels.ndim == spatial_dims else labels


def check_size(size, spatial_dims, arg="patch_size"):
    if size is None:
        return None
    sizes = (size,) * spatial_dims if isinstance(size, (int, np.integer)) else tuple(size)
    if len(sizes) != spatial_dims or any(isinstance(s, bool) or int(s) != s or s < 1 for s in sizes):
        raise InvalidArgumentError(f"{arg}={size!r} must be a positive int or {spatial_dims} positive "
                                   f"ints; e.g. {arg}={(64,) * spatial_dims}.")
    return tuple(int(s) for s in sizes)


def dataset_from_generator(gen, image_spec, label_spec, **attrs):
    """tf.data.Dataset from a generator function of (image, label) numpy pairs."""
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
    ds = tf.data.Dataset.from_generator(gen, output_signature=(image_spec, label_spec))
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def spec(shape, dtype):
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
    return tf.TensorSpec(shape=tuple(shape), dtype=dtype)


def check_pairs(ds, *, source, training=True, spatial_dims=None, in_channels=None, task=None,
                model_name=None, batched=False):
    """The one check that a dataset fits a model (``zoo.datapath.sources.from_source`` runs it for every
    source, so ``zoo.finetune`` sees it too): (image, label) pairs; images of ``spatial_dims``
    spatial axes plus channels, ``in_channels`` of them; labels one class index per image
    (``task="classification"``) or a label map (``"segmentation"``). ``batched``: False for
    single pairs; None when unknown (a user's Dataset: batched if its images have one axis
    more). ``None`` arguments are not checked. Raises DataError naming the fix."""
    what = f"the {'training' if training else 'validation'} data"
    data = f"{what} ({source if isinstance(source, (str, Path)) else type(source).__name__})"
    model = f"model {model_name!r}" if model_name else "the model"
    spec = ds.element_spec
    image, label = (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)
    if label is None:
        raise DataError(f"{data} has no labels; it must give (image, label) pairs.")
    rank, d = image.shape.rank, spatial_dims
    if d is not None and rank not in ((d + 1,) if batched is False else (d + 1, d + 2)):
        raise DataError(
            f"{data} gives images of shape {image.shape} but {model} takes {d}D images (spatial..., "
            f"channels): elements need {d + 1} axes (or batches {d + 2}). Use {d}D data or a model "
            f"with spatial_dims={rank - 1 if batched is False or rank <= d + 1 else rank - 2}.")
    have = image.shape[-1]
    if have is not None and in_channels is not None and have != in_channels:
        raise DataError(
            f"{data} has {have} channel(s) but {model} takes {in_channels}. Load the model with "
            f"in_channels={have} (e.g. zoo.load(name, in_channels={have})) or convert the data to "
            f"{in_channels} channel(s).")
    lrank = label.shape.rank - (1 if d is not None and rank == d + 2 else 0)
    if task == "segmentation" and (lrank not in (d, d + 1) if d is not None else lrank == 0):
        kind = "one class label per image" if lrank == 0 else f"labels of shape {label.shape}"
        raise DataError(f"{model} segments, but {data} has {kind}, not label maps; use image/mask "
                        "data (or a classification model).")
    if task == "classification" and lrank > 1:
        raise DataError(f"{model} classifies, but {data} has label maps {label.shape}; use one class "
                        "index per image (or a segmentation model).")
    return d is not None and rank == d + 2
