"""Inference on images and volumes larger than the training patch.

``sliding_window(model, image, patch_size, overlap=0.5)`` tiles the input with
overlapping patches, runs them through the model in batches and blends the logits with
a Gaussian importance map (centre voxels weigh more than border voxels, as nnU-Net
does), so seams between tiles do not show. ``predict(model, source)`` takes a NIfTI
file, a 2D image file or an array, applies the training-time intensity normalisation,
runs the sliding window and returns the label map; for files it also writes the label
map (NIfTI with the input's affine, qform/sform and voxel sizes; PNG for 2D images).
"""
import itertools
import math
import os
import sys
from pathlib import Path

import numpy as np

import zoo.data
from zoo._deps import require
from zoo._io import atomic_write_bytes
from zoo._keras import keras
from zoo._progress import Progress
from zoo.data.dicom import LPS_TO_RAS, holds_series, is_dicom_file, read_dicom_series
from zoo.data.folders import resize_image
from zoo.data.volumes import check_orientation, load_nifti, normalize_intensity, pad_to, preprocess, restore
from zoo.errors import InvalidArgumentError, ZooError, check_choice, check_positive_int
from zoo.scoring import labels as labels_of
from zoo.scoring import probabilities


def gaussian_importance(patch_size, sigma_scale=0.125):
    """Separable Gaussian weight map over a patch, peak 1, never exactly 0."""
    axes = []
    for n in patch_size:
        c = (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-6)
        axes.append(np.exp(-0.5 * ((np.arange(n) - c) / sigma) ** 2))
    w = axes[0]
    for a in axes[1:]:
        w = np.multiply.outer(w, a)
    w = w / w.max()
    return np.maximum(w, 1e-3).astype("float32")


def window_steps(patch, overlap):
    """The step between windows on each axis: floor(patch * (1 - overlap)), at least 1, so two
    neighbouring windows never share less than ``overlap`` of a patch (MONAI floors it too)."""
    return [max(1, math.floor(p * (1 - overlap) + 1e-9)) for p in patch]


def _starts(size, patch, step):
    if size <= patch:
        return [0]
    n = math.ceil((size - patch) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(n)})


def _static_patch(model, spatial_dims):
    shape = tuple(model.input_shape[1:1 + spatial_dims])
    return None if any(s is None for s in shape) else shape


def sliding_window(model, image, patch_size=None, *, overlap=0.5, batch_size=4, blend="gaussian",
                   progress=None):
    """Logits for ``image`` computed patch by patch and blended.

    Args:
        model: a ``keras.Model`` (or a LiteRT-backed model) with channels-last inputs.
        image: an array ``(spatial..., channels)``; where it is smaller than the patch it is
            padded as in training (:func:`zoo.data.volumes.pad_to`).
        patch_size: the spatial patch (default: the model's static input size).
        overlap: in [0, 1): the share of a patch shared with its neighbour.
        batch_size: patches per model call.
        blend: ``"gaussian"`` (centre voxels weigh more, as nnU-Net) or ``"constant"``.
        progress: show a progress line on stderr (None: as the zoo's progress setting says).

    Returns:
        float32 logits with the image's spatial shape and the model's output channels.

    Raises:
        InvalidArgumentError: the image's axes or channels do not match the model, it holds
            NaN/Inf, a bad ``overlap``/``blend``/``batch_size``, or no ``patch_size`` for a
            model of dynamic input size (or one of the wrong length).
    """
    image = np.asarray(image, dtype="float32")
    dims = len(model.input_shape) - 2
    if image.ndim != dims + 1:
        raise InvalidArgumentError(
            f"sliding_window: image has shape {image.shape} but the model takes {dims}D inputs with "
            f"channels last: expected {dims + 1} axes, e.g. {(96,) * dims + (model.input_shape[-1],)}.")
    if model.input_shape[-1] is not None and image.shape[-1] != model.input_shape[-1]:
        raise InvalidArgumentError(
            f"sliding_window: image has {image.shape[-1]} channels, the model expects "
            f"{model.input_shape[-1]}; convert the image or load the model with "
            f"in_channels={image.shape[-1]}.")
    if not np.all(np.isfinite(image)):
        raise InvalidArgumentError("sliding_window: the image contains NaN or Inf values; clean or "
                                   "normalise it first (e.g. np.nan_to_num).")
    check_choice("blend", blend, ("gaussian", "constant"), "sliding_window")
    check_positive_int("batch_size", batch_size, "sliding_window")
    if not 0 <= overlap < 1:
        raise InvalidArgumentError(f"sliding_window: overlap={overlap!r} must be in [0, 1), e.g. 0.5.")
    patch = tuple(patch_size) if patch_size is not None else _static_patch(model, dims)
    if patch is None:
        raise InvalidArgumentError(
            "sliding_window: the model has a dynamic input size, so patch_size is needed, e.g. "
            f"patch_size={(96,) * dims}.")
    if len(patch) != dims:
        raise InvalidArgumentError(f"sliding_window: patch_size={patch} needs {dims} entries.")
    spatial = image.shape[:-1]
    # a smaller image is padded as training pads (symmetric, its minimum): the model sees what it learnt on
    padded, _ = pad_to(image, None, patch)
    before = [max(p - s, 0) // 2 for p, s in zip(patch, spatial)]
    full = padded.shape[:-1]
    steps = window_steps(patch, overlap)
    corners = list(itertools.product(*[_starts(s, p, st) for s, p, st in zip(full, patch, steps)]))
    weight = gaussian_importance(patch) if blend == "gaussian" else np.ones(patch, "float32")
    out, norm = None, np.zeros(full, "float32")
    bar = Progress("sliding window", unit="patches", enabled=progress)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i:i + batch_size]
        batch = np.stack([padded[tuple(slice(c, c + p) for c, p in zip(corner, patch))] for corner in chunk])
        if len(chunk) < batch_size and len(corners) > batch_size:  # one batch shape: no retracing
            batch = np.concatenate([batch, np.zeros((batch_size - len(chunk),) + batch.shape[1:], "float32")])
        pred = model.predict_on_batch(batch)  # Keras' cached, compiled predict step
        pred = np.asarray(pred[0] if isinstance(pred, (list, tuple)) else pred, dtype="float32")[:len(chunk)]
        if pred.shape[1:-1] != patch:
            raise InvalidArgumentError(
                f"sliding_window: the model maps a {patch} patch to {pred.shape[1:-1]}; sliding windows "
                "need an output of the input's size (e.g. a U-Net with padding='same').")
        if out is None:
            out = np.zeros(full + (pred.shape[-1],), "float32")
        for corner, p in zip(chunk, pred):
            sl = tuple(slice(c, c + q) for c, q in zip(corner, patch))
            out[sl] += p * weight[..., None]
            norm[sl] += weight
        done = min(i + batch_size, len(corners))
        bar.update(done, len(corners), final=done == len(corners))
    out /= norm[..., None]
    return out[tuple(slice(b, b + s) for b, s in zip(before, spatial))]


# --------------------------------------------------------------------------- predict
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NORMALIZE = ("auto", "zscore", "none")


def _main_output(model):
    """A Keras model with auxiliary heads (DeepLab aux, GoogLeNet aux1/2) predicts with its first output."""
    if not getattr(model, "zoo_tflite", False) and len(model.outputs) > 1:
        return keras.Model(model.inputs, model.outputs[0], name=model.name)
    return model


def _label_dtype(num_classes):
    return np.uint8 if num_classes <= 256 else np.int16


def _check_finite(image, source):
    """NaN/Inf in the data as read (before any normalisation spreads them): count, first index."""
    bad = ~np.isfinite(image)
    if bad.any():
        first = np.argwhere(bad)[0]
        first = first[:-1] if image.shape[-1] == 1 else first  # a voxel index (one channel)
        raise InvalidArgumentError(
            f"predict: {source} holds {int(bad.sum())} NaN/Inf value(s) (first at index "
            f"{tuple(int(i) for i in first)}); clean them (e.g. np.nan_to_num) first.")


def _infer(model, image, *, source, patch_size, overlap, batch_size, blend, progress):
    """Logits for one channels-last image; a 2D model on a volume runs slice by slice (axis 2)."""
    dims = len(model.input_shape) - 2
    want = model.input_shape[-1]
    if dims == 2 and len(model.output_shape) == 2 and image.ndim == 4 and image.shape[2] > 1:
        raise InvalidArgumentError(
            f"predict: {source} is a volume of {image.shape[2]} slices ({image.shape[:3]}) but the model is a "
            f"2D classifier: it gives one class per 2D image. Pass one slice as an image file or array "
            f"(e.g. volume[:, :, k]), or use a 3D classifier.")
    if want is not None and image.shape[-1] != want:
        if image.ndim == 4 and str(source).lower().endswith((".nii", ".nii.gz")) and image.shape[-1] > 1:
            raise InvalidArgumentError(
                f"predict: {source} is a 4D NIfTI image {image.shape}: its 4th axis ({image.shape[-1]} "
                f"volumes, e.g. time points) is read as channels, but the model takes {want}. Pick one "
                f"volume first (nibabel: nib.Nifti1Image(img.dataobj[..., k], img.affine)), or use a model "
                f"built with in_channels={image.shape[-1]} if they are channels (e.g. MRI contrasts).")
        raise InvalidArgumentError(
            f"predict: {source} has {image.shape[-1]} channel(s) but the model takes {want}; convert "
            f"the input or use a model built with in_channels={image.shape[-1]}.")
    _check_finite(image, source)
    if len(model.output_shape) == 2:  # classification: one forward pass on the whole image
        fixed = tuple(model.input_shape[1:-1])
        if None not in fixed and tuple(image.shape[:-1]) != fixed:
            raise InvalidArgumentError(
                f"predict: {source} has spatial size {tuple(image.shape[:-1])} but the classifier "
                f"{model.name!r} takes {fixed}; resize it first (for image files zoo.predict does: "
                f"zoo.data.read_image(path, size={fixed}) reads one resized).")
        return np.asarray(model.predict_on_batch(image[None]), "float32")[0]
    if dims == 2 and image.ndim == 4:
        if image.shape[2] > 1 and progress:
            print(f"predict: a 2D model on a volume of shape {image.shape[:3]}: slice by slice "
                  "along axis 2", file=sys.stderr)
        bar, planes = Progress("sliding window", unit="slices", enabled=progress), []
        for k in range(image.shape[2]):  # one progress line over the slices
            planes.append(sliding_window(model, image[:, :, k], patch_size, overlap=overlap,
                                         batch_size=batch_size, blend=blend, progress=False))
            bar.update(k + 1, image.shape[2], final=k + 1 == image.shape[2])
        return np.stack(planes, axis=2)
    if image.ndim != dims + 1:
        raise InvalidArgumentError(
            f"predict: {source} has shape {image.shape} but the model takes {dims}D inputs "
            f"(spatial..., channels); pass a {dims}D image.")
    return sliding_window(model, image, patch_size, overlap=overlap, batch_size=batch_size,
                          blend=blend, progress=progress)


def _default_out(path, suffix):
    name = path.name
    for ext in NIFTI_SUFFIXES[::-1] + IMAGE_SUFFIXES + DICOM_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[:-len(ext)]
            break
    return path.with_name(f"{name}_seg{suffix}")


def default_output(source):
    """Where :func:`predict` writes the label map of a file or DICOM folder by default:
    ``<stem>_seg.nii.gz`` beside a NIfTI file or DICOM series folder, ``<stem>_seg.png``
    beside a 2D image or a single DICOM slice."""
    path = Path(source).expanduser()
    is_image = not path.is_dir() and path.name.lower().endswith(IMAGE_SUFFIXES + DICOM_SUFFIXES)
    return _default_out(path, ".png" if is_image else ".nii.gz")


def predict(model, info, source, *, out=None, patch_size=None, overlap=0.5, batch_size=4, blend="gaussian",
            window=None, normalize=None, spacing=None, orientation=None, return_probabilities=False,
            progress=None, dicom_gaps="error"):
    """Segment ``source`` with ``model`` by sliding window; returns the label map.

    Classification models return the class index (or probabilities) of the whole image.

    Args:
        model: a ``keras.Model``, or an exported file's LiteRT runner; a model with auxiliary
            heads predicts with its first output.
        info: its record (:class:`zoo.record.ModelInfo`): the window/normalize/spacing/orientation
            and patch size it was trained with are the defaults.
        source: a NIfTI file (.nii/.nii.gz), a DICOM series folder (the slices of one scan; the
            label map is written as NIfTI ``<folder>_seg.nii.gz`` with the series' affine in
            RAS), a single DICOM file (a 2D slice, for a 2D model), a 2D image file (PNG, JPEG,
            TIFF, BMP; pixels / 255 or / 65535 as in training; resized to the training patch
            size for a classifier), or an array ``(spatial..., channels)`` (a 1-channel model
            also takes ``(spatial...)``). A 2D model on a volume runs slice by slice along axis 2.
        out: where a file source's label map is written, atomically: default
            ``<stem>_seg.nii.gz`` (``<stem>_seg.png``) beside the input; ``False`` writes
            nothing. NIfTI output keeps the input's affine, qform/sform (and codes) and voxel
            sizes; dtype uint8 (int16 beyond 256 classes). Arrays are never written.
        patch_size, overlap, batch_size, blend, progress: as for :func:`sliding_window`
            (``patch_size`` defaults to the record's).
        window: the training-time intensity window ``(lo, hi)``: clips and scales to [0, 1]
            (see zoo.data.nifti).
        normalize: ``"auto"`` (z-score unless a window is given), ``"zscore"`` or ``"none"``.
            Default: what training on that source kind does (``"auto"`` for NIfTI, ``"none"``
            for arrays and 2D images).
        spacing: resample a NIfTI volume to this voxel spacing first (as in training) and the
            logits back to the input grid.
        orientation: reorient a volume (NIfTI or DICOM series) to these axis codes first, e.g.
            ``"RAS"`` (as in training; before ``spacing``); the label map is turned back to the
            file's voxel order.
        return_probabilities: return softmax (sigmoid for one output channel) probabilities
            ``(spatial..., classes)`` instead of labels.
        dicom_gaps: a DICOM series whose slices are unevenly spaced is refused (``"error"``), cut
            to its longest evenly spaced run (``"split"``: the label map covers those slices) or
            stacked at the median spacing (``"median"``: its geometry is wrong at the gap); see
            :func:`zoo.data.dicom.read_dicom_series`.

    Returns:
        The label map (an int array of the input's spatial shape), the class index for a
        classifier, or the probabilities with ``return_probabilities``.

    Raises:
        InvalidArgumentError: a source that does not exist or is of no known kind, a folder
            without DICOM files, a single DICOM slice for a 3D model, an ``out`` that would
            overwrite the input or has the wrong suffix, a bad option, or a write that failed
            (nothing is written then).
        DataError: the file cannot be read (a damaged NIfTI, DICOM or image file).
        MissingDependencyError: the optional reader for the file (nibabel, pydicom, Pillow) is
            not installed.
    """
    model = _main_output(model)
    prep = info.preprocessing
    patch_size = patch_size if patch_size is not None else info.patch_size
    window = window if window is not None else prep.get("window")
    spacing = spacing if spacing is not None else prep.get("spacing")
    orientation = orientation if orientation is not None else prep.get("orientation")
    if orientation is not None:
        orientation = check_orientation(orientation, "predict: orientation")
    if normalize is None and "normalize" in prep:
        normalize = prep["normalize"] or "none"
    if normalize is not None:
        check_choice("normalize", normalize, NORMALIZE, "predict")
    kw = dict(patch_size=patch_size, overlap=overlap, batch_size=batch_size, blend=blend,
              progress=progress)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        vol = dict(window=window, normalize=normalize, spacing=spacing, orientation=orientation,
                   return_probabilities=return_probabilities, kw=kw)
        if path.is_dir():
            if not holds_series(path):
                raise InvalidArgumentError(
                    f"predict: {path} is a folder without DICOM files; pass one DICOM series folder "
                    "(the .dcm slices of one scan), a NIfTI file or an image file.")
            return _predict_dicom(model, path, out, gaps=dicom_gaps, **vol)
        if not path.is_file():
            raise InvalidArgumentError(f"predict: source={str(source)!r}: no such file or folder (resolved "
                                       f"relative to {os.getcwd()!r}); pass a NIfTI file, a DICOM series "
                                       "folder or an image file.")
        lower = path.name.lower()
        if lower.endswith(NIFTI_SUFFIXES):
            return _predict_nifti(model, path, out, **vol)
        if lower.endswith(IMAGE_SUFFIXES):
            return _predict_image(model, path, out, window, normalize, return_probabilities, kw)
        if is_dicom_file(path):
            return _predict_dicom_slice(model, path, out, window, normalize, return_probabilities, kw)
        raise InvalidArgumentError(f"predict: {path} is neither NIfTI ({', '.join(NIFTI_SUFFIXES)}), a "
                                   f"DICOM file or series folder, nor a 2D image ({', '.join(IMAGE_SUFFIXES)}); "
                                   "load it as an array.")
    image = np.asarray(source, dtype="float32")
    dims = len(model.input_shape) - 2
    if image.ndim == dims and model.input_shape[-1] == 1:
        image = image[..., None]
    _check_finite(image, "the input array")
    if window is not None or normalize not in (None, "none"):
        image = _normalize(image, window, normalize)
    logits = _infer(model, image, source="the input array", **kw)
    return probabilities(logits) if return_probabilities else labels_of(logits)


def _normalize(image, window, normalize):
    return normalize_intensity(image, window=window,
                               normalize=None if normalize == "none" else (normalize or "auto"))


def _out_file(out, default, source):
    """Where a label map goes: ``out`` (a file, or a folder to hold ``default``'s name) or
    ``default``; never the input itself or a file inside an input folder."""
    path = Path(out).expanduser() if out is not None else default
    if path.is_dir():
        path = path / default.name
    src = Path(source).expanduser().resolve()
    if path.resolve() == src or src in path.resolve().parents:
        raise InvalidArgumentError(f"predict: out={str(path)!r} would overwrite the input {source}; write the "
                                   f"label map elsewhere (default {default}).")
    return path


def _write(out, write):
    """``write(tmp)`` then rename to ``out``; a failure of the writer (a bad header, a folder in
    the way) is a ZooError and leaves nothing at ``out``."""
    try:
        atomic_write_bytes(out, write)
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel's HeaderDataError, Pillow's errors, OSError ...
        raise InvalidArgumentError(f"predict: cannot write the label map to {out} ({type(e).__name__}: "
                                   f"{' '.join(str(e).split())[:200]}); nothing was written there. Choose "
                                   "another out.") from None


def _nifti_out(out, default, source):
    out = _out_file(out, default, source)
    if not out.name.lower().endswith(NIFTI_SUFFIXES):
        raise InvalidArgumentError(f"predict: out={str(out)!r} must end with .nii or .nii.gz.")
    return out


def _predict_volume(model, image, file_spacing, affine, source, write, *, window, normalize, spacing,
                    orientation, return_probabilities, kw):
    """Preprocess a volume as training did (:func:`zoo.data.volumes.preprocess`: orientation,
    spacing, intensity), infer, put the logits back on the file's grid and voxel order,
    ``write(labels)``. ``affine``: to NIfTI's RAS+ world."""
    _check_finite(image, source)  # the raw values, as training checks them
    image, _, undo = preprocess(image, None, file_spacing, affine, orientation=orientation, spacing=spacing,
                                window=window, normalize=None if normalize == "none" else (normalize or "auto"))
    logits = _infer(model, image, source=source, **kw)
    if len(model.output_shape) == 2:
        return probabilities(logits) if return_probabilities else int(labels_of(logits))
    logits = restore(logits, undo, spacing)
    labels = labels_of(logits).astype(_label_dtype(model.output_shape[-1]))
    if write is not None:
        write(labels)
    return probabilities(logits) if return_probabilities else labels


def _predict_nifti(model, path, out, **vol):
    nib = require("nibabel", "Reading and writing NIfTI files")
    image, file_spacing, affine = load_nifti(path)
    ref = nib.load(str(path))
    if out is not False and len(model.output_shape) > 2:
        out = _nifti_out(out, _default_out(path, ".nii.gz"), path)

        def write(labels):
            data = labels.reshape(ref.shape[:3]) if len(ref.shape) >= 3 else labels.reshape(ref.shape)
            header = ref.header.copy()
            header.set_data_dtype(labels.dtype)
            img = (ref.__class__ if isinstance(ref, (nib.Nifti1Image, nib.Nifti2Image)) else nib.Nifti1Image)(
                data, ref.affine, header=header)
            img.header.set_slope_inter(1.0, 0.0)  # class indices are stored unscaled
            _write(out, lambda tmp: nib.save(img, tmp))
    else:
        write = None
    return _predict_volume(model, image, file_spacing, affine, str(path), write, **vol)


def _predict_dicom(model, folder, out, gaps="error", **vol):
    """One DICOM series folder -> label map; written as NIfTI ``<folder>_seg.nii.gz`` beside the
    folder, voxel for voxel on the series grid (columns, rows, slices), with the series'
    patient-space affine converted from DICOM's LPS to NIfTI's RAS (qform = sform, code 1)."""
    image, file_spacing, lps_affine = read_dicom_series(folder, gaps=gaps)
    if out is not False and len(model.output_shape) > 2:
        nib = require("nibabel", "Writing the NIfTI label map of a DICOM series")
        out = _nifti_out(out, default_output(folder), folder)

        def write(labels):
            img = nib.Nifti1Image(labels, LPS_TO_RAS @ lps_affine)
            img.set_qform(img.affine, code=1)
            img.set_sform(img.affine, code=1)
            img.header.set_slope_inter(1.0, 0.0)
            _write(out, lambda tmp: nib.save(img, tmp))
    else:
        write = None
    return _predict_volume(model, image, file_spacing, LPS_TO_RAS @ lps_affine, str(folder), write, **vol)


def check_dicom_slice(model, source):
    """A single DICOM file takes a 2D model; for a 3D model, say to pass the series' folder."""
    path = Path(source).expanduser()
    if len(model.input_shape) - 2 != 2 and path.is_file() and not path.name.lower().endswith(
            NIFTI_SUFFIXES + IMAGE_SUFFIXES) and is_dicom_file(path):
        raise InvalidArgumentError(
            f"predict: {path} is one DICOM slice but the model is 3D; put the files of the whole series in "
            "one folder and pass the folder (zoo predict RUN SERIES_FOLDER; zoo.predict(model, folder)).")


def _predict_dicom_slice(model, path, out, window, normalize, return_probabilities, kw):
    """One DICOM file: a 2D slice for a 2D model, (rows, columns) as displayed; intensities as
    for a series (rescaled, then ``window``/``normalize``, default z-score)."""
    check_dicom_slice(model, path)
    volume, _, _ = read_dicom_series([path])
    image = volume[:, :, 0].transpose(1, 0, 2)  # (columns, rows) -> the slice as displayed
    _check_finite(image, str(path))
    if model.input_shape[-1] == 3:
        image = np.repeat(image, 3, axis=-1)  # grayscale as RGB, as image folders convert it
    if len(model.output_shape) == 2 and kw["patch_size"]:
        image = resize_image(image, kw["patch_size"])
    image = _normalize(image, window, normalize or "auto")
    return _predict_image(model, path, out, window, normalize, return_probabilities, kw, image=image)


def _predict_image(model, path, out, window, normalize, return_probabilities, kw, image=None):
    if image is None:
        channels = model.input_shape[-1] if model.input_shape[-1] in (1, 3) else 1
        # a classifier sees the image at its training size (image folders are resized to it)
        size = kw["patch_size"] if len(model.output_shape) == 2 else None
        image = zoo.data.read_image(path, channels, size)  # looked up per call: the public reader
        if window is not None or normalize not in (None, "none"):
            image = _normalize(image, window, normalize)
    logits = _infer(model, image, source=str(path), **kw)
    if len(model.output_shape) == 2:
        return probabilities(logits) if return_probabilities else int(labels_of(logits))
    labels = labels_of(logits).astype(_label_dtype(model.output_shape[-1]))
    if out is not False:
        from PIL import Image  # optional: the images extra (Pillow); only PNG output needs it
        out = _out_file(out, _default_out(path, ".png"), path)
        pixels = labels if labels.dtype == np.uint8 else labels.astype(np.uint16)  # L or I;16 PNG
        _write(out, lambda tmp: Image.fromarray(pixels).save(tmp))
    return probabilities(logits) if return_probabilities else labels
