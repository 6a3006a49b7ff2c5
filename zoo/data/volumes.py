"""3D volumes (NIfTI; DICOM series via zoo.data.dicom): normalise, resample, sample patches.

Volumes are channels-last float32 ``(X, Y, Z, C)`` in the file's voxel order (NIfTI i, j, k;
DICOM columns, rows, slices), labels int32 ``(X, Y, Z, 1)``. Per case, in this order:
NaN/Inf check -> optional reorientation to ``orientation`` (axis codes such as ``"RAS"``: the voxel
axes permuted and flipped to point along them, as MONAI's ``Orientationd`` does with nibabel's
rule) -> optional resampling to ``spacing`` (MONAI's ``Spacingd`` geometry: the first voxel stays
where it is, output voxel ``j`` samples input position ``j * new / old``, ``round((n - 1) * old /
new + 1)`` voxels; linear for images, nearest for labels, edges repeated) -> intensity:
``window=(lo, hi)`` clips and scales to [0, 1] (CT windowing; MONAI's ``ScaleIntensityRanged`` to
[0, 1] with ``clip=True``), ``normalize="zscore"`` standardises each volume and channel -> patches.
With ``patch_size``, ``samples_per_volume`` patches are drawn per volume; a share
``fg_fraction`` of them is centred on a random foreground (label > 0) voxel, the rest are
uniform. ``shuffle=True`` (training) draws new patches, in a new case order, on every pass
over the dataset (every epoch), reproducibly from ``seed``; ``shuffle=False`` (validation)
gives the same patches in file order every epoch. A volume smaller than the patch is padded
(image with its minimum, label with 0).
"""
import numpy as np

from zoo._deps import require
from zoo.data._geometry import check_affine, check_nifti_header, check_spacing, quiet_nibabel
from zoo.data.checks import (
    DataError,
    check_channels,
    check_finite,
    check_labels,
    check_size,
    dataset_from_generator,
    describe,
    list_files,
    spec,
    stem,
)
from zoo.errors import InvalidArgumentError, check_choice

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NORMALIZE = ("auto", "zscore", None)


def load_nifti(path):
    """Read a NIfTI file: ``(data float32 (X, Y, Z, C), spacing (3,), affine (4, 4))``."""
    nib = require("nibabel", "Reading NIfTI files")
    check_nifti_header(nib, path)  # as stored: nibabel would silently repair some fields
    try:
        img = quiet_nibabel(nib, nib.load, str(path))  # our checks speak; nibabel's repair notes stay quiet
        data = np.asarray(img.get_fdata(dtype=np.float32))
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
        affine = np.asarray(img.affine, np.float64)
    except Exception as e:  # ImageFileError, EOFError, zlib errors, short buffers ...
        raise DataError(f"{path}: cannot read this NIfTI file ({describe(e)}). It is "
                        "unreadable or truncated; re-export or remove it.") from None
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector convention (X, Y, Z, 1, C)
        data = data[:, :, :, 0]
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise DataError(f"{path}: a {data.ndim}D NIfTI image of shape {data.shape} is not a volume; "
                        "expected (X, Y, Z) or (X, Y, Z, channels).")
    if data.size == 0:
        raise DataError(f"{path}: the image has shape {data.shape}, with no voxels; the file is damaged.")
    spacing = check_spacing(spacing + (1.0,) * (3 - len(spacing)), path, "voxel size")
    return data, spacing, check_affine(affine, path)


def load_label_volume(path):
    """A label volume from .nii/.nii.gz (nibabel) or .npy: int32 (X, Y, Z)."""
    if str(path).lower().endswith(".npy"):
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"{path}: cannot read this .npy label file ({describe(e)}).") from None
    else:
        data = load_nifti(path)[0]
        if data.shape[-1] != 1:
            raise DataError(f"{path}: a label volume must have one channel; it has {data.shape[-1]}.")
        data = data[..., 0]
    return data


def reorient(image, label, affine, orientation):
    """``image`` (and ``label``) with their voxel axes permuted and flipped to point along the world
    directions ``orientation`` (e.g. ``"RAS"``: axis 0 towards the patient's right, 1 anterior, 2
    superior; NIfTI's RAS+ world), each voxel axis going to the world axis nearest to it
    (nibabel's ``io_orientation``, as MONAI's ``Orientationd`` decides). Returns ``(image, label,
    affine of the result, transform)``; :func:`orient_back` undoes it."""
    nib = require("nibabel", "Reorienting volumes (orientation=...)")
    ornt = nib.orientations
    target = ornt.axcodes2ornt(tuple(orientation))
    transform = ornt.ornt_transform(ornt.io_orientation(affine), target)
    out = ornt.apply_orientation(image, transform)
    if label is not None and np.ndim(label) >= 3:
        label = ornt.apply_orientation(label, transform)
    affine = np.asarray(affine, np.float64) @ ornt.inv_ornt_aff(transform, image.shape[:3])
    return np.ascontiguousarray(out), label, affine, transform


def orient_back(array, transform):
    """Undo :func:`reorient`'s ``transform`` on an array of the reoriented grid (a label map)."""
    nib = require("nibabel", "Reorienting volumes (orientation=...)")
    inverse = np.empty_like(transform)  # transform row i: input axis i -> (output axis, flip)
    for axis, (to, flip) in enumerate(transform):
        inverse[int(to)] = (axis, flip)
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, inverse))


def check_orientation(orientation, where="orientation"):
    """Three axis codes, one of L/R, A/P and S/I each (``"RAS"``, ``"LPS"``), upper-cased."""
    codes = orientation.upper() if isinstance(orientation, str) else ""
    axes = sorted(next((k for k, pair in enumerate(("LR", "AP", "SI")) if c in pair), 9) for c in codes)
    if axes != [0, 1, 2]:
        raise InvalidArgumentError(f"{where}={orientation!r} must be three axis codes, one of L/R, A/P and S/I "
                                   "each, e.g. orientation='RAS' (MONAI's Orientationd axcodes).")
    return codes


def permute_spacing(spacing, transform):
    """The voxel sizes after :func:`reorient`'s ``transform``."""
    out = [0.0] * 3
    for axis, (to, _) in enumerate(transform[:3]):
        out[int(to)] = float(spacing[axis])
    return tuple(out)


def _resampled_shape(shape, factors):
    return tuple(int(np.round((n - 1) * f + 1.0)) for n, f in zip(shape, factors))  # MONAI's rounding (half to even)


def _resample_array(array, shape, factors, order):
    """``array`` (spatial..., [C]) sampled at input position ``j / factor`` for output voxel ``j``
    (order 0: the nearest voxel, ties to the even index as PyTorch's grid sampling rounds)."""
    if order == 0:
        index = [np.clip(np.rint(np.arange(n) / f), 0, size - 1).astype(np.int64)
                 for n, f, size in zip(shape, factors, array.shape)]
        return array[np.ix_(*index)]
    ndimage = require("scipy.ndimage", "Resampling volumes (spacing=...)")
    matrix = [1.0 / f for f in factors]
    if array.ndim == len(shape):
        return ndimage.affine_transform(array, matrix, output_shape=shape, order=order, mode="nearest")
    return np.stack([ndimage.affine_transform(array[..., c], matrix, output_shape=shape, order=order,
                                              mode="nearest") for c in range(array.shape[-1])], axis=-1)


def resample(image, label, spacing, target):
    """``image`` (linear) and ``label`` (nearest) resampled from ``spacing`` to ``target`` spacing,
    on MONAI's ``Spacingd`` grid (see the module docstring)."""
    factors = [s / t for s, t in zip(spacing, target)]
    if np.allclose(factors, 1.0):
        return image, label
    shape = _resampled_shape(image.shape[:-1], factors)
    image = _resample_array(image.astype(np.float32, copy=False), shape, factors, 1)
    if label is not None:
        label = _resample_array(np.asarray(label), shape, factors, 0)
    return image, label


def resample_back(array, shape, spacing, target):
    """The inverse of :func:`resample` for an array on the resampled grid (logits): linear, back to the
    original grid ``shape`` (input voxel ``i`` reads resampled position ``i * factor``)."""
    factors = [s / t for s, t in zip(spacing, target)]
    if tuple(array.shape[:-1]) == tuple(shape) and np.allclose(factors, 1.0):
        return array
    return _resample_array(array, tuple(shape), [1.0 / f for f in factors], 1)


def normalize_intensity(image, window=None, normalize="auto"):
    """CT window (clip, scale to [0, 1]) and/or per-volume, per-channel z-score."""
    image = image.astype(np.float32, copy=True)
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
        image = (np.clip(image, lo, hi) - lo) / (hi - lo)
    if normalize == "zscore" or (normalize == "auto" and window is None):
        axes = tuple(range(image.ndim - 1))
        mean = image.mean(axis=axes, keepdims=True)
        std = image.std(axis=axes, keepdims=True)
        image = (image - mean) / np.where(std > 0, std, 1.0)
    return image


def preprocess(image, label, file_spacing, affine, *, orientation=None, spacing=None, window=None,
               normalize="auto"):
    """A volume (and its label map) prepared as a model's records say, in this order (the order of
    MONAI's bundles): ``orientation`` (:func:`reorient`), ``spacing`` (:func:`resample`), then
    ``window`` / ``normalize`` (:func:`normalize_intensity`). Training (:func:`volume_dataset`) and
    ``zoo.predict`` both call it.

    Args:
        image: ``(X, Y, Z, C)`` in the file's voxel order; label: ``(X, Y, Z)`` or None.
        file_spacing: the file's voxel sizes; affine: its voxel-to-world transform (NIfTI's RAS+).
        orientation, spacing, window, normalize: the steps (None: skipped; ``normalize`` as
            :func:`normalize_intensity` takes it).

    Returns:
        ``(image, label, undo)``; ``undo`` = ``(transform or None, reoriented grid shape, spacing
        of that grid)``, what :func:`restore` needs to put a prediction back on the file's grid.
    """
    transform = None
    if orientation is not None:
        image, label, _, transform = reorient(image, label, affine, orientation)
        file_spacing = permute_spacing(file_spacing, transform)
    grid = image.shape[:-1]
    if spacing is not None:
        image, label = resample(image, label, file_spacing, tuple(float(s) for s in spacing))
    image = normalize_intensity(image, window=window, normalize=normalize)
    return image, label, (transform, grid, tuple(file_spacing))


def restore(array, undo, spacing=None):
    """An array on :func:`preprocess`'s grid (logits, channels last) back on the file's grid and
    voxel order: resampled back (linear) when ``spacing`` was applied, then oriented back."""
    transform, grid, file_spacing = undo
    if spacing is not None:
        array = resample_back(array, grid, file_spacing, tuple(float(s) for s in spacing))
    return array if transform is None else orient_back(array, transform)


def pad_to(image, label, patch):
    """Pad symmetrically so every spatial axis is at least ``patch``."""
    short = [max(p - s, 0) for p, s in zip(patch, image.shape[:-1])]
    if not any(short):
        return image, label
    pads = [(d // 2, d - d // 2) for d in short]
    image = np.pad(image, pads + [(0, 0)], constant_values=float(image.min()))
    if label is not None and np.ndim(label) > 0:
        label = np.pad(label, pads, constant_values=0)
    return image, label


def foreground(label, ignore_label=None):
    """The foreground voxels of a label map (label > 0, never an unannotated ``ignore_label`` one)."""
    fg = label > 0
    if ignore_label is not None:
        fg &= label != int(ignore_label)
    return np.argwhere(fg)


def sample_patches(image, label, patch, n, fg_fraction, rng, fg_index=None, ignore_label=None):
    """``n`` patch corners; ``round(fg_fraction * n)`` (stochastic rounding) hold foreground."""
    shape = np.asarray(image.shape[:-1])
    patch = np.asarray(patch)
    has_map = label is not None and np.ndim(label) > 0
    if fg_index is None and has_map:
        fg_index = foreground(label, ignore_label)
    n_fg = int(np.floor(fg_fraction * n + rng.random())) if has_map and len(fg_index) else 0
    starts = []
    for k in range(n):
        if k < n_fg:
            centre = fg_index[rng.integers(len(fg_index))]
            start = np.clip(centre - patch // 2, 0, shape - patch)
        else:
            start = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, patch)])
        starts.append(start)
    return [starts[i] for i in rng.permutation(n)]


def _crop(array, start, patch):
    return array[tuple(slice(int(s), int(s) + p) for s, p in zip(start, patch))]


class _Cases:
    """Loads, checks and preprocesses case ``i``; caches it when ``cache`` is True."""

    def __init__(self, images, labels, read, *, window, normalize, spacing, num_classes, in_channels,
                 cache, orientation=None, ignore_label=None):
        self.images, self.labels, self.read = images, labels, read
        self.ignore_label = ignore_label
        self.opts = dict(window=window, normalize=normalize)
        self.spacing, self.num_classes, self.in_channels = spacing, num_classes, in_channels
        self.orientation = orientation
        self.cache, self._store = cache, {}

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i in self._store:
            return self._store[i]
        src = self.images[i]
        image, spacing, affine = self.read(src)
        check_finite(image, str(src))
        check_channels(image.shape[-1], self.in_channels, str(src))
        label = self.labels[i] if self.labels is not None else None
        if isinstance(label, np.ndarray) and label.ndim == 3:  # a label map in memory (TFDS examples)
            if label.shape != image.shape[:-1]:
                raise DataError(f"{src}: image of spatial shape {image.shape[:-1]} but label map of "
                                f"shape {label.shape}; they must match voxel for voxel.")
            label = check_labels(label, self.num_classes, f"label of {src}", self.ignore_label)
        elif label is not None and not isinstance(label, (int, np.integer)):
            lsrc = label
            label = load_label_volume(lsrc)
            if label.shape != image.shape[:-1]:
                raise DataError(f"image {src} has spatial shape {image.shape[:-1]} but its label {lsrc} "
                                f"has {label.shape}; they must match voxel for voxel.")
            label = check_labels(label, self.num_classes, str(lsrc), self.ignore_label)
        elif label is not None:
            label = check_labels(np.int32(label), self.num_classes, f"label of {src}")
        image, lab, _ = preprocess(image, label if np.ndim(label) else None, spacing, affine,
                                   orientation=self.orientation, spacing=self.spacing, **self.opts)
        label = lab if np.ndim(label) else label
        fg = foreground(label, self.ignore_label) if label is not None and np.ndim(label) else None
        case = (image, label, fg)
        if self.cache:
            self._store[i] = case
        return case


def volume_dataset(images, labels=None, *, read, patch_size=None, samples_per_volume=1,
                   fg_fraction=0.5, window=None, normalize="auto", spacing=None, num_classes=None,
                   in_channels=None, shuffle=True, seed=0, cache=True, orientation=None, ignore_label=None):
    """tf.data.Dataset over volumes read by ``read(source) -> (data, spacing, affine)`` (the affine
    to NIfTI's RAS+ world, which ``orientation`` refers to); ``labels``: label volume files, class
    ints, or label maps already in memory ((X, Y, Z) int arrays). ``ignore_label``: a label value of
    unannotated voxels (not a class, never foreground)."""
    check_choice("normalize", normalize, NORMALIZE, "volumes")
    if orientation is not None:
        orientation = check_orientation(orientation)
    if window is not None and (len(window) != 2 or not float(window[0]) < float(window[1])):
        raise InvalidArgumentError(f"window={window!r} must be (low, high) with low < high, "
                                   "e.g. window=(-1000, 400) for a CT lung/soft-tissue window.")
    if not 0.0 <= fg_fraction <= 1.0:
        raise InvalidArgumentError(f"fg_fraction={fg_fraction!r} must lie in [0, 1] (the share of "
                                   "patches centred on foreground), e.g. 0.5.")
    if spacing is not None:
        spacing = tuple(float(s) for s in check_size_float(spacing))
    patch = check_size(patch_size, 3)
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{len(images)} image volumes but {len(labels)} labels; pass one label per volume.")
    cases = _Cases(images, labels, read, window=window, normalize=normalize, spacing=spacing,
                   num_classes=num_classes, in_channels=in_channels, cache=cache, orientation=orientation,
                   ignore_label=ignore_label)
    channels = None
    for i in range(len(cases)):  # validate everything before training starts
        image = cases[i][0]
        if channels is not None and image.shape[-1] != channels:
            check_channels(image.shape[-1], channels, str(images[i]),
                           "All volumes must have the same number of channels.")
        channels = image.shape[-1]
        if not cache:
            cases._store.clear()
    seg = labels is not None and not isinstance(labels[0], (int, np.integer))
    epoch = [0]

    def gen():  # training: new patches and order each pass, from (seed, pass); validation: pass 0 always
        rng = np.random.default_rng([int(seed), epoch[0]])
        epoch[0] += 1 if shuffle else 0
        order = rng.permutation(len(cases)) if shuffle else range(len(cases))
        for i in order:
            image, label, fg = cases[int(i)]
            lab_map = label if seg else None
            if patch is None:
                yield image, (label[..., None] if seg else np.int32(label if label is not None else 0))
                continue
            image, lab_map = pad_to(image, lab_map, patch)
            if lab_map is not None and lab_map.shape != label.shape:
                fg = None  # padding moved the foreground; recompute
            for start in sample_patches(image, lab_map, patch, samples_per_volume, fg_fraction, rng, fg,
                                        ignore_label):
                p_img = _crop(image, start, patch)
                yield p_img, (_crop(lab_map, start, patch)[..., None] if seg
                              else np.int32(label if label is not None else 0))

    shape = patch or (None, None, None)
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
    label_spec = spec((*shape, 1), tf.int32) if seg else spec((), tf.int32)
    n = len(cases) * (samples_per_volume if patch else 1)
    ds = dataset_from_generator(gen, spec((*shape, channels), tf.float32), label_spec)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    ds.file_paths = [str(s) for s in images]
    return ds


def check_size_float(spacing):
    vals = (spacing,) * 3 if isinstance(spacing, (int, float)) else tuple(spacing)
    if len(vals) != 3 or not all(float(v) > 0 for v in vals):
        raise InvalidArgumentError(f"spacing={spacing!r} must be 3 positive numbers (mm per voxel "
                                   "along the volume axes), e.g. spacing=(1.5, 1.5, 2.0).")
    return vals


def match_labels(sources, label_dir, label_suffix="", key=stem, what="image"):
    """One label volume (.nii/.nii.gz/.npy in ``label_dir``) per source, matched by name:
    ``key(source)`` == the label's name stem without ``label_suffix``."""
    labels = {stem(f)[: -len(label_suffix)] if label_suffix and stem(f).endswith(label_suffix)
              else stem(f): f for f in list_files(label_dir, "labels", NIFTI_SUFFIXES + (".npy",))}
    names = [key(f) for f in sources]
    missing = [f for f, k in zip(sources, names) if k not in labels]
    if missing:
        raise DataError(f"no label volume for {', '.join(str(m) for m in missing[:5])} in {label_dir} "
                        f"(a label file is named like its {what}: <name>{label_suffix}.nii.gz, .nii or "
                        ".npy). Add the labels or set label_suffix.")
    extra = sorted(set(labels) - set(names))
    if extra:
        raise DataError(f"label volume {labels[extra[0]]} has no {what} (matched by name); "
                        f"remove it or add the {what}.")
    return [labels[k] for k in names]


def nifti(images, labels=None, *, patch_size=None, samples_per_volume=1, fg_fraction=0.5, window=None,
          normalize="auto", spacing=None, num_classes=None, in_channels=None, label_suffix="",
          shuffle=True, seed=0, cache=True, orientation=None, ignore_label=None):
    """NIfTI volumes (a folder or a list of files) with label volumes (folder/list) or class ints.

    See the module docstring for the preprocessing. Returns a tf.data.Dataset of
    (float32 (X, Y, Z, C), int32 (X, Y, Z, 1) or int32 class) pairs. Every case is read and
    checked once when the dataset is made, so a bad file raises a ZooError before training;
    ``cache=True`` keeps the preprocessed volumes in memory (``False`` rereads each epoch).
    Label folders are matched to images by name stem (``label_suffix`` is stripped).
    ``ignore_label``: the label value of unannotated voxels (sparse annotation; not a class).
    """
    require("nibabel", "Reading NIfTI files")
    files = (list_files(images, "images", NIFTI_SUFFIXES) if not isinstance(images, (list, tuple))
             else list(images))
    if not files:
        raise DataError("nifti: the list of image files is empty; pass at least one .nii/.nii.gz file.")
    if labels is not None and not isinstance(labels, (list, tuple)):
        labels = match_labels(files, labels, label_suffix)
    return volume_dataset(files, labels, read=load_nifti, patch_size=patch_size,
                          samples_per_volume=samples_per_volume, fg_fraction=fg_fraction, window=window,
                          normalize=normalize, spacing=spacing, num_classes=num_classes,
                          in_channels=in_channels, shuffle=shuffle, seed=seed, cache=cache,
                          orientation=orientation, ignore_label=ignore_label)
