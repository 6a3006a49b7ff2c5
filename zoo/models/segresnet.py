"""MONAI's ``SegResNet`` (Myronenko 2018, arXiv:1810.11654, without the VAE branch), in Keras.

The network ``monai.networks.nets.SegResNet`` builds, layer for layer, so a MONAI ``state_dict``
converts onto it exactly (``zoo.hub.convert.monai``):

* ``stem_conv``: a 3x3 convolution (no bias) to ``init_filters``, then spatial dropout
  (``dropout``, MONAI's ``dropout_prob``; ``Dropout3d``/``Dropout2d``) when given;
* encoder stage ``i`` (1 .. len(blocks_down)): stage 1 keeps the size, every later stage starts
  with a stride-2 3x3 convolution doubling the width (``stage{i}_down_conv``, explicitly padded
  as PyTorch pads it); then ``blocks_down[i-1]`` residual blocks, each norm -> activation -> 3x3
  conv -> norm -> activation -> 3x3 conv + identity (``stage{i}_block{j}_norm1/_act1/_conv1/
  _norm2/_act2/_conv2``, the sum ``..._add``; the stage's last sum is ``stage{i}_out``);
* decoder level ``i`` (deep to shallow, merging stage ``i``): a 1x1 convolution halving the width
  (``up{i}_conv``), up-sampling by 2 (``up{i}_upsample``: MONAI's default "nontrainable"
  trilinear/bilinear interpolation with ``align_corners=False``, the zoo layer
  :class:`~zoo.models.layers.LinearUpsampling`; or "deconv", a 2x2 transposed convolution with
  bias), the sum with stage ``i``'s output (``up{i}_add``), ``blocks_up`` residual blocks
  (``up{i}_block{j}_...``; the last sum is ``up{i}_out``);
* head: norm -> activation -> 1x1 convolution with bias (``head_norm``, ``head_act``,
  ``classifier``: the logits). ``num_classes=0`` leaves the head out (MONAI's
  ``use_conv_final=False``) and returns the last decoder features.

The norm and activation are MONAI specs (default group norm with 8 groups and ReLU; see
``zoo.models._monai``). Parameter counts equal MONAI's (group norm has no running statistics,
so the Keras total equals the trainable count).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import _monai, register_builder
from zoo.models import layers as zl

L = keras.layers
_WHERE = "segresnet"
UPSAMPLE_MODES = ("nontrainable", "deconv")


def _blocks(value, arg, minimum):
    if not isinstance(value, (list, tuple)) or len(value) < minimum or len(value) > 10 or any(
            isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 64 for b in value):
        raise InvalidArgumentError(f"{_WHERE}: {arg}={value!r} must be a list of block counts (integers 0-64), "
                                   "e.g. blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1] (MONAI's defaults).")
    return list(value)


class _Ops:
    def __init__(self, dims, norm, act):
        self.dims, self.norm, self.act = dims, norm, act

    def conv(self, x, filters, name, kernel=3, stride=1, bias=False):
        y, _ = _monai.torch_conv(x, filters, kernel, spatial_dims=self.dims, strides=stride, use_bias=bias, name=name,
                                 pad_name=f"{name}_pad")
        return y

    def norm_act(self, x, channels, norm_name, act_name):
        layer = _monai.norm_layer(self.norm, norm_name, self.dims, channels)
        x = x if layer is None else layer(x)
        return _monai.activation_layer(self.act, act_name, self.dims, channels)(x)

    def res_block(self, x, channels, prefix, out_name):
        """MONAI's ``ResBlock``: (norm, act, conv) twice, plus the input."""
        y = self.norm_act(x, channels, f"{prefix}_norm1", f"{prefix}_act1")
        y = self.conv(y, channels, f"{prefix}_conv1")
        y = self.norm_act(y, channels, f"{prefix}_norm2", f"{prefix}_act2")
        y = self.conv(y, channels, f"{prefix}_conv2")
        return L.Add(name=out_name)([y, x])

    def blocks(self, x, channels, count, prefix):
        for j in range(1, count + 1):
            x = self.res_block(x, channels, f"{prefix}_block{j}", f"{prefix}_out" if j == count else
                               f"{prefix}_block{j}_add")
        return x


@register_builder
def segresnet(*, spatial_dims=3, in_channels=1, num_classes=2, input_shape=None, init_filters=8,
              blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), dropout=0.0, activation="relu",
              norm=("group", {"num_groups": 8}), upsample_mode="nontrainable", classifier_activation=None,
              name="segresnet"):
    """MONAI's ``SegResNet`` (see the module docstring). Arguments as MONAI names them, with the
    zoo's ``num_classes`` (= ``out_channels``; 0 = ``use_conv_final=False``), ``dropout``
    (= ``dropout_prob``; 0 = None) and ``activation`` (= ``act``).

    blocks_down: residual blocks per encoder stage; blocks_up: per decoder level (one level fewer).
    norm, activation: MONAI specs, e.g. ``["group", {"num_groups": 8}]``, ``"relu"``.
    upsample_mode: "nontrainable" (linear interpolation, MONAI's default) or "deconv".
    Spatial sizes must be divisible by ``2 ** (len(blocks_down) - 1)`` (8 by default).
    """
    zl.check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("init_filters", init_filters, _WHERE, maximum=1024)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    down, up = _blocks(blocks_down, "blocks_down", 1), _blocks(blocks_up, "blocks_up", 0)
    if len(up) != len(down) - 1:
        raise InvalidArgumentError(f"{_WHERE}: blocks_up={blocks_up!r} needs len(blocks_down) - 1 = {len(down) - 1} "
                                   "levels (one per down-sampling step), e.g. blocks_up=[1, 1, 1] for 4 stages.")
    if init_filters * 2 ** (len(down) - 1) > 8192:
        raise InvalidArgumentError(f"{_WHERE}: init_filters={init_filters} with {len(down)} stages is too wide "
                                   f"({init_filters * 2 ** (len(down) - 1)} > 8192 channels); lower either.")
    zl.check_dropout(dropout, _WHERE, "pass e.g. dropout=0.2 (MONAI's dropout_prob in the bundles), or 0.0.")
    check_choice("upsample_mode", upsample_mode, UPSAMPLE_MODES, _WHERE)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    act = _monai.check_activation(activation, _WHERE)
    if act[0] == "prelu":  # MONAI's ResBlock calls one activation module twice: one shared slope
        raise InvalidArgumentError(f"{_WHERE}: activation={activation!r}: a PReLU would be shared by the two "
                                   "activations of each residual block (MONAI reuses one module); not supported. "
                                   "Use a parameter-free activation such as 'relu' (MONAI's default).")
    ops = _Ops(spatial_dims, _monai.check_norm(norm, _WHERE), act)
    inputs = zl.model_input(spatial_dims=spatial_dims, in_channels=in_channels, input_shape=input_shape,
                            where=_WHERE)
    factor = 2 ** (len(down) - 1)
    for axis, size in enumerate(inputs.shape[1:-1]):
        if size is not None and size % factor:
            below, above = size // factor * factor, (size // factor + 1) * factor
            raise InvalidArgumentError(
                f"{_WHERE}: {len(down)} stages need spatial sizes divisible by {factor}; got {size} on axis {axis} "
                f"of input_shape={tuple(inputs.shape[1:])} -> use {f'{below} or ' if below else ''}{above}, or pad.")

    x = ops.conv(inputs, init_filters, "stem_conv")
    if dropout:
        x = zl.spatial_dropout(spatial_dims)(dropout, name="stem_dropout")(x)
    skips = []
    for i, count in enumerate(down, start=1):
        width = init_filters * 2 ** (i - 1)
        if i > 1:
            x = ops.conv(x, width, f"stage{i}_down_conv", stride=2)
        x = ops.blocks(x, width, count, f"stage{i}") if count else L.Activation("linear", name=f"stage{i}_out")(x)
        skips.append(x)
    for i in range(len(down) - 1, 0, -1):
        width = init_filters * 2 ** (i - 1)
        x = ops.conv(x, width, f"up{i}_conv", kernel=1)
        if upsample_mode == "deconv":
            x = zl.conv_transpose(spatial_dims)(width, 2, strides=2, padding="valid", use_bias=True,
                                                name=f"up{i}_upsample")(x)
        else:
            x = zl.LinearUpsampling(2, name=f"up{i}_upsample")(x)
        x = L.Add(name=f"up{i}_add")([x, skips[i - 1]])
        count = up[len(down) - 1 - i]
        x = ops.blocks(x, width, count, f"up{i}") if count else x
    if num_classes:
        x = ops.norm_act(x, init_filters, "head_norm", "head_act")
        x = zl.conv(spatial_dims)(num_classes, 1, use_bias=True, name="classifier")(x)
        if classifier_activation:
            x = L.Activation(classifier_activation, name="head_activation")(x)
    return keras.Model(inputs, x, name=name)
