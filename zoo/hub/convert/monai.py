"""MONAI networks -> zoo models: a bundle's ``network_def`` to builder keywords, a ``state_dict`` to
the layers of the built model.

Supported classes: ``UNet`` (:func:`zoo.models.monai_unet.monai_unet`) and ``SegResNet``
(:func:`zoo.models.segresnet.segresnet`). ``_target_`` may be the class name or its dotted path
(``monai.networks.nets.UNet``). Every tensor of the state dict must find its layer and every layer
its tensors; a missing, extra or misshapen tensor is a WeightsError naming it.

:func:`to_state_dict` is the inverse: a zoo model (e.g. fine-tuned) back to the MONAI module's
``state_dict`` (NumPy arrays; ``net.load_state_dict({k: torch.from_numpy(v) ...})``).

Tensor layout: PyTorch convolution kernels ``(out, in, *k)`` become Keras ``(*k, in, out)``
(transposed: ``(in, out, *k)`` -> ``(*k, out, in)``); batch norm ``weight/bias/running_mean/
running_var`` -> ``gamma/beta/moving_mean/moving_variance``; group norm ``weight/bias`` ->
``gamma/beta``; PReLU ``weight`` -> ``alpha``.
"""
import re

from zoo.errors import InvalidArgumentError, WeightsError
from zoo.hub.convert import _torch

CLASSES = {"UNet": "zoo.models.monai_unet:monai_unet", "SegResNet": "zoo.models.segresnet:segresnet"}
# MONAI keyword -> zoo keyword (None: same name); keywords not listed are refused
_UNET_KEYS = {"spatial_dims": None, "dimensions": "spatial_dims", "in_channels": None, "out_channels": "num_classes",
              "channels": None, "strides": None, "kernel_size": None, "up_kernel_size": None, "num_res_units": None,
              "act": "activation", "norm": None, "dropout": None, "bias": None, "adn_ordering": None}
_SEGRESNET_KEYS = {"spatial_dims": None, "init_filters": None, "in_channels": None, "out_channels": "num_classes",
                   "dropout_prob": "dropout", "act": "activation", "norm": None, "blocks_down": None,
                   "blocks_up": None, "upsample_mode": None, "use_conv_final": None, "norm_name": None,
                   "num_groups": None}
# MONAI's defaults where they differ from the zoo builder's (the zoo builders use MONAI's own defaults,
# except SegResNet's norm spelling)
_SEGRESNET_DEFAULTS = {"spatial_dims": 3, "init_filters": 8, "in_channels": 1, "num_classes": 2}


def class_name(network_def, where="from_monai"):
    if not isinstance(network_def, dict) or "_target_" not in network_def:
        raise InvalidArgumentError(f"{where}: network_def must be a bundle's network_def mapping with a '_target_' "
                                   f"(e.g. {{'_target_': 'UNet', 'spatial_dims': 3, ...}}); got {network_def!r:.100}.")
    target = network_def["_target_"]
    name = target.rsplit(".", 1)[-1] if isinstance(target, str) else None
    if name not in CLASSES or (isinstance(target, str) and "." in target and not target.startswith("monai.")):
        raise InvalidArgumentError(f"{where}: _target_={target!r} is not a supported MONAI network; supported: "
                                   f"{', '.join(CLASSES)} (or monai.networks.nets.<name>).")
    return name


def _plain(value, key, where):
    if isinstance(value, str) and value.startswith(("$", "@", "%")):
        raise InvalidArgumentError(f"{where}: network_def[{key!r}]={value!r} is a bundle expression or reference; "
                                   "resolve it first (monai.bundle.ConfigParser(...).get_parsed_content) and pass "
                                   "plain values.")
    if isinstance(value, tuple):
        return [_plain(v, key, where) for v in value]
    if isinstance(value, list):
        return [_plain(v, key, where) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, key, where) for k, v in value.items()}
    return value


def builder_kwargs(network_def, where="from_monai"):
    """``(builder string, zoo keyword arguments)`` for a bundle's ``network_def``."""
    cls = class_name(network_def, where)
    table = _UNET_KEYS if cls == "UNet" else _SEGRESNET_KEYS
    unknown = sorted(k for k in network_def if k != "_target_" and k not in table)
    if unknown:
        raise InvalidArgumentError(f"{where}: {cls} argument(s) {unknown} are not supported by the zoo's {cls}; "
                                   f"supported: {', '.join(sorted(table))}.")
    kwargs = {}
    for key, value in network_def.items():
        if key != "_target_":
            kwargs[table[key] or key] = _plain(value, key, where)
    if cls == "UNet":
        if "spatial_dims" not in kwargs:
            raise InvalidArgumentError(f"{where}: a UNet network_def needs spatial_dims (MONAI requires it).")
        drop = kwargs.get("dropout")
        if isinstance(drop, list) and len(drop) == 2 and isinstance(drop[1], dict) and \
                str(drop[0]).lower() == "dropout" and set(drop[1]) <= {"p", "inplace"}:
            kwargs["dropout"] = drop[1].get("p", 0.5)
        elif "dropout" in kwargs and drop is None:
            kwargs["dropout"] = 0.0
        return CLASSES[cls], kwargs
    kwargs = {**_SEGRESNET_DEFAULTS, **kwargs}
    norm_name, groups = kwargs.pop("norm_name", ""), kwargs.pop("num_groups", 8)
    if norm_name:
        if str(norm_name).lower() != "group":
            raise InvalidArgumentError(f"{where}: norm_name={norm_name!r}: MONAI accepts only 'group' there.")
        kwargs["norm"] = ["group", {"num_groups": groups}]
    if "dropout" in kwargs and kwargs["dropout"] is None:
        kwargs["dropout"] = 0.0
    if not kwargs.pop("use_conv_final", True):
        kwargs["num_classes"] = 0
    return CLASSES[cls], kwargs


# --------------------------------------------------------------------------- UNet layer -> key
def _unet_prefix(kind, level, levels):
    if kind == "stage":
        return "model." + "1.submodule." * (level - 1) + ("" if level == levels else "0.")
    return "model." + "1.submodule." * (level - 1) + "2."


def unet_keys(model, kwargs):
    """``{layer name: torch key prefix}`` for every layer with weights of a ``monai_unet`` model."""
    from zoo._keras import keras  # heavy: importing zoo.hub (zoo list) must not start TensorFlow
    L = keras.layers
    levels = len(kwargs.get("channels", (16, 32, 64, 128, 256)))
    res = kwargs.get("num_res_units", 0) > 0
    keys = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name == "stem_conv":
            name = "stage1_unit0_conv" if res else "stage1_conv"
        elif name == "classifier":
            name = "up1_unit0_conv" if res else "up1_upconv"
        elif name.endswith("_out"):  # a block's last ADN layer
            name = name[:-4] + ("_act" if isinstance(layer, L.PReLU) else "_norm")
        m = re.fullmatch(r"(stage|up)(\d+)_(?:unit(\d+)_)?(conv|norm|act|residual|upconv)", name)
        if m is None:
            raise WeightsError(f"monai UNet conversion: the model's layer {layer.name!r} has no MONAI counterpart; "
                               "was the model built by zoo.models.monai_unet?")
        kind, level, unit, part = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        base = _unet_prefix(kind, level, levels)
        adn = {"norm": "adn.N", "act": "adn.A"}
        if kind == "stage":
            if part == "residual":
                keys[layer.name] = base + "residual"
            elif unit is not None:
                keys[layer.name] = base + f"conv.unit{unit}." + ("conv" if part == "conv" else adn[part])
            else:
                keys[layer.name] = base + ("conv" if part == "conv" else adn[part])
        else:
            if unit is not None:  # the decoder's residual unit
                keys[layer.name] = base + "1.conv.unit0." + ("conv" if part == "conv" else adn[part])
            else:
                keys[layer.name] = base + ("0." if res else "") + ("conv" if part == "upconv" else adn[part])
    return keys


# --------------------------------------------------------------------------- SegResNet layer -> key
def segresnet_keys(model, kwargs):
    """``{layer name: torch key prefix}`` for every layer with weights of a ``segresnet`` model."""
    stages = len(kwargs.get("blocks_down", (1, 2, 2, 4)))
    keys = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        name = layer.name
        m = re.fullmatch(r"(stage|up)(\d+)_block(\d+)_(norm1|norm2|conv1|conv2)", name)
        if name == "stem_conv":
            keys[name] = "convInit.conv"
        elif m:
            kind, i, j, part = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            suffix = part + (".conv" if part.startswith("conv") else "")
            if kind == "stage":  # down_layers[i-1] = (pre_conv, block 1, block 2 ...)
                keys[name] = f"down_layers.{i - 1}.{j}.{suffix}"
            else:
                keys[name] = f"up_layers.{stages - 1 - i}.{j - 1}.{suffix}"
        elif re.fullmatch(r"stage(\d+)_down_conv", name):
            keys[name] = f"down_layers.{int(name[5:].split('_')[0]) - 1}.0.conv"
        elif re.fullmatch(r"up(\d+)_conv", name):
            keys[name] = f"up_samples.{stages - 1 - int(name[2:].split('_')[0])}.0.conv"
        elif re.fullmatch(r"up(\d+)_upsample", name):  # upsample_mode="deconv"
            keys[name] = f"up_samples.{stages - 1 - int(name[2:].split('_')[0])}.1.deconv"
        elif name == "head_norm":
            keys[name] = "conv_final.0"
        elif name == "classifier":
            keys[name] = "conv_final.2.conv"
        else:
            raise WeightsError(f"monai SegResNet conversion: the model's layer {name!r} has no MONAI counterpart; "
                               "was the model built by zoo.models.segresnet?")
    return keys


def load_state_dict(model, state, kwargs, cls, source):
    """Assign the MONAI ``state`` (a state dict of tensors/arrays) to ``model``; every tensor must be
    used and every layer with weights filled, else nothing is assigned (WeightsError)."""
    arrays = _torch.as_arrays(state, source)
    tensors = _torch.Tensors(arrays, source)
    key_map = unet_keys(model, kwargs) if cls == "UNet" else segresnet_keys(model, kwargs)
    values = []
    for layer in model.layers:
        if layer.weights:
            _torch.assign(layer, tensors, key_map[layer.name], values)
    # SegResNet(use_conv_final=False) still holds its (unused) conv_final module: its tensors have no place
    headless = cls == "SegResNet" and "classifier" not in [layer.name for layer in model.layers]
    tensors.finish(ignore=("conv_final.",) if headless else ())
    for variable, value in values:
        variable.assign(value)
    return model


def to_state_dict(model, network_def):
    """The MONAI ``state_dict`` of a zoo model built for ``network_def`` (by :func:`zoo.from_monai`, or a
    registry entry's builder with the same configuration): ``{key: numpy array}`` in PyTorch's layouts and
    names, the inverse of :func:`load_state_dict` (a batch norm's ``num_batches_tracked`` is 0).

    Raises:
        InvalidArgumentError: ``network_def`` is not a supported MONAI network.
        WeightsError: a layer of ``model`` has no MONAI counterpart (another builder or configuration).
    """
    builder, kwargs = builder_kwargs(network_def, "to_state_dict")
    cls = class_name(network_def, "to_state_dict")
    key_map = unet_keys(model, kwargs) if cls == "UNet" else segresnet_keys(model, kwargs)
    state = {}
    for layer in model.layers:
        if layer.weights:
            state.update(_torch.tensors_of(layer, key_map[layer.name]))
    return state
