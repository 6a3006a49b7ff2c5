"""The 3D rewrite: a Keras model with 3D layers -> an equal Keras model of 2D (TFLite-builtin) ops.

LiteRT has no builtin 3D pooling and no int8 CONV_3D kernel, so a tf_keras 3D U-Net does not
convert ("'tf.MaxPool3D' op is neither a custom op nor a flex op") and could not run in int8 if
it did. :func:`rewrite_3d` rebuilds the model layer by layer, with the weights copied:

* ``Conv3D`` -> :class:`DepthTaps` (the kernel's depth taps as shifted, strided depth slices
  concatenated on channels, folded to 2D images) -> one ``Conv2D`` with the depth taps of the
  3D kernel stacked on its input axis. Strides, dilations, "same"/"valid" padding and groups
  are kept; taps that only ever read padding are dropped (atrous convs on thin volumes).
* ``Conv3DTranspose`` with kernel = stride (2x2x2 stride 2, non-overlapping) -> a 1x1 ``Conv2D``
  to ``8 x`` channels + :class:`DepthToSpace3D`; any other kernel/stride -> zero-inserted
  depth taps -> one ``Conv2DTranspose`` (height and width stay a 2D transposed conv).
* ``MaxPooling3D``/``AveragePooling3D`` -> a 2D pool over (H, W) on the folded slices, then a
  2D pool of size ``(depth, 1)`` over the (D, H*W) plane: bit-exact for max (TF's "same"
  padding never wins a max), and exact for average (TF's "same" average excludes padding,
  and that count factorises over the axes).
* ``UpSampling3D`` -> ``UpSampling2D`` on the slices, then ``UpSampling2D((depth, 1))`` on the
  (D, H*W) plane; the zoo's trilinear ``LinearUpsampling`` (MONAI's SegResNet) likewise with
  bilinear ``UpSampling2D`` (TF's half-pixel bilinear resize is PyTorch's ``align_corners=False``).
* ``PReLU`` with its slope shared over the spatial axes (MONAI's default: one slope for all) -> a
  2D ``PReLU`` on the slices with the slope broadcast per channel (a 5D PRELU does not convert).
* ``GroupNormalization`` (instance norm too) -> :class:`FoldedGroupNorm`: each volume's group
  statistics over all its slices, with int8-capable ops (Keras' layer needs SQUARE, float only).
* ``SpatialDropout3D`` -> nothing (the identity of inference).

Everything else is cloned with its weights. Per-channel and elementwise layers (BatchNorm,
activations, dropout, LRN, the zoo's ZeroPadChannels, Dense on the channel axis, Add/Concatenate
of equal-depth maps) run on the folded 4D tensors, so a Conv -> BN -> ReLU chain stays one
CONV_2D after conversion (the converter folds the BN into it). ZeroPadding3D, Cropping3D (the
explicit PyTorch-style padding of the MONAI builders' strided convolutions and the cropping of
their transposed ones), global pools and the zoo's CenterCropLike/ResizeLike convert to builtins
(PAD, STRIDED_SLICE, MEAN, ...) as they are. Nested functional models (a GAN's generator and
critic) are rewritten recursively.

The result is a plain functional ``keras.Model`` with a static input shape (the folding needs
static spatial sizes); ``model.zoo_rewrite`` lists what was rewritten and which 3D layers were
left as they are. The compression code can run QAT on the rewritten model: its arithmetic is
in standard 2D layers, the custom layers only move data.
"""
import numpy as np

from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError
from zoo.export.layers3d import DepthTaps, DepthToSpace3D, FoldDepth, FoldedGroupNorm, UnfoldDepth
from zoo.models import layers as zl

L = keras.layers

# Layers that act per voxel (elementwise or across channels only): they run on folded slices.
_PER_VOXEL = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Softmax,
              L.Dropout, L.AlphaDropout, L.GaussianDropout, L.GaussianNoise, L.Dense, L.Rescaling)
_MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# 3D layers that convert to TFLite builtins as they are (5D PAD, STRIDED_SLICE, MEAN, ...).
_NATIVE_5D = (L.ZeroPadding3D, L.Cropping3D, L.GlobalAveragePooling3D, L.GlobalMaxPooling3D,
              L.SpatialDropout3D, L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
              L.Flatten, L.Reshape, L.Concatenate, L.InputLayer) + _PER_VOXEL + _MERGE


class _Value:
    """One tensor of the original graph, in the new graph: its natural form and, for 5D
    tensors, the folded ``(B * D, H, W, C)`` form once some layer made it."""

    __slots__ = ("nat", "t4", "depth")

    def __init__(self, nat=None, t4=None, depth=None):
        self.nat, self.t4, self.depth = nat, t4, depth


def _triple(v):
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else (int(v),) * 3


def _same(n, k, s, d=1):
    """TF "SAME": (output length, padding before, padding after)."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return out, total // 2, total - total // 2


def _live(offsets, stride, out_depth, front, real, step=1):
    """The offsets that read a real (not padded / not zero-inserted) slice for some output."""
    def is_real(p):
        q = p - front
        return 0 <= q < (real - 1) * step + 1 and q % step == 0
    return [o for o in offsets if any(is_real(o + stride * t) for t in range(out_depth))]


class _Rewriter:
    def __init__(self):
        self.rewritten, self.kept = [], []

    # ---- forms of a value
    def nat(self, v):
        if v.nat is None:
            v.nat = UnfoldDepth(v.depth)(v.t4)
        return v.nat

    def t4(self, v):
        if v.t4 is None:
            v.t4, v.depth = FoldDepth()(v.nat), int(v.nat.shape[1])
        return v.t4

    # ---- the graph walk
    def model(self, model, inputs):
        """Outputs of ``model``'s graph rebuilt on ``inputs`` (new tensors), as _Values."""
        values = {id(t): _Value(nat=x) for t, x in zip(model.inputs, inputs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                ins = [values[id(t)] for t in node.keras_inputs]
                outs = self.node(node, ins, values)
                flat = tf.nest.flatten(node.outputs)
                for t, v in zip(flat, outs if isinstance(outs, list) else [outs]):
                    values[id(t)] = v
        return [values[id(t)] for t in model.outputs]

    def _args(self, node, values, form=None):
        def swap(t):
            if hasattr(t, "_keras_history"):
                v = values[id(t)]
                return form(v) if form is not None else self.nat(v)
            return t
        args = tf.nest.map_structure(swap, node.call_args)
        kwargs = tf.nest.map_structure(swap, node.call_kwargs)
        return args, kwargs

    def node(self, node, ins, values):
        layer = node.layer
        five = [v for v in ins if v.t4 is not None or v.nat.shape.rank == 5]
        if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth"):
            return self.submodel(node, values)
        if not five:
            return self.clone(node, values)
        handler = {L.Conv3D: self.conv3d, L.Conv3DTranspose: self.conv3d_transpose,
                   L.MaxPooling3D: self.pool3d, L.AveragePooling3D: self.pool3d,
                   L.UpSampling3D: self.upsample3d, zl.LinearUpsampling: self.linear_upsample,
                   L.PReLU: self.prelu, L.GroupNormalization: self.group_norm}.get(type(layer))
        if handler is not None and layer.get_config().get("data_format", "channels_last") == "channels_last":
            out = handler(layer, ins[0])
            if out is not None:
                self.rewritten.append(layer.name)
                return out
            self.kept.append(f"{layer.name} ({type(layer).__name__})")
            return self.clone(node, values)
        if isinstance(layer, (L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D)):
            # identity at inference (the export's only use); as a per-voxel Dropout on the folded
            # slices it would drop per slice, not per (volume, channel) as in training
            self.rewritten.append(layer.name)
            return ins[0]
        if self.per_voxel(layer, ins):
            return self.clone(node, values, folded=True)
        if not isinstance(layer, _NATIVE_5D + self._zoo_native()):
            self.kept.append(f"{layer.name} ({type(layer).__name__})")
        return self.clone(node, values)

    def _zoo_native(self):
        return (zl.CenterCropLike, zl.ResizeLike, zl.LocalResponseNormalization, zl.AdaptiveAveragePooling,
                zl.ZeroPadChannels)

    def per_voxel(self, layer, ins):
        """Can ``layer`` run on the folded slices of its (5D) inputs?"""
        if any(v.t4 is None for v in ins):  # fold only what is folded already: no extra reshapes
            return False
        cfg = layer.get_config()
        if isinstance(layer, (L.BatchNormalization, L.LayerNormalization)):
            axis = cfg["axis"] if isinstance(cfg["axis"], (list, tuple)) else [cfg["axis"]]
            return list(axis) in ([4], [-1])
        if isinstance(layer, L.Dropout) and not isinstance(layer, L.SpatialDropout3D):
            return cfg.get("noise_shape") is None
        if isinstance(layer, L.Softmax):
            return cfg.get("axis") in (-1, 4, [-1], [4])
        if isinstance(layer, (_MERGE, L.Concatenate)):
            if isinstance(layer, L.Concatenate) and cfg.get("axis") not in (-1, 4):
                return False
            return len({v.depth for v in ins}) == 1
        return isinstance(layer, _PER_VOXEL + (zl.LocalResponseNormalization, zl.ZeroPadChannels))

    # ---- cloning
    def _clone_layer(self, layer, **changes):
        cfg = layer.get_config()
        cfg.update(changes)
        return layer.__class__.from_config(cfg)

    def clone(self, node, values, folded=False):
        layer = node.layer
        changes = {}
        if folded and isinstance(layer, (L.BatchNormalization, L.LayerNormalization)):
            changes["axis"] = -1
        if folded and isinstance(layer, L.Concatenate):
            changes["axis"] = -1
        new = self._clone_layer(layer, **changes)
        args, kwargs = self._args(node, values, self.t4 if folded else None)
        out = new(*args, **kwargs)
        new.set_weights(layer.get_weights())
        if folded:
            depth = next(values[id(t)].depth for t in node.keras_inputs)
            return _Value(t4=out, depth=depth)
        flat = tf.nest.flatten(out)
        return [_Value(nat=t) for t in flat] if len(flat) > 1 else _Value(nat=flat[0])

    def submodel(self, node, values):
        layer = node.layer
        args, kwargs = self._args(node, values)
        flat_in = tf.nest.flatten(args)
        inputs = [keras.Input(batch_shape=tuple(t.shape), name=f"{layer.name}_in{i}" if i else None)
                  for i, t in enumerate(flat_in)]
        outs = self.model(layer, inputs)
        sub = keras.Model(inputs, [self.nat(v) for v in outs] if len(outs) > 1 else self.nat(outs[0]),
                          name=layer.name)
        out = sub(*args)
        flat = tf.nest.flatten(out)
        return [_Value(nat=t) for t in flat] if len(flat) > 1 else _Value(nat=flat[0])

    # ---- the 3D layers
    def conv3d(self, layer, v):
        d = int(v.nat.shape[1]) if v.nat is not None else v.depth
        cfg = layer.get_config()
        kd, kh, kw = _triple(cfg["kernel_size"])
        sd, sh, sw = _triple(cfg["strides"])
        dd, dh, dw = _triple(cfg["dilation_rate"])
        groups = int(cfg.get("groups", 1))
        if cfg["padding"] == "same":
            out, front, back = _same(d, kd, sd, dd)
        else:
            out, front, back = (d - (kd - 1) * dd - 1) // sd + 1, 0, 0
        offsets = _live([j * dd for j in range(kd)], sd, out, front, d)
        weights = layer.get_weights()
        kernel = weights[0]
        if len(offsets) == 1 and sd == 1 and offsets[0] == front and out == d:
            # one tap reading the input slices as they are (1x1x1 convs, most of a bottleneck
            # ResNet's, and atrous convs on thin volumes): no op at all when already folded
            taps = self.t4(v)
        else:
            taps = DepthTaps(offsets, sd, out, pad=(front, back), groups=groups,
                             name=f"{layer.name}_taps")(self.nat(v))
        conv = L.Conv2D.from_config({**cfg, "kernel_size": (kh, kw), "strides": (sh, sw),
                                     "dilation_rate": (dh, dw)})
        y = conv(taps)
        stacked = np.concatenate([kernel[o // dd] for o in offsets], axis=2)
        conv.set_weights([stacked] + weights[1:])
        return _Value(t4=y, depth=out)

    def conv3d_transpose(self, layer, v):
        cfg = layer.get_config()
        if cfg.get("output_padding") is not None or _triple(cfg.get("dilation_rate", 1)) != (1, 1, 1):
            return None  # kept as CONV_3D_TRANSPOSE (float builtin); listed in zoo_rewrite["kept"]
        x = self.nat(v)
        d = int(x.shape[1])
        k, s = _triple(cfg["kernel_size"]), _triple(cfg["strides"])
        weights = layer.get_weights()
        kernel = weights[0]  # (kd, kh, kw, filters, in_channels)
        filters, channels = kernel.shape[3], kernel.shape[4]
        base = {key: val for key, val in cfg.items() if key not in ("output_padding",)}
        if k == s:  # non-overlapping: every input voxel paints its own output block
            conv = L.Conv2D.from_config({**base, "filters": int(np.prod(s)) * filters, "kernel_size": (1, 1),
                                         "strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1)})
            y = conv(self.t4(v))
            # channel ((i_h * sw + i_w) * sd + i_d) * F + f  <-  kernel[i_d, i_h, i_w, f, c]
            w2 = np.transpose(kernel, (4, 1, 2, 0, 3)).reshape(1, 1, channels, -1)
            conv.set_weights([w2] + ([np.tile(weights[1], int(np.prod(s)))] if len(weights) > 1 else []))
            y = DepthToSpace3D(s, name=f"{layer.name}_d2s")(UnfoldDepth(v.depth)(y))
            return _Value(nat=y)
        kd, sd = k[0], s[0]
        if cfg["padding"] == "same":
            out, p = d * sd, max(kd - sd, 0) // 2
        else:
            out, p = d * sd + max(kd - sd, 0), 0
        front, back = kd - 1 - p, out + p - (d - 1) * sd - 1
        offsets = _live(list(range(kd)), 1, out, front, d, step=sd)
        taps = DepthTaps(offsets, 1, out, pad=(front, back), upsample=sd, name=f"{layer.name}_taps")(x)
        conv = L.Conv2DTranspose.from_config({**cfg, "kernel_size": k[1:], "strides": s[1:],
                                              "dilation_rate": (1, 1)})
        y = conv(taps)
        stacked = np.concatenate([kernel[kd - 1 - o] for o in offsets], axis=-1)
        conv.set_weights([stacked] + weights[1:])
        return _Value(t4=y, depth=out)

    def pool3d(self, layer, v):
        cfg = layer.get_config()
        (pd, ph, pw), (sd, sh, sw) = _triple(cfg["pool_size"]), _triple(cfg["strides"])
        pool2d = L.MaxPooling2D if isinstance(layer, L.MaxPooling3D) else L.AveragePooling2D
        x = self.t4(v)
        depth = v.depth
        last = (pd, sd) == (1, 1)
        if (ph, pw, sh, sw) != (1, 1, 1, 1) or last:
            x = pool2d((ph, pw), (sh, sw), padding=cfg["padding"],
                       name=layer.name if last else f"{layer.name}_hw")(x)
        if last:
            return _Value(t4=x, depth=depth)
        h, w, c = (int(s) for s in x.shape[1:])
        planes = L.Reshape((depth, h * w, c), name=f"{layer.name}_planes")(UnfoldDepth(depth)(x))
        planes = pool2d((pd, 1), (sd, 1), padding=cfg["padding"], name=f"{layer.name}_depth")(planes)
        out = int(planes.shape[1])
        return _Value(nat=L.Reshape((out, h, w, c), name=layer.name)(planes))

    def upsample3d(self, layer, v):
        sd, sh, sw = _triple(layer.get_config()["size"])
        x, depth = self.t4(v), v.depth
        if (sh, sw) != (1, 1):
            x = L.UpSampling2D((sh, sw), name=f"{layer.name}_hw")(x)
        if sd == 1:
            return _Value(t4=x, depth=depth)
        h, w, c = (int(s) for s in x.shape[1:])
        planes = L.Reshape((depth, h * w, c), name=f"{layer.name}_planes")(UnfoldDepth(depth)(x))
        planes = L.UpSampling2D((sd, 1), name=f"{layer.name}_depth")(planes)
        return _Value(nat=L.Reshape((depth * sd, h, w, c), name=layer.name)(planes))

    def linear_upsample(self, layer, v):
        """:class:`~zoo.models.layers.LinearUpsampling` (trilinear, half-pixel centres, edges
        clamped): separable, so a bilinear ``UpSampling2D`` of the folded slices, then one of size
        ``(depth, 1)`` over the (D, H*W) plane. TF's bilinear resize uses half-pixel centres and
        clamps at the borders as PyTorch's ``align_corners=False`` does: one RESIZE_BILINEAR per
        step (int8 kernels) instead of the layer's slices and weighted sums on 5D tensors."""
        sd, sh, sw = layer._factors(5)
        x, depth = self.t4(v), v.depth
        if (sh, sw) != (1, 1):
            x = L.UpSampling2D((sh, sw), interpolation="bilinear", name=f"{layer.name}_hw")(x)
        if sd == 1:
            return _Value(t4=x, depth=depth)
        h, w, c = (int(s) for s in x.shape[1:])
        planes = L.Reshape((depth, h * w, c), name=f"{layer.name}_planes")(UnfoldDepth(depth)(x))
        planes = L.UpSampling2D((sd, 1), interpolation="bilinear", name=f"{layer.name}_depth")(planes)
        return _Value(nat=L.Reshape((depth * sd, h, w, c), name=layer.name)(planes))

    def prelu(self, layer, v):
        """A PReLU whose slope is shared over the spatial axes (one per channel, or MONAI's one
        for all): a 2D PReLU on the folded slices with the slope broadcast to one per channel
        (TFLite's PRELU needs a slope that broadcasts within rank 4; a 5D one does not convert).
        A slope per voxel has no folded form: kept."""
        if not {1, 2, 3} <= set(layer.get_config().get("shared_axes") or ()):
            return None
        x = self.t4(v)
        c = int(x.shape[-1])
        alpha = np.broadcast_to(layer.get_weights()[0].reshape(-1), (c,)).reshape(1, 1, c)
        new = L.PReLU(shared_axes=[1, 2], name=layer.name)
        y = new(x)
        new.set_weights([np.array(alpha, dtype=new.get_weights()[0].dtype)])
        return _Value(t4=y, depth=v.depth)

    def group_norm(self, layer, v):
        """``GroupNormalization`` over the channels (instance norm: groups=-1): the statistics of
        each group span all slices of a volume, so :class:`FoldedGroupNorm` computes them from the
        folded slices with int8-capable ops (MEAN, SQUARED_DIFFERENCE, RSQRT)."""
        cfg = layer.get_config()
        if cfg["axis"] not in (-1, 4):
            return None
        x = self.t4(v)
        new = FoldedGroupNorm(v.depth, cfg["groups"], cfg["epsilon"], center=cfg["center"], scale=cfg["scale"],
                              name=layer.name)
        y = new(x)
        new.set_weights(layer.get_weights())
        return _Value(t4=y, depth=v.depth)


def _static_inputs(model, input_shape, batch_size):
    shapes = [tuple(s) for s in model.input_shape] if isinstance(model.input_shape, list) \
        else [tuple(model.input_shape)]
    if input_shape is not None:
        if len(shapes) != 1:
            raise InvalidArgumentError(f"rewrite_3d: input_shape applies to one-input models; "
                                       f"{model.name!r} has {len(shapes)} inputs.")
        want = tuple(None if s is None else int(s) for s in input_shape)
        if len(want) == len(shapes[0]) - 2:  # spatial axes only
            want = want + shapes[0][-1:]
        if len(want) != len(shapes[0]) - 1 or any(
                a is not None and b is not None and a != b for a, b in zip(want, shapes[0][1:])):
            raise InvalidArgumentError(
                f"rewrite_3d: input_shape={tuple(input_shape)!r} does not fit model {model.name!r}, "
                f"which takes {shapes[0][1:]} (None = any size); give the spatial axes (+ channels).")
        shapes = [(shapes[0][0],) + want]
    out = []
    for i, shape in enumerate(shapes):
        shape = (batch_size if batch_size is not None else shape[0],) + tuple(shape[1:])
        out.append(keras.Input(batch_shape=shape, name=model.input_names[i]))
    return out


def rewrite_3d(model, *, input_shape=None, batch_size=None):
    """An equal Keras model whose 3D layers are expressed with 2D ops (see the module docstring).

    input_shape: the spatial axes (+ channels) to fix, needed when ``model`` has a dynamic size
        and holds 3D layers (the slices are folded with static reshapes), e.g. ``(32, 32, 32)``.
    batch_size: fix the batch size too (the export uses 1); default: keep it as is.
    A model without 3D layers comes back as a plain clone (with the shapes fixed). The new
    model has ``zoo_rewrite = {"rewritten": [layer names], "kept": ["name (class)", ...]}``:
    ``kept`` lists 3D layers left as they are because no rewrite covers them (their
    configuration, e.g. a Conv3DTranspose with output_padding, or an unknown class).
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise InvalidArgumentError(f"rewrite_3d: model must be a functional keras.Model; got "
                                   f"{type(model).__name__}.")
    inputs = _static_inputs(model, input_shape, batch_size)
    for x in inputs:
        if x.shape.rank == 5 and any(s is None for s in x.shape[1:]):
            raise InvalidArgumentError(
                f"rewrite_3d: model {model.name!r} takes inputs of any size {tuple(x.shape[1:])}; the "
                "3D rewrite needs a fixed size: pass input_shape=(D, H, W), e.g. (32, 32, 32), the "
                "patch size the exported model will see.")
    rw = _Rewriter()
    outs = rw.model(model, inputs)
    outputs = [rw.nat(v) for v in outs]
    new = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
    new.zoo_rewrite = {"rewritten": rw.rewritten, "kept": rw.kept}
    return new


__all__ = ["rewrite_3d"]
