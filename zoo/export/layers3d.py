"""The data-movement layers the 3D rewrite (:mod:`zoo.export.rewrite3d`) emits.

Each one but :class:`FoldedGroupNorm` only rearranges values (reshape, pad, strided slice,
concatenation, transpose), so it is exact in any precision and converts to TFLite builtins that
have int8 kernels (RESHAPE, PAD, STRIDED_SLICE, CONCATENATION, TRANSPOSE). The arithmetic of a
rewritten 3D layer is done by a standard Keras 2D layer (Conv2D, Conv2DTranspose, MaxPooling2D,
...) between them; a 3D map's group norm, whose statistics span the slices, is the exception.

Tensors are channels-last. "Folded" means a 5D ``(B, D, H, W, C)`` tensor seen as the batch of
its ``B * D`` depth slices, ``(B * D, H, W, C)``: the form in which 2D layers process 3D maps.
All spatial sizes must be static (the export fixes them); the batch may stay dynamic.
"""
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError

L = keras.layers


def _register(cls):
    return keras.utils.register_keras_serializable(package="zoo")(cls)


def _static(shape, what):
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        raise InvalidArgumentError(
            f"{what} needs static spatial sizes and channels; got a tensor of shape {tuple(shape)}. "
            "Build or rewrite the model with a fixed input_shape, e.g. input_shape=(32, 32, 32, 1).")
    return dims


@_register
class FoldDepth(L.Layer):
    """``(B, D, H, W, C) -> (B * D, H, W, C)``: every depth slice becomes a 2D image."""

    def call(self, x):
        _, h, w, c = _static(x.shape, self.name)
        return tf.reshape(x, [-1, h, w, c])

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape)
        batch = None if s[0] is None else s[0] * s[1]
        return tf.TensorShape([batch, s[2], s[3], s[4]])


@_register
class UnfoldDepth(L.Layer):
    """``(B * depth, H, W, C) -> (B, depth, H, W, C)``: the inverse of :class:`FoldDepth`."""

    def __init__(self, depth, **kwargs):
        super().__init__(**kwargs)
        self.depth = int(depth)

    def call(self, x):
        h, w, c = _static(x.shape, self.name)
        return tf.reshape(x, [-1, self.depth, h, w, c])

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape)
        batch = None if s[0] is None else s[0] // self.depth
        return tf.TensorShape([batch, self.depth, s[1], s[2], s[3]])

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


@_register
class DepthTaps(L.Layer):
    """The depth taps of a 3D convolution, stacked on channels, folded to 2D images.

    For a kernel of depth ``k`` the output slice ``t`` of a 3D convolution reads the input
    slices ``offsets[j] + stride * t``. This layer zero-inserts ``upsample - 1`` slices after
    every input slice (the input dilation of a transposed convolution), pads the depth axis
    with ``pad = (front, back)`` zero slices, takes those shifted slices for every offset and
    concatenates them on the channel axis (tap-major; with ``groups`` > 1 group-major, then
    tap, so a grouped Conv2D sees each group's taps together). The result
    ``(B * out_depth, H, W, len(offsets) * C)`` goes through one 2D convolution whose kernel
    stacks the 3D kernel's depth taps the same way: one convolution sums all taps at once, so
    an int8 model requantizes once per layer, as a plain Conv2D does (adding per-tap
    convolutions would requantize every partial sum).
    """

    def __init__(self, offsets, stride, out_depth, pad=(0, 0), upsample=1, groups=1, **kwargs):
        super().__init__(**kwargs)
        self.offsets = [int(o) for o in offsets]
        self.stride, self.out_depth = int(stride), int(out_depth)
        self.pad = (int(pad[0]), int(pad[1]))
        self.upsample, self.groups = int(upsample), int(groups)

    def call(self, x):
        d, h, w, c = _static(x.shape, self.name)
        if self.upsample > 1:  # zero-insertion by padding a unit axis: no large constant in the file
            s = self.upsample
            x = tf.reshape(x, [-1, d, 1, h * w * c])
            x = tf.pad(x, [[0, 0], [0, 0], [0, s - 1], [0, 0]])
            x = tf.reshape(x, [-1, d * s, h, w, c])[:, :(d - 1) * s + 1]
        front, back = self.pad
        if front or back:
            x = tf.pad(x, [[0, 0], [front, back], [0, 0], [0, 0], [0, 0]])
        span = self.stride * (self.out_depth - 1) + 1
        taps = [x[:, o:o + span:self.stride] for o in self.offsets]
        if self.groups > 1 and len(taps) > 1:
            g = c // self.groups
            taps = [t[..., i * g:(i + 1) * g] for i in range(self.groups) for t in taps]
        y = taps[0] if len(taps) == 1 else tf.concat(taps, axis=-1)
        return tf.reshape(y, [-1, h, w, len(self.offsets) * c])

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape)
        batch = None if s[0] is None else s[0] * self.out_depth
        return tf.TensorShape([batch, s[2], s[3], len(self.offsets) * s[4]])

    def get_config(self):
        return {**super().get_config(), "offsets": list(self.offsets), "stride": self.stride,
                "out_depth": self.out_depth, "pad": list(self.pad), "upsample": self.upsample,
                "groups": self.groups}


@_register
class DepthToSpace3D(L.Layer):
    """``(B, D, H, W, bh * bw * bd * F) -> (B, D * bd, H * bh, W * bw, F)``.

    The channel index is ``((i_h * bw + i_w) * bd + i_d) * F + f`` for the output voxel at
    offset ``(i_d, i_h, i_w)`` of its block. With a 1x1 convolution in front this is a
    non-overlapping transposed convolution (kernel = stride, e.g. 2x2x2 stride 2), exactly.
    Two 5D transposes: the height blocks, then the depth blocks.
    """

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = tuple(int(b) for b in block)

    def call(self, x):
        d, h, w, c = _static(x.shape, self.name)
        bd, bh, bw = self.block
        f = c // (bd * bh * bw)
        y = tf.reshape(x, [-1, h, w, bh, bw * bd * f])
        y = tf.transpose(y, [0, 1, 3, 2, 4])  # (B*D, H, bh, W, bw*bd*F): rows interleaved
        y = tf.reshape(y, [-1, d, h * bh * w * bw, bd, f])
        y = tf.transpose(y, [0, 1, 3, 2, 4])  # (B, D, bd, H*bh*W*bw, F): slices interleaved
        return tf.reshape(y, [-1, d * bd, h * bh, w * bw, f])

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape)
        bd, bh, bw = self.block
        return tf.TensorShape([s[0], s[1] * bd, s[2] * bh, s[3] * bw, s[4] // (bd * bh * bw)])

    def get_config(self):
        return {**super().get_config(), "block": list(self.block)}


@_register
class FoldedGroupNorm(L.Layer):
    """Group normalisation (inference) of the folded slices ``(B * depth, H, W, C)`` of 5D maps.

    The one layer here that computes: a ``GroupNormalization`` of a 3D map needs the statistics
    of each volume's group over all its slices, so the folded slices are seen as
    ``(B, depth * H * W, groups, C / groups)``, and the mean and variance are taken with MEAN and
    SQUARED_DIFFERENCE, then RSQRT, MUL, ADD: ops with int8 kernels in LiteRT (Keras' own layer
    computes the moments with SUM and SQUARE, and SQUARE has no int8 kernel). ``gamma``/``beta``
    are the original layer's (absent without ``scale``/``center``).
    """

    def __init__(self, depth, groups, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.groups, self.epsilon = int(depth), int(groups), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones") if self.scale else None
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros") if self.center else None
        super().build(input_shape)

    def call(self, x):
        h, w, c = _static(x.shape, self.name)
        groups = c if self.groups == -1 else self.groups
        y = tf.reshape(x, [-1, self.depth * h * w, groups, c // groups])
        mean = tf.reduce_mean(y, axis=[1, 3], keepdims=True)
        var = tf.reduce_mean(tf.math.squared_difference(y, mean), axis=[1, 3], keepdims=True)
        y = tf.reshape((y - mean) * tf.math.rsqrt(var + self.epsilon), [-1, h, w, c])
        if self.gamma is not None:
            y = y * self.gamma
        if self.beta is not None:
            y = y + self.beta
        return y

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "groups": self.groups, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


__all__ = ["FoldDepth", "UnfoldDepth", "DepthTaps", "DepthToSpace3D", "FoldedGroupNorm"]
