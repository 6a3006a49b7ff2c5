"""Representative and verification inputs for an export, from any source ``zoo.finetune`` takes.

Sources: ``"phantoms"`` (the default), a folder (image folders, NIfTI, DICOM), a ``.npz``,
``"tfds:NAME"``, an ``(x, y)`` tuple, an array of inputs, or a ``tf.data.Dataset``. Images come
at the export's input size: segmentation data is centre-cropped/padded to it (as validation
data in ``zoo.finetune``), classification folders resized to it, volumes give patches of it.
Generators (a latent-vector input) get standard normal vectors unless arrays are given.
"""
from pathlib import Path

import numpy as np

from zoo._keras import tf
from zoo.datapath.prepare import Target, samples
from zoo.errors import InvalidArgumentError


def _describe(source):
    return repr(str(source)) if isinstance(source, (str, Path)) else type(source).__name__


def representative(source, model, info, *, n, shape, options=None, seed=0):
    """``n`` (or fewer, if the source is smaller) inputs of ``shape`` (no batch axis) for the
    export of ``model`` (its record ``info``): arrays as given, standard normal vectors for a
    generator, anything else through the one data path (:func:`zoo.datapath.prepare.samples`)."""
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
    elif isinstance(source, (tf.data.Dataset, str, Path)):
        target = Target.of(model, info, shape[:-1])
        xs, _ = samples(source, target, n, seed=seed, options=options, preprocessing=info.preprocessing,
                        shape=shape, labels=False)
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
