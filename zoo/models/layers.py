"""Dimension-generic layer lookups and the zoo's custom layers.

Builders never name ``Conv2D``/``Conv3D`` directly: they ask ``conv(spatial_dims)``,
so one code path builds the 2D and the 3D variant, and the export step can swap a
3D op for a TFLite-friendly equivalent in one place.

Custom layers are registered as serializable under the package name ``zoo`` and
implement ``get_config``; none wraps a Python lambda.
"""
import operator

from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, check_choice

L = keras.layers
SPATIAL_DIMS = (2, 3)

_LOOKUP = {
    "conv": {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D},
    "conv_transpose": {1: L.Conv1DTranspose, 2: L.Conv2DTranspose, 3: L.Conv3DTranspose},
    "max_pool": {1: L.MaxPooling1D, 2: L.MaxPooling2D, 3: L.MaxPooling3D},
    "avg_pool": {1: L.AveragePooling1D, 2: L.AveragePooling2D, 3: L.AveragePooling3D},
    "global_avg_pool": {1: L.GlobalAveragePooling1D, 2: L.GlobalAveragePooling2D,
                        3: L.GlobalAveragePooling3D},
    "global_max_pool": {1: L.GlobalMaxPooling1D, 2: L.GlobalMaxPooling2D, 3: L.GlobalMaxPooling3D},
    "upsample": {1: L.UpSampling1D, 2: L.UpSampling2D, 3: L.UpSampling3D},
    "zero_pad": {1: L.ZeroPadding1D, 2: L.ZeroPadding2D, 3: L.ZeroPadding3D},
    "cropping": {1: L.Cropping1D, 2: L.Cropping2D, 3: L.Cropping3D},
    "spatial_dropout": {1: L.SpatialDropout1D, 2: L.SpatialDropout2D, 3: L.SpatialDropout3D},
}


def check_spatial_dims(spatial_dims, allowed=SPATIAL_DIMS, where=""):
    return check_choice("spatial_dims", spatial_dims, tuple(allowed), where)


def _lookup(kind, spatial_dims):
    table = _LOOKUP[kind]
    return table[check_spatial_dims(spatial_dims, tuple(sorted(table)))]


def conv(spatial_dims):
    return _lookup("conv", spatial_dims)


def conv_transpose(spatial_dims):
    return _lookup("conv_transpose", spatial_dims)


def max_pool(spatial_dims):
    return _lookup("max_pool", spatial_dims)


def avg_pool(spatial_dims):
    return _lookup("avg_pool", spatial_dims)


def global_avg_pool(spatial_dims):
    return _lookup("global_avg_pool", spatial_dims)


def global_max_pool(spatial_dims):
    return _lookup("global_max_pool", spatial_dims)


def upsample(spatial_dims):
    return _lookup("upsample", spatial_dims)


def zero_pad(spatial_dims):
    return _lookup("zero_pad", spatial_dims)


def cropping(spatial_dims):
    return _lookup("cropping", spatial_dims)


def spatial_dropout(spatial_dims):
    return _lookup("spatial_dropout", spatial_dims)


def model_input(*, spatial_dims, in_channels, input_shape=None, default_size=None,
                name="input", where="model"):
    """The network's ``keras.Input``, with ``input_shape`` checked against the other args.

    ``input_shape`` may include the channel axis (``(H, W, C)``) or not (``(H, W)``);
    ``None`` gives ``default_size`` on every spatial axis, or a fully dynamic size when
    ``default_size`` is None too.
    """
    check_spatial_dims(spatial_dims, where=where)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or not 1 <= in_channels <= 4096:
        raise InvalidArgumentError(
            f"{where}: in_channels={in_channels!r} must be a positive integer up to 4096 (1 for grayscale "
            "CT/MR, 3 for RGB).")
    if input_shape is None:
        shape = (default_size,) * spatial_dims + (in_channels,)
    else:
        try:
            shape = tuple(None if s is None else operator.index(s) for s in input_shape)
        except TypeError:
            shape = None
        if shape is None or isinstance(input_shape, str) or any(s is not None and s >= 2 ** 31 for s in shape):
            raise InvalidArgumentError(
                f"{where}: input_shape={input_shape!r} must be a tuple of sizes (int or None), e.g. "
                f"{(64,) * spatial_dims + (in_channels,)}.")
        if len(shape) == spatial_dims:
            shape = shape + (in_channels,)
        if len(shape) != spatial_dims + 1:
            raise InvalidArgumentError(
                f"{where}: input_shape={tuple(input_shape)!r} has {len(shape)} axes but "
                f"spatial_dims={spatial_dims} needs {spatial_dims + 1} (spatial axes then channels, "
                f"channels-last), e.g. {(64,) * spatial_dims + (in_channels,)}.")
        if shape[-1] != in_channels:
            raise InvalidArgumentError(
                f"{where}: input_shape={tuple(input_shape)!r} ends with {shape[-1]} channels but "
                f"in_channels={in_channels}; make them agree (pass in_channels={shape[-1]}).")
        bad = [s for s in shape[:-1] if s is not None and s < 1]
        if bad:
            raise InvalidArgumentError(
                f"{where}: input_shape={tuple(input_shape)!r} has a non-positive spatial size.")
    return keras.Input(shape=shape, name=name)


def norm_layer(norm, name, spatial_dims=2, epsilon=1e-5, momentum=0.9, groups=32):
    """A normalisation layer by name: 'batch', 'instance', 'group', 'layer' or None."""
    check_choice("norm", norm, ("batch", "instance", "group", "layer", None))
    if norm == "batch":
        return L.BatchNormalization(axis=-1, epsilon=epsilon, momentum=momentum, name=name)
    if norm == "instance":
        return L.GroupNormalization(groups=-1, epsilon=epsilon, name=name)
    if norm == "group":
        return L.GroupNormalization(groups=groups, epsilon=epsilon, name=name)
    if norm == "layer":
        return L.LayerNormalization(axis=-1, epsilon=epsilon, name=name)
    return None


def conv_norm_act(x, filters, kernel_size, *, spatial_dims, name, strides=1, padding="same",
                  dilation_rate=1, groups=1, norm="batch", activation="relu", use_bias=None,
                  bn_epsilon=1e-5, bn_momentum=0.9, kernel_initializer="he_normal",
                  conv_name=None, norm_name=None, act_name=None):
    """Conv (linear) -> Norm -> Activation as separate layers: ``{name}_conv/_bn/_relu``.

    This is the QAT-friendly order tfmot can fold. ``use_bias`` defaults to "no bias when
    a norm follows". ``norm=None`` or ``activation=None`` leave that layer out.
    ``conv_name``/``norm_name``/``act_name`` replace a default name where a layout has its own
    (torchvision's ``..._conv1/_bn1/_relu1``, a block's ``..._out``).
    """
    if use_bias is None:
        use_bias = norm is None
    x = conv(spatial_dims)(filters, kernel_size, strides=strides, padding=padding,
                           dilation_rate=dilation_rate, groups=groups, use_bias=use_bias,
                           kernel_initializer=kernel_initializer, name=conv_name or f"{name}_conv")(x)
    layer = norm_layer(norm, norm_name or f"{name}_bn", spatial_dims, epsilon=bn_epsilon,
                       momentum=bn_momentum)
    if layer is not None:
        x = layer(x)
    if activation is not None:
        x = L.Activation(activation, name=act_name or f"{name}_{_act_name(activation)}")(x)
    return x


def check_dropout(dropout, where, hint="pass e.g. dropout=0.2, or dropout=0.0 for none."):
    """A dropout rate is a number in [0, 1) (not a bool); ``hint`` ends the message with the
    builder's own example (its paper's rate)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise InvalidArgumentError(f"{where}: dropout={dropout!r} must be a number in [0, 1); {hint}")
    return dropout


def _act_name(activation):
    return activation if isinstance(activation, str) else "act"


def classifier_head(x, num_classes, *, classifier_activation=None, name="classifier",
                    dropout=0.0):
    """Dense classifier returning logits unless an activation is requested."""
    if dropout:
        x = L.Dropout(dropout, name="head_dropout")(x)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"))
    return L.Dense(num_classes, activation=classifier_activation, name=name)(x)


# --------------------------------------------------------------------------- custom layers
def _register(cls):
    return keras.utils.register_keras_serializable(package="zoo")(cls)


@_register
class LocalResponseNormalization(L.Layer):
    """Across-channel LRN (AlexNet, GoogLeNet), for 2D and 3D feature maps.

    ``b = a / (bias + alpha / size * sum_{window} a^2) ** beta`` with a window of ``size``
    channels centred on each channel (the Caffe/PyTorch convention, where ``alpha`` is
    divided by ``size``; the AlexNet paper's alpha=1e-4 un-divided equals alpha=5e-4 here).
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)

    def call(self, x):
        sq = tf.square(x)
        half = self.size // 2
        pads = [[0, 0]] * (x.shape.rank - 1) + [[half, self.size - 1 - half]]
        sq = tf.pad(sq, pads)
        channels = tf.shape(x)[-1]
        total = sq[..., 0:channels]
        for i in range(1, self.size):
            total = total + sq[..., i:i + channels]
        return x / tf.pow(self.bias + (self.alpha / self.size) * total, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "bias": self.bias}


@_register
class AdaptiveAveragePooling(L.Layer):
    """Average pooling to a fixed output grid (PyTorch's AdaptiveAvgPool{2,3}d).

    Works on inputs of any (also dynamic) spatial size: bin ``i`` of an axis of length
    ``n`` averages ``[floor(i*n/out), ceil((i+1)*n/out))``, exactly as PyTorch does.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(s) for s in output_size)

    @staticmethod
    def _bins(n, out):
        i = tf.range(out)
        start = (i * n) // out
        end = -((-(i + 1) * n) // out)
        j = tf.range(n)[None, :]
        mask = tf.cast((j >= start[:, None]) & (j < end[:, None]), tf.float32)
        return mask / tf.cast(end - start, tf.float32)[:, None]

    def call(self, x):
        shape = tf.shape(x)
        for axis, out in enumerate(self.output_size, start=1):
            m = tf.cast(self._bins(shape[axis], out), x.dtype)  # [out, n]
            x = tf.experimental.numpy.moveaxis(x, axis, -1)
            x = tf.einsum("...n,on->...o", x, m)
            x = tf.experimental.numpy.moveaxis(x, -1, axis)
        return x

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        return tf.TensorShape([input_shape[0], *self.output_size, input_shape[-1]])

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}


@_register
class CenterCropLike(L.Layer):
    """Crop the first input's spatial axes (centred) to the second input's spatial size.

    U-Net's crop-and-concat with valid padding. Called as ``CenterCropLike()([x, ref])``.
    """

    def call(self, inputs):
        x, ref = inputs
        sx, sr = tf.shape(x), tf.shape(ref)
        rank = x.shape.rank
        begin = [0] + [(sx[a] - sr[a]) // 2 for a in range(1, rank - 1)] + [0]
        size = [-1] + [sr[a] for a in range(1, rank - 1)] + [-1]
        out = tf.slice(x, tf.stack(begin), tf.stack(size))
        out.set_shape(self.compute_output_shape([x.shape, ref.shape]))
        return out

    def compute_output_shape(self, input_shape):
        xs, rs = (tf.TensorShape(s) for s in input_shape)
        return tf.TensorShape([xs[0], *rs[1:-1], xs[-1]])


@_register
class ResizeLike(L.Layer):
    """Resize the first input's spatial axes to the second input's size (bi/trilinear).

    Used where a decoder must return exactly the input's size whatever it was (DeepLab).
    Half-pixel centres, as PyTorch's ``align_corners=False``.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = check_choice("interpolation", interpolation, ("bilinear", "nearest"))

    def call(self, inputs):
        x, ref = inputs
        rank = x.shape.rank
        target = tf.shape(ref)[1:rank - 1]
        if rank == 4:
            out = tf.image.resize(x, target, method=self.interpolation)
        elif rank == 5:
            s = tf.shape(x)
            b, d, h, w, c = s[0], s[1], s[2], s[3], s[4]
            y = tf.image.resize(tf.reshape(x, tf.stack([b * d, h, w, c])), target[1:],
                                method=self.interpolation)
            y = tf.reshape(y, tf.stack([b, d, target[1] * target[2], c]))
            y = tf.image.resize(y, tf.stack([target[0], target[1] * target[2]]),
                                method=self.interpolation)
            out = tf.reshape(y, tf.stack([b, target[0], target[1], target[2], c]))
        else:
            raise InvalidArgumentError(f"ResizeLike expects 2D or 3D feature maps; got rank {rank}.")
        out = tf.cast(out, x.dtype)
        out.set_shape(self.compute_output_shape([x.shape, ref.shape]))
        return out

    def compute_output_shape(self, input_shape):
        xs, rs = (tf.TensorShape(s) for s in input_shape)
        return tf.TensorShape([xs[0], *rs[1:-1], xs[-1]])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@_register
class LinearUpsampling(L.Layer):
    """Up-sampling by an integer factor with (bi/tri)linear interpolation and half-pixel centres,
    PyTorch's ``nn.Upsample(scale_factor=s, mode='linear'|'bilinear'|'trilinear',
    align_corners=False)``, for 1D, 2D and 3D feature maps (MONAI's "nontrainable" up-sampling).

    Linear interpolation is separable, so each spatial axis is done on its own: output ``i*s + r``
    mixes input ``i`` with its neighbour before or after it (the edge value repeated at the
    borders, as PyTorch clamps the source index), with the fixed weights of phase ``r``; the
    phases are then interleaved. Only slices, concatenations, multiplications, additions, stack
    and reshape: builtin TFLite ops, no resize op of rank 5 needed.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, (list, tuple)):
            self.size = tuple(int(s) for s in size)
        else:
            self.size = int(size)
        if any(s < 1 for s in (self.size if isinstance(self.size, tuple) else (self.size,))):
            raise InvalidArgumentError(f"LinearUpsampling: size={size!r} must be positive integers, e.g. 2.")

    def _factors(self, rank):
        dims = rank - 2
        return self.size if isinstance(self.size, tuple) else (self.size,) * dims

    @staticmethod
    def _axis(x, axis, s):
        if s == 1:
            return x

        def part(sl):
            return x[(slice(None),) * axis + (sl,)]

        before = tf.concat([part(slice(0, 1)), part(slice(None, -1))], axis=axis)
        after = tf.concat([part(slice(1, None)), part(slice(-1, None))], axis=axis)
        phases = []
        for r in range(s):
            offset = (r + 0.5) / s - 0.5  # source position of output i*s + r, relative to input i
            if offset < 0:
                phases.append((1.0 + offset) * x + (-offset) * before)
            elif offset > 0:
                phases.append((1.0 - offset) * x + offset * after)
            else:
                phases.append(x)
        y = tf.stack(phases, axis=axis + 1)
        shape = tf.shape(x)
        new_shape = tf.concat([shape[:axis], [shape[axis] * s], shape[axis + 1:]], axis=0)
        return tf.reshape(y, new_shape)

    def call(self, x):
        static = self.compute_output_shape(x.shape)
        for axis, s in enumerate(self._factors(x.shape.rank), start=1):
            x = self._axis(x, axis, s)
        x.set_shape(static)
        return x

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        factors = self._factors(len(shape))
        out = [shape[0]] + [None if d is None else d * s for d, s in zip(shape[1:-1], factors)] + [shape[-1]]
        return tf.TensorShape(out)

    def get_config(self):
        size = list(self.size) if isinstance(self.size, tuple) else self.size
        return {**super().get_config(), "size": size}


@_register
class ZeroPadChannels(L.Layer):
    """Append ``channels`` all-zero channels (the "type A" shortcut of ResNets: identity with the
    missing channels zero-padded, He et al. 2016; MedicalNet's ``downsample_basic_block``)."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        if self.channels < 0:
            raise InvalidArgumentError(f"ZeroPadChannels: channels={channels!r} must be >= 0.")

    def call(self, x):
        pads = [[0, 0]] * (x.shape.rank - 1) + [[0, self.channels]]
        return tf.pad(x, pads)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(shape[:-1] + [None if shape[-1] is None else shape[-1] + self.channels])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}
