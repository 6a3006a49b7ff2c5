"""The parts MONAI's networks share, in Keras: norm and activation specs, and convolutions padded
as PyTorch pads them.

MONAI names a normalisation or an activation by a string or by ``(name, {arguments})``
(``"batch"``, ``("group", {"num_groups": 8})``, ``("prelu", {"init": 0.2})``); the builders take
the same spelling (a list ``[name, {arguments}]`` in a registry file), so a bundle's
``network_def`` carries over unchanged. Only what has an exact Keras equivalent is accepted;
anything else is an :class:`~zoo.errors.InvalidArgumentError` naming the argument.

PyTorch pads a convolution by ``padding`` on both sides; TensorFlow's ``'same'`` pads the extra
voxel of a strided convolution after, not before, so the output would be shifted by one voxel.
A strided convolution here is therefore an explicit symmetric ``ZeroPadding`` + ``'valid'``
convolution, and a transposed convolution is ``'valid'`` and then cropped by PyTorch's
``padding`` in front and ``kernel - stride - padding`` behind (with ``output_padding = stride - 1``,
MONAI's choice, this is exact).
"""
from zoo._keras import keras
from zoo.errors import InvalidArgumentError
from zoo.models import layers as zl

L = keras.layers

# the MONAI activation and norm names that have an exact Keras equivalent
ACTIVATIONS = ("relu", "prelu", "leakyrelu", "elu", "relu6", "selu", "gelu", "sigmoid", "tanh")
NORMS = ("batch", "instance", "group")


def split_spec(arg, value, allowed, where):
    """``"name"`` or ``(name, {args})`` / ``[name, {args}]`` -> ``(lower-case name, dict)``; None -> (None, {})."""
    if value is None:
        return None, {}
    name, args = value, {}
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], dict):
            raise InvalidArgumentError(
                f"{where}: {arg}={value!r} must be a name or [name, {{arguments}}] as MONAI writes it, e.g. "
                f"{arg}='{allowed[0]}' or {arg}=['{allowed[0]}', {{}}].")
        name, args = value
    if not isinstance(name, str) or name.lower() not in allowed:
        raise InvalidArgumentError(
            f"{where}: {arg}={value!r} is not supported; allowed: {', '.join(allowed)} (as MONAI spells them, "
            f"optionally with arguments: [name, {{...}}]).")
    return name.lower(), dict(args)


def _check_args(where, arg, name, args, allowed):
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise InvalidArgumentError(
            f"{where}: {arg} {name!r} argument(s) {unknown} are not supported here; supported: "
            f"{', '.join(sorted(allowed)) or 'none'}. Drop them (their Keras equivalent would differ).")


def check_norm(norm, where):
    """Validate a MONAI norm spec; returns ``(name, args)`` with the defaults filled in."""
    name, args = split_spec("norm", norm, NORMS, where)
    if name == "batch":
        _check_args(where, "norm", name, args, {"eps", "momentum", "affine", "track_running_stats"})
        if not args.get("track_running_stats", True):
            raise InvalidArgumentError(f"{where}: norm={norm!r}: batch norm without running statistics "
                                       "normalises with batch statistics at inference; not supported.")
        args = {"eps": args.get("eps", 1e-5), "momentum": args.get("momentum", 0.1), "affine": args.get("affine", True)}
    elif name == "instance":
        _check_args(where, "norm", name, args, {"eps", "affine", "track_running_stats"})
        if args.get("track_running_stats", False):
            raise InvalidArgumentError(f"{where}: norm={norm!r}: instance norm with running statistics is not "
                                       "supported.")
        args = {"eps": args.get("eps", 1e-5), "affine": args.get("affine", False)}
    elif name == "group":
        _check_args(where, "norm", name, args, {"num_groups", "eps", "affine"})
        groups = args.get("num_groups")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise InvalidArgumentError(f"{where}: norm={norm!r}: group norm needs num_groups (a positive "
                                       "integer), e.g. norm=['group', {'num_groups': 8}].")
        args = {"num_groups": groups, "eps": args.get("eps", 1e-5), "affine": args.get("affine", True)}
    return name, args


def check_activation(activation, where):
    """Validate a MONAI activation spec; returns ``(name, args)`` with the defaults filled in."""
    if activation is None:
        raise InvalidArgumentError(f"{where}: activation=None is not supported; pass e.g. activation='relu'.")
    name, args = split_spec("activation", activation, ACTIVATIONS, where)
    args.pop("inplace", None)  # PyTorch memory option, no effect on values
    allowed = {"prelu": {"num_parameters", "init"}, "leakyrelu": {"negative_slope"}, "elu": {"alpha"},
               "gelu": {"approximate"}}.get(name, set())
    _check_args(where, "activation", name, args, allowed)
    if name == "prelu":
        args = {"num_parameters": args.get("num_parameters", 1), "init": float(args.get("init", 0.25))}
    elif name == "leakyrelu":
        args = {"negative_slope": float(args.get("negative_slope", 0.01))}
    elif name == "elu":
        args = {"alpha": float(args.get("alpha", 1.0))}
    elif name == "gelu" and args.get("approximate", "none") != "none":
        raise InvalidArgumentError(f"{where}: activation={activation!r}: only the exact gelu (approximate='none', "
                                   "PyTorch's default) is supported.")
    return name, args


def norm_layer(spec, name, spatial_dims, channels):
    """The Keras layer of a checked norm spec (None for no norm)."""
    kind, args = spec
    if kind is None:
        return None
    if kind == "batch":
        return L.BatchNormalization(axis=-1, epsilon=args["eps"], momentum=1.0 - args["momentum"],
                                    center=args["affine"], scale=args["affine"], name=name)
    if kind == "group" and channels % args["num_groups"]:
        raise InvalidArgumentError(f"norm group: {channels} channels are not divisible by num_groups="
                                   f"{args['num_groups']} (layer {name}); change the widths or num_groups.")
    groups = -1 if kind == "instance" else args["num_groups"]
    return L.GroupNormalization(groups=groups, epsilon=args["eps"], center=args["affine"],
                                scale=args["affine"], name=name)


def activation_layer(spec, name, spatial_dims, channels):
    """The Keras layer of a checked activation spec."""
    kind, args = spec
    if kind == "prelu":
        if args["num_parameters"] not in (1, channels):
            raise InvalidArgumentError(f"activation prelu: num_parameters={args['num_parameters']} must be 1 or "
                                       f"the channel count {channels} (layer {name}).")
        shared = list(range(1, spatial_dims + 1 + (args["num_parameters"] == 1)))
        return L.PReLU(alpha_initializer=keras.initializers.Constant(args["init"]), shared_axes=shared, name=name)
    if kind == "leakyrelu":
        return L.LeakyReLU(alpha=args["negative_slope"], name=name)
    if kind == "elu":
        return L.ELU(alpha=args["alpha"], name=name)
    return L.Activation(kind, name=name)


def _tuple(value, spatial_dims):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * spatial_dims


def torch_conv(x, filters, kernel_size, *, spatial_dims, strides=1, padding=None, use_bias=True, name,
               pad_name=None, padded=None):
    """A convolution padded as PyTorch's ``padding`` (default ``(k - 1) // 2``, MONAI's
    ``same_padding``). Stride 1 with an odd kernel is Keras' ``'same'``; otherwise an explicit
    ``ZeroPadding`` ``pad_name`` + ``'valid'``. ``padded``: an already padded input to reuse
    (MONAI's residual conv reads the same padded tensor as the unit's first conv).
    Returns ``(output, padded input or None)``."""
    k, s = _tuple(kernel_size, spatial_dims), _tuple(strides, spatial_dims)
    p = _tuple(padding, spatial_dims) if padding is not None else tuple((kk - 1) // 2 for kk in k)
    conv = zl.conv(spatial_dims)
    same = all(ss == 1 for ss in s) and all(kk % 2 == 1 and pp == (kk - 1) // 2 for kk, pp in zip(k, p))
    if same or not any(p):
        mode = "same" if same and any(kk > 1 for kk in k) else "valid"
        return conv(filters, k, strides=s, padding=mode, use_bias=use_bias, name=name)(x), None
    if padded is None:
        padded = zl.zero_pad(spatial_dims)(padding=tuple((pp, pp) for pp in p), name=pad_name or f"{name}_pad")(x)
    return conv(filters, k, strides=s, padding="valid", use_bias=use_bias, name=name)(padded), padded


def torch_conv_transpose(x, filters, kernel_size, *, spatial_dims, strides, use_bias=True, name, crop_name=None,
                         where="monai"):
    """PyTorch's ``ConvTranspose(kernel, stride, padding=(k - 1) // 2, output_padding=stride - 1)``
    (MONAI's transposed convolution): a ``'valid'`` Keras transposed convolution cropped by
    ``padding`` in front and ``kernel - stride - padding`` behind, so the output is ``stride`` times
    the input, aligned as PyTorch aligns it. Needs ``kernel >= 2 * stride - 1`` per axis."""
    k, s = _tuple(kernel_size, spatial_dims), _tuple(strides, spatial_dims)
    crops = []
    for kk, ss in zip(k, s):
        p = (kk - 1) // 2
        back = kk - ss - p
        if kk % 2 == 0 or back < 0:
            raise InvalidArgumentError(
                f"{where}: up_kernel_size={kernel_size!r} with stride {strides!r}: the transposed convolution "
                f"needs an odd kernel of at least 2 * stride - 1 = {2 * ss - 1} per axis (PyTorch pads the "
                "output of a smaller kernel with values that are not zero). Use up_kernel_size=3 for stride 2.")
        crops.append((p, back))
    y = zl.conv_transpose(spatial_dims)(filters, k, strides=s, padding="valid", use_bias=use_bias, name=name)(x)
    if any(c for pair in crops for c in pair):
        y = zl.cropping(spatial_dims)(cropping=tuple(crops), name=crop_name or f"{name}_crop")(y)
    return y
