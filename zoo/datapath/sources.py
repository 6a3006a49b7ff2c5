"""Data arguments to datasets: :func:`from_source` dispatches any data argument of the verbs
(a folder in one of the known layouts, a ``.npz`` file, ``"phantoms"``, ``"tfds:NAME"``,
``(x, y)`` arrays, a ``tf.data.Dataset``) to its reader and checks the pairs against the model.
"""
import inspect
from pathlib import Path

from zoo._keras import tf
from zoo.data import (
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    DataError,
    check_pairs,
    dicom,
    from_arrays,
    hard_phantoms,
    holds_series,
    image_folder,
    nifti,
    npz,
    phantoms,
    segmentation_folder,
)
from zoo.data.augment import augment_dataset
from zoo.datasets.reader import tfds
from zoo.errors import InvalidArgumentError

_PAIRS = (("images", "masks"), ("images", "labels"), ("imagesTr", "labelsTr"), ("image", "mask"))
LAYOUTS = """  <root>/<class_name>/*.png|.jpg|.tif|.bmp          2D classification (image_folder)
  <root>/images/*.png + <root>/masks/*.png         2D segmentation, paired by name (segmentation_folder)
  <root>/images/*.nii.gz + <root>/labels/*.nii.gz  3D segmentation, NIfTI (nifti); also imagesTr/ + labelsTr/
  <root>/images/<case>/<DICOM files> + <root>/labels/<case>.nii.gz|.nii|.npy
                                                   3D segmentation, DICOM series (dicom)
  <root>/<class_name>/<case>/<DICOM files>         3D classification, DICOM series (dicom)
  a .npz file with arrays 'images' (+ 'labels')    (npz)"""


def _call(fn, generic, options):
    """Call ``fn`` with the generic keywords it accepts plus every user option (checked)."""
    params = inspect.signature(fn).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        valid = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY]
        raise InvalidArgumentError(f"data option {unknown[0]!r} is not accepted by zoo.data."
                                   f"{fn.__name__}; it accepts {', '.join(valid)}.")
    kwargs = {k: v for k, v in generic.items() if k in params and v is not None}
    return kwargs | options


def _dirs(folder):
    return {c.name: c for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")}


def _has(folder, suffixes):
    return any(f.name.lower().endswith(suffixes) for f in folder.iterdir() if f.is_file())


def _no_labels(p, what):
    return DataError(
        f"{p} holds {what} but no labels, and training data needs labels. Use the layout "
        f"<root>/images/<case>/<DICOM files> + <root>/labels/<case>.nii.gz (or .nii/.npy label volumes "
        f"in the series' (columns, rows, slices) voxel order) for segmentation, or "
        f"<root>/<class_name>/<case>/<DICOM files> for classification. To read one series for "
        f"prediction use zoo.data.read_dicom_series(folder).")


def _dims(p, generic, dims, what):
    """Fail early (before reading any file) when the layout's dimensionality is not the model's."""
    want = generic.get("spatial_dims")
    if want is not None and want != dims:
        raise DataError(f"{p} holds {what} ({dims}D data) but the model is {want}D; pick matching data "
                        "or model.")


def _from_path(path, generic, options):
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path {str(path)!r} does not exist; pass a folder, a .npz file, "
                        "'phantoms' or 'tfds:NAME'.")
    if p.is_file():
        if p.name.lower().endswith(".npz"):
            return npz(p, **_call(npz, generic, options))
        raise DataError(f"{p}: a data file must be .npz; for images, NIfTI or DICOM pass the folder.")
    names = _dirs(p)
    for img, lab in _PAIRS:
        if img in names and lab in names:
            if _has(names[img], NIFTI_SUFFIXES):
                _dims(p, generic, 3, "NIfTI volumes")
                return nifti(names[img], names[lab], **_call(nifti, generic, options))
            if any(holds_series(c) for c in _dirs(names[img]).values()):
                _dims(p, generic, 3, "DICOM series")
                return dicom(names[img], names[lab], **_call(dicom, generic, options))
            if holds_series(names[img]):
                raise DataError(f"{names[img]} holds DICOM files directly; put each series in its own "
                                f"case folder, {names[img]}/<case>/, with its label volume in "
                                f"{names[lab]}/<case>.nii.gz (or .nii/.npy).")
            _dims(p, generic, 2, "2D images and masks")
            seg = dict(generic, random_crop=generic["shuffle"])  # patches: random (training) / centre
            return segmentation_folder(names[img], names[lab], **_call(segmentation_folder, seg, options))
    if holds_series(p):
        raise _no_labels(p, "one DICOM series (a case folder)")
    if _has(p, NIFTI_SUFFIXES):
        raise DataError(f"{p} holds NIfTI volumes but no labels; use the layout {p}/images + {p}/labels "
                        "(or imagesTr + labelsTr), or call zoo.data.nifti(images, labels=...).")
    if any(holds_series(d) for d in names.values()):
        raise _no_labels(p, "DICOM series (case folders)")
    classes = {name: list(_dirs(d).values()) for name, d in names.items()}
    if any(holds_series(c) for cases in classes.values() for c in cases):
        _dims(p, generic, 3, "DICOM series in class folders")
        series = [c for cases in classes.values() for c in cases]
        labels = [k for k, cases in enumerate(classes.values()) for _ in cases]
        ds = dicom(series, labels, **_call(dicom, generic, options))
        ds.class_names = list(classes)
        return ds
    if any(_has(d, IMAGE_SUFFIXES) for d in names.values()):
        # classification: patch_size is the image size (every image resized to it)
        _dims(p, generic, 2, "2D images in class folders")
        cls = dict(generic, image_size=generic["patch_size"])
        return image_folder(p, **_call(image_folder, cls, options))
    raise DataError(f"{p}: not a known data layout (no images, NIfTI or DICOM found where expected). "
                    f"Expected one of:\n{LAYOUTS}\nor call a zoo.data function directly.")


def class_names_of(source):
    """The class names a classification source defines, without reading its files.

    Args:
        source: any data argument of the verbs.

    Returns:
        The sorted class folders of ``<root>/<class_name>/<images>`` or
        ``<root>/<class_name>/<case>/<DICOM>``, or a Dataset's ``class_names`` (a list); None
        for any other source (segmentation layouts, arrays, phantoms, TFDS, a missing path).
    """
    if isinstance(source, tf.data.Dataset):
        names = getattr(source, "class_names", None)
        return list(names) if names is not None else None
    if not isinstance(source, (str, Path)) or (isinstance(source, str) and (
            source == "phantoms" or source.startswith("tfds:"))):
        return None
    p = Path(source).expanduser()
    if not p.is_dir() or holds_series(p):
        return None
    names = _dirs(p)
    if any(img in names and lab in names for img, lab in _PAIRS):
        return None
    if any(_has(d, IMAGE_SUFFIXES) or any(holds_series(c) for c in _dirs(d).values()) for d in names.values()):
        return list(names)
    return None


def from_source(source, *, training=True, task=None, spatial_dims=None, num_classes=None,
                in_channels=None, patch_size=None, seed=0, augment=False, model_name=None, ignore_label=None,
                **options):
    """The dataset a data argument names (``zoo.finetune``'s ``train`` and ``val``).

    ``source`` may be a ``tf.data.Dataset`` (used as is; batched or not); an ``(images, labels)`` tuple of
    arrays (:func:`from_arrays`); ``"phantoms"`` (:func:`phantoms`; ``patch_size`` is the phantom size, per axis);
    ``"tfds:NAME"`` (:func:`tfds`: a catalogue name of ``zoo.datasets``, prepared on first use from
    ``manual_dir``, or a prepared TFDS data set; options ``split``, ``data_dir``, ``manual_dir``,
    and for volumes those of NIfTI folders); a ``.npz`` file; or a folder in one
    of these layouts (checked in this order)::

      <root>/images/ + <root>/masks/ (or labels/, imagesTr/ + labelsTr/, image/ + mask/):
          NIfTI files in images/                 -> nifti: 3D segmentation
          case folders of DICOM files in images/ -> dicom: 3D segmentation; images/<case>/
              takes labels/<case>.nii.gz (.nii, .npy) in the (columns, rows, slices) voxel order
          PNG/JPEG/TIFF/BMP files                -> segmentation_folder: 2D segmentation
      <root>/<class_name>/<case>/<DICOM files>   -> dicom: 3D classification (class_names)
      <root>/<class_name>/<image files>          -> image_folder: 2D classification

    A folder of DICOM files, or of DICOM case folders, without labels raises a DataError that
    shows these layouts. DICOM files are recognised by a .dcm/.dicom/.ima suffix or the DICM
    marker. ``patch_size`` means: volumes (NIfTI, DICOM) -> ``samples_per_volume`` patches per
    volume, new each epoch for training, fixed for validation; 2D segmentation -> one patch per
    image pair, a random crop (new each epoch) for training, the centre crop for validation,
    padding images smaller than the patch (:func:`fit_patch`); 2D classification -> the image
    size: every image is resized to it (bilinear), unless ``image_size`` is given.
    Training and validation differ by ``training``: random patches and order vs fixed ones
    (phantoms: validation uses other phantoms). ``seed`` makes training reproducible.
    ``augment`` (True or a :class:`zoo.data.augment.Augment`) applies to training data only.
    ``options`` go to the chosen source function (arrays and Datasets take none; they are
    ignored there, as ``finetune``'s ``data_options`` serve its ``train`` and ``val`` alike).
    Every source's elements are checked against ``task``, ``spatial_dims`` and ``in_channels``
    (:func:`zoo.data.checks.check_pairs`; ``model_name`` names the model in its messages).

    Args:
        source: the data argument (see above).
        training: training data (random patches and order, augmentation) or validation data (fixed).
        task: ``"classification"`` or ``"segmentation"``, checked against the elements.
        spatial_dims: 2 or 3, checked against the elements (and picking phantoms' dims).
        num_classes: the model's classes (label values are checked against them).
        in_channels: the model's input channels, checked against the images.
        patch_size: see above.
        seed: shuffling, patches and phantoms.
        augment: True or a :class:`zoo.data.augment.Augment`; training data only.
        model_name: the model's name in messages.
        ignore_label: the label value of unannotated voxels (sparse annotation): not a class, so
            the class-range checks let it pass and patch sampling never takes it for foreground.
        **options: keywords of the chosen source function.

    Returns:
        An unbatched (or, for a batched Dataset passed in, batched) ``tf.data.Dataset`` of
        (image, label) pairs; classification folders keep their ``class_names``.

    Raises:
        DataError: a path that does not exist, is in no known layout, lacks labels, or holds
            data of other dims; elements that do not fit the model.
        InvalidArgumentError: an unsupported source type, or an option the source function does
            not accept.
    """
    batched = False
    ncls = None if num_classes is None else max(int(num_classes), 1)
    if isinstance(source, tf.data.Dataset):
        ds, batched = source, None
    elif isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], tf.data.Dataset):
        ds = from_arrays(source[0], source[1], spatial_dims=spatial_dims, num_classes=num_classes,
                         source=f"{'training' if training else 'validation'} arrays", ignore_label=ignore_label)
    elif isinstance(source, str) and source == "phantoms":
        dims = spatial_dims or (2 if patch_size is None or isinstance(patch_size, int) else len(patch_size))
        options.setdefault("n", 64 if training else 16)
        generic = dict(spatial_dims=dims, task=task or "segmentation",
                       size=patch_size or (64 if dims == 2 else 32),
                       num_classes=max(ncls or 2, 2), in_channels=in_channels,
                       seed=seed if training else seed + 7919)  # validation phantoms differ
        ds = phantoms(**_call(phantoms, generic, options))
    elif isinstance(source, str) and source == "hard_phantoms":  # the benchmark task (zoo.data.hard_phantoms)
        ds = hard_phantoms.from_options(training=training, task=task, spatial_dims=spatial_dims, num_classes=ncls,
                                        in_channels=in_channels, patch_size=patch_size, seed=seed, options=options)
    elif isinstance(source, str) and source.startswith("tfds:"):
        generic = dict(num_classes=ncls, in_channels=in_channels, spatial_dims=spatial_dims,
                       patch_size=patch_size, seed=seed, shuffle=training)
        ds = tfds(source[5:], **_call(tfds, generic, options))
    elif isinstance(source, (str, Path)):
        generic = dict(spatial_dims=spatial_dims, num_classes=ncls, in_channels=in_channels,
                       patch_size=patch_size, seed=seed, shuffle=training, ignore_label=ignore_label)
        ds = _from_path(source, generic, options)
    else:
        raise InvalidArgumentError(f"data source {source!r} is not supported; pass a tf.data.Dataset, "
                                   "an (x, y) tuple, a path, 'phantoms' or 'tfds:NAME'.")
    check_pairs(ds, source=source, training=training, spatial_dims=spatial_dims, in_channels=in_channels,
                task=task, model_name=model_name, batched=batched)
    if augment and training:
        names = getattr(ds, "class_names", None)
        ds = augment_dataset(ds, augment, seed=seed)
        if names is not None:
            ds.class_names = names
    return ds


def inspect_source(source, *, task, spatial_dims, n=16, options=None, ignore_label=None):
    """What ``source``'s files imply for a model: ``{"in_channels", "num_classes", "class_names",
    "read", "label_values"}`` from the first ``n`` pairs (their images' channels; the class
    folders of a classification layout, else 1 + the largest label of the label maps read, at
    least 2; None when the values found cover less than half of that range, e.g. 0/255 masks or
    a mark for unannotated pixels, which are not a class count). ``read`` is how many pairs were
    read. Generated phantoms imply nothing (an empty dict)."""
    import numpy as np
    if isinstance(source, str) and (source in ("phantoms", "hard_phantoms") or source.startswith("tfds:")):
        return {}
    names = class_names_of(source)
    ds = from_source(source, training=False, task=task, spatial_dims=spatial_dims, ignore_label=ignore_label,
                     **dict(options or {}))
    channels, found, read = None, set(), 0
    for image, label in ds.take(n):
        channels = int(image.shape[-1]) if channels is None else channels
        values = label.numpy()
        if ignore_label is not None:  # unannotated voxels are not a class
            values = values[values != ignore_label]
        found.update(int(v) for v in np.unique(values))
        read += 1
    if read == 0:
        raise DataError(f"the data {str(source)!r} gave no (image, label) pair; check its layout.")
    top = max(found, default=0)
    # values that cover less than half of 0..top (0/255 masks, an unannotated mark of 255) are
    # no class count: left to the class check, whose message names the remap and --ignore-label
    sparse = not names and top >= 2 and len(found) < (top + 1) / 2
    classes = len(names) if names else (None if sparse else max(top + 1, 2))
    return {"in_channels": channels, "num_classes": classes, "class_names": names, "read": read,
            "label_values": sorted(found)[:8]}
