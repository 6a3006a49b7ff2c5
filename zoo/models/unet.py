"""U-Net (Ronneberger, Fischer & Brox 2015, arXiv:1505.04597), 2D and 3D.

``unet(padding="valid")`` is the paper's network exactly: a 572x572x1 tile gives a
388x388x2 map, 23 conv layers (Conv + ConvTranspose), 31,030,658 parameters. The
default ``padding="same"`` keeps the spatial size (any multiple of ``2**depth``).

The size arithmetic lives here as public helpers (``output_size``, ``valid_sizes``,
``nearest_valid_sizes``, ``check_spatial_size``) so the builder can reject an input size
that cannot work before building anything, and tiled/sliding-window inference can pick
tile sizes. ``paper_param_count`` counts parameters as the papers do (conv kernels and
biases only, no BatchNorm). ``zoo.models.unet3d`` reuses the graph code of this module.

Layer names: ``stem_conv`` (first conv), ``stage{i}_conv{k}/_bn{k}/_relu{k}`` and
``stage{i}_out`` (the activation that ends encoder level i = 1..depth+1, before the
optional dropout ``stage{i}_dropout``), ``stage{i}_pool`` (the 2x2 max pool that starts
level i), decoder ``up{i}_upconv``, ``up{i}_crop`` (valid padding), ``up{i}_concat``,
``up{i}_conv{k}``, ``up{i}_out`` (decoder level i merges the skip of ``stage{i}``), and
``classifier`` (the 1x1 output conv).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.models import layers as zl
from zoo.models import register_builder

L = keras.layers
PADDINGS = ("same", "valid")
CLASSIFIER_ACTIVATIONS = (None, "softmax", "sigmoid")

__all__ = ["unet", "output_size", "valid_sizes", "nearest_valid_sizes", "check_spatial_size",
           "paper_param_count"]


# --------------------------------------------------------------------------- size arithmetic
def output_size(size, *, depth=4, padding="same", convs_per_level=2, kernel_size=3):
    """Output length of one spatial axis of length ``size``, or None if that size cannot work.

    ``padding="same"``: the size must be divisible by ``2**depth``; the output equals it.
    ``padding="valid"``: every 3x3 conv trims ``kernel_size - 1``, every 2x2 max pool must
    see an even size, and every level must keep at least one voxel (572 -> 388 at depth 4).
    """
    check_choice("padding", padding, PADDINGS, "unet output_size")
    size, depth = int(size), int(depth)
    if size < 1:
        return None
    if padding == "same":
        return size if size % 2 ** depth == 0 else None
    trim = convs_per_level * (kernel_size - 1)
    s = size
    for _ in range(depth):
        s -= trim
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= trim
    if s < 1:
        return None
    for _ in range(depth):
        s = 2 * s - trim
        if s < 1:
            return None
    return s


def valid_sizes(*, depth=4, padding="valid", start=1, stop=1024, **kw):
    """All input sizes in ``[start, stop]`` for which ``output_size`` is not None."""
    return [s for s in range(max(1, int(start)), int(stop) + 1)
            if output_size(s, depth=depth, padding=padding, **kw) is not None]


def nearest_valid_sizes(size, *, depth=4, padding="same", **kw):
    """``(below, above)``: the nearest valid sizes < and > ``size`` (``below`` may be None).

    If ``size`` itself is valid both are ``size``.
    """
    size = int(size)
    if output_size(size, depth=depth, padding=padding, **kw) is not None:
        return size, size
    below = next((s for s in range(size - 1, 0, -1)
                  if output_size(s, depth=depth, padding=padding, **kw) is not None), None)
    above = size + 1
    while output_size(above, depth=depth, padding=padding, **kw) is None:
        above += 1
    return below, above


def check_spatial_size(input_shape, *, spatial_dims, depth, padding, where="unet"):
    """Raise InvalidArgumentError (naming the nearest valid sizes) if a static axis cannot work.

    ``input_shape`` is spatial axes (+ optional channels); ``None`` axes are dynamic and
    only checked when data arrives. Returns the static output spatial shape (None for
    dynamic axes).
    """
    if input_shape is None:
        return (None,) * spatial_dims
    out = []
    for axis, size in enumerate(tuple(input_shape)[:spatial_dims]):
        if size is None:
            out.append(None)
            continue
        o = output_size(size, depth=depth, padding=padding)
        if o is None:
            below, above = nearest_valid_sizes(size, depth=depth, padding=padding)
            if padding == "same":
                use = f"{below} or {above}" if below else f"{above}"
                raise InvalidArgumentError(
                    f"{where} depth {depth} needs spatial size divisible by {2 ** depth} "
                    f"(padding='same'); got {size} on axis {axis} of input_shape="
                    f"{tuple(input_shape)!r} -> use {use}, or pad (or lower depth).")
            opts = [f"{s} (output {output_size(s, depth=depth, padding=padding)})"
                    for s in (below, above) if s]
            raise InvalidArgumentError(
                f"{where} depth {depth} with padding='valid': spatial size {size} on axis {axis} "
                f"of input_shape={tuple(input_shape)!r} does not work (each level trims 4 by its "
                "two 3x3 convs, every 2x2 max pool needs an even size, and every level must stay "
                f"positive); nearest valid sizes: {' and '.join(opts)}. Use one of them, pad or "
                "crop the input, or use padding='same'.")
        out.append(o)
    return tuple(out)


# --------------------------------------------------------------------------- parameter count
def paper_param_count(model):
    """Parameters as the U-Net papers count them: conv and up-conv kernels and biases.

    BatchNorm (gamma, beta, moving statistics) is not counted, so this is the number the
    3D U-Net paper quotes (19,069,955), while ``model.count_params()`` is the Keras total.
    """
    convs = (L.Conv1D, L.Conv2D, L.Conv3D)  # transposed convs subclass these
    return int(sum(layer.count_params() for layer in _all_layers(model) if isinstance(layer, convs)))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


# --------------------------------------------------------------------------- graph
def _checked_input(where, *, spatial_dims, in_channels, input_shape, depth, padding, **args):
    """Validate the builder arguments and return the model input (size-checked early)."""
    _check_common(where, spatial_dims=spatial_dims, depth=depth, padding=padding, **args)
    inputs = zl.model_input(spatial_dims=spatial_dims, in_channels=in_channels,
                            input_shape=input_shape, where=where)
    check_spatial_size(inputs.shape[1:], spatial_dims=spatial_dims, depth=depth,
                       padding=padding, where=where)
    return inputs


def _check_common(where, *, spatial_dims, num_classes, depth, filters, padding, dropout,
                  classifier_activation, norm, activation):
    zl.check_spatial_dims(spatial_dims, where=where)
    check_positive_int("depth", depth, where, maximum=10)  # 2**10: inputs of at least 1024 per axis
    check_positive_int("filters", filters, where, maximum=4096)
    check_positive_int("num_classes", num_classes, where, minimum=0, maximum=100_000)
    if filters * 2 ** (depth + 1) > 4096:  # bounds the widest level: filters * 2**depth (unet3d: * 2**(depth + 1))
        raise InvalidArgumentError(f"{where}: filters={filters} with depth={depth} is too wide: filters * "
                                   f"2**(depth + 1) = {filters * 2 ** (depth + 1)} > 4096; lower filters or depth.")
    check_choice("padding", padding, PADDINGS, where)
    check_choice("classifier_activation", classifier_activation, CLASSIFIER_ACTIVATIONS, where)
    check_choice("norm", norm, ("batch", "instance", "group", "layer", None), where)
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        raise InvalidArgumentError(
            f"{where}: activation={activation!r} is not a Keras activation; pass e.g. "
            "activation='relu' (the paper's).") from None
    zl.check_dropout(dropout, where, "pass e.g. dropout=0.5 (the paper's) or dropout=0.0 to disable it.")


def _double_conv(x, pair, prefix, *, first_conv_name=None, spatial_dims, padding, norm, activation,
                 use_bias):
    """Two 3x3 conv -> [norm] -> activation steps (layers.conv_norm_act) named
    ``{prefix}_conv{k}/_bn{k}/_{act}{k}``; the last activation is ``{prefix}_out``, a first conv
    named ``stem_conv`` comes with ``stem_bn`` and ``stem_{act}``."""
    act = activation if isinstance(activation, str) else "act"
    for k, f in enumerate(pair, start=1):
        last = k == len(pair)
        conv_name = first_conv_name if (k == 1 and first_conv_name) else f"{prefix}_conv{k}"
        stem = conv_name == "stem_conv"
        x = zl.conv_norm_act(x, f, 3, spatial_dims=spatial_dims, name=prefix, padding=padding,
                             norm=norm, activation=activation, use_bias=use_bias, conv_name=conv_name,
                             norm_name="stem_bn" if stem else f"{prefix}_bn{k}",
                             act_name=f"{prefix}_out" if last else
                             ("stem_" + act if stem else f"{prefix}_{act}{k}"))
    return x


def build_unet_graph(x, *, spatial_dims, encoder, decoder, num_classes, padding, norm,
                     activation, conv_bias, up_bias, dropout, dropout_levels,
                     classifier_activation):
    """The U-shaped graph shared by ``unet`` and ``unet3d``.

    encoder: per level (shallow to deep, last = bottom) the two conv widths;
    decoder: per level (deep to shallow) ``(up_conv_filters, (conv1, conv2))``;
    dropout_levels: how many of the deepest encoder levels end with dropout.
    """
    kw = dict(spatial_dims=spatial_dims, padding=padding, norm=norm, activation=activation,
              use_bias=conv_bias)
    skips = []
    depth = len(encoder) - 1
    for i, pair in enumerate(encoder, start=1):
        if i > 1:
            x = zl.max_pool(spatial_dims)(2, strides=2, name=f"stage{i}_pool")(x)
        x = _double_conv(x, pair, f"stage{i}", first_conv_name="stem_conv" if i == 1 else None, **kw)
        if dropout and i > len(encoder) - dropout_levels:
            x = L.Dropout(dropout, name=f"stage{i}_dropout")(x)
        skips.append(x)
    for j, (up_filters, pair) in zip(range(depth, 0, -1), decoder):
        x = zl.conv_transpose(spatial_dims)(up_filters, 2, strides=2, use_bias=up_bias,
                                            kernel_initializer="he_normal", name=f"up{j}_upconv")(x)
        skip = skips[j - 1]
        if padding == "valid":
            skip = zl.CenterCropLike(name=f"up{j}_crop")([skip, x])
        x = L.Concatenate(axis=-1, name=f"up{j}_concat")([skip, x])
        x = _double_conv(x, pair, f"up{j}", **kw)
    if num_classes:
        x = zl.conv(spatial_dims)(num_classes, 1, activation=classifier_activation,
                                  kernel_initializer="he_normal", name="classifier")(x)
    return x


@register_builder
def unet(*, spatial_dims=2, in_channels=1, num_classes=2, input_shape=None, padding="same",
         filters=64, depth=4, norm=None, activation="relu", dropout=0.5,
         classifier_activation=None, name="unet"):
    """U-Net of Ronneberger et al. 2015, for 2D images or 3D volumes.

    Each level has two 3x3 convs + ReLU; a 2x2 max pool goes down (widths ``filters *
    2**level``: 64 ... 1024 at depth 4); a 2x2 up-conv halves the width going up; the skip
    of the same level is concatenated (centre-cropped with ``padding="valid"``); a 1x1 conv
    gives ``num_classes`` logits (``classifier_activation`` 'softmax'/'sigmoid' on request;
    ``num_classes=0``: the last decoder features).

    padding: "same" (default; output size = input size, which must be divisible by
        ``2**depth``) or "valid" (the paper: 572 -> 388 at depth 4; see ``valid_sizes``).
    norm: None (the paper) or "batch" (conv without bias -> BN -> ReLU), "instance", "group".
    dropout: rate of the dropout layers at the end of the contracting path (the two deepest
        levels, as in the authors' released model); 0 disables them.
    input_shape: spatial axes (+ channels); None axes are dynamic (default: all dynamic).
    """
    where = f"{name}"
    inputs = _checked_input(where, spatial_dims=spatial_dims, in_channels=in_channels,
                            input_shape=input_shape, num_classes=num_classes, depth=depth,
                            filters=filters, padding=padding, dropout=dropout,
                            classifier_activation=classifier_activation, norm=norm,
                            activation=activation)
    widths = [filters * 2 ** i for i in range(depth + 1)]
    encoder = [(w, w) for w in widths]
    decoder = [(w, (w, w)) for w in reversed(widths[:-1])]
    outputs = build_unet_graph(
        inputs, spatial_dims=spatial_dims, encoder=encoder, decoder=decoder,
        num_classes=num_classes, padding=padding, norm=norm, activation=activation,
        conv_bias=norm is None, up_bias=True, dropout=dropout, dropout_levels=2,
        classifier_activation=classifier_activation)
    return keras.Model(inputs, outputs, name=name)
