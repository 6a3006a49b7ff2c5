"""Unlabelled data for semi-supervised and domain-adaptive training: images only, prepared
exactly as the labelled training data of the same model (the same readers, intensity
preprocessing, patch size and augmentation), endless, shuffled and batched.

A source may be any data argument of the verbs (its labels, if it has any, are dropped) or
data that has no labels at all:

- ``"phantoms"`` / ``"hard_phantoms"``: generated with another seed than the labelled ones;
- a folder of NIfTI volumes, or of DICOM series (one case folder each), without labels;
- a folder of 2D pictures (PNG, JPEG, TIFF, BMP, searched recursively: class folders are fine);
- a ``.npz`` file with an ``images`` array; an array of images; a ``tf.data.Dataset`` of images
  or of (image, label) pairs.
"""
from pathlib import Path

import numpy as np

from zoo._keras import tf
from zoo.data import IMAGE_SUFFIXES, NIFTI_SUFFIXES, DataError, dicom, holds_series, nifti
from zoo.data.augment import augment_dataset
from zoo.data.folders import read_image
from zoo.data.patches import fit_patch
from zoo.datapath.prepare import SYNTHETIC, _read, _shuffle_buffer, batched, element_spec, source_options
from zoo.errors import InvalidArgumentError

UNLABELED_SEED = 7919  # generated unlabelled phantoms never repeat the labelled ones (seed + this)


def _files(folder, suffixes):
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(suffixes))


def _images_only_folder(path, target, *, seed, options):
    """The dataset of a folder that holds images but no labels, or None for another layout."""
    volumes = dict(patch_size=target.patch, in_channels=target.in_channels, shuffle=True, seed=seed, **options)
    if any(p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES) for p in path.iterdir()):
        return nifti(path, None, **volumes)
    series = [c for c in sorted(path.iterdir()) if c.is_dir() and holds_series(c)]
    if series:
        return dicom(series, None, **volumes)
    pictures = _files(path, IMAGE_SUFFIXES)
    if pictures and target.spatial_dims == 2:
        if options:
            raise InvalidArgumentError(f"unlabeled={str(path)!r}: a folder of pictures takes no data options "
                                       f"(got {', '.join(options)}).")
        size = tuple(target.patch) if target.task == "classification" and target.patch else None
        arrays = [read_image(p, target.in_channels, size) for p in pictures]
        channels = arrays[0].shape[-1]
        return tf.data.Dataset.from_generator(
            lambda: iter(arrays), output_signature=tf.TensorSpec((None, None, channels), tf.float32))
    return None


def _array_images(source):
    images = np.load(source, allow_pickle=False)["images"] if str(source).lower().endswith(".npz") \
        else np.asarray(source[0] if isinstance(source, tuple) else source)
    return tf.data.Dataset.from_tensor_slices(images.astype("float32"))


def _drop_labels(ds):
    return ds.map(lambda x, y: x) if element_spec(ds)[1] is not None else ds


def _images(source, target, *, seed, options, augment):
    """An unbatched dataset of images (no labels) of ``source``."""
    return _drop_labels(_elements(source, target, seed=seed, options=options, augment=augment))


def _elements(source, target, *, seed, options, augment):
    """An unbatched dataset of ``source``'s images, or of its (image, label) pairs."""
    if isinstance(source, str) and source in SYNTHETIC:
        ds, is_batched = _read(source, target, training=True, seed=seed + UNLABELED_SEED, augment=augment,
                               options=options)
        return ds.unbatch() if is_batched else ds
    if isinstance(source, np.ndarray) or (isinstance(source, tuple) and len(source) == 1):
        return _array_images(source)
    if isinstance(source, (str, Path)) and not str(source).startswith("tfds:"):
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"unlabeled={str(source)!r} does not exist; pass a folder of images, NIfTI volumes "
                            "or DICOM series, a .npz file with 'images', 'phantoms' or an array of images.")
        if path.is_file() and path.name.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                if "labels" not in data:
                    return _array_images(path)
        elif path.is_dir():
            try:
                ds, is_batched = _read(path, target, training=True, seed=seed, augment=augment, options=options)
                return ds.unbatch() if is_batched else ds
            except DataError:  # no labelled layout: a folder of images alone
                ds = _images_only_folder(path, target, seed=seed, options=options)
                if ds is None:
                    raise DataError(f"unlabeled={str(source)!r} holds no images this {target.spatial_dims}D "
                                    "model can read: expected NIfTI volumes or DICOM series (3D), PNG/JPEG/"
                                    "TIFF/BMP pictures (2D), or any labelled layout of the training data.") from None
                return ds
    if isinstance(source, tf.data.Dataset) and element_spec(source)[1] is None:
        return source
    ds, is_batched = _read(source, target, training=True, seed=seed, augment=augment, options=options)
    return ds.unbatch() if is_batched else ds


def _fit(ds, target, seed):
    """Images cut (segmentation: a random window, padded with the image's minimum when short)
    or resized (classification) to the target's patch; their channels checked."""
    spec = ds.element_spec
    if spec.shape.rank != target.spatial_dims + 1:
        raise InvalidArgumentError(
            f"unlabeled data gives images of shape {tuple(spec.shape)} ({spec.shape.rank} axes) but the model "
            f"takes {target.spatial_dims}D images with a channel axis ({target.spatial_dims + 1} axes); pass "
            "data of the model's dimensionality (add a channel axis to arrays).")
    if target.in_channels and spec.shape[-1] is not None and spec.shape[-1] != target.in_channels:
        raise InvalidArgumentError(f"unlabeled data has {spec.shape[-1]} channel(s) but the model takes "
                                   f"{target.in_channels}; convert the images to {target.in_channels} channel(s).")
    patch = target.patch
    if not patch or tuple(spec.shape[:-1]) == tuple(patch):
        return ds
    if target.task == "classification":
        return ds.map(lambda x: tf.image.resize(x, patch))
    cut = fit_patch(ds.map(lambda x: (x, tf.zeros((), tf.int32))), patch, random=True, seed=seed)
    return cut.map(lambda x, y: x)


def prepare_unlabeled(source, target, *, batch_size, seed=0, options=None, preprocessing=None, augment=False):
    """``source``'s images, endless, shuffled and in batches of ``batch_size``.

    Args:
        source: the unlabelled data (see the module doc).
        target: the model's :class:`zoo.datapath.prepare.Target` (its patch must be set for
            data of several sizes).
        batch_size: the global batch of unlabelled images.
        seed: shuffling and random windows.
        options: the data source's keywords (as for the labelled data).
        preprocessing: the model's recorded intensity preprocessing (files only).
        augment: training-time augmentation (sources read by the labelled readers).

    Returns:
        A batched ``tf.data.Dataset`` of float32 images that never ends.

    Raises:
        DataError: the source cannot be read, or holds no image.
        InvalidArgumentError: its images do not fit the model (axes, channels).
    """
    opts = source_options(source, options, preprocessing)
    ds = _fit(_images(source, target, seed=seed, options=opts, augment=False), target, seed)
    if int(tf.data.experimental.cardinality(ds)) == 0:
        raise DataError(f"unlabeled={source!r} holds no images; pass data with at least one.")
    ds = ds.shuffle(_shuffle_buffer(ds), seed=seed, reshuffle_each_iteration=True).repeat()
    if augment:  # every kind of source alike (the readers of label-less files have no augmentation)
        ds = augment_dataset(ds, augment, seed=seed + UNLABELED_SEED)
    return batched(ds.batch(batch_size, drop_remainder=True), global_batch=batch_size, training=True,
                   is_batched=True)


__all__ = ["prepare_unlabeled"]
