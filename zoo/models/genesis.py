"""The 3D U-Net of Models Genesis (Zhou et al., MICCAI 2019; Medical Image Analysis 2021, arXiv:2004.07882).

The network of the authors' Keras code (``keras/unet3d.py`` of MrGiovanni/ModelsGenesis,
``unet_model_3d(..., batch_normalization=True)``, itself after ellisdg/3DUnetCNN), which their
``Genesis_Chest_CT.h5`` was trained in:

* ``depth`` levels (4); level ``d`` (0-based) has two 3x3x3 convolutions of ``filters * 2**d``
  and ``filters * 2**(d+1)`` channels (32/64, 64/128, 128/256, 256/512), each convolution WITH a
  bias, then batch norm (Keras 2 defaults: epsilon 1e-3, momentum 0.99) and ReLU; 2x2x2 max
  pooling between levels (``depth - 1`` = 3 poolings);
* decoder level ``d`` (deep to shallow): nearest-neighbour 2x up-sampling, concatenation of the
  up-sampled map (first) with level ``d``'s output, two 3x3x3 convolutions of that output's width;
* ``classifier``: a 1x1x1 convolution with bias to ``num_classes`` (the Genesis file: 1 channel
  and a sigmoid, ``classifier_activation="sigmoid"``; logits by default, as every zoo head).

Layer names: the convolutions and batch norms keep Genesis' names ``depth_{n}_conv`` and
``depth_{n}_bn`` (n = 0 .. 4 * depth - 3, counted along the network as the authors' code does), so
its weight file loads by name; the ReLUs are ``depth_{n}_relu`` except the last of each encoder
level, which is the zoo's ``stage{d+1}_out`` (Genesis' ``depth_{2d+1}_relu``: ``stage4_out`` is the
``depth_7_relu`` the Genesis README taps for classification). The pools are ``stage{d+2}_pool``,
the decoder ``up{d+1}_upsample`` and ``up{d+1}_concat``; the head ``classifier`` is unnamed
(Keras' ``conv3d_<n>``) in the Genesis file and is mapped by the converter.

``head="classification"``: the Genesis README's classifier on the encoder: global average pooling
of ``stage{depth}_out``, a dense ReLU layer of ``head_units`` (1024) ``head_fc``, and the dense
``classifier``; no decoder. ``num_classes=0``: the last decoder features (segmentation) or the
``stage{depth}_out`` feature map (classification).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import layers as zl
from zoo.models import register_builder

L = keras.layers
_WHERE = "genesis_unet3d"


def _conv_bn_relu(x, filters, n, *, dims, batch_norm, relu_name=None):
    x = zl.conv(dims)(filters, 3, padding="same", use_bias=True, name=f"depth_{n}_conv")(x)
    if batch_norm:
        x = L.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.99, name=f"depth_{n}_bn")(x)
    return L.Activation("relu", name=relu_name or f"depth_{n}_relu")(x)


@register_builder
def genesis_unet3d(*, spatial_dims=3, in_channels=1, num_classes=1, input_shape=None, filters=32, depth=4,
                   batch_norm=True, head="segmentation", head_units=1024, classifier_activation=None,
                   name="genesis_unet3d"):
    """Models Genesis' 3D U-Net (see the module docstring); ``spatial_dims=2`` builds the same layout
    in 2D (not in the paper).

    filters: width of the first convolution (32); depth: levels (4). batch_norm: as the
        pre-trained network (True). head: "segmentation" (the U-Net) or "classification" (the
        encoder + global pooling + ``head_units`` dense ReLU + dense classifier, the Genesis README's
        target-classification recipe). Spatial sizes must be divisible by ``2 ** (depth - 1)`` (8;
        the authors advise multiples of 16).
    """
    zl.check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("filters", filters, _WHERE, maximum=1024)
    check_positive_int("depth", depth, _WHERE, minimum=2, maximum=8)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    check_positive_int("head_units", head_units, _WHERE, minimum=0, maximum=65536)
    check_choice("head", head, ("segmentation", "classification"), _WHERE)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    if filters * 2 ** depth > 16384:
        raise InvalidArgumentError(f"{_WHERE}: filters={filters} with depth={depth} is too wide; lower either.")
    inputs = zl.model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                            where=_WHERE)
    factor = 2 ** (depth - 1)
    for axis, size in enumerate(inputs.shape[1:-1]):
        if size is not None and size % factor:
            raise InvalidArgumentError(
                f"{_WHERE}: depth {depth} needs spatial sizes divisible by {factor}; got {size} on axis {axis} of "
                f"input_shape={tuple(inputs.shape[1:])} -> use {size // factor * factor or factor} or "
                f"{(size // factor + 1) * factor}, or pad.")
    kw = dict(dims=spatial_dims, batch_norm=batch_norm)
    x, n, skips = inputs, 0, []
    for d in range(depth):
        if d:
            x = zl.max_pool(spatial_dims)(2, strides=2, name=f"stage{d + 1}_pool")(x)
        x = _conv_bn_relu(x, filters * 2 ** d, n, **kw)
        x = _conv_bn_relu(x, filters * 2 ** (d + 1), n + 1, relu_name=f"stage{d + 1}_out", **kw)
        n += 2
        skips.append(x)
    if head == "classification":
        if num_classes:
            x = zl.global_avg_pool(spatial_dims)(name="head_pool")(x)
            if head_units:
                x = L.Dense(head_units, activation="relu", name="head_fc")(x)
            x = L.Dense(num_classes, activation=classifier_activation, name="classifier")(x)
        return keras.Model(inputs, x, name=name)
    for d in range(depth - 2, -1, -1):
        up = zl.upsample(spatial_dims)(2, name=f"up{d + 1}_upsample")(x)
        x = L.Concatenate(axis=-1, name=f"up{d + 1}_concat")([up, skips[d]])
        width = filters * 2 ** (d + 1)
        x = _conv_bn_relu(x, width, n, **kw)
        x = _conv_bn_relu(x, width, n + 1, **kw)
        n += 2
    if num_classes:
        x = zl.conv(spatial_dims)(num_classes, 1, use_bias=True, name="classifier")(x)
        if classifier_activation:
            x = L.Activation(classifier_activation, name="head_activation")(x)
    return keras.Model(inputs, x, name=name)
