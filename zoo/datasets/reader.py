"""The catalogue's reader: its named data sets (and any TFDS builder already prepared on disk) as
(image, label) pairs, built from the input pipeline's pieces (:mod:`zoo.data`).

A catalogue name (``isbi2012_em``, ``decathlon/task04_hippocampus``, ... see
``zoo.datasets.list()``) is prepared on first use from ``manual_dir`` (or downloaded where
its files are public; never with ``ZOO_OFFLINE=1``); any other TFDS name must already be
prepared in ``data_dir`` (this reader never downloads those). Volumetric data sets (examples
with ``spacing``) go through the NIfTI/DICOM pipeline (:func:`zoo.data.volumes.volume_dataset`):
resampling to ``spacing``, CT ``window`` or z-score, ``samples_per_volume`` foreground-aware
patches. 2D data give their images scaled to [0, 1]; with ``patch_size``, segmentation pairs
are cut to it (random crops for training, the centre for validation, as image/mask folders)
and 2D classification images are resized to it (as image folders).
"""
import numpy as np

from zoo._deps import require
from zoo.data.checks import DataError, check_channels, check_size
from zoo.data.patches import fit_patch
from zoo.data.volumes import volume_dataset
from zoo.datasets._api import prepare
from zoo.datasets._catalog import folders, info, parse, quiet_tfds
from zoo.errors import InvalidArgumentError


def _catalogue(name):
    return parse(name)[0] in folders()


def _builder(tfds_mod, name, data_dir, manual_dir):
    if _catalogue(name):
        return prepare(name, manual_dir=manual_dir, data_dir=data_dir)
    if manual_dir is not None:
        raise DataError(f"manual_dir is for the zoo's catalogue data sets (zoo.datasets.list()); "
                        f"{name!r} is not one of them. Prepare it with TFDS and pass data_dir.")
    where = f"data_dir={str(data_dir)!r}" if data_dir else "the default data_dir (~/tensorflow_datasets)"
    build = f"tfds build {name.split('/')[0]}" + (f" --data_dir {data_dir}" if data_dir else "")
    try:
        with quiet_tfds():
            builder = tfds_mod.builder(name, data_dir=None if data_dir is None else str(data_dir))
    except Exception as e:  # DatasetNotFoundError and friends
        raise DataError(f"TFDS dataset {name!r} is neither a registered TFDS name nor found in {where} "
                        f"({type(e).__name__}). Check the name (the zoo's own: zoo.datasets.list()), "
                        f"or prepare it with `{build}`.") from None
    if not builder.is_prepared():
        raise DataError(f"TFDS dataset {name!r} is not prepared in {where}; the zoo never downloads. "
                        f"Run `{build}` (on a machine with internet access if needed) and pass that "
                        "data_dir.")
    return builder


def _default_split(splits, shuffle):
    if shuffle:
        return "train"
    return next((s for s in ("validation", "test") if s in splits), "train")


def _volumes(builder, name, split, label_key, *, patch_size, num_classes, in_channels, shuffle, seed,
             cache, **volume_options):
    """Volumetric examples through the NIfTI pipeline: each case's image, spacing and label map."""
    import tensorflow_datasets as tfds_mod  # heavy: TFDS imports TensorFlow; import zoo.datasets must not
    store, ids, labels = {}, [], []
    with quiet_tfds():
        examples = builder.as_dataset(split=split, shuffle_files=False)
    for ex in tfds_mod.as_numpy(examples):
        case = f"{name}[{split}] {ex['id'].decode() if 'id' in ex else len(ids)}"
        store[case] = (ex["image"], tuple(float(s) for s in ex["spacing"]), ex.get("affine"))
        ids.append(case)
        labels.append(np.asarray(ex[label_key]))
    if not ids:
        raise DataError(f"TFDS dataset {name!r}: split {split!r} holds no examples.")

    def read(case):  # cached volumes are read once: drop the raw copy then
        return store.pop(case) if cache else store[case]

    return volume_dataset(ids, labels, read=read, patch_size=patch_size, num_classes=num_classes,
                          in_channels=in_channels, shuffle=shuffle, seed=seed, cache=cache,
                          **volume_options)


def tfds(name, *, split=None, data_dir=None, manual_dir=None, image_key="image", label_key="label",
         patch_size=None, samples_per_volume=1, fg_fraction=0.5, window=None, normalize="auto",
         spacing=None, num_classes=None, in_channels=None, spatial_dims=None, shuffle=True, seed=0,
         cache=True):
    """A TFDS data set as unbatched (float32 image, int32 label) pairs.

    ``split`` (TFDS forms, e.g. ``"train[:80%]"``) defaults to ``"train"`` for training
    (``shuffle=True``) and ``"validation"`` (else ``"test"``) otherwise. Images: uint8 / 255,
    uint16 / 65535, float as is; a 2D label map gets a trailing channel axis. Volumes
    (examples with ``spacing``): the options of :func:`zoo.data.nifti` (``patch_size``,
    ``samples_per_volume``, ``fg_fraction``, ``window``, ``normalize``, ``spacing``, ``cache``);
    ``shuffle`` draws new patches each epoch. ``spatial_dims`` is checked by the caller.
    """
    tfds_mod = require("tensorflow_datasets", "Reading TensorFlow Datasets")
    from zoo._keras import tf  # heavy: TensorFlow; import zoo.datasets must stay TF-free
    builder = _builder(tfds_mod, name, data_dir, manual_dir)
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise DataError(f"TFDS dataset {name!r} has no feature {key!r}; it has "
                            f"{sorted(features.keys())}. Pass image_key=/label_key=.")
    split = split or _default_split(builder.info.splits, shuffle)
    try:
        builder.info.splits[split]
    except Exception:  # KeyError / ValueError for a bad slice
        raise DataError(f"TFDS dataset {name!r} has no split {split!r}; it has "
                        f"{sorted(builder.info.splits.keys())} (slices like 'train[:80%]' work).") from None
    shape = features[image_key].shape
    if in_channels is not None and shape and shape[-1] is not None:
        check_channels(shape[-1] if len(shape) >= 3 else 1, in_channels, f"TFDS dataset {name!r}")
    declared = getattr(features[label_key], "num_classes", None)
    if declared is None and _catalogue(name) and label_key == "label":  # label maps: the entry's classes
        declared = len(info(name)["classes"])
    if num_classes and declared and declared > max(num_classes, 2):
        raise DataError(f"TFDS dataset {name!r}: {label_key!r} has {declared} classes but "
                        f"num_classes={num_classes}; pass num_classes={declared} or remap the labels.")
    dims = len(shape) - 1 if len(shape) >= 3 else 2
    if spatial_dims is not None and dims != spatial_dims:
        raise DataError(f"TFDS dataset {name!r} holds {dims}D images {tuple(shape)} but the model is "
                        f"{spatial_dims}D; pick matching data or model.")
    if "spacing" in features and len(shape) == 4:
        return _volumes(builder, name, split, label_key, patch_size=patch_size, num_classes=num_classes,
                        in_channels=in_channels, shuffle=shuffle, seed=seed, cache=cache,
                        samples_per_volume=samples_per_volume, fg_fraction=fg_fraction, window=window,
                        normalize=normalize, spacing=spacing)
    defaults = dict(samples_per_volume=1, fg_fraction=0.5, window=None, normalize="auto", spacing=None,
                    cache=True)
    values = dict(samples_per_volume=samples_per_volume, fg_fraction=fg_fraction, window=window,
                  normalize=normalize, spacing=spacing, cache=cache)
    given = sorted(k for k, v in values.items() if v != defaults[k])
    if given:
        raise DataError(f"TFDS dataset {name!r} holds {len(shape) - 1}D images without voxel spacing; "
                        f"the options {given} apply to volumes only. Drop them.")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(features[image_key].np_dtype), 1.0)
    n_max = max(num_classes, 2) if num_classes else None
    label_shape = features[label_key].shape
    seg = len(label_shape) >= dims
    patch = check_size(patch_size, dims)
    resize = patch if patch and not seg and dims == 2 and tuple(shape[:2]) != patch else None

    def convert(example):
        image = tf.cast(example[image_key], tf.float32) / scale
        if image.shape.rank == 2:
            image = image[..., None]
        if resize:  # classification: every image at the model's size, as image folders are
            image = tf.image.resize(image, resize, method="bilinear")
        label = tf.cast(example[label_key], tf.int32)
        if label.shape.rank == 2 or (label.shape.rank == 3 and label.shape[-1] != 1):
            label = label[..., None]
        if n_max:
            with tf.control_dependencies([tf.debugging.assert_less(label, n_max, message=(
                    f"TFDS dataset {name!r}: a label is outside 0..{n_max - 1} "
                    f"(num_classes={num_classes})"))]):
                label = tf.identity(label)
        return image, label

    with quiet_tfds():
        ds = builder.as_dataset(split=split, shuffle_files=False).map(convert)
    if patch and seg:  # 2D segmentation: random patches (training) or the centre one
        ds = fit_patch(ds, patch, random=shuffle, seed=seed)
    return ds


def load(name, split="train", *, manual_dir=None, data_dir=None, raw=False, **options):
    """A catalogue data set as a ``tf.data.Dataset``, prepared first if needed (see :func:`prepare`).

    Default: unbatched ``(image, label)`` pairs as every zoo data source gives them (float32
    images, uint8 pixels / 255; int32 labels, segmentation maps with a channel axis), with the
    options of :func:`zoo.datasets.reader.tfds` (``patch_size``, ``samples_per_volume``, ``fg_fraction``,
    ``window``, ``normalize``, ``spacing`` for volumes). ``raw=True``: TFDS's example dicts
    with every feature (``id``; volumes also ``spacing`` and ``affine``). ``split`` takes TFDS's
    forms: ``"train"``, ``"validation"``, ``"train+validation"``, ``"train[:80%]"``.
    """
    if raw:
        if options:
            raise InvalidArgumentError(f"load(raw=True) gives TFDS's examples as stored; options "
                                       f"{sorted(options)} need raw=False.")
        builder = prepare(name, manual_dir=manual_dir, data_dir=data_dir)
        with quiet_tfds():
            return builder.as_dataset(split=split, shuffle_files=False)
    options.setdefault("shuffle", False)  # load() reads; zoo.finetune draws random patches itself
    return tfds(name, split=split, manual_dir=manual_dir, data_dir=data_dir, **options)
