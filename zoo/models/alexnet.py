"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), 2D and 3D.

One builder, two layouts (``variant``):

``"torchvision"`` (registry entry ``alexnet``)
    The single-tower layout of ``torchvision.models.alexnet`` (itself from Krizhevsky's
    "One weird trick", arXiv:1404.5997): conv 64 11x11/4 pad 2, max-pool 3/2, conv 192
    5x5 pad 2, max-pool, conv 384/256/256 3x3 pad 1, max-pool, adaptive average pooling
    to 6x6, dropout, FC 4096, dropout, FC 4096, classifier. No LRN. 61,100,840 parameters
    at 1000 classes, so torchvision's weights convert one to one. The adaptive pooling
    makes any input size >= 63 work (224 -> feature maps 55/27/13/6).

``"paper"`` (registry entry ``alexnet_2012``)
    The paper's two-tower net at 227x227: conv1 96 11x11/4, LRN, overlapping max-pool
    3/2, conv2 256 5x5 groups=2, LRN, max-pool, conv3 384 (connected across both towers),
    conv4 384 groups=2, conv5 256 groups=2, max-pool, FC 4096 + dropout, FC 4096 +
    dropout, FC 1000. 60,965,224 parameters. The two GPU towers are expressed with grouped
    convolutions (``groups=2``); the fully connected layers see both towers, as in the
    paper. Flatten needs a fixed input size (default 227).

Layer names: ``stem_conv`` (conv1), ``stage{i}_conv{j}``, ``stage{i}_out`` (last tensor of
each resolution stage: stage 1 = 1/4, stage 2 = 1/8, stage 3 = 1/16 and stage 4 = the last
max-pool at 1/32, which is also the headless output), ``head_*`` and ``classifier``.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import (
    AdaptiveAveragePooling,
    LocalResponseNormalization,
    check_dropout,
    check_spatial_dims,
    conv,
    max_pool,
    model_input,
    zero_pad,
)

L = keras.layers
VARIANTS = ("torchvision", "paper")
_DEFAULT_SIZE = {"torchvision": None, "paper": 227}  # None: dynamic (adaptive pooling)


def _feature_sizes(size, variant):
    """Spatial sizes after conv1, pool1, pool2, pool3 for one input axis (None if too small)."""
    pad = 2 if variant == "torchvision" else 0
    sizes = [(size + 2 * pad - 11) // 4 + 1]
    for _ in range(3):
        sizes.append((sizes[-1] - 3) // 2 + 1)
    return sizes if sizes[0] >= 1 and min(sizes[1:]) >= 1 and sizes[-2] >= 3 else None


def min_input_size(variant="torchvision"):
    """The smallest spatial size every stage (and the last 3x3 max-pool) can handle."""
    size = 11
    while _feature_sizes(size, variant) is None:
        size += 1
    return size


def _check_size(input_shape, spatial_dims, variant, where):
    if input_shape is None:
        return
    smallest = min_input_size(variant)
    for s in list(input_shape)[:spatial_dims]:
        if s is not None and int(s) < smallest:
            raise InvalidArgumentError(
                f"{where}: input_shape={tuple(input_shape)!r} has spatial size {s}, but "
                f"variant={variant!r} needs at least {smallest} on every spatial axis (a stride-4 "
                f"conv and three stride-2 max-pools); use {smallest} or more (reference: "
                f"{224 if variant == 'torchvision' else 227}), or resize/pad the input.")


@register_builder
def alexnet(*, variant="torchvision", spatial_dims=2, in_channels=3, num_classes=1000,
            input_shape=None, dropout=0.5, fc_units=4096, classifier_activation=None,
            name="alexnet"):
    """AlexNet as a functional ``keras.Model``.

    variant: ``"torchvision"`` (single tower, no LRN, adaptive 6x6 pooling, any input size
    >= 63) or ``"paper"`` (two towers as grouped convs, LRN, fixed input, default 227).
    spatial_dims: 2 or 3 (3D uses cubic kernels of the same sizes).
    num_classes: classifier outputs; 0 returns the headless feature map (``stage4_out``).
    input_shape: spatial axes (+ channels); None = dynamic size for ``"torchvision"`` and
    headless models, 227 per axis for the headed ``"paper"`` variant.
    dropout: rate of the two dropout layers of the fully connected head.
    fc_units: width of the two hidden fully connected layers (4096 in the paper).
    classifier_activation: None (logits), ``"softmax"`` or ``"sigmoid"``.
    """
    where = "alexnet"
    check_choice("variant", variant, VARIANTS, where)
    check_spatial_dims(spatial_dims, where=where)
    check_positive_int("num_classes", num_classes, where, minimum=0, maximum=100_000)
    check_positive_int("fc_units", fc_units, where, maximum=16384)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), where)
    check_dropout(dropout, where, "pass e.g. dropout=0.5 (paper) or dropout=0.0 to disable it.")
    default = _DEFAULT_SIZE[variant] if num_classes else None
    inputs = model_input(spatial_dims=spatial_dims, in_channels=in_channels,
                         input_shape=input_shape, default_size=default, where=where)
    _check_size(inputs.shape[1:], spatial_dims, variant, where)
    if variant == "paper" and num_classes and None in inputs.shape[1:-1]:
        raise InvalidArgumentError(
            f"{where}: variant='paper' flattens its last feature map, so it needs a fixed input "
            f"size; got input_shape={input_shape!r}. Pass input_shape={(227,) * spatial_dims + (in_channels,)}"
            ", use variant='torchvision' (adaptive pooling) or num_classes=0 (headless).")

    Conv, Pool = conv(spatial_dims), max_pool(spatial_dims)
    paper = variant == "paper"
    if paper:
        widths, groups = (96, 256, 384, 384, 256), (1, 2, 1, 2, 2)
    else:
        widths, groups = (64, 192, 384, 256, 256), (1, 1, 1, 1, 1)

    def conv_layer(x, i, kernel, lname, strides=1, padding="same"):
        # stride-1 convs with odd kernels: 'same' == torchvision's symmetric padding k//2
        return Conv(widths[i], kernel, strides=strides, padding=padding, groups=groups[i],
                    kernel_initializer="he_normal", name=lname)(x)

    def lrn(x, lname):
        # Paper: k=2, n=5, alpha=1e-4, beta=0.75 with b = a / (k + alpha * sum a^2)^beta.
        # LocalResponseNormalization divides alpha by size (Caffe/PyTorch convention), so
        # the paper's un-divided alpha=1e-4 is passed as alpha = 1e-4 * 5 = 5e-4.
        return LocalResponseNormalization(size=5, alpha=5e-4, beta=0.75, bias=2.0, name=lname)(x)

    def pool(x, lname):  # overlapping max-pooling, z=3, s=2
        return Pool(pool_size=3, strides=2, padding="valid", name=lname)(x)

    # stage 1 (1/4): conv1
    x = inputs
    if not paper:  # torchvision pads 2 on each side; TF 'same' would pad asymmetrically
        x = zero_pad(spatial_dims)(padding=2, name="stem_pad")(x)
    x = conv_layer(x, 0, 11, "stem_conv", strides=4, padding="valid")
    if paper:
        x = L.ReLU(name="stem_relu")(x)
        x = lrn(x, "stage1_out")
    else:
        x = L.ReLU(name="stage1_out")(x)

    # stage 2 (1/8): conv2
    x = pool(x, "stage2_pool")
    x = conv_layer(x, 1, 5, "stage2_conv1")
    if paper:
        x = L.ReLU(name="stage2_relu1")(x)
        x = lrn(x, "stage2_out")
    else:
        x = L.ReLU(name="stage2_out")(x)

    # stage 3 (1/16): conv3, conv4, conv5
    x = pool(x, "stage3_pool")
    for j in (1, 2, 3):
        x = conv_layer(x, 1 + j, 3, f"stage3_conv{j}")
        x = L.ReLU(name="stage3_out" if j == 3 else f"stage3_relu{j}")(x)

    # stage 4 (1/32): the last overlapping max-pool (torchvision's features[12])
    x = pool(x, "stage4_out")
    if not num_classes:
        return keras.Model(inputs, x, name=name)

    # head
    if paper:  # paper / Caffe order: fc -> relu -> dropout
        x = L.Flatten(name="head_flatten")(x)
        for j in (1, 2):
            x = L.Dense(fc_units, name=f"head_fc{j}")(x)
            x = L.ReLU(name=f"head_relu{j}")(x)
            if dropout:
                x = L.Dropout(dropout, name=f"head_dropout{j}")(x)
    else:  # torchvision order: adaptive pool 6x6 -> (dropout -> fc -> relu) x 2
        x = AdaptiveAveragePooling((6,) * spatial_dims, name="head_avgpool")(x)
        x = L.Flatten(name="head_flatten")(x)
        for j in (1, 2):
            if dropout:
                x = L.Dropout(dropout, name=f"head_dropout{j}")(x)
            x = L.Dense(fc_units, name=f"head_fc{j}")(x)
            x = L.ReLU(name=f"head_relu{j}")(x)
    x = L.Dense(num_classes, activation=classifier_activation, name="classifier")(x)
    return keras.Model(inputs, x, name=name)
