"""Unlabelled images for generative models: phantoms, image folders, NIfTI slices or volumes.

:func:`unlabelled` returns ``(images, value_range)``: a float32 NumPy array
``(n, size, size[, size], channels)`` and the range ``(lo, hi)`` its values are meant to span
(what a GAN's -1 and 1 stand for). Every image is resized to the GAN's square (cubic) size:

* ``"phantoms"``: the synthetic phantoms of :func:`zoo.data.phantom_arrays` (noisy ellipses,
  or ellipsoids in 3D), values about [0, 1] -> value_range (0, 1);
* a folder of PNG/JPEG/TIFF/BMP files, searched recursively (class subfolders are fine; the
  labels are not used): read as the image folders read them (8-bit / 255, 16-bit / 65535),
  grayscale for 1 channel, RGB for 3, the file's own channels otherwise; resized (bilinear)
  -> value_range (0, 1);
* a folder of NIfTI files (searched recursively): 2D GANs take slices along the third voxel
  axis (the central ``slice_range`` share of each volume: end slices are mostly empty), 3D
  GANs the whole volume, both resized with linear interpolation. Intensity: ``window=(lo,
  hi)`` clips to the window and value_range is the window (samples come back in the scan's
  units, e.g. HU); without a window each volume is scaled from its 0.5th-99.5th percentiles
  to [0, 1] -> value_range (0, 1);
* a ``.npz`` file (key ``images``) or an array: used as is (resized if needed),
  value_range = the data's min and max.

Everything is read into memory (at 128 px, 10,000 grayscale slices are 650 MB).
"""
from pathlib import Path

import numpy as np

from zoo._deps import require
from zoo.data.checks import DataError, as_path, check_finite
from zoo.data.folders import IMAGE_SUFFIXES, read_image
from zoo.data.phantoms import phantom_arrays
from zoo.data.volumes import NIFTI_SUFFIXES, load_nifti
from zoo.errors import InvalidArgumentError

SIZES = (16, 32, 64, 128)  # what the tests and README cover; the networks take any power of two >= 16


def _resize(array, size, spatial_dims):
    """(*spatial, C) -> (size,)*dims + (C,), linear interpolation (scipy.ndimage.zoom, order 1)."""
    if array.shape[:spatial_dims] == (size,) * spatial_dims:
        return array.astype(np.float32)
    ndimage = require("scipy.ndimage", "Resizing images for a GAN")
    factors = [size / s for s in array.shape[:spatial_dims]] + [1.0]
    out = ndimage.zoom(array.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest")
    return out[(slice(0, size),) * spatial_dims].astype(np.float32)


def _files(folder, suffixes):
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(suffixes))


def _image_folder(files, size, channels):
    mode = channels if channels in (1, 3) else None
    out = []
    for f in files:
        image = read_image(f, mode, (size, size))
        if image.shape[-1] != channels:
            raise DataError(f"{f}: has {image.shape[-1]} channel(s) but the GAN makes {channels}; build it "
                            f"with channels={image.shape[-1]} or convert the images.")
        out.append(image)
    return np.stack(out), (0.0, 1.0)


def _scale_volume(volume, window, path):
    if window is not None:
        return np.clip(volume, window[0], window[1])
    lo, hi = np.percentile(volume, [0.5, 99.5])
    if not hi > lo:
        raise DataError(f"{path}: the volume is constant ({lo}); it holds no image to learn from. Remove it.")
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0)


def _nifti_folder(files, size, channels, spatial_dims, window, slice_range):
    out = []
    for f in files:
        volume = load_nifti(f)[0]
        if volume.shape[-1] != channels:
            raise DataError(f"{f}: has {volume.shape[-1]} channel(s) but the GAN makes {channels}; build it "
                            f"with channels={volume.shape[-1]}.")
        volume = _scale_volume(check_finite(volume, str(f)), window, f)
        if spatial_dims == 3:
            out.append(_resize(volume, size, 3))
            continue
        depth = volume.shape[2]
        first, last = int(np.floor(slice_range[0] * depth)), int(np.ceil(slice_range[1] * depth))
        for k in range(first, max(last, first + 1)):
            out.append(_resize(volume[:, :, k], size, 2))
    return np.stack(out), (tuple(float(w) for w in window) if window is not None else (0.0, 1.0))


def _check_window(window):
    if window is None:
        return None
    ok = isinstance(window, (tuple, list)) and len(window) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in window) and window[1] > window[0]
    if not ok:
        raise InvalidArgumentError(f"unlabelled: window={window!r} must be (lo, hi) with lo < hi, e.g. "
                                   "(-100, 400) for a soft-tissue CT window.")
    return tuple(float(v) for v in window)


def _array(images, size, spatial_dims, channels, source):
    images = np.asarray(images, np.float32)
    if images.ndim == spatial_dims + 1:
        images = images[..., None]
    if images.ndim != spatial_dims + 2 or images.shape[-1] != channels:
        raise DataError(f"{source}: images of shape {images.shape} do not fit a {spatial_dims}D GAN making "
                        f"{channels} channel(s); expected (n,{' H, W' if spatial_dims == 2 else ' X, Y, Z'}"
                        f", {channels}).")
    check_finite(images, source)
    lo, hi = float(images.min()), float(images.max())
    if not hi > lo:
        raise DataError(f"{source}: every value is {lo}; there is nothing to learn.")
    return np.stack([_resize(im, size, spatial_dims) for im in images]), (lo, hi)


def unlabelled(source="phantoms", *, spatial_dims=2, image_size=64, channels=1, n=None, seed=0,
               window=None, slice_range=(0.25, 0.75)):
    """``(images, value_range)`` for a GAN of ``image_size`` px and ``channels`` channels.

    source: "phantoms", a folder (images or NIfTI, searched recursively), a .npz file (key
    ``images``) or an array. n: how many phantoms (default 2048 in 2D, 256 in 3D), or the first
    n images of another source. window: the intensity window for NIfTI (see the module doc).
    slice_range: the central share of each NIfTI volume's slices a 2D GAN takes.
    """
    if spatial_dims not in (2, 3):
        raise InvalidArgumentError(f"unlabelled: spatial_dims={spatial_dims!r} must be 2 or 3.")
    window = _check_window(window)
    if isinstance(source, str) and source == "phantoms":
        count = n or (2048 if spatial_dims == 2 else 256)
        images, _ = phantom_arrays(count, spatial_dims=spatial_dims, size=image_size, in_channels=channels,
                                   seed=seed)
        return images, (0.0, 1.0)
    if isinstance(source, np.ndarray):
        images, value_range = _array(source, image_size, spatial_dims, channels, "the image array")
    elif isinstance(source, (str, Path)) and str(source).lower().endswith(".npz"):
        path = as_path(source, "train")
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f:
                raise DataError(f"{path}: has no array 'images' (it has {', '.join(f.files)}); save the "
                                "images under that key.")
            images, value_range = _array(f["images"], image_size, spatial_dims, channels, str(path))
    elif isinstance(source, (str, Path)):
        folder = as_path(source, "train", kind="folder")
        if not folder.is_dir():
            raise DataError(f"train={str(source)!r} is a file; pass a folder of images or NIfTI volumes, or "
                            "a .npz file.")
        volumes = _files(folder, NIFTI_SUFFIXES)
        if volumes:
            images, value_range = _nifti_folder(volumes, image_size, channels, spatial_dims, window, slice_range)
        elif spatial_dims == 3:
            raise DataError(f"{folder}: holds no NIfTI volumes (.nii, .nii.gz), which a 3D GAN needs.")
        else:
            files = _files(folder, IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{folder}: holds no images ({'/'.join(IMAGE_SUFFIXES)}) or NIfTI volumes "
                                "(searched recursively). Put the images there or pass another folder.")
            images, value_range = _image_folder(files, image_size, channels)
    else:
        raise InvalidArgumentError(f"unlabelled: source {type(source).__name__} is not supported; pass "
                                   "'phantoms', a folder, a .npz file or an array.")
    if n is not None:
        images = images[:n]
    return images, value_range
