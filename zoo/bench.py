"""Cost of a model: multiply-accumulates counted layer by layer, and measured latency.

``flops(model)`` counts the multiply-accumulates (MACs) of the layers that hold nearly all the
arithmetic of the zoo's networks: convolutions (1D/2D/3D, grouped, dilated, transposed,
depthwise, separable) and dense layers, from the static shapes of the built model; FLOPs = 2 x
MACs (the convention of torchvision's and timm's tables, which report GFLOPs as MACs x 2 in
fvcore and "GMACs" in timm). Elementwise ops, normalisation and pooling are not counted (under 1 %
on these networks). ``zoo bench NAME`` prints them with the Keras latency at a size.
"""
import time

import numpy as np

from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError
from zoo.hub import load
from zoo.hub.registry import get_registry


def _positions(shape):
    """Spatial positions of a (batch, *spatial, channels) shape (1 for (batch, features))."""
    return int(np.prod([int(s) for s in shape[1:-1]])) if len(shape) > 2 else 1


def _layer_macs(layer):
    """MACs of one layer at batch 1 (0 for layers without a kernel). The checks go from the
    most derived class: tf_keras' depthwise and transposed convolutions subclass Conv2D."""
    L = keras.layers
    out_shape = layer.output_shape[0] if isinstance(layer.output_shape, list) else layer.output_shape
    if not hasattr(layer, "kernel") and not hasattr(layer, "depthwise_kernel"):
        return 0
    if None in tuple(out_shape[1:]):
        raise InvalidArgumentError(f"flops: layer {layer.name!r} has a dynamic output shape {tuple(out_shape)}; "
                                   "build the model with a fixed input_shape (e.g. zoo.load(name, input_shape=...)).")
    if isinstance(layer, L.Dense):  # applied to the last axis of every position
        return _positions(out_shape) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):  # window x in x multiplier per output voxel
        return _positions(out_shape) * int(np.prod(layer.depthwise_kernel.shape))
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return _positions(out_shape) * int(np.prod(layer.depthwise_kernel.shape)
                                           + np.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        in_shape = layer.input_shape  # every input voxel scatters window x out x in
        return _positions(in_shape) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):  # window x (in / groups) x out per output voxel
        return _positions(out_shape) * int(np.prod(layer.kernel.shape))
    return 0


def flops(model):
    """Multiply-accumulates of a built model, layer by layer (see the module doc).

    Args:
        model: a built ``keras.Model`` of static input shape (nested models are walked).

    Returns:
        ``{"macs", "flops", "by_layer"}`` at batch 1; ``flops`` is 2 x ``macs``; ``by_layer``
        maps layer names to their MACs (layers without a kernel are left out).

    Raises:
        InvalidArgumentError: a layer with a kernel has a dynamic output shape.
    """
    by_layer = {}
    for layer in _walk(model):
        macs = _layer_macs(layer)
        if macs:
            by_layer[layer.name] = macs
    macs = int(sum(by_layer.values()))
    return {"macs": macs, "flops": 2 * macs, "by_layer": by_layer}


def _walk(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model (a GAN's generator, a backbone)
            yield from _walk(layer)
        else:
            yield layer


def latency(model, runs=10, warmup=2, seed=0):
    """Median milliseconds of one batch-1 forward pass of ``model`` (Keras, graph mode).

    Args:
        model: a built ``keras.Model`` of static input shape.
        runs: timed passes.
        warmup: untimed passes first (tracing).
        seed: the random input's seed.

    Returns:
        The median time in milliseconds (a float).
    """
    shape = (1,) + tuple(int(s) for s in model.input_shape[1:])
    x = tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32"))
    fn = tf.function(lambda t: model(t, training=False))
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn(x)
        (out[0] if isinstance(out, (list, tuple)) else out).numpy()
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def bench(name, *, size=None, spatial_dims=None, runs=10, **kwargs):
    """Parameters, MACs/FLOPs and Keras latency of a registry entry.

    Args:
        name: a registry name.
        size: the input size per axis at the entry's default config (default: its reference
            config and input, where its ``params`` are counted).
        spatial_dims: the 2D or 3D variant (default: the reference's).
        runs: timed passes (0 or None: no timing).
        **kwargs: builder keywords.

    Returns:
        ``{"model", "part", "spatial_dims", "input_shape", "params", "macs", "flops", "keras_ms"}``
        (``part``: ``"generator"`` for a GAN, whose generator is measured).

    Raises:
        UnknownModelError: no entry has this name.
        UnknownArgumentError, InvalidArgumentError: a builder keyword the entry refuses, or a
            model of dynamic output shape.
    """
    entry = get_registry().get(name)
    kw = entry.reference_kwargs()  # config + reference overrides, with its input
    dims = spatial_dims or kw["spatial_dims"]
    channels = kwargs.get("in_channels", kw["in_channels"])
    if size is not None or dims != kw["spatial_dims"]:  # the entry's own config at another size
        size = size or entry.input.get("size") or 64
        kw = {"input_shape": (size,) * dims + (channels,)}
    kw.update(kwargs)
    kw.update(spatial_dims=dims, in_channels=channels)
    if kw.get("input_shape") is not None:  # the reference size with the channels asked for
        kw["input_shape"] = tuple(kw["input_shape"][:-1]) + (channels,)
    if entry.task == "generation":
        kw.pop("input_shape", None)
        model = load(name, **kw).generator
    else:
        model = load(name, **kw)
    count = flops(model)
    return {"model": name, "part": "generator" if entry.task == "generation" else "model", "spatial_dims": dims,
            "input_shape": list(model.input_shape[1:]),
            "params": int(model.count_params()), "macs": count["macs"], "flops": count["flops"],
            "keras_ms": latency(model, runs=runs) if runs else None}
