"""Image folders (classification) and paired image/mask folders (2D segmentation), via Pillow.

Pixel values become float32: 8-bit / 255, 16-bit / 65535, float ("F" mode TIFF) unchanged.
Grayscale stays 1 channel, colour becomes 3 (RGB; alpha dropped). In a folder that mixes
both, ``color_mode="auto"`` converts every image to the majority kind (with a warning);
``"grayscale"``/``"rgb"`` convert all. Masks are integer class maps (palette PNGs give their
palette indices); ``mask_values=[0, 255]`` maps stored values to classes 0, 1, ...
:func:`read_image` reads one file the same way (``zoo.predict`` uses it). Image/mask pairs
can be cut to patches (``patch_size``, see :func:`zoo.data.fit_patch`).
"""
import collections
import warnings

import numpy as np

from zoo._deps import require
from zoo.data.checks import (
    DataError,
    as_path,
    check_channels,
    check_finite,
    check_labels,
    check_size,
    describe,
    list_files,
)
from zoo.data.patches import fit_patch
from zoo.errors import check_choice

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
COLOR_MODES = ("auto", "grayscale", "rgb")


def _pil():
    return require("PIL.Image", "Reading PNG/JPEG/TIFF images")


def _open(path):
    Image = _pil()
    try:
        im = Image.open(path)
        _ = im.size, im.mode
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError ...
        raise DataError(f"{path}: cannot be read as an image ({describe(e)}). Remove or "
                        "replace the file.") from None
    if getattr(im, "n_frames", 1) > 1:
        raise DataError(f"{path}: holds {im.n_frames} frames (a multi-page TIFF/GIF); 2D image folders "
                        "take one image per file. Save the volume as NIfTI or .npz instead.")
    return im


def read_image(path, channels=None, size=None):
    """One 2D image file (PNG, JPEG, TIFF, BMP) as a float32 ``(H, W, C)`` array, read as the
    image folders read it: 8-bit / 255, 16-bit / 65535, float TIFF unchanged.

    channels: None keeps the file's kind (grayscale -> 1, colour -> 3, alpha dropped); 1
    converts colour to grayscale (ITU-R 601 luma); 3 converts to RGB. size: ``(H, W)`` to
    resize to (bilinear per channel, as ``image_folder(image_size=...)`` does), None keeps the
    file's size. Raises DataError naming the file when it cannot be read or holds NaN/Inf.
    """
    check_choice("channels", channels, (None, 1, 3), "read_image")
    if size is not None:
        size = check_size(size, 2, "size")
    im = _open(path)
    try:
        im.load()
        mode = im.mode
        if channels is None:
            channels = 1 if mode in GRAY_MODES else 3
        if channels == 3:
            arr = np.asarray(im.convert("RGB"), np.float32) / 255.0
        elif mode.startswith("I;16") or mode == "I":
            arr = np.asarray(im).astype(np.float32) / 65535.0
        elif mode == "F":
            arr = np.asarray(im, np.float32)
        elif mode == "1":
            arr = np.asarray(im).astype(np.float32)
        else:
            arr = np.asarray(im.convert("L"), np.float32) / 255.0
    except DataError:
        raise
    except Exception as e:  # truncated/corrupt pixel data
        raise DataError(f"{path}: the image data cannot be decoded ({describe(e)}); the file "
                        "is truncated or corrupt. Replace it.") from None
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    return _resize(check_finite(arr, str(path)), size, False)


def _decode_mask(path, mask_values, num_classes, ignore_label=None):
    im = _open(path)
    try:
        im.load()
        arr = np.asarray(im)
    except Exception as e:
        raise DataError(f"{path}: the mask cannot be decoded ({describe(e)}); the file is "
                        "truncated or corrupt. Replace it.") from None
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[-1], 3))):
            raise DataError(f"{path}: the mask is a colour ({im.mode}) image; masks must hold one class "
                            "index per pixel. Save it as a grayscale or palette PNG of class indices.")
        arr = arr[..., 0]
    if mask_values is not None:
        out = np.full(arr.shape, -1, np.int32)
        for cls, v in enumerate(mask_values):
            out[arr == v] = cls
        if (out < 0).any():
            raise DataError(f"{path}: mask values {np.unique(arr[out < 0])[:8].tolist()} are not in "
                            f"mask_values={list(mask_values)}. Add them or fix the mask.")
        arr = out
    return check_labels(arr, num_classes, str(path), ignore_label)


def resize_image(arr, size):
    """A float ``(H, W, C)`` array resized to ``size=(H, W)`` as the image folders resize (bilinear
    per channel)."""
    return _resize(np.asarray(arr, np.float32), check_size(size, 2, "size"), False)


def _resize(arr, size, nearest):
    Image = _pil()
    if size is None or arr.shape[:2] == tuple(size):
        return arr
    h, w = size
    method = Image.NEAREST if nearest else Image.BILINEAR
    if nearest:
        return np.asarray(Image.fromarray(arr.astype(np.int32), "I").resize((w, h), method))
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]), "F").resize((w, h), method))
             for c in range(arr.shape[-1])]
    return np.stack(chans, -1).astype(np.float32)


def _pick_channels(files, color_mode, in_channels, arg):
    check_choice("color_mode", color_mode, COLOR_MODES, arg)
    modes = {f: _open(f).mode for f in files}
    kind = {f: 1 if m in GRAY_MODES else 3 for f, m in modes.items()}
    if color_mode != "auto":
        return 1 if color_mode == "grayscale" else 3
    counts = collections.Counter(kind.values())
    channels = 3 if counts[3] >= counts[1] else 1
    if len(counts) > 1:
        odd = next(f for f in files if kind[f] != channels)
        warnings.warn(f"{arg}: the folder mixes {counts[1]} grayscale and {counts[3]} colour images; all "
                      f"are converted to the majority ({'RGB' if channels == 3 else 'grayscale'}), "
                      f"e.g. {odd}. Pass color_mode='grayscale' or 'rgb' to choose.", stacklevel=3)
    if in_channels is not None and channels != in_channels:
        odd = next(f for f in files if kind[f] != in_channels)
        check_channels(channels, in_channels, f"{odd} ({modes[odd]} image)",
                       f"Pass color_mode={'grayscale' if in_channels == 1 else 'rgb'!r} to convert, "
                       "or build the model with the matching in_channels.")
    return channels


def _check_sizes(files, image_size, arg, mixed_ok=False):
    """The common (H, W) of the images (``image_size`` when given); None for mixed sizes when
    ``mixed_ok`` (a patch is cut from each), else a DataError."""
    if image_size is not None:
        return check_size(image_size, 2, "image_size")
    sizes = {}
    for f in files:
        w, h = _open(f).size
        sizes.setdefault((h, w), f)
    if len(sizes) > 1 and mixed_ok:
        return None
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DataError(f"{arg}: images differ in size ({f1}: {s1[0]}x{s1[1]}, {f2}: {s2[0]}x{s2[1]}); "
                        f"pass image_size=(H, W) to resize them all, e.g. image_size={s1}.")
    return next(iter(sizes))


def _numpy_dataset(n, load, image_shape, label_shape, **attrs):
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free

    def load_tf(i):
        image, label = tf.numpy_function(load, [i], (tf.float32, tf.int32), stateful=False)
        image.set_shape(image_shape)
        label.set_shape(label_shape)
        return image, label

    ds = tf.data.Dataset.range(n).map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def image_folder(root, *, image_size=None, in_channels=None, color_mode="auto", validate=True):
    """Classification data: ``root/<class_name>/<image>``; classes are the sorted subfolder names.

    Returns a tf.data.Dataset of (float32 (H, W, C) image, int32 class index) with attributes
    ``class_names`` and ``file_paths``. ``validate=True`` decodes every file once up front so a
    corrupt file is reported before training starts.
    """
    _pil()
    root = as_path(root, "image_folder", kind="folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"image_folder: {str(root)!r} has no class subfolders (empty folder?); expected "
                        "root/<class_name>/<image files>.")
    files, labels = [], []
    for c, folder in enumerate(classes):
        found = list_files(folder, f"image_folder class {folder.name!r}", IMAGE_SUFFIXES)
        files += found
        labels += [c] * len(found)
    channels = _pick_channels(files, color_mode, in_channels, "image_folder")
    size = _check_sizes(files, image_size, "image_folder")
    if validate:
        for f in files:
            read_image(f, channels)
    labels = np.asarray(labels, np.int32)

    def load(i):
        return read_image(files[int(i)], channels, size), labels[int(i)]

    return _numpy_dataset(len(files), load, (*size, channels), (),
                          class_names=[p.name for p in classes], file_paths=[str(f) for f in files])


def _pairs(image_dir, mask_dir, mask_suffix):
    def by_stem(files, suffix, arg):
        out = {}
        for f in files:
            s = f.stem[: -len(suffix)] if suffix and f.stem.endswith(suffix) else f.stem
            if s in out:
                raise DataError(f"{arg}: two files share the name stem {s!r} ({out[s].name}, {f.name}); "
                                "keep one.")
            out[s] = f
        return out

    images = by_stem(list_files(image_dir, "image_dir", IMAGE_SUFFIXES), "", "image_dir")
    masks = by_stem(list_files(mask_dir, "mask_dir", IMAGE_SUFFIXES), mask_suffix, "mask_dir")
    for a, b, what in ((images, masks, "mask"), (masks, images, "image")):
        missing = sorted(set(a) - set(b))
        if missing:
            names = ", ".join(str(a[s]) for s in missing[:5])
            raise DataError(f"no {what} for {names}{' ...' if len(missing) > 5 else ''} ({len(missing)} "
                            f"file(s)); image and mask files are matched by name stem"
                            f"{f' (mask stem = image stem + {mask_suffix!r})' if mask_suffix else ''}. "
                            f"Add the missing {what}s, remove the extra files, or set mask_suffix.")
    keys = sorted(images)
    return [images[k] for k in keys], [masks[k] for k in keys]


def segmentation_folder(image_dir, mask_dir, *, num_classes=None, image_size=None, patch_size=None,
                        random_crop=True, seed=0, in_channels=None, color_mode="auto", mask_suffix="",
                        mask_values=None, validate=True, ignore_label=None):
    """2D segmentation data: images and masks in two folders, paired by file name stem.

    Returns a tf.data.Dataset of (float32 (H, W, C) image, int32 (H, W, 1) mask) with attributes
    ``file_paths`` and ``mask_paths``. ``image_size=(H, W)`` resizes every pair (masks with
    nearest neighbour). ``patch_size=(h, w)`` then cuts one patch per pair with
    :func:`zoo.data.fit_patch`: a random window, new each epoch and reproducible from
    ``seed``, when ``random_crop=True`` (training), the centre window when False (validation);
    pairs smaller than the patch are padded (image with its minimum, mask with 0). With a
    patch the images may differ in size; without one (and without image_size) they must not.
    ``ignore_label``: a mask value that marks unannotated pixels (not a class; kept as is).
    """
    _pil()
    patch = check_size(patch_size, 2)
    images, masks = _pairs(image_dir, mask_dir, mask_suffix)
    channels = _pick_channels(images, color_mode, in_channels, "segmentation_folder")
    for fi, fm in zip(images, masks):
        if _open(fi).size != _open(fm).size:
            (wi, hi), (wm, hm) = _open(fi).size, _open(fm).size
            raise DataError(f"image {fi} is {hi}x{wi} but its mask {fm} is {hm}x{wm}; an image and its "
                            "mask must have the same size. Fix or re-export the mask.")
    size = _check_sizes(images, image_size, "segmentation_folder", mixed_ok=patch is not None)
    if validate:
        for fi, fm in zip(images, masks):
            read_image(fi, channels)
            _decode_mask(fm, mask_values, num_classes, ignore_label)

    def load(i):
        i = int(i)
        image = read_image(images[i], channels, size)
        mask = _resize(_decode_mask(masks[i], mask_values, num_classes, ignore_label), size, True)
        return image, mask.astype(np.int32)[..., None]

    shape = size or (None, None)
    ds = _numpy_dataset(len(images), load, (*shape, channels), (*shape, 1))
    if patch is not None:
        ds = fit_patch(ds, patch, random=random_crop, seed=seed)
    ds.file_paths, ds.mask_paths = [str(f) for f in images], [str(f) for f in masks]
    return ds
