"""FC-DenseNet ("The One Hundred Layers Tiramisu"), Jegou et al. 2017, arXiv:1611.09326.

A fully convolutional DenseNet for dense prediction (segmentation), in 2D and 3D.

Structure (paper Fig. 1 / Table 1, and the authors' Theano/Lasagne code):

* ``stem_conv``: 3x3 conv with ``first_filters`` (48) maps.
* Down path, ``n`` = ``len(layers_per_block) // 2`` blocks (5 in the paper): a dense block
  (each layer BN -> ReLU -> 3x3 conv with ``growth_rate`` maps -> dropout, its output
  concatenated to the running stack), then transition down (BN -> ReLU -> 1x1 conv keeping
  the channel count -> dropout -> 2x2 max pool). The stack before the transition is the skip
  connection, named ``stage{i}_out``.
* Bottleneck dense block (``bottleneck_...``).
* Up path, ``n`` blocks (``up{i}_...``): transition up = 3x3 transposed conv with stride 2
  applied to the concatenation of only the NEW feature maps of the previous dense block
  (``growth_rate * layers`` maps), concatenated with the skip connection of that
  resolution; then a dense block. Inside a block each layer still sees the whole stack, but
  only the new maps are passed on (that keeps the up path from exploding in width). The last
  block returns its whole stack (input + new maps), as the reference code does.
* ``classifier``: 1x1 conv to ``num_classes`` (logits unless ``classifier_activation``).

Every conv has a bias (Lasagne's default in the reference code); with BN moving statistics
this reproduces the Keras totals 1,397,963 / 3,502,923 / 9,425,163 for FC-DenseNet56/67/103 at
224x224x3 and 11 classes (CamVid). BN uses epsilon 1e-4 and momentum 0.9 (Lasagne's
``BatchNormLayer`` defaults) and convs He-uniform initialisation, as in the reference code.
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import register_builder
from zoo.models.layers import check_dropout, check_spatial_dims, conv, conv_transpose, max_pool, model_input, norm_layer

L = keras.layers

_WHERE = "fcdensenet"
_INIT = "he_uniform"
_BN_EPSILON = 1e-4


def _blocks(layers_per_block):
    """The per-block layer counts: down blocks, bottleneck, up blocks (odd length >= 3)."""
    if isinstance(layers_per_block, bool):
        layers_per_block = None  # rejected below
    if isinstance(layers_per_block, int):
        check_positive_int("layers_per_block", layers_per_block, _WHERE, maximum=256)
        return [layers_per_block] * 11
    if isinstance(layers_per_block, (list, tuple)):
        blocks = list(layers_per_block)
        ok = 3 <= len(blocks) <= 25 and len(blocks) % 2 == 1 and all(
            isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 256 for b in blocks)
        if ok:
            return blocks
    raise InvalidArgumentError(
        f"{_WHERE}: layers_per_block={layers_per_block!r} must be a positive integer (the same "
        "count for all 11 blocks of the paper's 5-pool net) or a list of an odd number (>= 3) of "
        "positive integers: down blocks, bottleneck, up blocks, e.g. "
        "[4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4] (FC-DenseNet103).")


def _check_sizes(sizes, input_shape, n_pool):
    """Every static spatial size must be divisible by 2 ** n_pool (one halving per pool)."""
    factor = 2 ** n_pool
    for size in sizes:
        if size is None or int(size) % factor == 0:
            continue
        size = int(size)
        lower = (size // factor) * factor
        nearest = [s for s in (lower, lower + factor) if s > 0]
        raise InvalidArgumentError(
            f"{_WHERE}: input_shape={tuple(input_shape)!r}: a spatial size of {size} cannot work; "
            f"with {n_pool} pooling steps every spatial size must be divisible by 2**{n_pool} = "
            f"{factor}. Use {' or '.join(str(s) for s in nearest)} (pad or crop the input), or "
            "pass input_shape=None for a dynamic size.")


def _norm_act_conv(x, filters, kernel_size, *, spatial_dims, dropout, name):
    """The pre-activation unit of dense layers and transitions: BN -> ReLU -> conv (with bias)
    -> dropout, as ``{name}_bn/_relu/_conv/_drop``."""
    x = norm_layer("batch", f"{name}_bn", spatial_dims, epsilon=_BN_EPSILON, momentum=0.9)(x)
    x = L.Activation("relu", name=f"{name}_relu")(x)
    x = conv(spatial_dims)(filters, kernel_size, padding="same", use_bias=True,
                           kernel_initializer=_INIT, name=f"{name}_conv")(x)
    if dropout:
        x = L.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def _dense_layer(x, growth_rate, *, spatial_dims, dropout, name):
    """BN -> ReLU -> 3x3 conv (growth_rate maps) -> dropout."""
    return _norm_act_conv(x, growth_rate, 3, spatial_dims=spatial_dims, dropout=dropout, name=name)


def _dense_block(x, layers, growth_rate, *, spatial_dims, dropout, name, out_name=None,
                 keep_stack=True):
    """A dense block; returns ``(stack, None)`` or, with ``keep_stack=False``, ``(None, new)``.

    ``stack`` is the input concatenated with all new maps; ``new`` is the concatenation of
    only the new maps (``{name}_new``), which is all the up path passes on.
    """
    new = []
    for j in range(1, layers + 1):
        y = _dense_layer(x, growth_rate, spatial_dims=spatial_dims, dropout=dropout,
                         name=f"{name}_layer{j}")
        new.append(y)
        if j < layers or keep_stack:
            concat_name = out_name if (j == layers and out_name) else f"{name}_concat{j}"
            x = L.Concatenate(axis=-1, name=concat_name)([x, y])
    if keep_stack:
        return x, None
    return None, (new[0] if len(new) == 1 else L.Concatenate(axis=-1, name=f"{name}_new")(new))


def _transition_down(x, *, spatial_dims, dropout, name):
    """BN -> ReLU -> 1x1 conv (same channel count) -> dropout -> 2x2 max pool."""
    x = _norm_act_conv(x, x.shape[-1], 1, spatial_dims=spatial_dims, dropout=dropout, name=name)
    return max_pool(spatial_dims)(2, strides=2, name=f"{name}_pool")(x)


def _transition_up(new_maps, skip, *, spatial_dims, name):
    """3x3 transposed conv, stride 2, on the new maps only; then concat with the skip."""
    filters = new_maps.shape[-1]
    x = conv_transpose(spatial_dims)(filters, 3, strides=2, padding="same", use_bias=True,
                                     kernel_initializer=_INIT, name=f"{name}_conv")(new_maps)
    return L.Concatenate(axis=-1, name=f"{name}_concat")([x, skip])


@register_builder
def fcdensenet(*, growth_rate=16, layers_per_block=(4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4),
               first_filters=48, dropout=0.2, spatial_dims=2, in_channels=3, num_classes=11,
               input_shape=None, classifier_activation=None, name="fcdensenet"):
    """FC-DenseNet (Tiramisu) for 2D or 3D segmentation.

    growth_rate: maps added by each dense layer (12 for FC-DenseNet56, 16 for 67/103).
    layers_per_block: layers of every dense block - an int (same for all 11 blocks, 5 pools)
        or a list of odd length: down blocks, bottleneck, up blocks (its length sets the
        number of pooling steps, ``len // 2``).
    first_filters: maps of the first 3x3 conv (48).
    dropout: dropout rate after every conv of the dense layers and transitions down (0.2).
    spatial_dims: 2 (3x3 convs, 2x2 pools) or 3 (3x3x3 convs, 2x2x2 pools).
    num_classes: output maps of the 1x1 ``classifier`` (0 = headless: the last block's stack).
    input_shape: spatial sizes (+ channels); None = dynamic. Static sizes must be divisible
        by ``2 ** pools`` (32 for the paper's nets).
    classifier_activation: None (logits), "softmax" or "sigmoid".
    """
    check_spatial_dims(spatial_dims, where=_WHERE)
    check_positive_int("growth_rate", growth_rate, _WHERE, maximum=1024)
    check_positive_int("first_filters", first_filters, _WHERE, maximum=4096)
    check_positive_int("num_classes", num_classes, _WHERE, minimum=0, maximum=100_000)
    check_choice("classifier_activation", classifier_activation, (None, "softmax", "sigmoid"), _WHERE)
    check_dropout(dropout, _WHERE, "the paper uses 0.2, pass dropout=0.0 to disable it.")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{_WHERE}: name={name!r} must be a non-empty string.")
    blocks = _blocks(layers_per_block)
    n_pool = len(blocks) // 2
    inputs = model_input(spatial_dims=spatial_dims, in_channels=in_channels,
                         input_shape=input_shape, where=_WHERE)
    _check_sizes(tuple(inputs.shape[1:-1]), input_shape, n_pool)
    dropout = float(dropout)
    common = dict(spatial_dims=spatial_dims, dropout=dropout)

    x = conv(spatial_dims)(first_filters, 3, padding="same", use_bias=True,
                           kernel_initializer=_INIT, name="stem_conv")(inputs)
    skips = []
    for i in range(1, n_pool + 1):
        x, _ = _dense_block(x, blocks[i - 1], growth_rate, name=f"down{i}",
                            out_name=f"stage{i}_out", **common)
        skips.append(x)
        x = _transition_down(x, name=f"down{i}_td", **common)

    _, new = _dense_block(x, blocks[n_pool], growth_rate, name="bottleneck", keep_stack=False,
                          **common)
    for i in range(1, n_pool + 1):
        x = _transition_up(new, skips[-i], spatial_dims=spatial_dims, name=f"up{i}_tu")
        last = i == n_pool
        x, new = _dense_block(x, blocks[n_pool + i], growth_rate, name=f"up{i}", keep_stack=last,
                              out_name=f"up{i}_out" if last else None, **common)

    if num_classes:
        x = conv(spatial_dims)(num_classes, 1, padding="same", use_bias=True,
                               activation=classifier_activation, kernel_initializer=_INIT,
                               name="classifier")(x)
    return keras.Model(inputs, x, name=name)
