"""GoogLeNet (Inception v1), Szegedy et al. 2015, "Going Deeper with Convolutions", arXiv:1409.4842.

One builder, two layouts (``variant``):

* ``"paper"`` - the network of the paper's Table 1 / Figure 3 (= Caffe's bvlc_googlenet):
  convs with bias + ReLU, no BatchNorm; LRN (size 5, alpha 1e-4, beta 0.75) after the first
  max pool and after the 3x3 stem conv; every stride-2 max pool is 3x3/2; Inception branches
  1x1 | 1x1->3x3 | 1x1->5x5 | maxpool 3x3/1->1x1; global average pool, dropout 0.4, linear.
  Optional auxiliary heads on 4a and 4d: avgpool 5x5/3 (valid), 1x1 conv 128, FC 1024 + ReLU,
  dropout 0.7, linear classifier.
* ``"bn"`` - torchvision's ``googlenet`` layout, so its weights convert one to one: every conv
  has no bias and is followed by BatchNorm (eps 1e-3) and ReLU; no LRN; the "5x5" branch uses a
  3x3 kernel (a known torchvision bug, pytorch/vision#906, kept because its weights have it);
  the 4th stride-2 max pool is 2x2/2; aux heads pool adaptively to 4x4 (any input size).

Padding: the stem conv pads 3 on every side (Caffe/torchvision ``padding=3``; Keras ``"same"``
would pad 2/3 at even sizes and shift the grid); every other conv and pool is ``"same"``.
For pools ``"same"`` equals Caffe/torchvision ceil-mode pooling at even sizes (all of them at
224 input) and always for the 2x2/2 pool; at odd sizes a 3x3/2 ``"same"`` pool gives one more
row/column than ceil mode. All max pools follow a ReLU (or an LRN of one), so padding never
changes a maximum.

Layer names: ``stem_conv`` (7x7/2), ``stage{i}_...`` for the non-Inception layers of resolution
stage i (1: 1/2, 2: 1/4, 3: 1/8, 4: 1/16, 5: 1/32), ``inception_{3a..5b}_{1x1, 3x3_reduce, 3x3,
5x5_reduce, 5x5, pool, pool_proj}_{conv,bn,relu}`` and ``inception_*_concat`` (Caffe's names),
``stage{i}_out`` (the last layer of each stage; for stages 3-5 it is the concat of the stage's
last Inception module), ``head_pool``, ``head_dropout``, ``classifier``; aux heads
``aux{1,2}_...`` with outputs ``aux1``, ``aux2`` after ``classifier``; ``transform_input``
(a ``Rescaling`` layer, no weights) before the stem when ``transform_input=True``.

``transform_input`` is torchvision's option of the same name, which its pretrained GoogLeNet
turns on: the input is expected normalised with the ImageNet mean and std (torchvision's usual
transform) and the model maps each channel back to ``(pixel - 0.5) / 0.5``, the normalisation
the weights were trained with (they were ported from TensorFlow), i.e.
``x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5``.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import (
    AdaptiveAveragePooling,
    LocalResponseNormalization,
    avg_pool,
    check_dropout,
    check_spatial_dims,
    classifier_head,
    conv_norm_act,
    global_avg_pool,
    max_pool,
    model_input,
    zero_pad,
)

L = keras.layers
_WHERE = "googlenet"
VARIANTS = ("paper", "bn")

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj (output = 1x1+3x3+5x5+proj)
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
STAGES = {3: ("3a", "3b"), 4: ("4a", "4b", "4c", "4d", "4e"), 5: ("5a", "5b")}
AUX_TAPS = {"4a": "aux1", "4d": "aux2"}
BN_EPSILON = 1e-3  # torchvision BasicConv2d
AUX_DROPOUT = 0.7
AUX_GRID = 4  # the aux FC sees a 4x4 (4x4x4) grid of 128 maps
DEFAULT_SIZE = 224
# torchvision's transform_input: ImageNet-normalised input -> (pixel - 0.5) / 0.5, per RGB channel
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRANSFORM_SCALE = tuple(s / 0.5 for s in IMAGENET_STD)
TRANSFORM_OFFSET = tuple((m - 0.5) / 0.5 for m in IMAGENET_MEAN)


def _conv_act(x, filters, kernel_size, *, spatial_dims, bn, name, strides=1, padding="same",
              out_name=None):
    """Conv -> [BN] -> ReLU (layers.conv_norm_act): ``{name}_conv/_bn/_relu`` (or ``out_name``)."""
    return conv_norm_act(x, filters, kernel_size, spatial_dims=spatial_dims, name=name,
                         strides=strides, padding=padding, norm="batch" if bn else None,
                         bn_epsilon=BN_EPSILON, act_name=out_name)


def _width(channels, width):
    return max(1, int(round(channels * width)))


def _inception(x, key, *, spatial_dims, bn, width, out_name=None):
    n1, r3, n3, r5, n5, proj = (_width(c, width) for c in INCEPTION[key])
    p = f"inception_{key}"
    kw = dict(spatial_dims=spatial_dims, bn=bn)
    b1 = _conv_act(x, n1, 1, name=f"{p}_1x1", **kw)
    b2 = _conv_act(x, r3, 1, name=f"{p}_3x3_reduce", **kw)
    b2 = _conv_act(b2, n3, 3, name=f"{p}_3x3", **kw)
    b3 = _conv_act(x, r5, 1, name=f"{p}_5x5_reduce", **kw)
    b3 = _conv_act(b3, n5, 3 if bn else 5, name=f"{p}_5x5", **kw)  # torchvision: 3x3
    b4 = max_pool(spatial_dims)(3, strides=1, padding="same", name=f"{p}_pool")(x)
    b4 = _conv_act(b4, proj, 1, name=f"{p}_pool_proj", **kw)
    return L.Concatenate(axis=-1, name=out_name or f"{p}_concat")([b1, b2, b3, b4])


def _aux_head(x, prefix, *, spatial_dims, bn, width, num_classes, classifier_activation):
    if bn:  # torchvision: adaptive_avg_pool to 4x4 -> works at any input size
        x = AdaptiveAveragePooling((AUX_GRID,) * spatial_dims, name=f"{prefix}_pool")(x)
    else:  # paper: 5x5/3 average pool (14x14 -> 4x4 at 224 input)
        x = avg_pool(spatial_dims)(5, strides=3, padding="valid", name=f"{prefix}_pool")(x)
    x = _conv_act(x, _width(128, width), 1, spatial_dims=spatial_dims, bn=bn, name=prefix)
    x = L.Flatten(name=f"{prefix}_flatten")(x)
    x = L.Dense(_width(1024, width), name=f"{prefix}_fc")(x)
    x = L.Activation("relu", name=f"{prefix}_fc_relu")(x)
    x = L.Dropout(AUX_DROPOUT, name=f"{prefix}_dropout")(x)
    return L.Dense(num_classes, activation=classifier_activation, name=prefix)(x)


def _stage4_size(n):
    """Spatial size at Inception 4a for input size ``n`` (stem + three stride-2 'same' pools)."""
    for _ in range(4):
        n = -(-n // 2)
    return n


def _aux_sizes():
    """Input sizes whose 4a grid the 5x5/3 aux pool turns into exactly AUX_GRID cells."""
    return [n for n in range(1, 1025) if (_stage4_size(n) - 5) // 3 + 1 == AUX_GRID
            and _stage4_size(n) >= 5]


def _check_aux_input(input_shape, spatial_dims, in_channels):
    """The paper's aux FC has a fixed fan-in: only some input sizes fit (ZooError otherwise)."""
    valid = _aux_sizes()
    lo, hi = valid[0], valid[-1]
    spatial = None if input_shape is None else tuple(input_shape)[:spatial_dims]
    if spatial is not None and len(spatial) == spatial_dims and \
            all(s is not None and lo <= int(s) <= hi for s in spatial):
        return input_shape
    if spatial is not None and len(tuple(input_shape)) not in (spatial_dims, spatial_dims + 1):
        return input_shape  # model_input reports the wrong number of axes
    fix = (DEFAULT_SIZE,) * spatial_dims + (in_channels,)
    raise InvalidArgumentError(
        f"{_WHERE}: aux_heads=True with variant='paper' needs a fixed input size with every "
        f"spatial size in {lo}..{hi}, so the aux heads' 5x5/3 average pool gives the "
        f"{'x'.join([str(AUX_GRID)] * spatial_dims)} grid their fully connected layer "
        f"expects; got input_shape={None if input_shape is None else tuple(input_shape)!r}. "
        f"Use input_shape={fix!r} (the paper's), variant='bn' (adaptive aux pooling, any size), "
        "or aux_heads=False (the main head pools globally and takes any size).")


@register_builder
def googlenet(*, variant="paper", aux_heads=False, spatial_dims=2, in_channels=3, num_classes=1000,
              input_shape=None, width=1.0, dropout=0.4, classifier_activation=None,
              transform_input=False, name="googlenet"):
    """GoogLeNet / Inception v1 as a functional ``keras.Model``.

    variant: ``"paper"`` (Table 1: biased convs + LRN, no BN) or ``"bn"`` (torchvision layout:
        conv/BN(eps 1e-3)/ReLU, no LRN, 3x3 in the "5x5" branch, 2x2/2 last max pool).
    aux_heads: add the two auxiliary classifiers on Inception 4a and 4d; the model then has
        three outputs ``[classifier, aux1, aux2]`` (all ``(batch, num_classes)``). With
        ``variant="paper"`` they need a fixed input size (default 224; 209..256 per axis).
    spatial_dims: 2 or 3 (3D: volumetric convs, pools and LRN over channels).
    in_channels, input_shape: input channels and ``(*spatial, channels)``; ``None`` = dynamic
        spatial size (224 when the paper's aux heads are on).
    num_classes: classes of the linear classifier; 0 = headless (the pooled 1024*width features).
    width: multiplier of every conv's and hidden FC's width (1.0 = the paper; e.g. 0.25 for a
        light 3D model or fast tests), rounded to the nearest integer, at least 1.
    dropout: rate before the classifier (paper 0.4; torchvision 0.2). Aux heads use 0.7.
    classifier_activation: None (logits), "softmax" or "sigmoid"; applies to aux heads too.
    transform_input: torchvision's option (on for its pretrained weights): the model takes
        ImageNet-normalised RGB and re-normalises it to ``(pixel - 0.5) / 0.5`` first (a
        ``Rescaling`` layer named ``transform_input``); needs 3 input channels.
    """
    check_choice("variant", variant, VARIANTS, _WHERE)
    if not isinstance(aux_heads, bool):
        raise InvalidArgumentError(
            f"{_WHERE}: aux_heads={aux_heads!r} must be True or False; pass aux_heads=True to add "
            "the auxiliary classifiers on Inception 4a and 4d.")
    check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    check_dropout(dropout, _WHERE, "the paper uses dropout=0.4.")
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 16:
        raise InvalidArgumentError(
            f"{_WHERE}: width={width!r} must be a number in (0, 16]; width=1.0 is the paper's "
            "network, e.g. width=0.5 halves every layer.")
    if aux_heads and num_classes == 0:
        raise InvalidArgumentError(
            f"{_WHERE}: aux_heads=True needs classifiers but num_classes=0 (headless); pass "
            "num_classes>=1 or aux_heads=False.")
    if not isinstance(transform_input, bool):
        raise InvalidArgumentError(
            f"{_WHERE}: transform_input={transform_input!r} must be True or False; True re-normalises "
            "ImageNet-normalised input as torchvision's pretrained GoogLeNet does.")
    if transform_input and in_channels != 3:
        raise InvalidArgumentError(
            f"{_WHERE}: transform_input=True re-normalises the 3 RGB channels, but in_channels="
            f"{in_channels!r}; pass transform_input=False for {in_channels}-channel input (and normalise "
            "it yourself), or in_channels=3.")
    bn = variant == "bn"
    default_size = None
    if aux_heads and not bn:
        default_size = DEFAULT_SIZE
        if input_shape is not None:
            _check_aux_input(input_shape, spatial_dims, in_channels)

    inputs = model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                         default_size=default_size, where=_WHERE)
    kw = dict(spatial_dims=spatial_dims, bn=bn)
    pool = max_pool(spatial_dims)

    # stage 1 (1/2): conv 7x7/2, 64, padded 3 on every side as in Caffe/torchvision
    x = inputs
    if transform_input:
        x = L.Rescaling(list(TRANSFORM_SCALE), list(TRANSFORM_OFFSET), name="transform_input")(x)
    x = zero_pad(spatial_dims)(3, name="stem_pad")(x)
    x = _conv_act(x, _width(64, width), 7, strides=2, padding="valid", name="stem",
                  out_name="stage1_out", **kw)

    # stage 2 (1/4): maxpool 3/2, [LRN], conv 1x1 64, conv 3x3 192, [LRN]
    x = pool(3, strides=2, padding="same", name="stage2_pool")(x)
    if not bn:
        x = LocalResponseNormalization(5, 1e-4, 0.75, 1.0, name="stage2_lrn1")(x)
    x = _conv_act(x, _width(64, width), 1, name="stage2_conv1", **kw)
    if bn:
        x = _conv_act(x, _width(192, width), 3, name="stage2_conv2", out_name="stage2_out", **kw)
    else:
        x = _conv_act(x, _width(192, width), 3, name="stage2_conv2", **kw)
        x = LocalResponseNormalization(5, 1e-4, 0.75, 1.0, name="stage2_out")(x)

    # stages 3-5: maxpool, then Inception modules; the stage's last concat is stage{i}_out
    aux = []
    for stage, keys in STAGES.items():
        k = 2 if (bn and stage == 5) else 3  # torchvision maxpool4 is 2x2/2 (ceil mode)
        x = pool(k, strides=2, padding="same", name=f"stage{stage}_pool")(x)
        for key in keys:
            last = f"stage{stage}_out" if key == keys[-1] else None
            x = _inception(x, key, width=width, out_name=last, **kw)
            if aux_heads and key in AUX_TAPS:
                aux.append(_aux_head(x, AUX_TAPS[key], width=width, num_classes=num_classes,
                                     classifier_activation=classifier_activation, **kw))

    # head: global average pool (paper: 7x7/1 avg pool at 224), dropout, linear
    x = global_avg_pool(spatial_dims)(name="head_pool")(x)
    if num_classes:
        x = classifier_head(x, num_classes, classifier_activation=classifier_activation,
                            dropout=dropout)
    outputs = [x, *aux] if aux else x
    return keras.Model(inputs, outputs, name=name)
