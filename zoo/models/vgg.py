"""VGG 11/13/16/19 (Simonyan & Zisserman 2015, configurations A, B, D, E), with or without
batch normalisation, 2D and 3D.

Layer names follow ``keras.applications.VGG16``/``VGG19`` for every depth and both kinds
(``block{b}_conv{i}``, ``block{b}_pool``, ``flatten``, ``fc1``, ``fc2``, ``predictions``) so
the official Keras weight files load by name into ``vgg16``/``vgg19``. The zoo's generic
names map onto them through the registry's ``keras_vgg``/``keras_vgg_bn`` contract specs
(first conv ``block1_conv1``, stage ``b``'s output = the last activation of block ``b``,
classifier ``predictions``; see zoo.hub.contract).

- Without BN: conv 3x3 (bias) with the ReLU inside the layer, exactly as keras.applications
  (a separate ReLU layer would change nothing numerically but the layer list would no longer
  be keras.applications').
- With BN (``vgg*_bn``, torchvision's layout): conv 3x3 with bias -> BatchNorm -> ReLU as
  separate layers ``block{b}_conv{i}``, ``block{b}_conv{i}_bn``, ``block{b}_conv{i}_relu``.
  The conv keeps its (redundant) bias because torchvision's ``vgg*_bn`` has one, so those
  weights convert one to one and the trainable count equals torchvision's ``num_params``.
- Head: flatten, fc1 4096 + ReLU, dropout, fc2 4096 + ReLU, dropout, predictions (logits by
  default). The paper and torchvision use dropout 0.5 after fc1 and fc2; keras.applications
  has no dropout layers, which hold no weights, so its weight files still load.
- Flatten of the 7x7x512 map needs a fixed input size: a headed model defaults to 224 per
  axis. ``num_classes=0`` returns ``block5_pool`` (conv features) and accepts any size.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import check_dropout, check_spatial_dims, conv, conv_norm_act, max_pool, model_input

L = keras.layers
# convs per block, configurations A (11), B (13), D (16), E (19)
BLOCKS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
WIDTH_FACTORS = (1, 2, 4, 8, 8)
STRIDE = 2 ** len(WIDTH_FACTORS)  # five 2x2 max-pools


def _check_depth(depth, where):
    if isinstance(depth, bool) or depth not in tuple(BLOCKS):
        allowed = ", ".join(str(d) for d in BLOCKS)
        raise InvalidArgumentError(
            f"{where}: depth={depth!r} is not a VGG configuration; allowed: {allowed} "
            "(configurations A, B, D, E of the paper). Pass e.g. depth=16.")
    return depth


def _check_size(shape, spatial_dims, num_classes, input_shape, where):
    sizes = list(shape)[:spatial_dims]
    if num_classes and None in sizes:
        raise InvalidArgumentError(
            f"{where}: the classifier flattens the last feature map, so it needs a fixed input "
            f"size; got input_shape={input_shape!r}. Pass e.g. input_shape="
            f"{(224,) * spatial_dims + (shape[-1],)}, or num_classes=0 for a headless model of "
            "dynamic size.")
    for s in sizes:
        if s is None or (s >= STRIDE and s % STRIDE == 0):
            continue
        lower, upper = max(STRIDE, s // STRIDE * STRIDE), max(STRIDE, -(-s // STRIDE) * STRIDE)
        near = f"{lower}" if lower == upper else f"{lower} or {upper}"
        raise InvalidArgumentError(
            f"{where}: input_shape={tuple(input_shape)!r} has spatial size {s}; VGG's five 2x2 "
            f"max-pools need every spatial size to be a multiple of {STRIDE} and at least "
            f"{STRIDE}. Use {near} (or resize/pad the input).")


@register_builder
def vgg(*, depth, batch_norm=False, spatial_dims=2, in_channels=3, num_classes=1000,
        input_shape=None, width=64, dropout=0.5, fc_units=4096, classifier_activation=None,
        name=None):
    """VGG as a functional ``keras.Model``.

    depth: 11, 13, 16 or 19. batch_norm: add BN after every conv (torchvision's ``vgg*_bn``).
    spatial_dims: 2 or 3 (3D: 3x3x3 convs, 2x2x2 pools).
    num_classes: classifier outputs; 0 = headless (``block5_pool`` features, dynamic size).
    input_shape: spatial axes (+ channels), each a multiple of 32; None = 224 per axis with a
    classifier, fully dynamic when headless.
    width: filters of block 1 (64 in the paper); blocks 2-5 use 2x, 4x, 8x, 8x.
    dropout: rate after fc1 and fc2 (0.5 in the paper). fc_units: width of fc1/fc2 (4096).
    classifier_activation: None (logits), ``"softmax"`` (as keras.applications) or ``"sigmoid"``.
    name: model name; default ``vgg{depth}`` or ``vgg{depth}_bn``.
    """
    where = "vgg"
    _check_depth(depth, where)
    if not isinstance(batch_norm, bool):
        raise InvalidArgumentError(f"{where}: batch_norm={batch_norm!r} must be True or False.")
    check_spatial_dims(spatial_dims, where=where)
    check_positive_int("num_classes", num_classes, where, minimum=0, maximum=100_000)
    check_positive_int("width", width, where, maximum=1024)
    check_positive_int("fc_units", fc_units, where, maximum=16384)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), where)
    check_dropout(dropout, where, "pass e.g. dropout=0.5 (paper) or dropout=0.0 to disable it.")
    if name is None:
        name = f"vgg{depth}" + ("_bn" if batch_norm else "")
    inputs = model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                         default_size=224 if num_classes else None, where=where)
    _check_size(inputs.shape[1:], spatial_dims, num_classes,
                inputs.shape[1:] if input_shape is None else input_shape, where)

    Conv, Pool = conv(spatial_dims), max_pool(spatial_dims)
    x = inputs
    for b, (n_convs, factor) in enumerate(zip(BLOCKS[depth], WIDTH_FACTORS), start=1):
        for i in range(1, n_convs + 1):
            lname = f"block{b}_conv{i}"
            if batch_norm:  # torchvision's vgg*_bn: the conv keeps its bias before BN
                x = conv_norm_act(x, width * factor, 3, spatial_dims=spatial_dims, name=lname,
                                  use_bias=True, conv_name=lname)
            else:  # keras.applications: bias + ReLU inside the conv layer
                x = Conv(width * factor, 3, padding="same", activation="relu",
                         kernel_initializer="he_normal", name=lname)(x)
        x = Pool(pool_size=2, strides=2, name=f"block{b}_pool")(x)
    if not num_classes:
        return keras.Model(inputs, x, name=name)

    x = L.Flatten(name="flatten")(x)
    for j in (1, 2):
        x = L.Dense(fc_units, activation="relu", name=f"fc{j}")(x)
        if dropout:
            x = L.Dropout(dropout, name=f"fc{j}_dropout")(x)
    x = L.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)
