"""3D U-Net (Çiçek, Abdulkadir, Lienkamp, Brox & Ronneberger 2016, arXiv:1606.06650).

A separate builder from ``zoo.models.unet`` because the layout differs in four places
that would otherwise be config knobs serving this one paper: the first conv of each
analysis level has half the level's width ([32, 64], [64, 128], [128, 256], bottom
[256, 512]); the 2x2x2 up-convs keep the channel count (512 -> 512) instead of halving
it; BatchNorm before every ReLU is part of the architecture; and there is no dropout.
The graph code and the size arithmetic are shared with ``zoo.models.unet``.

``padding="valid"`` reproduces the paper: a 132x132x116x3 tile gives a 44x44x28x3 map
and the network has 19,069,955 parameters counted as the paper does (conv kernels and
biases: ``paper_param_count``); Keras counts 19,074,627 trainable (plus the 4,672 BN
gammas/betas) and 19,079,299 in total (plus the BN moving statistics).

Bias arrangement, decided by the two numbers: the 14 3x3x3 convs keep their bias even
though BN follows (every one of them: BN adds exactly 2 x 2,336 = 4,672 trainable
parameters, one gamma and beta per channel of each of the 14 convs), and the three
up-convs have no bias (an all-bias layout has 896 = 512 + 256 + 128 parameters too many,
exactly the up-convs' biases). Dropping the synthesis convs' biases instead would also
give 896, but would treat the convs of the two paths differently for no reason.
"""
from zoo._keras import keras
from zoo.models import register_builder
from zoo.models.unet import (
    _checked_input,
    build_unet_graph,
    nearest_valid_sizes,
    output_size,
    paper_param_count,
    valid_sizes,
)

__all__ = ["unet3d", "paper_param_count", "output_size", "valid_sizes", "nearest_valid_sizes"]


@register_builder
def unet3d(*, spatial_dims=3, in_channels=1, num_classes=2, input_shape=None, padding="same",
           filters=32, depth=3, norm="batch", activation="relu", dropout=0.0,
           classifier_activation=None, name="unet3d"):
    """3D U-Net of Çiçek et al. 2016 (``spatial_dims=2`` builds the same layout in 2D).

    Analysis level i (0-based) has 3x3x3 convs of ``filters * 2**i`` and ``filters *
    2**(i+1)`` channels, BN and ReLU, then a 2x2x2 max pool; the bottom level likewise.
    Each synthesis level: 2x2x2 up-conv keeping the channels (no bias), concat with the
    skip, two 3x3x3 convs of the skip's width; a 1x1x1 conv gives ``num_classes`` logits.

    padding: "same" (default; size divisible by ``2**depth``) or "valid" (the paper:
        132x132x116 -> 44x44x28; see ``zoo.models.unet.valid_sizes``).
    norm: "batch" (the paper), None, "instance" or "group". The 3x3x3 convs keep their bias
        with any norm, so the paper's parameter count holds (see the module docstring).
    dropout: rate of dropout at the end of the analysis path (bottom level); the paper has
        none (0.0).
    input_shape: spatial axes (+ channels); None axes are dynamic (default: all dynamic).
    """
    where = f"{name}"
    inputs = _checked_input(where, spatial_dims=spatial_dims, in_channels=in_channels,
                            input_shape=input_shape, num_classes=num_classes, depth=depth,
                            filters=filters, padding=padding, dropout=dropout,
                            classifier_activation=classifier_activation, norm=norm,
                            activation=activation)
    encoder = [(filters * 2 ** i, filters * 2 ** (i + 1)) for i in range(depth + 1)]
    # synthesis level i (deep to shallow): up-conv keeps the incoming width, convs take the
    # width of the skip it is concatenated with.
    decoder = []
    incoming = encoder[-1][1]
    for i in range(depth - 1, -1, -1):
        width = encoder[i][1]
        decoder.append((incoming, (width, width)))
        incoming = width
    outputs = build_unet_graph(
        inputs, spatial_dims=spatial_dims, encoder=encoder, decoder=decoder,
        num_classes=num_classes, padding=padding, norm=norm, activation=activation,
        conv_bias=True, up_bias=False, dropout=dropout, dropout_levels=1,
        classifier_activation=classifier_activation)
    return keras.Model(inputs, outputs, name=name)
