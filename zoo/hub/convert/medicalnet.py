"""MedicalNet ``.pth`` files -> ``zoo.models.medicalnet`` models.

A MedicalNet checkpoint is ``{"state_dict": {...}}`` saved from an ``nn.DataParallel`` model, so
its keys start with ``module.`` (both are accepted, as is a bare state dict). Keys are
torchvision's: ``conv1``, ``bn1``, ``layer{i}.{j}.conv{k}``/``bn{k}``, ``layer{i}.{j}.downsample.0/1``
(type B shortcuts), MedicalNet's segmentation head ``conv_seg.0/1/3/4/6``, or MONAI ResNet's ``fc``
(the same files load into ``monai.networks.nets.resnet``; so do MONAI's state dicts here, built
with ``dilated=False``). The published files hold the backbone only: a model's head that the file
lacks keeps its initial weights (reported), a head of the file the model lacks is skipped.
"""
import re

from zoo.errors import WeightsError
from zoo.hub.convert import _torch

HEADS = ("conv_seg.", "fc.")
_SEG = {"head_upconv": "conv_seg.0", "head_bn1": "conv_seg.1", "head_conv": "conv_seg.3", "head_bn2": "conv_seg.4"}


def state_dict(obj, source):
    """The state dict inside a MedicalNet checkpoint, without DataParallel's ``module.`` prefixes."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{source}: expected a MedicalNet checkpoint ({{'state_dict': ...}}) or a state dict; got "
                           f"{type(obj).__name__}.")
    return {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in obj.items()}


def key_of(layer):
    """The state-dict prefix of a zoo MedicalNet layer (None for layers without a counterpart)."""
    from zoo._keras import keras  # heavy: importing zoo.hub (zoo list) must not start TensorFlow
    name = layer.name
    if name == "stem_conv":
        return "conv1"
    if name == "stem_bn":
        return "bn1"
    if name in _SEG:
        return _SEG[name]
    if name == "classifier":
        return "fc" if isinstance(layer, keras.layers.Dense) else "conv_seg.6"
    m = re.fullmatch(r"stage(\d)_block(\d+)_(conv|bn)(\d)", name)
    if m:
        return f"layer{m.group(1)}.{int(m.group(2)) - 1}.{m.group(3)}{m.group(4)}"
    m = re.fullmatch(r"stage(\d)_block(\d+)_downsample_(conv|bn)", name)
    if m:
        return f"layer{m.group(1)}.{int(m.group(2)) - 1}.downsample.{0 if m.group(3) == 'conv' else 1}"
    return None


def load_state(model, state, source="the state dict"):
    """Assign a MedicalNet/MONAI-ResNet state dict to ``model``; returns ``{"loaded": [...],
    "reinitialised": {...}, "skipped": [...]}``. Every backbone tensor must be used."""
    arrays = _torch.as_arrays(state_dict(state, source), source)
    tensors = _torch.Tensors(arrays, source)
    values, report = [], {"loaded": [], "reinitialised": {}, "skipped": []}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = key_of(layer)
        if prefix is None:
            raise WeightsError(f"MedicalNet conversion: the model's layer {layer.name!r} has no MedicalNet counterpart;"
                               " was the model built by zoo.models.medicalnet?")
        is_head = (prefix + ".").startswith(HEADS)
        if is_head and not tensors.has(f"{prefix}.weight"):
            report["reinitialised"][layer.name] = "not in the file (its weights are the backbone's only)"
            continue
        if layer.name.endswith("downsample_conv") and not layer.use_bias and tensors.has(f"{prefix}.bias"):
            raise WeightsError(f"{source}: tensor {prefix + '.bias'!r}: the file's shortcut convolutions have a bias "
                               "(MONAI's bias_downsample=True), the model's have none; not supported.")
        _torch.assign(layer, tensors, prefix, values)
        report["loaded"].append(layer.name)
    report["skipped"] = sorted({k.split(".")[0] for k in arrays if k.startswith(HEADS) and k not in tensors.used})
    tensors.finish(ignore=HEADS)
    for variable, value in values:
        variable.assign(value)
    return report


def load_file(model, path):
    """Read a MedicalNet ``.pth`` (``torch.load(weights_only=True)``) into ``model``."""
    return load_state(model, _torch.load(path, "MedicalNet weights"), str(path))
