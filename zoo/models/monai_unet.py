"""MONAI's ``UNet`` (``monai.networks.nets.UNet``; Kerfoot et al. 2018, residual units), in Keras.

The same network as MONAI 1.x builds it, layer for layer, so a MONAI ``state_dict`` converts
onto it exactly (``zoo.hub.convert.monai``). With ``L = len(channels)`` levels:

* encoder level ``i`` (1 .. L-1) down-samples at its start: a residual unit of
  ``num_res_units`` convolutions (the first with the level's stride) plus a residual path
  (a strided ``kernel_size`` convolution, or a 1x1 convolution where only the width changes,
  or the identity), or, with ``num_res_units=0``, one strided convolution; every convolution
  is followed by MONAI's ADN block (norm, dropout, activation in ``adn_ordering``);
* the bottom level ``L`` is the same block with stride 1;
* decoder level ``i`` (L-1 .. 1) concatenates the encoder output of level ``i`` (first) with
  the level below, then a transposed convolution (``up_kernel_size``, the level's stride,
  PyTorch's ``padding=(k-1)//2, output_padding=stride-1``) + ADN, then (``num_res_units > 0``)
  a one-convolution residual unit with an identity residual. Decoder level 1 outputs
  ``num_classes`` channels and ends with a bare convolution (MONAI's ``conv_only`` /
  ``last_conv_only``): the logits.

Layer names (zoo contract): ``stem_conv`` (level 1's first convolution), ``stage{i}_unit{u}_conv``
/ ``_norm`` / ``_dropout`` / ``_act``, ``stage{i}_residual``, ``stage{i}_out`` (the output of
encoder level ``i``; ``stage{L}_out`` is the bottom), ``stage{i}_unit0_pad`` (the explicit
symmetric padding of a strided convolution, shared with the strided residual convolution),
``up{i}_concat``, ``up{i}_upconv`` + ``up{i}_crop``,
``up{i}_norm``/``_act``, ``up{i}_unit0_conv``, ``up{i}_out`` and ``classifier`` (the last
convolution). Without residual units the convolution of level ``i`` is ``stage{i}_conv``.

Norms and activations are MONAI's names (``"batch"``, ``"instance"``, ``["group", {"num_groups":
8}]``, ``"prelu"``, ``["leakyrelu", {"negative_slope": 0.1}]`` ...; see ``zoo.models._monai``);
the defaults are MONAI's (PReLU, instance norm without affine parameters, no residual units).
PReLU has one shared slope (PyTorch's ``num_parameters=1``). Parameter counts equal MONAI's:
Keras trainable = ``sum(p.numel() for p in net.parameters())``, and the Keras total adds the
batch norms' running means and variances.
"""
import math

from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import _monai, register_builder
from zoo.models import layers as zl

L = keras.layers
_WHERE = "monai_unet"


def _as_list(value, arg, length=None):
    if isinstance(value, (list, tuple)):
        return list(value)
    if length is not None:
        return [value] * length
    raise InvalidArgumentError(f"{_WHERE}: {arg}={value!r} must be a list, e.g. {arg}=[16, 32, 64, 128, 256].")


def _check_sizes(value, arg, spatial_dims, *, odd=False, minimum=1):
    """An int or one int per spatial axis (MONAI's ``Sequence[int] | int``)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and len(value) != spatial_dims:
        raise InvalidArgumentError(f"{_WHERE}: {arg}={value!r} must be one integer or {spatial_dims} (one per "
                                   "spatial axis).")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum or v > 64 or (odd and v % 2 == 0):
            raise InvalidArgumentError(f"{_WHERE}: {arg}={value!r} must hold {'odd ' if odd else ''}integers from "
                                       f"{minimum} to 64, e.g. {arg}=3.")
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _per_axis(value, spatial_dims):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * spatial_dims


def _checked(spatial_dims, in_channels, num_classes, channels, strides, kernel_size, up_kernel_size,
             num_res_units, activation, norm, dropout, adn_ordering, classifier_activation):
    zl.check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=1, maximum=100_000)
    channels = _as_list(channels, "channels")
    if len(channels) < 2:
        raise InvalidArgumentError(f"{_WHERE}: channels={channels!r} needs at least 2 levels (MONAI's rule), e.g. "
                                   "channels=[16, 32, 64, 128, 256].")
    for c in channels:
        check_positive_int("channels[i]", c, _WHERE, maximum=8192)
    strides = _as_list(strides, "strides")
    if len(strides) < len(channels) - 1:
        raise InvalidArgumentError(f"{_WHERE}: strides={strides!r} has {len(strides)} values but channels has "
                                   f"{len(channels)} levels: pass len(channels) - 1 = {len(channels) - 1} strides.")
    strides = [_check_sizes(s, "strides[i]", spatial_dims) for s in strides[:len(channels) - 1]]
    kernel_size = _check_sizes(kernel_size, "kernel_size", spatial_dims, odd=True)
    up_kernel_size = _check_sizes(up_kernel_size, "up_kernel_size", spatial_dims, odd=True)
    check_positive_int("num_res_units", num_res_units, _WHERE, minimum=0, maximum=16)
    zl.check_dropout(dropout, _WHERE, "pass e.g. dropout=0.15 (MONAI's dropout), or 0.0 for none.")
    if not isinstance(adn_ordering, str) or not adn_ordering or set(adn_ordering.upper()) - set("NDA") \
            or len(set(adn_ordering.upper())) != len(adn_ordering):
        raise InvalidArgumentError(f"{_WHERE}: adn_ordering={adn_ordering!r} must be the letters N (norm), D "
                                   "(dropout), A (activation), each at most once, e.g. 'NDA' (MONAI's default).")
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    return (channels, strides, kernel_size, up_kernel_size, _monai.check_activation(activation, _WHERE),
            _monai.check_norm(norm, _WHERE), adn_ordering.upper())


def _check_input_size(inputs, strides, spatial_dims):
    total = [math.prod(_per_axis(s, spatial_dims)[a] for s in strides) for a in range(spatial_dims)]
    for axis, size in enumerate(inputs.shape[1:-1]):
        if size is not None and size % total[axis]:
            below, above = size // total[axis] * total[axis], (size // total[axis] + 1) * total[axis]
            use = f"{below} or {above}" if below else f"{above}"
            raise InvalidArgumentError(
                f"{_WHERE}: strides {strides} need spatial sizes divisible by {total[axis]} on axis {axis} (each "
                f"level's skip must meet the up-sampled map); got {size} in input_shape="
                f"{tuple(inputs.shape[1:])} -> use {use}, or pad the input.")


class _Graph:
    """The layer factories of one network (its dims, norm, activation, dropout, ordering, bias)."""

    def __init__(self, spatial_dims, kernel_size, up_kernel_size, act, norm, dropout, ordering, bias):
        self.dims, self.k, self.up_k = spatial_dims, kernel_size, up_kernel_size
        self.act, self.norm, self.dropout, self.ordering, self.bias = act, norm, dropout, ordering, bias

    def adn(self, x, prefix, channels, out_name=None):
        """MONAI's ADN block: norm / dropout / activation in ``ordering``; the last layer may be
        renamed ``out_name`` (a stage's output)."""
        steps = []
        for letter in self.ordering:
            if letter == "N" and self.norm[0] is not None:
                steps.append(("norm", lambda n: _monai.norm_layer(self.norm, n, self.dims, channels)))
            elif letter == "D" and self.dropout:
                steps.append(("dropout", lambda n: L.Dropout(self.dropout, name=n)))
            elif letter == "A":
                steps.append(("act", lambda n: _monai.activation_layer(self.act, n, self.dims, channels)))
        for j, (suffix, make) in enumerate(steps):
            last = j == len(steps) - 1
            x = make(out_name if (last and out_name) else f"{prefix}_{suffix}")(x)
        return x, bool(steps)

    def conv_block(self, x, filters, stride, prefix, conv_name, out_name=None, conv_only=False, padded=None):
        """MONAI's ``Convolution``: conv [+ ADN]. Returns (output, padded input, layer that is the output)."""
        y, padded = _monai.torch_conv(x, filters, self.k, spatial_dims=self.dims, strides=stride,
                                      use_bias=self.bias, name=conv_name, pad_name=f"{prefix}_pad", padded=padded)
        if conv_only:
            return y, padded
        y, _ = self.adn(y, prefix, filters, out_name)
        return y, padded

    def down(self, x, cin, cout, stride, level, res_units):
        """Encoder level ``level`` (1-based): a residual unit or one convolution block."""
        stem = level == 1
        if not res_units:
            y, _ = self.conv_block(x, cout, stride, f"stage{level}", "stem_conv" if stem else f"stage{level}_conv",
                                   out_name=f"stage{level}_out")
            return y
        y, padded = x, None
        for u in range(res_units):
            name = "stem_conv" if (stem and u == 0) else f"stage{level}_unit{u}_conv"
            y, pad = self.conv_block(y, cout, stride if u == 0 else 1, f"stage{level}_unit{u}", name)
            if u == 0:
                padded = pad
        residual = x
        strided = any(s != 1 for s in _per_axis(stride, self.dims))
        if strided or cin != cout:
            if strided:
                residual, _ = _monai.torch_conv(x, cout, self.k, spatial_dims=self.dims, strides=stride,
                                                use_bias=self.bias, name=f"stage{level}_residual",
                                                padded=padded, pad_name=f"stage{level}_residual_pad")
            else:
                residual = zl.conv(self.dims)(cout, 1, padding="valid", use_bias=self.bias,
                                              name=f"stage{level}_residual")(x)
        return L.Add(name=f"stage{level}_out")([y, residual])

    def up(self, x, cout, stride, level, res_units, top):
        """Decoder level ``level``: transposed convolution [+ ADN] [+ a one-convolution residual unit]."""
        conv_only = top and not res_units
        y = _monai.torch_conv_transpose(x, cout, self.up_k, spatial_dims=self.dims, strides=stride,
                                        use_bias=self.bias, name="classifier" if conv_only else f"up{level}_upconv",
                                        crop_name=f"up{level}_crop", where=_WHERE)
        if conv_only:
            return y
        y, _ = self.adn(y, f"up{level}", cout, None if res_units else f"up{level}_out")
        if not res_units:
            return y
        z, _ = self.conv_block(y, cout, 1, f"up{level}_unit0", "classifier" if top else f"up{level}_unit0_conv",
                               conv_only=top)
        return L.Add(name=f"up{level}_out")([z, y])


@register_builder
def monai_unet(*, spatial_dims=3, in_channels=1, num_classes=2, input_shape=None, channels=(16, 32, 64, 128, 256),
               strides=(2, 2, 2, 2), kernel_size=3, up_kernel_size=3, num_res_units=0, activation="prelu",
               norm="instance", dropout=0.0, bias=True, adn_ordering="NDA", classifier_activation=None,
               name="monai_unet"):
    """MONAI's ``UNet`` (see the module docstring); arguments as MONAI names them, with the zoo's
    ``num_classes`` (= ``out_channels``), ``activation`` (= ``act``) and ``input_shape``.

    channels: widths of the levels, top first (at least 2). strides: one per level but the last
        (an int or one per axis). kernel_size / up_kernel_size: odd convolution / transposed
        convolution kernels. num_res_units: convolutions per residual unit (0: plain blocks).
    activation, norm: MONAI names, optionally ``[name, {arguments}]``; norm None for none.
    dropout: rate of the dropout in every ADN block (MONAI's ``dropout``; only while training).
    bias: convolution biases (MONAI's default True, also before a batch norm).
    classifier_activation: None (logits), "softmax" or "sigmoid" after the last layer.
    Spatial sizes must be divisible by the product of the strides (16 for four strides of 2).
    """
    channels, strides, kernel_size, up_kernel_size, act, norm_spec, ordering = _checked(
        spatial_dims, in_channels, num_classes, channels, strides, kernel_size, up_kernel_size, num_res_units,
        activation, norm, dropout, adn_ordering, classifier_activation)
    inputs = zl.model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                            where=_WHERE)
    _check_input_size(inputs, strides, spatial_dims)
    g = _Graph(spatial_dims, kernel_size, up_kernel_size, act, norm_spec, dropout, ordering, bool(bias))
    levels = len(channels)
    skips, x, cin = [], inputs, in_channels
    for level in range(1, levels):
        x = g.down(x, cin, channels[level - 1], strides[level - 1], level, num_res_units)
        skips.append(x)
        cin = channels[level - 1]
    x = g.down(x, cin, channels[-1], 1, levels, num_res_units)  # the bottom
    for level in range(levels - 1, 0, -1):
        x = L.Concatenate(axis=-1, name=f"up{level}_concat")([skips[level - 1], x])
        cout = num_classes if level == 1 else channels[level - 2]
        x = g.up(x, cout, strides[level - 1], level, num_res_units, top=level == 1)
    if classifier_activation:
        x = L.Activation(classifier_activation, name="head_activation")(x)
    return keras.Model(inputs, x, name=name)
