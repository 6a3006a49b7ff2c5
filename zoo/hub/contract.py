"""The layer-name contract: one resolver for every question about a model's named parts.

Weight transfer (which layer is the first conv, which are class heads), ``freeze_encoder_epochs``
(which layers are the encoder), compression recipes (``exclude: [first_conv, classifier]``),
export and ``zoo info`` all ask :func:`contract`. The answers come from the layer names plus a
*contract spec*: the zoo's own convention by default, or a family spec from ``contracts:`` in
``registry.yaml`` (the keras.applications layouts keep their own layer names), named by an
entry's ``contract:`` key, with per-entry overrides.

A spec has four fields:

``first_conv``
    the name of the first convolution (the one whose input channels follow ``in_channels``);
    when no layer has that name, the first layer whose kernel has 3+ axes.
``classifier``
    names of the class-score layers, used where only names are known (a weights file); in a
    built model the class heads are found by walking back from each output (:func:`class_heads`).
``stage_outputs``
    regular expressions (full match) for the stage outputs. The first group of a pattern keys
    the stage: of the layers sharing a key, the last in model order is the stage's output
    (``conv(\\d)_block\\d+_out`` picks ``conv3_block4_out`` for stage 3 of ResNet-50); a pattern
    without a group names one layer. Stage outputs are ordered shallow to deep.
``aux``
    a regular expression for the layers of auxiliary (training-only) heads.

The *encoder* is every layer with weights that the deepest stage output depends on (a graph
walk, so a decoder or an auxiliary branch is never part of it).
"""
import dataclasses
import fnmatch
import re

from zoo.errors import InvalidArgumentError, did_you_mean
from zoo.hub._contract_spec import ROLES, SPEC_KEYS, ZOO_SPEC, check_spec, merged_spec  # noqa: F401 - public here
from zoo.hub.registry import get_registry
from zoo.record import attached


@dataclasses.dataclass(frozen=True)
class Contract:
    """The named parts of one model (layer names; see the module docstring)."""
    model: str
    first_conv: str
    classifiers: tuple
    aux: tuple
    stage_outputs: tuple
    encoder: tuple
    spec: dict

    def layers(self, selectors, model=None):
        """Layer names for a list of selectors: roles (``first_conv``, ``classifier``, ``aux``,
        ``encoder``, ``stage_outputs``) or shell-style globs on layer names (``"head_*"``).
        ``model`` is needed for globs; a selector that matches nothing is an error."""
        if isinstance(selectors, str):
            selectors = [selectors]
        names = [layer.name for layer in model.layers] if model is not None else None
        out = []
        for sel in selectors:
            if sel in ROLES:
                value = getattr(self, {"classifier": "classifiers"}.get(sel, sel))
                picked = [value] if isinstance(value, str) else list(value or ())
                if not picked:
                    raise InvalidArgumentError(f"{self.model}: the contract role {sel!r} ({ROLES[sel]}) names "
                                               "no layer in this model; remove it from the selection.")
            elif any(c in sel for c in "*?["):
                if names is None:
                    raise InvalidArgumentError(f"contract.layers: the glob {sel!r} needs model=.")
                picked = [n for n in names if fnmatch.fnmatchcase(n, sel)]
            elif names is not None and sel in names:
                picked = [sel]
            else:
                raise InvalidArgumentError(
                    f"{self.model}: {sel!r} is neither a contract role ({', '.join(ROLES)}), a layer name nor "
                    f"a glob that matches a layer.{did_you_mean(sel, list(ROLES) + (names or []))}")
            if not picked:
                raise InvalidArgumentError(f"{self.model}: the glob {sel!r} matches no layer; check the "
                                           "layer names with model.summary().")
            out += [n for n in picked if n not in out]
        return out

    def as_dict(self):
        return {"first_conv": self.first_conv, "classifier": list(self.classifiers), "aux": list(self.aux),
                "stage_outputs": list(self.stage_outputs), "encoder_layers": len(self.encoder)}


# --------------------------------------------------------------------------- graph helpers
def kernel_of(layer):
    """The layer's kernel variable (``kernel`` or ``depthwise_kernel``), or None."""
    for w in layer.weights:
        short = w.name.split("/")[-1].split(":")[0]
        if short in ("kernel", "depthwise_kernel"):
            return w
    return None


def inbound_layers(layer):
    """The layers feeding ``layer``'s first call."""
    node = layer._inbound_nodes[0] if layer._inbound_nodes else None
    if node is None:
        return []
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


# layers without weights that a class-score map passes through unchanged in its class axis
_THROUGH_ALL = ("Add", "Average", "Maximum", "Minimum", "Activation", "Softmax", "ReLU", "Dropout",
                "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                "UpSampling1D", "UpSampling2D", "UpSampling3D", "Cropping1D", "Cropping2D", "Cropping3D",
                "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
_THROUGH_FIRST = ("ResizeLike", "CenterCropLike")  # [x, reference]: only x carries the scores


def class_heads(model):
    """The layers with a kernel that produce the model's outputs.

    From each output, walk back through layers without weights that keep the class axis
    (Add, Activation, Dropout, resizes, crops, pads) to the first layers with weights; those
    with a kernel are heads (DeepLab's ``classifier`` and ``aux_classifier``, the four summed
    branches of DeepLab-v2, GoogLeNet's ``classifier``/``aux1``/``aux2``). A headless model whose
    output comes from a pooling, a flatten or a batch norm has none.
    """
    heads, seen = [], set()
    stack = [t._keras_history.layer for t in model.outputs]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.weights:
            if kernel_of(layer) is not None:
                heads.append(layer)
            continue
        kind = type(layer).__name__
        if kind in _THROUGH_ALL:
            stack.extend(inbound_layers(layer))
        elif kind in _THROUGH_FIRST:
            stack.extend(inbound_layers(layer)[:1])
    order = {id(layer): i for i, layer in enumerate(model.layers)}
    return sorted(heads, key=lambda layer: order.get(id(layer), 0))


def ancestors(model, name):
    """Names of every layer ``name`` depends on, itself included."""
    seen, stack = set(), [model.get_layer(name)]
    while stack:
        layer = stack.pop()
        if layer.name in seen:
            continue
        seen.add(layer.name)
        stack.extend(inbound_layers(layer))
    return seen


def _stage_outputs(names, patterns):
    picks = {}
    for index, name in enumerate(names):
        for p, pattern in enumerate(patterns):
            m = re.fullmatch(pattern, name)
            if m:
                picks[(p, m.group(1) if m.groups() else None)] = (index, name)
                break
    return tuple(name for index, name in sorted(picks.values()))


def _first_conv(model, name):
    layers = [layer for layer in model.layers if kernel_of(layer) is not None]
    for layer in layers:
        if layer.name == name:
            return layer.name
    return next((layer.name for layer in layers if len(kernel_of(layer).shape) >= 3), None)


def _specs():
    return get_registry().contracts


def entry_spec(entry):
    """The full contract spec of a registry entry."""
    return merged_spec(dict(entry.contract), _specs())


def _detect_spec(model):
    """The spec for a model without a registry name: the first family spec (in the registry's
    order) whose first conv is a layer of the model and each of whose stage patterns matches one,
    else the zoo convention."""
    names = [layer.name for layer in model.layers]
    specs = _specs()
    for key in specs:
        spec = merged_spec({"base": key}, specs)
        if spec["first_conv"] in names and all(any(re.fullmatch(p, n) for n in names)
                                               for p in spec["stage_outputs"]):
            return spec
    return dict(ZOO_SPEC)


def contract(model, entry=None):
    """The :class:`Contract` of a built Keras model: its layer names by role.

    Args:
        model: a functional ``keras.Model``. A generative entry's networks are asked one at a
            time (``contract(gan.critic)``).
        entry: a registry name or entry; default the entry the model was loaded as (its
            record's name, ``zoo.record.info_of``), else the family spec whose names the model has.

    Returns:
        A :class:`Contract` (first conv, classifier heads, auxiliary heads, stage outputs, encoder
        layers and the spec they were found with).

    Raises:
        InvalidArgumentError: ``model`` is not a functional ``keras.Model``.
        UnknownModelError: ``entry`` is a name the registry does not hold.
    """
    from zoo._keras import keras  # heavy: TensorFlow; zoo.hub must stay TF-free (zoo list, zoo info)
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs") or model.outputs is None:
        raise InvalidArgumentError(f"contract: expected a functional keras.Model; got {type(model).__name__}.")
    if isinstance(entry, str):
        entry = get_registry().get(entry)
    known = attached(model)
    if entry is None and known is not None:
        entry = get_registry().models.get(known.name)
    spec = entry_spec(entry) if entry is not None else _detect_spec(model)
    names = [layer.name for layer in model.layers]
    aux = tuple(n for n in names if re.fullmatch(spec["aux"], n))
    named = [n for n in spec["classifier"] if n in names and kernel_of(model.get_layer(n)) is not None]
    found = {h.name for h in class_heads(model)}  # once: the walk is not cheap on deep models
    heads = tuple(n for n in names if n not in aux and (n in named or n in found))
    stages = _stage_outputs(names, spec["stage_outputs"])
    encoder = ()
    if stages:
        inside = ancestors(model, stages[-1])
        encoder = tuple(layer.name for layer in model.layers
                        if layer.name in inside and layer.weights and layer.name not in aux)
    return Contract(model=getattr(entry, "name", None) or model.name, first_conv=_first_conv(model, spec["first_conv"]),
                    classifiers=heads, aux=aux, stage_outputs=stages, encoder=encoder, spec=spec)
