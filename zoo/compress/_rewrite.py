"""Exact layer rewrites that let the TFLite converter run a QAT model in int8.

Measured with ``tf.lite.TFLiteConverter`` on the zoo's models (tests/compress/test_compress.py converts
them): a BatchNormalization that tfmot cannot fold into the conv before it (after a concatenation
in FC-DenseNet, pre-activation in ResNetV2, after an atrous conv in DeepLab, whose
SpaceToBatch/BatchToSpace sit between the two) becomes a float MUL + ADD in TFLite even with its
output quantized; ``AdaptiveAveragePooling`` becomes float FULLY_CONNECTED ops. Both are replaced
by layers with the same output, before annotation:

* BatchNormalization (inference form ``x * scale + offset``) -> ``DepthwiseConv2D`` 1x1 with kernel
  ``scale`` and bias ``offset`` (the layer keeps the BN's name); int8 DEPTHWISE_CONV_2D in TFLite,
  per-channel weights. During QAT the affine is trained like weights (the batch statistics are
  frozen, as tfmot does for the BNs it folds).
* an Add of k > 2 inputs (DeepLab-v2's summed ASPP branches) -> k - 1 two-input Adds (TFLite
  chains ADD ops; only the last one had a quantized output), the last keeping the name.
* the bias of an atrous (dilated) Conv2D/DepthwiseConv2D. TensorFlow runs a dilated conv as
  SpaceToBatchND -> Conv2D -> BatchToSpaceND and adds the bias after the BatchToSpaceND. With a
  static batch the converter folds that back into one dilated CONV_2D; with a dynamic batch
  (``TFLiteConverter.from_keras_model``, the usual way to convert a QAT model) it cannot, and
  the conv, the BatchToSpaceND and the bias ADD stay float (DeepLab-v2's ASPP-L branches, which
  have a bias and no norm). The conv loses its bias (same name, same kernel): a BatchNormalization
  that is its only consumer takes it into its moving mean (``BN(x + b)`` is ``BN'(x)`` with mean
  ``- b``, then the BN rewrite below applies); otherwise a ``DepthwiseConv2D`` 1x1 named
  ``{conv}_bias`` (kernel 1, the bias, the conv's activation) follows it.
* AdaptiveAveragePooling on a static input of n cells per axis to out bins: n % out == 0 is an
  AveragePooling (window n / out), out % n == 0 a nearest UpSampling (each bin is one cell), n ==
  out the identity (AveragePooling 1). Other sizes and dynamic inputs stay a float island.
"""
import numpy as np

from zoo._keras import keras

L = keras.layers


def _inbound(layer):
    node = layer._inbound_nodes[0] if layer._inbound_nodes else None
    if node is None:
        return []
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def foldable_batch_norm(layer):
    """Whether tfmot folds this BatchNormalization into the conv/dense before it (a linear, not
    dilated Conv2D/DepthwiseConv2D/Dense whose only consumer it is)."""
    inbound = _inbound(layer)
    if len(inbound) != 1:
        return False
    prev = inbound[0]
    kind = type(prev).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense") or prev.get_config().get("activation") != "linear":
        return False
    if kind != "Dense" and tuple(prev.dilation_rate) != (1, 1):
        return False
    return len(prev._outbound_nodes) == 1


def _bn_to_depthwise(bn):
    if len(bn.input_shape) != 4 or bn.axis not in ([3], [-1], 3, -1):
        return None
    return L.DepthwiseConv2D(1, use_bias=True, name=bn.name, dtype=bn.dtype)


def _bn_affine(bn):
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in bn.weights}
    channels = bn.input_shape[-1]
    gamma = weights.get("gamma", np.ones(channels, "float32"))
    beta = weights.get("beta", np.zeros(channels, "float32"))
    scale = gamma / np.sqrt(weights["moving_variance"] + bn.epsilon)
    return [scale.reshape(1, 1, channels, 1).astype("float32"),
            (beta - weights["moving_mean"] * scale).astype("float32")]


def _pool_replacement(layer):
    shape = layer.input_shape
    if len(shape) != 4 or any(s is None for s in shape[1:3]):
        return None
    (n1, n2), (o1, o2) = shape[1:3], layer.output_size
    if (n1, n2) == (o1, o2):
        return L.AveragePooling2D(1, name=layer.name)
    if n1 % o1 == 0 and n2 % o2 == 0:
        return L.AveragePooling2D((n1 // o1, n2 // o2), name=layer.name)
    if o1 % n1 == 0 and o2 % n2 == 0:
        return L.UpSampling2D((o1 // n1, o2 // n2), interpolation="nearest", name=layer.name)
    return None


def _split_adds(model):
    """A copy where every Add of k > 2 inputs is k - 1 chained two-input Adds (None: none)."""
    config = model.get_config()
    layers, changed = [], False
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if entry["class_name"] != "Add" or len(nodes) != 1 or len(nodes[0]) <= 2:
            layers.append(entry)
            continue
        changed = True
        name, inputs = entry["config"]["name"], nodes[0]
        previous = inputs[0]
        for i, item in enumerate(inputs[1:], start=1):
            last = i == len(inputs) - 1
            part = {**entry, "config": {**entry["config"], "name": name if last else f"{name}_add{i}"},
                    "inbound_nodes": [[previous, item]]}
            part["name"] = part["config"]["name"]
            layers.append(part)
            previous = [part["name"], 0, 0, {}]
    if not changed:
        return None
    copy = model.__class__.from_config({**config, "layers": layers})
    for layer in model.layers:
        if layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def _outbound(layer):
    return [node.outbound_layer for node in layer._outbound_nodes]


def dilated_bias(layer):
    """Whether ``layer`` is a 2D atrous conv with a bias (which TensorFlow adds after the
    conv's BatchToSpaceND: see the module docstring)."""
    if type(layer).__name__ not in ("Conv2D", "DepthwiseConv2D") or not layer.use_bias:
        return False
    return len(layer._inbound_nodes) == 1 and len(layer.input_shape) == 4 \
        and tuple(layer.dilation_rate) != (1, 1)


def _bias_into_norm(layer, model):
    """The BatchNormalization of ``model`` that can take ``layer``'s bias (its only consumer), or None."""
    after = _outbound(layer)
    if len(after) != 1 or type(after[0]).__name__ != "BatchNormalization":
        return None
    bn = after[0]
    if layer.get_config()["activation"] != "linear" or len(bn._inbound_nodes) != 1 \
            or bn.axis not in ([3], [-1], 3, -1) or not any(other is bn for other in model.layers):
        return None
    return bn


def _repoint(item, old, new):
    """``item`` (a functional config's inbound nodes / output layers) with the references to
    layer ``old`` pointing at ``new``."""
    if isinstance(item, list):
        if len(item) >= 3 and item[0] == old and isinstance(item[1], int):
            return [new, *item[1:]]
        return [_repoint(i, old, new) for i in item]
    if isinstance(item, dict):
        return {k: _repoint(v, old, new) for k, v in item.items()}
    return item


def _split_dilated_bias(model, exclude=()):
    """A copy where every :func:`dilated_bias` conv (not in ``exclude``) has no bias, its bias moved
    into the BatchNormalization after it or into a new ``{name}_bias`` 1x1 DepthwiseConv2D
    (None: no such conv). Also returns ``{conv name: what its bias became}``."""
    convs = [layer for layer in model.layers if dilated_bias(layer) and layer.name not in exclude]
    if not convs:
        return None, {}
    names = {layer.name for layer in model.layers}
    norms = {layer.name: _bias_into_norm(layer, model) for layer in convs}  # conv -> BN or None
    takes = {bn.name: conv for conv, bn in norms.items() if bn is not None}  # BN -> conv
    added, moved = {}, {}  # conv -> its new bias layer; conv -> what its bias became
    for layer in convs:
        if norms[layer.name] is None:
            new = f"{layer.name}_bias"
            while new in names:
                new += "_"
            names.add(new)
            added[layer.name] = new
            moved[layer.name] = f"Conv (no bias) + DepthwiseConv2D {new}"
        else:
            moved[layer.name] = f"Conv (no bias; bias in {norms[layer.name].name})"
    config = model.get_config()
    layers = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        for old, new in added.items():
            entry = {**entry, "inbound_nodes": _repoint(entry.get("inbound_nodes") or [], old, new)}
        if name not in norms:
            layers.append(entry)
            continue
        activation = entry["config"]["activation"]
        layers.append({**entry, "config": {**entry["config"], "use_bias": False, "activation": "linear"}})
        if name in added:
            bias = L.DepthwiseConv2D(1, use_bias=True, activation=activation, name=added[name],
                                     dtype=entry["config"].get("dtype"))
            layers.append({**keras.layers.serialize(bias), "name": added[name],
                           "inbound_nodes": [[[name, 0, 0, {}]]]})
    outputs = config["output_layers"]
    for old, new in added.items():
        outputs = _repoint(outputs, old, new)
    copy = model.__class__.from_config({**config, "layers": layers, "output_layers": outputs})
    for layer in model.layers:
        if not layer.weights:
            continue
        values = layer.get_weights()
        if layer.name in norms:
            kernel, bias = values
            copy.get_layer(layer.name).set_weights([kernel])
            if layer.name in added:
                copy.get_layer(added[layer.name]).set_weights(
                    [np.ones((1, 1, bias.shape[0], 1), kernel.dtype), bias])
            continue
        if layer.name in takes:  # BN(x + b) == BN(x) with moving mean - b
            bias = model.get_layer(takes[layer.name]).get_weights()[1]
            short = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
            values[short.index("moving_mean")] = values[short.index("moving_mean")] - bias
        copy.get_layer(layer.name).set_weights(values)
    return copy, moved


def rewrite(model, exclude=()):
    """``(copy, rewritten)``: a copy of ``model`` with the rewrites above, and ``{layer name: what
    it became}``. Outputs are equal to ``model``'s up to float rounding. The layers named in
    ``exclude`` (staying float) keep their bias."""
    plan, done = {}, {}
    split = _split_adds(model)
    if split is not None:
        done.update({layer.name: "Add chain" for layer in model.layers
                     if type(layer).__name__ == "Add" and len(_inbound(layer)) > 2})
        model = split
    split, moved = _split_dilated_bias(model, exclude)
    if split is not None:
        done.update(moved)
        model = split
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "BatchNormalization" and not foldable_batch_norm(layer):
            new = _bn_to_depthwise(layer)
            if new is not None:
                plan[layer.name] = (new, _bn_affine(layer))
        elif kind == "AdaptiveAveragePooling":
            new = _pool_replacement(layer)
            if new is not None:
                plan[layer.name] = (new, [])

    def clone(layer):
        if layer.name in plan:
            done[layer.name] = type(plan[layer.name][0]).__name__
            return plan[layer.name][0]
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = copy.get_layer(layer.name)
        if layer.name in plan:
            if plan[layer.name][1]:
                target.set_weights(plan[layer.name][1])
        elif layer.weights:
            target.set_weights(layer.get_weights())
    return copy, done
