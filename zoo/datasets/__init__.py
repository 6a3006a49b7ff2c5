"""Data sources: synthetic phantoms, image folders, NIfTI, DICOM, NumPy and TFDS.

Every source gives a ``tf.data.Dataset`` of unbatched (image, label) pairs: images float32,
channels last; labels int32 class indices (classification) or ``(*spatial, 1)`` int32 maps
(segmentation). The repository's ``datasets/`` folder of the design ships as ``zoo.datasets``
so it never shadows the PyPI package ``datasets``.
"""
import inspect
from pathlib import Path

from zoo.datasets._common import DataError
from zoo.datasets.arrays import from_arrays, npz, tfds
from zoo.datasets.dicom import dicom, read_dicom_series
from zoo.datasets.folders import image_folder, segmentation_folder
from zoo.datasets.phantoms import phantom_arrays, phantoms
from zoo.datasets.volumes import load_nifti, nifti
from zoo.errors import InvalidArgumentError

__all__ = ["phantoms", "phantom_arrays", "image_folder", "segmentation_folder", "nifti", "load_nifti",
           "dicom", "read_dicom_series", "from_arrays", "npz", "tfds", "from_source", "DataError"]

_PAIRS = (("images", "masks"), ("images", "labels"), ("imagesTr", "labelsTr"), ("image", "mask"))


def _call(fn, generic, options):
    """Call ``fn`` with the generic keywords it accepts plus every user option (checked)."""
    params = inspect.signature(fn).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        valid = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY]
        raise InvalidArgumentError(f"data option {unknown[0]!r} is not accepted by zoo.datasets."
                                   f"{fn.__name__}; it accepts {', '.join(valid)}.")
    kwargs = {k: v for k, v in generic.items() if k in params and v is not None}
    return kwargs | options


def _from_path(path, generic, options):
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path {str(path)!r} does not exist; pass a folder, a .npz file, "
                        "'phantoms' or 'tfds:NAME'.")
    if p.is_file():
        if p.name.lower().endswith(".npz"):
            return npz(p, **_call(npz, generic, options))
        raise DataError(f"{p}: a data file must be .npz; for images, NIfTI or DICOM pass the folder.")
    names = {c.name: c for c in p.iterdir() if c.is_dir()}
    for img, lab in _PAIRS:
        if img in names and lab in names:
            if any(f.name.lower().endswith((".nii", ".nii.gz")) for f in names[img].iterdir()):
                return nifti(names[img], names[lab], **_call(nifti, generic, options))
            return segmentation_folder(names[img], names[lab],
                                       **_call(segmentation_folder, generic, options))
    if any(f.name.lower().endswith((".nii", ".nii.gz")) for f in p.iterdir()):
        raise DataError(f"{p} holds NIfTI volumes but no labels; use the layout {p}/images + {p}/labels "
                        "(or imagesTr + labelsTr), or call zoo.datasets.nifti(images, labels=...).")
    if names:
        return image_folder(p, **_call(image_folder, generic, options))
    raise DataError(f"{p}: not a known data layout. Expected class subfolders (classification), "
                    "images/ + masks/ (2D segmentation), images/ + labels/ (NIfTI), or use "
                    "zoo.datasets.dicom(...) / nifti(...) directly.")


def from_source(source, *, training=True, task=None, spatial_dims=None, num_classes=None,
                in_channels=None, patch_size=None, seed=0, augment=False, **options):
    """The dataset a data argument names (used by ``zoo.finetune``).

    source: ``"phantoms"``; ``"tfds:NAME"`` (options ``split``, ``data_dir``, ...); a ``.npz``
    file; or a folder: class subfolders -> :func:`image_folder`; ``images/`` + ``masks/`` ->
    :func:`segmentation_folder`; ``images/`` + ``labels/`` (or ``imagesTr/`` + ``labelsTr/``)
    of NIfTI -> :func:`nifti`. ``augment`` (True or a :class:`zoo.augment.Augment`) applies to
    training data only. ``options`` go to the chosen source function.
    """
    ncls = None if num_classes is None else max(int(num_classes), 1)
    if isinstance(source, str) and source == "phantoms":
        size = patch_size if isinstance(patch_size, int) or patch_size is None else patch_size[0]
        options.setdefault("n", 64 if training else 16)
        generic = dict(spatial_dims=spatial_dims or 2, task=task or "segmentation",
                       size=size or (64 if (spatial_dims or 2) == 2 else 32),
                       num_classes=max(ncls or 2, 2), in_channels=in_channels,
                       seed=seed if training else seed + 7919)  # validation phantoms differ
        ds = phantoms(**_call(phantoms, generic, options))
    elif isinstance(source, str) and source.startswith("tfds:"):
        options.setdefault("split", "train" if training else "test")
        ds = tfds(source[5:], **_call(tfds, dict(num_classes=ncls, in_channels=in_channels), options))
    elif isinstance(source, (str, Path)):
        generic = dict(spatial_dims=spatial_dims, num_classes=ncls, in_channels=in_channels,
                       patch_size=patch_size, seed=seed, shuffle=training)
        ds = _from_path(source, generic, options)
    else:
        raise InvalidArgumentError(f"data source {source!r} is not supported; pass a tf.data.Dataset, "
                                   "an (x, y) tuple, a path, 'phantoms' or 'tfds:NAME'.")
    _check_spec(ds, source, task, spatial_dims)
    if augment and training:
        from zoo.augment import augment_dataset
        ds = augment_dataset(ds, augment, seed=seed)
    return ds


def _check_spec(ds, source, task, spatial_dims):
    spec = ds.element_spec
    if not isinstance(spec, tuple):
        return
    image, label = spec
    dims = image.shape.rank - 1
    if spatial_dims is not None and dims != spatial_dims:
        raise DataError(f"data {source!r} gives {dims}D images {image.shape} but the model is "
                        f"{spatial_dims}D; pick matching data or model.")
    if task == "segmentation" and label.shape.rank == 0:
        raise DataError(f"data {source!r} has one class label per image (classification) but the "
                        "model segments; use image/mask data.")
    if task == "classification" and label.shape.rank > 0:
        raise DataError(f"data {source!r} has label maps (segmentation) but the model classifies.")
