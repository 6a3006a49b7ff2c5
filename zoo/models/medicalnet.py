"""MedicalNet's 3D ResNets (Chen, Ma & Zheng 2019, Med3D, arXiv:1904.00625; Tencent/MedicalNet).

The network MedicalNet's weights were trained in (``models/resnet.py`` of Tencent/MedicalNet):

* stem: a 7x7x7 convolution, stride 2, padding 3, no bias, from ``in_channels`` (1) to 64,
  batch norm, ReLU, 3x3x3 max pooling with stride 2 and padding 1;
* four stages of basic blocks (depth 10, 18, 34: [1,1,1,1], [2,2,2,2], [3,4,6,3]) or bottleneck
  blocks (50: [3,4,6,3]) of width 64/128/256/512 (x4 for bottlenecks); stage 2 starts with
  stride 2; **stages 3 and 4 keep stride 1 and dilate every 3x3x3 convolution by 2 and 4**
  (padding = dilation), so the features stay at 1/8 of the input;
* the shortcut of a block that changes the shape is type "A" (an identity sub-sampled by
  stride - MedicalNet's ``avg_pool3d(kernel_size=1, stride)`` - with the missing channels
  zero-padded, no parameters) or type "B" (a 1x1x1 convolution without bias + batch norm). The
  published 23-data-set weights use B for ResNet-10 and -50 and A for ResNet-18 and -34
  (MedicalNet README; MONAI's ``get_medicalnet_pretrained_resnet_args`` agrees), so ``shortcut``
  defaults to that.

Heads: ``head="classification"`` (default): global average pooling, optional dropout, a dense
``classifier``. ``head="segmentation"``: MedicalNet's ``conv_seg``: a 2x2x2 transposed convolution
(stride 2, with bias) to 32 channels, batch norm, ReLU, a 3x3x3 convolution (no bias) 32, batch
norm, ReLU and a 1x1x1 convolution without bias to ``num_classes`` (output at 1/4 of the input
size). ``num_classes=0``: the ``stage4_out`` feature map. The published files hold the backbone
only, so both heads start from random weights.

How this differs from MONAI's ``monai.networks.nets.resnet`` (which also loads these files):
MONAI's ResNet strides stages 3 and 4 by 2 without dilation (features at 1/32), its stem stride
is ``conv1_t_stride`` (default 1, MedicalNet 2), and its B shortcut has a bias by default
(``bias_downsample``). The tensors are the same, so MONAI loads the weights into a network that
computes something else; ``dilated=False`` builds MONAI's layout here (strided stages, no
dilation) for comparison.

Layer names as ``zoo.models.resnet``'s torchvision layout: ``stem_conv``/``stem_bn``,
``stage{i}_block{j}_conv{k}``/``_bn{k}``, ``..._downsample_conv``/``_downsample_bn`` (B),
``..._shortcut_pool``/``_shortcut_pad`` (A), ``stage{i}_out``, ``classifier``; MedicalNet's
``layer{i}.{j-1}.conv{k}`` etc. map one to one (``zoo.hub.convert.medicalnet``).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import layers as zl
from zoo.models import register_builder

L = keras.layers
_WHERE = "medicalnet"
DEPTHS = {10: ("basic", (1, 1, 1, 1)), 18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3))}
SHORTCUTS = {10: "B", 18: "A", 34: "A", 50: "B"}  # of the published 23-data-set weights


class _Ops:
    def __init__(self, dims):
        self.dims = dims

    def cbr(self, x, filters, kernel, name, k, *, stride=1, dilation=1, relu=True):
        """conv{k} (no bias) -> bn{k} [-> relu{k}]; a strided 3x3 conv is padded explicitly."""
        padding = "same"
        if stride > 1 and kernel > 1:
            x = zl.zero_pad(self.dims)(padding=dilation * (kernel // 2), name=f"{name}_pad{k}")(x)
            padding = "valid"
        elif kernel == 1:
            padding = "valid"
        x = zl.conv(self.dims)(filters, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                               use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv{k}")(x)
        x = L.BatchNormalization(axis=-1, epsilon=1e-5, momentum=0.9, name=f"{name}_bn{k}")(x)
        return L.Activation("relu", name=f"{name}_relu{k}")(x) if relu else x

    def block(self, x, planes, kind, stride, dilation, shortcut, name, out_name):
        expansion = 4 if kind == "bottleneck" else 1
        cin, cout = x.shape[-1], planes * expansion
        residual = x
        if stride != 1 or cin != cout:
            if shortcut == "A":
                if stride != 1:
                    residual = zl.avg_pool(self.dims)(1, strides=stride, name=f"{name}_shortcut_pool")(residual)
                residual = zl.ZeroPadChannels(cout - cin, name=f"{name}_shortcut_pad")(residual)
            else:
                residual = zl.conv(self.dims)(cout, 1, strides=stride, use_bias=False, kernel_initializer="he_normal",
                                              name=f"{name}_downsample_conv")(x)
                residual = L.BatchNormalization(axis=-1, epsilon=1e-5, momentum=0.9,
                                                name=f"{name}_downsample_bn")(residual)
        if kind == "basic":
            y = self.cbr(x, planes, 3, name, 1, stride=stride, dilation=dilation)
            y = self.cbr(y, planes, 3, name, 2, dilation=dilation, relu=False)
        else:
            y = self.cbr(x, planes, 1, name, 1)
            y = self.cbr(y, planes, 3, name, 2, stride=stride, dilation=dilation)
            y = self.cbr(y, cout, 1, name, 3, relu=False)
        y = L.Add(name=f"{name}_add")([y, residual])
        return L.Activation("relu", name=out_name)(y)


@register_builder
def medicalnet(*, depth=10, shortcut=None, dilated=True, spatial_dims=3, in_channels=1, num_classes=2,
               input_shape=None, width=64, head="classification", dropout=0.0, classifier_activation=None,
               name="medicalnet"):
    """MedicalNet's 3D ResNet (see the module docstring).

    depth: 10, 18, 34 (basic blocks) or 50 (bottleneck blocks). shortcut: "A" or "B" (default: the
        published weights' choice for the depth). dilated: MedicalNet's stride-1 dilated stages 3
        and 4 (True) or MONAI's strided ones (False). width: the stem's and stage 1's width (64).
    head: "classification" (pooling + dense) or "segmentation" (MedicalNet's conv_seg).
    num_classes: classes of the head; 0 = headless (``stage4_out``).
    """
    if isinstance(depth, bool) or depth not in DEPTHS:
        raise InvalidArgumentError(f"{_WHERE}: depth={depth!r} is not a MedicalNet depth; allowed: "
                                   f"{', '.join(map(str, DEPTHS))}.")
    kind, blocks = DEPTHS[depth]
    shortcut = SHORTCUTS[depth] if shortcut is None else shortcut
    check_choice("shortcut", shortcut, ("A", "B"), _WHERE)
    check_choice("dilated", dilated, (True, False), _WHERE)
    check_choice("head", head, ("classification", "segmentation"), _WHERE)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    zl.check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("width", width, _WHERE, maximum=1024)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    zl.check_dropout(dropout, _WHERE)
    inputs = zl.model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                            where=_WHERE)
    ops = _Ops(spatial_dims)
    x = zl.zero_pad(spatial_dims)(padding=3, name="stem_pad")(inputs)
    x = zl.conv(spatial_dims)(width, 7, strides=2, padding="valid", use_bias=False, kernel_initializer="he_normal",
                              name="stem_conv")(x)
    x = L.BatchNormalization(axis=-1, epsilon=1e-5, momentum=0.9, name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    x = zl.zero_pad(spatial_dims)(padding=1, name="stem_pool_pad")(x)  # zeros == PyTorch's -inf after a ReLU
    x = zl.max_pool(spatial_dims)(3, strides=2, name="stem_pool")(x)
    plan = [(1, 1), (2, 1), (1, 2), (1, 4)] if dilated else [(1, 1), (2, 1), (2, 1), (2, 1)]
    for s, ((stride, dilation), n) in enumerate(zip(plan, blocks), start=1):
        for b in range(1, n + 1):
            block = f"stage{s}_block{b}"
            x = ops.block(x, width * 2 ** (s - 1), kind, stride if b == 1 else 1, dilation, shortcut, block,
                          f"stage{s}_out" if b == n else f"{block}_out")
    if not num_classes:
        return keras.Model(inputs, x, name=name)
    if head == "segmentation":
        x = zl.conv_transpose(spatial_dims)(32, 2, strides=2, padding="valid", use_bias=True, name="head_upconv")(x)
        x = L.BatchNormalization(axis=-1, epsilon=1e-5, momentum=0.9, name="head_bn1")(x)
        x = L.Activation("relu", name="head_relu1")(x)
        x = zl.conv(spatial_dims)(32, 3, padding="same", use_bias=False, name="head_conv")(x)
        x = L.BatchNormalization(axis=-1, epsilon=1e-5, momentum=0.9, name="head_bn2")(x)
        x = L.Activation("relu", name="head_relu2")(x)
        x = zl.conv(spatial_dims)(num_classes, 1, use_bias=False, name="classifier")(x)
        if classifier_activation:
            x = L.Activation(classifier_activation, name="head_activation")(x)
        return keras.Model(inputs, x, name=name)
    x = zl.global_avg_pool(spatial_dims)(name="head_pool")(x)
    x = zl.classifier_head(x, num_classes, classifier_activation=classifier_activation, dropout=dropout)
    return keras.Model(inputs, x, name=name)
