"""Representative and verification inputs for an export, from any source ``zoo.finetune`` takes.

Sources: ``"phantoms"`` (the default), a folder (image folders, NIfTI, DICOM), a ``.npz``,
``"tfds:NAME"``, an ``(x, y)`` tuple, an array of inputs, or a ``tf.data.Dataset``. Images come
at the export's input size: segmentation data is centre-cropped/padded to it (as validation
data in ``zoo.finetune``), classification folders resized to it, volumes give patches of it.
Generators (a latent-vector input) get standard normal vectors unless arrays are given.
"""
from pathlib import Path

import numpy as np

from zoo.errors import InvalidArgumentError


def _stream(source, *, n, shape, task, num_classes, options, seed):
    """Up to ``n`` input images (numpy, float32) from ``source``."""
    from zoo.data import fit_patch, from_source
    spatial, channels = tuple(shape[:-1]), shape[-1]
    opts = dict(options or {})
    size = spatial
    if isinstance(source, str) and source == "phantoms":
        # a run's intensity preprocessing is for files; phantoms are used as generated (the run
        # of a phantom-trained model records normalize="none")
        opts = {k: v for k, v in opts.items() if k not in ("window", "normalize", "spacing")}
        opts.setdefault("n", n)
        # only the images matter here: a 1000-class head would otherwise ask for 999 lesions
        num_classes = min(num_classes or 2, 4)
        size = tuple(max(s, 16) for s in spatial)  # phantoms start at 16: cut smaller inputs out
    ds = from_source(source, training=False, task=task, spatial_dims=len(spatial), num_classes=num_classes,
                     in_channels=channels, patch_size=size, seed=seed, augment=False, **opts)
    spec = ds.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    if image_spec.shape.rank == len(shape) + 1:  # a batched dataset: one image at a time
        ds = ds.unbatch()
        spec = ds.element_spec
        image_spec = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(spec, tuple) and task == "segmentation" and image_spec.shape.rank == len(shape) \
            and tuple(image_spec.shape[:-1]) != size and spec[1].shape.rank >= len(spatial):
        ds = fit_patch(ds, size, random=False)
    if isinstance(spec, tuple):
        ds = ds.map(lambda image, *_: image)
    if size != spatial:
        ds = ds.map(lambda image: image[tuple(slice((a - b) // 2, (a - b) // 2 + b) for a, b in zip(size, spatial))])
    return np.stack([np.asarray(x, "float32") for x in ds.take(n).as_numpy_iterator()]) \
        if n else np.zeros((0,) + tuple(shape), "float32")


def _describe(source):
    return repr(str(source)) if isinstance(source, (str, Path)) else type(source).__name__


def representative(source, *, n, shape, task, num_classes, options=None, seed=0):
    """``n`` (or fewer, if the source is smaller) inputs of ``shape`` (no batch axis)."""
    from zoo._keras import tf
    shape = tuple(int(s) for s in shape)
    source = "phantoms" if source is None else source
    latent = len(shape) == 1
    if isinstance(source, np.ndarray) or (isinstance(source, tuple) and len(source) == 2
                                           and not isinstance(source[0], tf.data.Dataset)):
        xs = np.asarray(source[0] if isinstance(source, tuple) else source, "float32")
        if xs.shape == shape:
            xs = xs[None]
        if xs.ndim == len(shape) and shape[-1] == 1 and xs.shape[1:] == shape[:-1]:
            xs = xs[..., None]  # 1-channel images given without their channel axis
        xs = xs[:n]
    elif latent:
        if not (isinstance(source, str) and source == "phantoms"):
            raise InvalidArgumentError(
                f"export: representative_data={_describe(source)}: this model takes latent vectors of "
                f"length {shape[0]} (a generator), not images; leave representative_data unset (standard "
                f"normal vectors) or pass an array of shape (N, {shape[0]}).")
        xs = np.random.default_rng(seed).standard_normal((n,) + shape).astype("float32")
    elif isinstance(source, tf.data.Dataset) or isinstance(source, (str, Path)):
        xs = _stream(source, n=n, shape=shape, task=task, num_classes=num_classes, options=options,
                     seed=seed)
    else:
        raise InvalidArgumentError(
            f"export: representative_data={_describe(source)} is not supported; pass 'phantoms', a folder, "
            "a .npz file, 'tfds:NAME', an (x, y) tuple, an array of inputs or a tf.data.Dataset.")
    return check_inputs(xs, shape, source)


def check_inputs(xs, shape, source):
    """``xs`` must be a non-empty float array of inputs of exactly ``shape``."""
    what = f"export: representative_data={_describe(source)}"
    if xs.ndim != len(shape) + 1:
        raise InvalidArgumentError(
            f"{what} gives inputs of shape {xs.shape[1:] if xs.ndim > 1 else xs.shape} ({xs.ndim - 1} axes) "
            f"but the export takes {shape} ({len(shape)} axes: spatial..., channels); pass data of the "
            "model's dimensionality.")
    if xs.shape[-1] != shape[-1]:
        raise InvalidArgumentError(
            f"{what} has {xs.shape[-1]} channel(s) but the model takes {shape[-1]}; convert the data to "
            f"{shape[-1]} channel(s) or export a model built with in_channels={xs.shape[-1]}.")
    if tuple(xs.shape[1:]) != shape:
        raise InvalidArgumentError(
            f"{what} gives inputs of shape {tuple(xs.shape[1:])} but the export input is {shape}; crop or "
            f"resize the data to {shape[:-1]}, or export with input_shape={tuple(xs.shape[1:-1])} if the "
            "model takes that size.")
    if len(xs) == 0:
        raise InvalidArgumentError(f"{what} holds no samples; pass at least one input.")
    bad = ~np.isfinite(xs)
    if bad.any():
        raise InvalidArgumentError(f"{what} holds {int(bad.sum())} NaN/Inf value(s); clean the data first.")
    return xs


def split(xs, calibration, verify):
    """``(calibration inputs, verification inputs, held_out)``: the first samples calibrate, the
    last ``verify`` ones verify; with too few samples for both, the two share them."""
    if len(xs) >= calibration + verify:
        return xs[:calibration], xs[calibration:calibration + verify], True
    if calibration == 0:
        return xs[:0], xs[:verify], True
    if len(xs) >= 2:
        k = max(1, min(verify, len(xs) // 2))
        return xs[:len(xs) - k], xs[len(xs) - k:], True
    return xs, xs, False


__all__ = ["representative", "check_inputs", "split"]
