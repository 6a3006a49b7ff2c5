"""DeepLab v2 / v3 / v3+ semantic segmentation on a dilated ResNet backbone, in 2D and 3D.

One builder, :func:`deeplab`; the registry's ``config:`` picks the variant:

* ``variant="v2"`` (Chen et al. 2016, arXiv:1606.00915, the ResNet-101 model): output stride 8
  (res4 dilation 2, res5 dilation 4); ASPP-L = four parallel 3x3 atrous convs with rates
  6/12/18/24 (with bias, as the released Caffe model) straight to ``num_classes``, SUMMED.
* ``variant="v3"`` (Chen et al. 2017, arXiv:1706.05587): ASPP = 1x1 conv, three 3x3 atrous
  convs (rates 6/12/18 at output stride 16, doubled to 12/24/36 at 8) and image-level pooling
  (global average pool -> 1x1 conv -> norm -> ReLU -> bilinear resize to the feature map), each
  ``filters`` (256) maps with norm + ReLU; concatenated; 1x1 projection to ``filters`` + norm +
  ReLU + dropout; then the 1x1 classifier. ``head_conv=True`` inserts torchvision's extra
  3x3 conv (``filters``) + norm + ReLU between ASPP and classifier (torchvision's DeepLabHead).
* ``variant="v3plus"`` (Chen et al. 2018, arXiv:1802.02611): v3's ASPP (no classifier) plus the
  decoder: stride-4 backbone features -> 1x1 conv ``low_level_filters`` (48) + norm + ReLU,
  concatenated after the ASPP output resized (x4, bilinear) to their size; two 3x3 convs
  ``filters`` + norm + ReLU; the 1x1 classifier.

Every variant resizes its logits bilinearly (half-pixel centres, PyTorch's
``align_corners=False``) to exactly the input's size with :class:`zoo.models.layers.ResizeLike`, so any
input size works (dynamic by default). ``aux_head=True`` adds torchvision's auxiliary FCN head
on stage 3 (3x3 conv stage3_channels/4 + norm + ReLU + dropout 0.1 + 1x1 conv), resized to the
input too, as a second output.

Layer names: the backbone keeps :func:`zoo.models.resnet.resnet`'s names (torchvision layout:
``stem_conv``, ``stage{i}_block{j}_conv{k}``, ``stage{i}_out``). Then ``aspp_conv0`` (1x1),
``aspp_conv{i}`` (atrous, i = 1.. in rate order), ``aspp_pool`` / ``aspp_pool_conv`` /
``aspp_pool_resize``, ``aspp_concat``, ``aspp_project``, ``aspp_dropout``; ``head_conv/_bn/_relu``;
``decoder_low_level``, ``decoder_upsample``, ``decoder_concat``, ``decoder_conv1``,
``decoder_conv2`` (each conv block ``{name}_conv/_bn/_relu``); ``classifier`` = the 1x1 conv to
``num_classes`` (the layer with weights that zoo.hub.weights re-initialises when ``num_classes``
changes; in v2 the Add of the four branches, whose convs are ``aspp_conv0..3``); the output
layer is ``out`` (the final resize; with ``classifier_activation`` the resize is
``out_upsample`` and ``out`` the activation), the aux output ``aux`` (``aux_conv/_bn/_relu``,
``aux_dropout``, ``aux_classifier``). ``out``/``aux`` are torchvision's output keys.
torchvision ``deeplabv3_resnet50/101`` state dict -> these names: ``backbone.*`` as in
zoo/models/resnet.py; ``classifier.0.convs.0.{0,1}`` -> ``aspp_conv0_conv/_bn``,
``classifier.0.convs.{1,2,3}.{0,1}`` -> ``aspp_conv{1,2,3}_conv/_bn``,
``classifier.0.convs.4.{1,2}`` -> ``aspp_pool_conv/_bn``, ``classifier.0.project.{0,1}`` ->
``aspp_project_conv/_bn``, ``classifier.{1,2}`` -> ``head_conv/_bn``, ``classifier.4`` ->
``classifier``, ``aux_classifier.{0,1,4}`` -> ``aux_conv``, ``aux_bn``, ``aux_classifier``.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import ResizeLike, check_dropout, check_spatial_dims, conv, conv_norm_act, global_avg_pool
from zoo.models.resnet import check_depth_layout, resnet, stage_output_names

L = keras.layers

_WHERE = "deeplab"
VARIANTS = ("v2", "v3", "v3plus")
NORMS = ("batch", "group", "instance", "layer", None)
# default atrous rates per (variant, output_stride); v3/v3+ double the rates at stride 8 (v3 paper)
RATES = {("v2", 8): (6, 12, 18, 24), ("v3", 16): (6, 12, 18), ("v3", 8): (12, 24, 36),
         ("v3plus", 16): (6, 12, 18), ("v3plus", 8): (12, 24, 36)}
DEFAULT_DROPOUT = {"v2": 0.0, "v3": 0.1, "v3plus": 0.1}  # the official TF code's keep_prob 0.9


def default_rates(variant, output_stride):
    """The atrous rates used when ``atrous_rates=None``."""
    return RATES[(variant, output_stride)]


def _check_rates(atrous_rates):
    ok = isinstance(atrous_rates, (list, tuple)) and 0 < len(atrous_rates) <= 16 and all(
        isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 1024 for r in atrous_rates)
    if not ok:
        raise InvalidArgumentError(
            f"{_WHERE}: atrous_rates={atrous_rates!r} must be a non-empty list of positive integers "
            "(dilation rates of the ASPP's 3x3 branches), e.g. [6, 12, 18]; or None for the "
            "paper's rates for the output_stride.")
    return tuple(atrous_rates)


def _check_input_size(input_shape, spatial_dims, output_stride):
    """Static spatial sizes must be >= output_stride (at least one feature cell per axis)."""
    if input_shape is None or len(input_shape) not in (spatial_dims, spatial_dims + 1):
        return  # model_input reports malformed shapes
    for axis, size in enumerate(tuple(input_shape)[:spatial_dims]):
        if size is not None and 0 < int(size) < output_stride:
            raise InvalidArgumentError(
                f"{_WHERE}: input_shape={tuple(input_shape)!r}: spatial size {size} on axis {axis} is "
                f"too small for output_stride={output_stride}; the minimum is {output_stride} per "
                f"axis (the backbone reduces the input {output_stride}x, a smaller input has less "
                f"than one feature cell). Use a size >= {output_stride} (pad the input)"
                + (", or output_stride=8 (minimum 8)." if output_stride == 16 else "."))


def _validate(variant, backbone_depth, backbone_layout, output_stride, norm, num_classes,
              aux_head, head_conv, dropout, filters, low_level_filters, width):
    check_choice("variant", variant, VARIANTS, _WHERE)
    check_depth_layout(backbone_depth, backbone_layout, where=_WHERE, prefix="backbone_",
                       hint="DeepLab uses 101 (papers) or 50; pass backbone_depth=101.")
    allowed = (8,) if variant == "v2" else (8, 16)
    if isinstance(output_stride, bool) or output_stride not in allowed:
        fix = ("DeepLabv2 runs its ResNet at output stride 8 (res4 dilation 2, res5 dilation 4); "
               "pass output_stride=8." if variant == "v2" else
               "16 (ASPP rates 6/12/18) or 8 (rates 12/24/36, 4x the compute); pass output_stride=16.")
        raise InvalidArgumentError(
            f"{_WHERE}: output_stride={output_stride!r} is not supported for variant={variant!r}; "
            f"allowed: {', '.join(str(a) for a in allowed)}. {fix}")
    check_choice("norm", norm, NORMS, _WHERE)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    for arg, value in (("filters", filters), ("low_level_filters", low_level_filters),
                       ("width", width)):
        check_positive_int(arg, value, _WHERE, maximum=4096)
    if norm == "group":
        for arg, value in (("filters", filters), ("low_level_filters", low_level_filters),
                           ("width", width)):
            if value % 32:
                raise InvalidArgumentError(
                    f"{_WHERE}: norm='group' uses 32 groups, so {arg} must be a multiple of 32; got "
                    f"{arg}={value}. Pass {arg}={max(32, value // 32 * 32)} or norm='batch'.")
    check_dropout(dropout, _WHERE, "it follows the ASPP projection; pass e.g. dropout=0.1, 0.0 for "
                  "none, or None for the variant's default.")
    if variant == "v2":
        if num_classes == 0:
            raise InvalidArgumentError(
                f"{_WHERE}: variant='v2' has no feature head: its ASPP-L branches output class "
                "scores directly, so num_classes must be >= 1 (e.g. 21 for PASCAL VOC); for "
                "features use variant='v3' or 'v3plus' with num_classes=0.")
        if dropout:
            raise InvalidArgumentError(
                f"{_WHERE}: variant='v2' has no dropout layer (its ResNet-101 ASPP-L has none); got "
                f"dropout={dropout!r}. Pass dropout=None or 0.0.")
    if head_conv and variant != "v3":
        raise InvalidArgumentError(
            f"{_WHERE}: head_conv=True (torchvision's extra 3x3 conv after the ASPP) applies to "
            f"variant='v3' only; got variant={variant!r}. Pass head_conv=False.")
    if aux_head and num_classes == 0:
        raise InvalidArgumentError(
            f"{_WHERE}: aux_head=True needs classes to predict; got num_classes=0 (headless). "
            "Pass num_classes >= 1 or aux_head=False.")


def _cna(x, filters, kernel, name, spatial_dims, norm, dilation=1):
    return conv_norm_act(x, filters, kernel, spatial_dims=spatial_dims, name=name, norm=norm,
                         dilation_rate=dilation)


def _aspp(x, rates, filters, spatial_dims, norm, dropout):
    """v3 ASPP: 1x1, atrous 3x3 per rate, image pooling; concat; 1x1 projection; dropout."""
    branches = [_cna(x, filters, 1, "aspp_conv0", spatial_dims, norm)]
    for i, rate in enumerate(rates, start=1):
        branches.append(_cna(x, filters, 3, f"aspp_conv{i}", spatial_dims, norm, dilation=rate))
    pooled = global_avg_pool(spatial_dims)(keepdims=True, name="aspp_pool")(x)
    pooled = _cna(pooled, filters, 1, "aspp_pool", spatial_dims, norm)
    branches.append(ResizeLike(name="aspp_pool_resize")([pooled, x]))
    y = L.Concatenate(name="aspp_concat")(branches)
    y = _cna(y, filters, 1, "aspp_project", spatial_dims, norm)
    if dropout:
        y = L.Dropout(dropout, name="aspp_dropout")(y)
    return y


def _aspp_l(x, rates, num_classes, spatial_dims):
    """v2 ASPP-L: one 3x3 atrous conv per rate straight to the classes, summed."""
    branches = [conv(spatial_dims)(num_classes, 3, padding="same", dilation_rate=rate, use_bias=True,
                                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                   name=f"aspp_conv{i}")(x)  # the released Caffe model's filler
                for i, rate in enumerate(rates)]
    return branches[0] if len(branches) == 1 else L.Add(name="classifier")(branches)


def _output(x, ref, name, classifier_activation):
    """Resize ``x`` to ``ref``'s size; the final layer is named ``name``."""
    if classifier_activation is None:
        return ResizeLike(name=name)([x, ref])
    x = ResizeLike(name=f"{name}_upsample")([x, ref])
    return L.Activation(classifier_activation, name=name)(x)


@register_builder
def deeplab(*, variant="v3plus", backbone_depth=101, backbone_layout="torchvision",
            output_stride=16, atrous_rates=None, head_conv=False, aux_head=False,
            spatial_dims=2, in_channels=3, num_classes=21, input_shape=None, width=64,
            filters=256, low_level_filters=48, norm="batch", dropout=None,
            classifier_activation=None, name="deeplab"):
    """Build DeepLab v2 / v3 / v3+ (see the module docstring for structure and layer names).

    variant: "v2", "v3" or "v3plus".
    backbone_depth: ResNet depth (50, 101, 152, 200; 18/34 with the torchvision layout).
    backbone_layout: "torchvision" (zoo names, no conv bias, stride on the 3x3 conv), "keras"
        or "keras_v2" (keras.applications' layer names: its ImageNet backbone weights load
        with ``model.load_weights(path, by_name=True)``).
    output_stride: 16 or 8 (v2: 8); the last ResNet stage(s) are dilated instead of strided.
    atrous_rates: ASPP dilation rates; None = (6, 12, 18) at stride 16, (12, 24, 36) at 8,
        (6, 12, 18, 24) for v2.
    head_conv: v3 only - torchvision's extra 3x3 conv + norm + ReLU before the classifier.
    aux_head: add torchvision's auxiliary FCN head on stage 3 as a second output ``aux``.
    spatial_dims: 2 or 3. in_channels: input channels. input_shape: None = any spatial size;
        static sizes must be >= output_stride per axis.
    num_classes: output classes (21 = PASCAL VOC); 0 = headless (v3/v3plus), returning the
        features that feed the classifier at their own resolution (stride ``output_stride``
        for v3, 4 for v3plus).
    width: ResNet stem/first-stage filters (64). filters: ASPP / head / decoder filters (256).
    low_level_filters: v3plus decoder's 1x1 reduction of the stride-4 features (48).
    norm: "batch" (default), "group", "instance", "layer" or None, backbone and head.
    dropout: after the ASPP projection; None = the variant's default (0.1 as the official
        TensorFlow code for v3/v3plus; 0 for v2); torchvision uses 0.5.
    classifier_activation: None (logits), "softmax" or "sigmoid", applied after the resize.
    """
    check_spatial_dims(spatial_dims, where=_WHERE)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"),
                 _WHERE)
    if dropout is None:
        dropout = DEFAULT_DROPOUT.get(variant, 0.0)
    _validate(variant, backbone_depth, backbone_layout, output_stride, norm, num_classes,
              aux_head, head_conv, dropout, filters, low_level_filters, width)
    rates = default_rates(variant, output_stride) if atrous_rates is None else _check_rates(atrous_rates)
    _check_input_size(input_shape, spatial_dims, output_stride)

    backbone = resnet(depth=backbone_depth, layout=backbone_layout, spatial_dims=spatial_dims,
                      in_channels=in_channels, num_classes=0, input_shape=input_shape,
                      width=width, norm=norm, output_stride=output_stride,
                      name=f"{name}_backbone")
    inputs = backbone.input
    stages = [backbone.get_layer(n).output for n in stage_output_names(backbone_depth, backbone_layout)]
    features = stages[3]

    if variant == "v2":
        x = _aspp_l(features, rates, num_classes, spatial_dims)
    else:
        x = _aspp(features, rates, filters, spatial_dims, norm, dropout)
        if head_conv:
            x = _cna(x, filters, 3, "head", spatial_dims, norm)
        if variant == "v3plus":
            low = _cna(stages[0], low_level_filters, 1, "decoder_low_level", spatial_dims, norm)
            x = ResizeLike(name="decoder_upsample")([x, low])
            x = L.Concatenate(name="decoder_concat")([x, low])
            x = _cna(x, filters, 3, "decoder_conv1", spatial_dims, norm)
            x = _cna(x, filters, 3, "decoder_conv2", spatial_dims, norm)
        if num_classes == 0:
            return keras.Model(inputs, x, name=name)
        x = conv(spatial_dims)(num_classes, 1, use_bias=True, name="classifier")(x)
    outputs = [_output(x, inputs, "out", classifier_activation)]

    if aux_head:
        channels = stages[2].shape[-1]
        a = _cna(stages[2], channels // 4, 3, "aux", spatial_dims, norm)
        a = L.Dropout(0.1, name="aux_dropout")(a)
        a = conv(spatial_dims)(num_classes, 1, use_bias=True, name="aux_classifier")(a)
        outputs.append(_output(a, inputs, "aux", classifier_activation))
    return keras.Model(inputs, outputs if aux_head else outputs[0], name=name)


__all__ = ["deeplab", "default_rates", "VARIANTS", "RATES"]
