"""ResNet (He et al. 2016, arXiv:1512.03385) and ResNet v2 (He et al. 2016, arXiv:1603.05027).

One builder, :func:`resnet`, serves every variant through its arguments (registry ``config:``):
``depth`` (18, 34 with basic blocks; 50, 101, 152, 200 with bottleneck blocks) and ``layout``:

* ``"torchvision"`` (default): torchvision's ``resnet18 ... resnet152``. Convs without bias, BN
  epsilon 1e-5 (momentum 0.1 in PyTorch = 0.9 in Keras), stem 7x7/2 (pad 3) + 3x3/2 max pool
  (pad 1), projection shortcut = 1x1 conv (stride 2 where the stage downsamples) + BN. Bottleneck
  blocks put the stride on the 3x3 conv ("ResNet v1.5"; the paper puts it on the first 1x1).
  Layer names follow the zoo contract and map one-to-one onto a torchvision state dict::

      conv1 / bn1                      -> stem_conv / stem_bn   (stem_pad, stem_relu,
                                                                 stem_pool_pad, stem_pool)
      layer{i}.{j}.conv{k} / .bn{k}    -> stage{i}_block{j+1}_conv{k} / _bn{k}    (k = 1..3)
      layer{i}.{j}.downsample.0 / .1   -> stage{i}_block{j+1}_downsample_conv / _downsample_bn
      fc                               -> classifier            (head_pool, head_dropout)

  (conv kernels OIHW -> HWIO = ``transpose(2, 3, 1, 0)``, 3D OIDHW -> DHWIO; fc weight
  transposed; BN weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance.)
  Each block ends with ``stage{i}_block{j}_add`` and ReLU ``stage{i}_block{j}_out``; the last
  block's ReLU is named ``stage{i}_out`` instead. A stride-2 3x3 conv is preceded by an explicit
  symmetric ``..._pad{k}`` layer so that outputs match PyTorch exactly (TF's "same" padding is
  asymmetric for stride 2).
* ``"keras"``: ``keras.applications.ResNet50/101/152`` (v1). Convs WITH bias (before BN), BN
  epsilon 1.001e-5, stride on the first 1x1 conv of a bottleneck (as in the paper), identical
  layer names (``conv1_pad ... conv5_block3_out, avg_pool, predictions``), so the official
  weight files load by name.
* ``"keras_v2"``: ``keras.applications.ResNet50V2/101V2/152V2``: pre-activation blocks
  (BN -> ReLU before each conv), stride in the LAST block of stages conv2..conv4 (none in
  conv5), ``post_bn``/``post_relu`` after the last stage, keras.applications' names. The
  strided identity shortcut is a 1x1 max pool (unnamed in keras.applications, weightless;
  here ``conv{s}_block{b}_0_pool``).

``num_classes=0`` returns the final feature map (no pooling): ``stage4_out`` /
``conv5_block{n}_out`` / ``post_relu``. Otherwise global average pooling, optional dropout,
and a dense classifier returning logits unless ``classifier_activation`` is given.

``output_stride`` 16 or 8 replaces the stride of the last one or two downsampling steps by
dilation, as torchvision's ``replace_stride_with_dilation`` (DeepLab): the block that would have
downsampled keeps the previous dilation, every later 3x3 conv gets the doubled one (both 3x3
convs of a basic block; torchvision refuses dilation in basic blocks). Parameter counts do not
change. The four stage outputs a decoder picks come from the layer-name contract (zoo.hub.contract):
``stage{i}_out`` in the torchvision layout, the registry's ``keras_resnet``/``keras_resnet_v2`` specs otherwise.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import (
    check_dropout,
    check_spatial_dims,
    classifier_head,
    conv,
    conv_norm_act,
    global_avg_pool,
    max_pool,
    model_input,
    norm_layer,
    zero_pad,
)

L = keras.layers

_WHERE = "resnet"
LAYOUTS = ("torchvision", "keras", "keras_v2")
OUTPUT_STRIDES = (8, 16, 32)
# depth -> (block, blocks per stage); 18/34/50/101/152 from the paper's Table 1, 200 from v2.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
_KERAS_EPS, _TV_EPS = 1.001e-5, 1e-5
_KERAS_MOMENTUM, _TV_MOMENTUM = 0.99, 0.9


def check_depth_layout(depth, layout="torchvision", *, where=_WHERE, prefix="", hint=None):
    """A ResNet ``depth`` and ``layout`` that fit together (the keras.applications layouts have
    bottleneck blocks only); returns the depth's (block, blocks per stage). ``prefix`` names the
    arguments where a model embeds a ResNet (DeepLab's ``backbone_depth``/``backbone_layout``)."""
    check_choice(f"{prefix}layout", layout, LAYOUTS, where)
    if isinstance(depth, bool) or depth not in tuple(DEPTHS):
        raise InvalidArgumentError(
            f"{where}: {prefix}depth={depth!r} is not a ResNet depth; allowed: "
            f"{', '.join(str(d) for d in DEPTHS)} (18/34 use basic blocks, 50+ bottleneck blocks). "
            + (hint or f"Pass e.g. {prefix}depth=50."))
    block, blocks = DEPTHS[depth]
    if layout != "torchvision" and block != "bottleneck":
        raise InvalidArgumentError(
            f"{where}: {prefix}layout={layout!r} (keras.applications) has bottleneck blocks only; got "
            f"{prefix}depth={depth} (basic blocks). Use {prefix}layout='torchvision' for depth 18/34, "
            f"or {prefix}depth 50, 101, 152 or 200.")
    return block, blocks


def _stage_blocks(depth, block=None, layout="torchvision"):
    """Validate depth/block/layout; return (block, blocks per stage)."""
    standard, blocks = check_depth_layout(depth, layout)
    if block is None:
        block = standard
    check_choice("block", block, ("basic", "bottleneck"), _WHERE)
    if block != standard:
        raise InvalidArgumentError(
            f"{_WHERE}: block={block!r} does not give a {depth}-layer ResNet; depth={depth} uses "
            f"{standard!r} blocks. Pass block={standard!r} (or block=None), or pick a depth of "
            f"{[d for d, (b, _) in DEPTHS.items() if b == block]}.")
    return block, blocks


def _plan(blocks, layout, output_stride):
    """Per stage, per block: (stride, dilation of the 3x3 conv)."""
    current, dilation, plan = 4, 1, []
    for s, n in enumerate(blocks):
        stage = []
        for b in range(n):
            if layout == "keras_v2":
                nominal = 2 if (b == n - 1 and s < 3) else 1
            else:
                nominal = 2 if (b == 0 and s > 0) else 1
            if nominal == 2 and current * 2 > output_stride:
                stage.append((1, dilation))
                dilation *= 2
            else:
                stage.append((nominal, dilation))
                current *= nominal
        plan.append(stage)
    return plan


class _Ops:
    """Dimension-generic layer factories with the layout's conv and norm settings."""

    def __init__(self, spatial_dims, norm, layout):
        self.dims, self.norm, self.layout = spatial_dims, norm, layout
        keras_like = layout != "torchvision"
        self.eps = _KERAS_EPS if keras_like else _TV_EPS
        self.momentum = _KERAS_MOMENTUM if keras_like else _TV_MOMENTUM
        self.init = "glorot_uniform" if keras_like else "he_normal"

    def conv(self, x, filters, kernel, name, strides=1, dilation=1, padding="same", bias=False):
        return conv(self.dims)(filters, kernel, strides=strides, padding=padding,
                               dilation_rate=dilation, use_bias=bias,
                               kernel_initializer=self.init, name=name)(x)

    def cna(self, x, filters, kernel, name, *, act=True, strides=1, dilation=1, padding="same",
            bias=None, pad_name=None, **names):
        """Conv -> norm [-> ReLU] (layers.conv_norm_act) with the layout's settings; ``pad_name``
        puts an explicit symmetric ``dilation``-wide zero padding before a 'valid' conv."""
        if pad_name:
            x, padding = self.pad(x, dilation, pad_name), "valid"
        return conv_norm_act(x, filters, kernel, spatial_dims=self.dims, name=name, strides=strides,
                             padding=padding, dilation_rate=dilation, norm=self.norm,
                             activation="relu" if act else None, use_bias=bias, bn_epsilon=self.eps,
                             bn_momentum=self.momentum, kernel_initializer=self.init, **names)

    def bn(self, x, name):
        layer = norm_layer(self.norm, name, self.dims, epsilon=self.eps, momentum=self.momentum)
        return x if layer is None else layer(x)

    def pad(self, x, amount, name):
        return zero_pad(self.dims)(padding=amount, name=name)(x)

    def relu(self, x, name):
        return L.Activation("relu", name=name)(x)


# --------------------------------------------------------------------------- torchvision
def _tv_cna(ops, x, filters, kernel, name, k, *, act=True, stride=1, dilation=1):
    """torchvision's ``conv{k}`` -> ``bn{k}`` [-> ``relu{k}``] of block ``name``. A strided 3x3
    conv gets explicit symmetric padding ``pad{k}`` first, as PyTorch's ``padding=dilation``."""
    pad = f"{name}_pad{k}" if stride > 1 and kernel == 3 else None
    return ops.cna(x, filters, kernel, name, act=act, strides=stride, dilation=dilation, pad_name=pad,
                   conv_name=f"{name}_conv{k}", norm_name=f"{name}_bn{k}", act_name=f"{name}_relu{k}")


def _tv_block(ops, x, filters, block, stride, dilation, first, name, out_name):
    out_ch = filters * (4 if block == "bottleneck" else 1)
    shortcut = x
    if first and (stride != 1 or x.shape[-1] != out_ch):
        shortcut = ops.cna(x, out_ch, 1, f"{name}_downsample", act=False, strides=stride)
    if block == "basic":
        x = _tv_cna(ops, x, filters, 3, name, 1, stride=stride, dilation=dilation)
        x = _tv_cna(ops, x, filters, 3, name, 2, act=False, dilation=dilation)
    else:
        x = _tv_cna(ops, x, filters, 1, name, 1)
        x = _tv_cna(ops, x, filters, 3, name, 2, stride=stride, dilation=dilation)
        x = _tv_cna(ops, x, out_ch, 1, name, 3, act=False)
    x = L.Add(name=f"{name}_add")([shortcut, x])
    return ops.relu(x, out_name)


def _torchvision_body(ops, x, width, block, plan):
    x = ops.pad(x, 3, "stem_pad")
    x = ops.cna(x, width, 7, "stem", strides=2, padding="valid")
    x = ops.pad(x, 1, "stem_pool_pad")  # zero padding == PyTorch's -inf padding after a ReLU
    x = max_pool(ops.dims)(3, strides=2, name="stem_pool")(x)
    for s, stage in enumerate(plan, start=1):
        for b, (stride, dilation) in enumerate(stage, start=1):
            name = f"stage{s}_block{b}"
            out = f"stage{s}_out" if b == len(stage) else f"{name}_out"
            x = _tv_block(ops, x, width * 2 ** (s - 1), block, stride, dilation, b == 1, name, out)
    return x


# --------------------------------------------------------------------------- keras v1
def _keras_v1_block(ops, x, filters, stride, dilation, first, name):
    if first:
        shortcut = ops.cna(x, 4 * filters, 1, f"{name}_0", act=False, strides=stride, bias=True,
                           padding="valid")
    else:
        shortcut = x
    x = ops.cna(x, filters, 1, f"{name}_1", strides=stride, bias=True, padding="valid")
    x = ops.cna(x, filters, 3, f"{name}_2", dilation=dilation, bias=True)
    x = ops.cna(x, 4 * filters, 1, f"{name}_3", act=False, bias=True)
    x = L.Add(name=f"{name}_add")([shortcut, x])
    return ops.relu(x, f"{name}_out")


def _keras_v2_block(ops, x, filters, stride, dilation, first, name):
    preact = ops.relu(ops.bn(x, f"{name}_preact_bn"), f"{name}_preact_relu")
    if first:
        shortcut = ops.conv(preact, 4 * filters, 1, f"{name}_0_conv", strides=stride, bias=True,
                            padding="valid")
    elif stride > 1:
        shortcut = max_pool(ops.dims)(1, strides=stride, name=f"{name}_0_pool")(x)
    else:
        shortcut = x
    x = ops.cna(preact, filters, 1, f"{name}_1")
    x = ops.cna(x, filters, 3, f"{name}_2", strides=stride, dilation=dilation, pad_name=f"{name}_2_pad")
    x = ops.conv(x, 4 * filters, 1, f"{name}_3_conv", bias=True)
    return L.Add(name=f"{name}_out")([shortcut, x])


def _keras_body(ops, x, width, plan, v2):
    x = ops.pad(x, 3, "conv1_pad")
    if v2:  # pre-activation: the stem conv has no norm of its own
        x = ops.conv(x, width, 7, "conv1_conv", strides=2, padding="valid", bias=True)
    else:
        x = ops.cna(x, width, 7, "conv1", strides=2, padding="valid", bias=True)
    x = ops.pad(x, 1, "pool1_pad")
    x = max_pool(ops.dims)(3, strides=2, name="pool1_pool")(x)
    block_fn = _keras_v2_block if v2 else _keras_v1_block
    for s, stage in enumerate(plan, start=2):
        for b, (stride, dilation) in enumerate(stage, start=1):
            x = block_fn(ops, x, width * 2 ** (s - 2), stride, dilation, b == 1,
                         f"conv{s}_block{b}")
    if v2:
        x = ops.relu(ops.bn(x, "post_bn"), "post_relu")
    return x


def stage_output_names(depth, layout="torchvision", block=None):
    """The names of the four stage outputs (the last layer at each resolution, shallow to deep) of
    the ResNet ``resnet(depth=depth, layout=layout, block=block)`` builds: ``stage{i}_out`` in the
    torchvision layout, the last block's ``_out`` of each stage in keras.applications' v1 layout,
    and in v2 (whose last block of a stage downsamples) that block's pre-activation then
    ``post_relu``. DeepLab takes its features from these; the registry's contract specs of the
    keras layouts name the same layers."""
    _, blocks = _stage_blocks(depth, block, layout)
    if layout == "torchvision":
        return [f"stage{i}_out" for i in range(1, len(blocks) + 1)]
    if layout == "keras_v2":
        return [f"conv{s}_block{n}_preact_relu" for s, n in zip(range(2, 5), blocks[:3])] + ["post_relu"]
    return [f"conv{s}_block{n}_out" for s, n in zip(range(2, 6), blocks)]


# --------------------------------------------------------------------------- builder
@register_builder
def resnet(*, depth, block=None, layout="torchvision", spatial_dims=2, in_channels=3,
           num_classes=1000, input_shape=None, width=64, norm="batch", dropout=0.0,
           output_stride=32, classifier_activation=None, name="resnet"):
    """Build a ResNet (see the module docstring for the layouts and layer names).

    depth: 18, 34 (basic blocks), 50, 101, 152, 200 (bottleneck blocks).
    block: None (the depth's block), "basic" or "bottleneck" (must agree with depth).
    layout: "torchvision" (zoo layer names, no conv bias, v1.5 stride placement), "keras"
        (keras.applications ResNet), "keras_v2" (keras.applications ResNetV2).
    spatial_dims: 2 or 3. in_channels: input channels. input_shape: None = any spatial size.
    num_classes: classifier outputs; 0 = headless, the final (un-pooled) feature map.
    width: filters of the stem and of the first stage (64 in every published variant; the
        stages use width * 1, 2, 4, 8, times 4 at the output of bottleneck blocks).
    norm: "batch" (default), "group", "instance", "layer" or None (convs then get a bias).
    dropout: dropout rate before the classifier (0 = none, as in the paper).
    output_stride: 32, 16 or 8; 16/8 trade the last downsampling step(s) for dilation.
    classifier_activation: None (logits), "softmax" or "sigmoid".
    """
    block, blocks = _stage_blocks(depth, block, layout)
    check_spatial_dims(spatial_dims, where=_WHERE)
    check_choice("output_stride", output_stride, OUTPUT_STRIDES, _WHERE)
    check_choice("norm", norm, ("batch", "group", "instance", "layer", None), _WHERE)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"),
                 _WHERE)
    check_positive_int("width", width, _WHERE, maximum=1024)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    check_dropout(dropout, _WHERE)
    if norm == "group" and width % 32:
        raise InvalidArgumentError(
            f"{_WHERE}: norm='group' uses 32 groups, so width must be a multiple of 32; got "
            f"width={width}. Pass width={max(32, width // 32 * 32)}.")

    inputs = model_input(spatial_dims=spatial_dims, in_channels=in_channels,
                         input_shape=input_shape, where=_WHERE)
    ops = _Ops(spatial_dims, norm, layout)
    plan = _plan(blocks, layout, output_stride)
    if layout == "torchvision":
        x = _torchvision_body(ops, inputs, width, block, plan)
        pool_name, head_name = "head_pool", "classifier"
    else:
        x = _keras_body(ops, inputs, width, plan, v2=layout == "keras_v2")
        pool_name, head_name = "avg_pool", "predictions"
    if num_classes:
        x = global_avg_pool(spatial_dims)(name=pool_name)(x)
        x = classifier_head(x, num_classes, classifier_activation=classifier_activation,
                            name=head_name, dropout=dropout)
    return keras.Model(inputs, x, name=name)
