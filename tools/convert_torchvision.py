#!/usr/bin/env python
"""Convert a torchvision state dict into a zoo weights file (.weights.h5, .h5 or .npz).

    python tools/convert_torchvision.py resnet18-f37072fd.pth --model resnet18 \
        --out resnet18_imagenet.weights.h5 [--set width=64 ...] [--family resnet]
    python tools/convert_torchvision.py deeplabv3_resnet50_coco-cd0a2569.pth \
        --model deeplabv3_resnet50 --out deeplabv3_resnet50_coco_voc.weights.h5 --tag coco_voc

Families (``--family``; the default comes from the registry entry's builder module):

* ``resnet`` - ``torchvision.models.resnet18/34/50/101/152`` -> zoo.models.resnet (layout
  "torchvision": ``resnet18`` ... ``resnet50_tv`` ...)
* ``alexnet`` - ``torchvision.models.alexnet`` -> zoo.models.alexnet (``alexnet``)
* ``googlenet`` - ``torchvision.models.googlenet`` -> zoo.models.googlenet variant "bn"
  (``googlenet_bn``); torchvision's own checkpoint holds the (untrained) aux heads, so
  ``aux_heads`` is set from the state dict. torchvision builds its pretrained GoogLeNet with
  ``transform_input=True`` (ImageNet-normalised input re-normalised to ``(x - 0.5) / 0.5``
  inside the model), so the converted file records ``transform_input: true`` and the zoo model
  loaded from it applies the same transform; ``--set transform_input=false`` for a checkpoint
  trained without it.
* ``vgg`` - ``torchvision.models.vgg11..19`` and ``vgg*_bn`` -> zoo.models.vgg (``vgg11`` ...
  ``vgg19_bn``, keras.applications layer names)
* ``deeplabv3`` - ``torchvision.models.segmentation.deeplabv3_resnet50/101`` -> zoo.models.deeplab
  (``deeplabv3_resnet50/101``: variant "v3", output stride 8, ``head_conv``; other deeplab
  configs are refused). ``backbone.*`` maps as the resnet family; ``aux_head`` follows the state
  dict (an ``aux_loss=False`` checkpoint has no ``aux_classifier``). The model has two outputs,
  ``[out, aux]`` (torchvision's dict keys), both resized to the input.

``num_classes`` is taken from the state dict's classifier; ``--set`` overrides any other builder
keyword (e.g. ``--set width=8`` for a narrow test model). The builder keywords the file was
converted with are embedded in it, so ``zoo.load(NAME, weights=FILE)`` rebuilds the same model.

Steps: ``torch.load(..., weights_only=True)`` (never unpickles code) -> group the tensors by
module -> rename modules with the family's mapping (data below) -> convert each module:

* conv ``weight (O, I, kh, kw)`` -> ``kernel (kh, kw, I, O)``; 3D ``(O, I, d, h, w)`` -> ``(d, h, w, I, O)``;
  a transposed conv ``(I, O, kh, kw)`` becomes ``(kh, kw, O, I)`` by the same permutation
* linear ``weight (out, in)`` -> ``kernel (in, out)``; the first linear after a flatten is
  re-ordered from PyTorch's CHW flatten order to Keras' HWC order (``flatten`` entries below)
* BatchNorm ``weight, bias, running_mean, running_var`` -> ``gamma, beta, moving_mean,
  moving_variance`` (``num_batches_tracked`` is dropped)

then builds the registry model (``--model``, with ``num_classes`` taken from the state dict),
transfers the arrays *strictly* (every model layer and every tensor must be used, nothing may be
adapted or re-initialised), writes the file with ``zoo.save_weights`` and prints its sha256 and a
registry snippet. Only this tool imports torch (``pip install torch``; torchvision is not needed).

Mappings are data: ``rules`` are ``(torch module regex, keras layer template)``; a template's
``{2}`` is the regex group 2 and ``{2+1}`` that (numeric) group plus one. ``sequence`` maps the convs of
a ``torch.nn.Sequential`` (in index order) onto generated names; a BatchNorm right after a conv
gets ``<conv name>_bn``. ``flatten`` gives (H, W) of the feature map flattened before a linear.
"""
import argparse
import re
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, "") and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

_VGG_BLOCKS = {8: (1, 1, 2, 2, 2), 10: (2, 2, 2, 2, 2), 13: (2, 2, 3, 3, 3), 16: (2, 2, 4, 4, 4)}


def _vgg_names(n_convs):
    if n_convs not in _VGG_BLOCKS:
        raise SystemExit(f"a VGG state dict has 8, 10, 13 or 16 convs (VGG 11/13/16/19); got {n_convs}.")
    return [f"block{b}_conv{i}" for b, n in enumerate(_VGG_BLOCKS[n_convs], 1) for i in range(1, n + 1)]


def _prefixed(prefix, rules):
    """``rules`` for the same modules nested under ``prefix`` (e.g. a segmentation ``backbone.``)."""
    return [(re.escape(prefix) + pattern, template) for pattern, template in rules]


# torchvision.models.ResNet's body (everything but ``fc``) -> zoo.models.resnet layout="torchvision"
_RESNET_BODY = [
    (r"conv1", "stem_conv"), (r"bn1", "stem_bn"),
    (r"layer(\d+)\.(\d+)\.conv(\d)", "stage{1}_block{2+1}_conv{3}"),
    (r"layer(\d+)\.(\d+)\.bn(\d)", "stage{1}_block{2+1}_bn{3}"),
    (r"layer(\d+)\.(\d+)\.downsample\.0", "stage{1}_block{2+1}_downsample_conv"),
    (r"layer(\d+)\.(\d+)\.downsample\.1", "stage{1}_block{2+1}_downsample_bn")]

FAMILIES = {
    # torchvision.models.resnet18/34/50/101/152 -> zoo.models.resnet layout="torchvision"
    "resnet": {"rules": _RESNET_BODY + [(r"fc", "classifier")]},
    # torchvision.models.alexnet -> zoo.models.alexnet variant="torchvision"
    "alexnet": {"rules": [
        (r"features\.0", "stem_conv"), (r"features\.3", "stage2_conv1"),
        (r"features\.6", "stage3_conv1"), (r"features\.8", "stage3_conv2"),
        (r"features\.10", "stage3_conv3"), (r"classifier\.1", "head_fc1"),
        (r"classifier\.4", "head_fc2"), (r"classifier\.6", "classifier")],
        "flatten": {"head_fc1": (6, 6)}},
    # torchvision.models.googlenet (BasicConv2d = conv + bn, InceptionAux) -> zoo.models.googlenet
    # variant="bn"; aux_heads follows the state dict (aux1/aux2 present -> aux_heads=True)
    "googlenet": {"rules": [
        (r"conv1\.(conv|bn)", "stem_{1}"), (r"conv2\.(conv|bn)", "stage2_conv1_{1}"),
        (r"conv3\.(conv|bn)", "stage2_conv2_{1}"),
        (r"inception(\d[a-e])\.branch1\.(conv|bn)", "inception_{1}_1x1_{2}"),
        (r"inception(\d[a-e])\.branch2\.0\.(conv|bn)", "inception_{1}_3x3_reduce_{2}"),
        (r"inception(\d[a-e])\.branch2\.1\.(conv|bn)", "inception_{1}_3x3_{2}"),
        (r"inception(\d[a-e])\.branch3\.0\.(conv|bn)", "inception_{1}_5x5_reduce_{2}"),
        (r"inception(\d[a-e])\.branch3\.1\.(conv|bn)", "inception_{1}_5x5_{2}"),
        (r"inception(\d[a-e])\.branch4\.1\.(conv|bn)", "inception_{1}_pool_proj_{2}"),
        (r"aux(\d)\.conv\.(conv|bn)", "aux{1}_{2}"), (r"aux(\d)\.fc1", "aux{1}_fc"),
        (r"aux(\d)\.fc2", "aux{1}"), (r"fc", "classifier")],
        "flatten": {"aux1_fc": (4, 4), "aux2_fc": (4, 4)},
        "requires": {"variant": "bn"}, "aux_flag": "aux_heads",
        "defaults": {"transform_input": True}},  # torchvision's pretrained GoogLeNet
    # torchvision.models.vgg11..19 (and _bn) -> zoo.models.vgg (keras.applications names)
    "vgg": {"sequence": ("features", _vgg_names),
            "rules": [(r"classifier\.0", "fc1"), (r"classifier\.3", "fc2"), (r"classifier\.6", "predictions")],
            "flatten": {"fc1": (7, 7)}},
    # torchvision.models.segmentation.deeplabv3_resnet50/101 -> zoo.models.deeplab variant="v3"
    # with head_conv=True (registry deeplabv3_resnet50/101). DeepLabHead = classifier.0 (ASPP:
    # convs.0 1x1, convs.1-3 atrous, convs.4 pooling = [pool, conv, bn, relu], project), 1/2 the
    # 3x3 head conv/bn, 4 the classifier; FCNHead aux_classifier = 0 conv, 1 bn, 4 conv.
    # aux_head follows the state dict (aux_loss=False checkpoints have no aux_classifier).
    "deeplabv3": {"rules": _prefixed("backbone.", _RESNET_BODY) + [
        (r"classifier\.0\.convs\.4\.1", "aspp_pool_conv"), (r"classifier\.0\.convs\.4\.2", "aspp_pool_bn"),
        (r"classifier\.0\.convs\.([0-3])\.0", "aspp_conv{1}_conv"),
        (r"classifier\.0\.convs\.([0-3])\.1", "aspp_conv{1}_bn"),
        (r"classifier\.0\.project\.0", "aspp_project_conv"), (r"classifier\.0\.project\.1", "aspp_project_bn"),
        (r"classifier\.1", "head_conv"), (r"classifier\.2", "head_bn"), (r"classifier\.4", "classifier"),
        (r"aux_classifier\.0", "aux_conv"), (r"aux_classifier\.1", "aux_bn"),
        (r"aux_classifier\.4", "aux_classifier")],
        "requires": {"variant": "v3", "head_conv": True, "backbone_layout": "torchvision", "norm": "batch"},
        "aux_flag": "aux_head"},
}
_BUILDER_FAMILY = {"zoo.models.resnet": "resnet", "zoo.models.alexnet": "alexnet", "zoo.models.vgg": "vgg",
                   "zoo.models.googlenet": "googlenet", "zoo.models.deeplab": "deeplabv3"}


def _template(template, match):
    def sub(m):
        value = match.group(int(m.group(1)))
        return str(int(value) + int(m.group(2))) if m.group(2) else value
    return re.sub(r"\{(\d+)([+-]\d+)?\}", sub, template)


def group_modules(state_dict):
    """``{module: {param: ndarray}}`` in state-dict order (num_batches_tracked dropped)."""
    modules = {}
    for key, tensor in state_dict.items():
        module, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        modules.setdefault(module, {})[param] = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") \
            else np.asarray(tensor)
    return modules


def rename(modules, family):
    """``{torch module: keras layer name}``; every module must be mapped."""
    spec = FAMILIES[family]
    names = {}
    if "sequence" in spec:
        prefix, make = spec["sequence"]
        seq = sorted((int(m.split(".")[1]), m) for m in modules
                     if re.fullmatch(rf"{re.escape(prefix)}\.\d+", m))
        convs = [m for _, m in seq if "running_mean" not in modules[m]]
        conv_names = dict(zip(convs, make(len(convs))))
        last = None
        for _, m in seq:
            if m in conv_names:
                names[m] = last = conv_names[m]
            elif last is not None:
                names[m] = f"{last}_bn"
    for module in modules:
        if module in names:
            continue
        for pattern, template in spec["rules"]:
            match = re.fullmatch(pattern, module)
            if match:
                names[module] = _template(template, match)
                break
        else:
            raise SystemExit(f"state dict module {module!r} has no mapping in family {family!r}; add a "
                             "rule to FAMILIES in tools/convert_torchvision.py (or pick the right --family).")
    return names


def convert_module(params, flatten_hw=None):
    """One torch module's tensors -> the Keras layer's arrays, in Keras weight order."""
    if "running_mean" in params:
        return [params["weight"], params["bias"], params["running_mean"], params["running_var"]]
    w = params["weight"]
    if w.ndim >= 3:
        arrays = [np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))]
    elif w.ndim == 2:
        if flatten_hw is not None:  # PyTorch flattens C,H,W; Keras flattens H,W,C
            h, wd = flatten_hw
            c = w.shape[1] // (h * wd)
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        arrays = [w.T]
    else:
        raise SystemExit(f"cannot convert a weight of shape {w.shape}.")
    return arrays + ([params["bias"]] if "bias" in params else [])


def to_layers(state_dict, family):
    """``{keras layer: [arrays]}`` from a torchvision state dict."""
    modules = group_modules(state_dict)
    names = rename(modules, family)
    flatten = FAMILIES[family].get("flatten", {})
    return {names[m]: [np.ascontiguousarray(a, dtype=np.float32)
                       for a in convert_module(p, flatten.get(names[m]))] for m, p in modules.items()}


def _config(entry, overrides=None):
    """The builder keywords ``entry`` builds with: builder defaults < registry config < overrides."""
    import inspect

    from zoo.hub.registry import thaw

    params = inspect.signature(entry.resolve_builder()).parameters.items()
    return {**{k: p.default for k, p in params if p.default is not inspect.Parameter.empty},
            **thaw(entry.config), **(overrides or {})}


def _fit_config(entry, family, kwargs, layers):
    """Check the family's ``requires`` against the model's config; set its ``aux_flag`` from the state dict.

    Returns the overrides to add: the aux flag, only where the model's config disagrees with the
    state dict (aux modules present or not) and the user did not set it.
    """
    from zoo.hub.registry import get_registry

    spec = FAMILIES[family]
    config = _config(entry, kwargs)
    requires = spec.get("requires", {})
    wrong = {k: config.get(k) for k, v in requires.items() if config.get(k) != v}
    if wrong:
        registry = get_registry()
        fits = [e.name for e in map(registry.get, registry.names())
                if _BUILDER_FAMILY.get(e.builder.split(":")[0]) == family
                and all(_config(e).get(k) == v for k, v in requires.items())]
        raise SystemExit(
            f"a torchvision {family} state dict converts only into a model with "
            f"{', '.join(f'{k}={v!r}' for k, v in requires.items())}; {entry.name} has "
            f"{', '.join(f'{k}={v!r}' for k, v in wrong.items())}. Use --model "
            f"{' or '.join(fits) or '<an entry with that config>'} (or --set those arguments).")
    flag = spec.get("aux_flag")
    if flag and flag not in kwargs:
        has_aux = any(name.startswith("aux") for name in layers)
        if bool(config.get(flag)) != has_aux:
            return {flag: has_aux}
    return {}


def load_state_dict(path):
    import torch  # only this tool needs torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return obj


def convert(state_dict, model_name, out, *, family=None, overrides=None, tag="imagenet", verbose=True):
    """Build ``model_name``, load the converted state dict strictly, save to ``out``."""
    import zoo
    from zoo.hub import _weightfile, weights
    from zoo.hub.registry import get_registry

    entry = get_registry().get(model_name)
    family = family or _BUILDER_FAMILY.get(entry.builder.split(":")[0])
    if family not in FAMILIES:
        raise SystemExit(f"no torchvision mapping for {model_name!r} ({entry.builder}); pass --family "
                         f"({', '.join(FAMILIES)}).")
    layers = to_layers(state_dict, family)
    head = next((n for n in ("classifier", "predictions") if n in layers), None)
    kwargs = dict(overrides or {})
    if head is not None:
        kwargs.setdefault("num_classes", int(layers[head][0].shape[-1]))
    kwargs.update(_fit_config(entry, family, kwargs, layers))
    for key, value in FAMILIES[family].get("defaults", {}).items():
        kwargs.setdefault(key, value)
    model = zoo.load(model_name, **kwargs)
    wf = _weightfile.WeightFile("<state dict>", "npz", {k: [(None, a) for a in v] for k, v in layers.items()},
                                list(layers), "name")
    plan, parts = weights.plan_transfer(model, wf)
    if parts["adapted"] or parts["reinitialised"] or parts["skipped"]:
        raise SystemExit(f"the state dict does not fit {model_name} exactly: {parts}")
    for _, variables, values in plan:
        for var, value in zip(variables, values):
            var.assign(value)
    saved = zoo.save_weights(model, out, model_name=model_name, tag=tag, verbose=False,
                             config={k: v for k, v in kwargs.items() if k != "input_shape"} or None)
    if verbose:
        print(f"sha256:{saved.sha256}  {saved.path}  ({saved.size} bytes, {len(plan)} layers)")
        if kwargs.get("transform_input"):
            print("transform_input=True (recorded in the file): the model takes ImageNet-normalised RGB, as "
                  "torchvision's pretrained GoogLeNet does, and re-normalises it to (x - 0.5) / 0.5 itself.")
        print(saved.snippet)
    return saved


def _parse_value(text):
    import yaml
    return yaml.safe_load(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_dict", help="torchvision .pth file (a state dict)")
    parser.add_argument("--model", required=True, help="zoo registry name, e.g. resnet18")
    parser.add_argument("--out", required=True, help="output file: .weights.h5, .h5 or .npz")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="mapping (default: from the builder)")
    parser.add_argument("--tag", default="imagenet", help="tag in the printed registry snippet")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="builder keyword override (YAML value), e.g. --set width=32")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = _parse_value(value)
    return convert(load_state_dict(args.state_dict), args.model, args.out, family=args.family,
                   overrides=overrides, tag=args.tag)


if __name__ == "__main__":
    main()
