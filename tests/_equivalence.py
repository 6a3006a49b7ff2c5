"""Helpers for tests that compare a zoo model with a reference Keras model layer by layer.

A plain module (not a conftest, no fixtures): pytest's default ``prepend`` import mode puts
``tests/`` on ``sys.path`` (the folder has no ``__init__.py``), so a test imports it as
``from _equivalence import copy_weights_by_name``.
"""
import numpy as np


def weighted_layers(model):
    """{layer name: layer} for every layer of ``model`` that owns weights."""
    return {layer.name: layer for layer in model.layers if layer.weights}


def copy_weights_by_name(src, dst, *, strict=True):
    """Copy the weights of every weighted layer of ``src`` into the same-named layer of ``dst``.

    Every weighted ``src`` layer must find a ``dst`` layer of the same name whose weights have
    the same shapes (in the same order); with ``strict`` every weighted ``dst`` layer must also
    have received weights. Raises AssertionError listing every problem. Returns the copied names.
    """
    src_layers, dst_layers = weighted_layers(src), weighted_layers(dst)
    missing, mismatched, copied = [], [], []
    for name, layer in src_layers.items():
        target = dst_layers.get(name)
        if target is None:
            missing.append(name)
            continue
        src_shapes = [tuple(w.shape) for w in layer.weights]
        dst_shapes = [tuple(w.shape) for w in target.weights]
        if src_shapes != dst_shapes:
            mismatched.append(f"{name}: {src_shapes} -> {dst_shapes}")
            continue
        target.set_weights(layer.get_weights())
        copied.append(name)
    problems = []
    if missing:
        problems.append(f"{len(missing)} weighted layer(s) of {src.name!r} have no same-named layer "
                        f"in {dst.name!r}: {missing[:10]}")
    if mismatched:
        problems.append(f"{len(mismatched)} layer(s) differ in weight shapes: {mismatched[:10]}")
    if strict:
        extra = sorted(set(dst_layers) - set(src_layers))
        if extra:
            problems.append(f"{len(extra)} weighted layer(s) of {dst.name!r} got no weights from "
                            f"{src.name!r}: {extra[:10]}")
    assert not problems, "; ".join(problems)
    return copied


def randomize_batchnorm(model, seed=0):
    """Give every BatchNormalization layer non-trivial gamma/beta/moving statistics.

    Fresh BN layers are the identity at inference, so two models that swapped BN layers would
    still agree; after this, every BN layer matters for the output.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(gamma.dtype),
                               rng.normal(0.0, 0.1, beta.shape).astype(beta.dtype),
                               rng.normal(0.0, 0.1, mean.shape).astype(mean.dtype),
                               rng.uniform(0.5, 1.5, var.shape).astype(var.dtype)])
