"""Read and validate ``registry.yaml`` into frozen dataclasses; resolve names.

The registry is data: it names a builder inside the ``zoo`` package, the builder's
keyword arguments, the reference parameter count, the paper, the weights and the
compression recipes. Extra registry files can be named in ``ZOO_REGISTRY``
(``os.pathsep``-separated); they may add entries and weights, never replace them, and
their builders must live inside the ``zoo`` package too.
"""
import dataclasses
import fnmatch
import importlib
import os
import types
from pathlib import Path

import yaml

from zoo.errors import RegistryError, UnknownModelError, did_you_mean
from zoo.hub.contract import SPEC_KEYS, check_spec

TASKS = ("classification", "segmentation", "generation")
ENV_VAR = "ZOO_REGISTRY"

_MODEL_KEYS = {
    "builder": "module:function inside the zoo package (required)",
    "config": "builder keyword arguments of this variant",
    "task": f"one of {', '.join(TASKS)} (required)",
    "spatial_dims": "list of supported spatial dims, e.g. [2, 3] (required)",
    "input": "{channels, size, min_size}: reference input and smallest usable size",
    "params": "Keras total parameter count at the reference config (required)",
    "trainable_params": "Keras trainable parameter count at the reference config",
    "reference": "builder keyword overrides that define the reference config",
    "sweep": "{size, config}: what the generic test sweep builds",
    "paper": "citation of the architecture's paper",
    "notes": "how the entry deviates from the paper and why",
    "mirrors": "the model of another library whose layout and weights this entry matches",
    "weights": "{tag: weight spec}",
    "recipes": "names of compression recipes that apply",
    "contract": "the layer-name contract: a name from contracts: or {base, first_conv, classifier, "
                "stage_outputs, aux} (zoo/hub/contract.py)",
}
_INPUT_KEYS = {"channels", "size", "min_size"}
_SWEEP_KEYS = {"size", "config", "dims"}
_WEIGHT_KEYS = {
    "url": "https://, file:// or a path relative to the registry file (required)",
    "hash": "'sha256:<hex>' or 'md5:<hex>' (required)",
    "size": "file size in bytes",
    "format": "h5 | weights.h5 | npz | safetensors (default: from the URL's suffix)",
    "in_channels": "input channels the weights were trained with",
    "num_classes": "classes of the classifier in the file (0 = headless)",
    "spatial_dims": "2 or 3",
    "config": "builder keyword arguments the file was saved from",
    "preprocessing": "how inputs must be prepared: {mode | mean/std, size, channel_order}",
    "labels": "class names, or where to find them",
    "license": "license of the weights",
    "source": "where the weights come from (paper, project, training run)",
    "notes": "anything else a user must know",
}
_RECIPE_KINDS = ("prune", "qat", "cluster", "ptq", "chain", "distill")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise RegistryError(
                f"{node.start_mark.name}: duplicate key {key!r} at line {key_node.start_mark.line + 1}"
                f" (first at line {seen[key] + 1}); each key may appear once - remove one of them.")
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _freeze(value):
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value):
    """Plain dicts and lists from frozen registry data (for kwargs, JSON, YAML)."""
    if isinstance(value, (dict, types.MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    tag: str
    url: str
    hash: str
    size: int = None
    format: str = None
    in_channels: int = None
    num_classes: int = None
    spatial_dims: int = 2
    config: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    preprocessing: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    labels: object = None
    license: str = None
    source: str = None
    notes: str = None
    origin: str = None  # the registry file that declared it

    @property
    def hash_algorithm(self):
        return self.hash.split(":", 1)[0]

    @property
    def hash_value(self):
        return self.hash.split(":", 1)[1].lower()


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    options: types.MappingProxyType


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str
    task: str
    spatial_dims: tuple
    params: int
    config: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    input: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    trainable_params: int = None
    reference: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    sweep: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    paper: str = None
    notes: str = None
    mirrors: str = None
    weights: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    recipes: tuple = ()
    contract: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    origin: str = None

    def resolve_builder(self):
        """Import and return the builder function (only from inside the zoo package)."""
        module_name, func_name = self.builder.split(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, func_name)
        except AttributeError:
            raise RegistryError(
                f"{self.origin}: entry {self.name!r}: builder {self.builder!r} names no function "
                f"{func_name!r} in {module_name}; fix the builder string.") from None

    def reference_kwargs(self):
        """Builder kwargs of the reference config, where ``params`` is counted."""
        kwargs = dict(thaw(self.config))
        channels = self.input.get("channels", 3)
        size = self.input.get("size")
        kwargs.setdefault("in_channels", channels)
        kwargs.setdefault("spatial_dims", self.spatial_dims[0])
        if size is not None:
            kwargs.setdefault("input_shape", (size,) * kwargs["spatial_dims"] + (kwargs["in_channels"],))
        kwargs.update(thaw(self.reference))
        return kwargs

    def as_dict(self):
        d = {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["weights"] = {t: {f.name: thaw(getattr(w, f.name)) for f in dataclasses.fields(w)
                            if getattr(w, f.name) not in (None, {}, ())}
                        for t, w in self.weights.items()}
        return {k: v for k, v in d.items() if v not in (None, {}, (), [])}


def _check_keys(where, data, allowed):
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}.")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RegistryError(
            f"{where}: unknown key(s) {', '.join(repr(u) for u in unknown)}; allowed keys: "
            f"{', '.join(sorted(allowed))}.{did_you_mean(unknown[0], allowed)}")


def _check_builder(where, builder):
    if not isinstance(builder, str) or builder.count(":") != 1:
        raise RegistryError(f"{where}: builder {builder!r} must look like 'zoo.models.resnet:resnet'.")
    module, func = builder.split(":")
    if not (module == "zoo" or module.startswith("zoo.")) or not func.isidentifier() or \
            not all(part.isidentifier() for part in module.split(".")):
        raise RegistryError(
            f"{where}: builder {builder!r} is outside the zoo package; a registry may only name "
            "builders in zoo.* (write a builder in zoo/models/ or use an existing one with config:).")


def _parse_weight(where, tag, data, origin):
    _check_keys(f"{where}: weights {tag!r}", data, _WEIGHT_KEYS)
    for required in ("url", "hash"):
        if required not in data:
            raise RegistryError(f"{where}: weights {tag!r} lacks {required!r} ({_WEIGHT_KEYS[required]}).")
    algo, _, digest = str(data["hash"]).partition(":")
    if algo not in ("sha256", "md5") or not digest or any(c not in "0123456789abcdefABCDEF" for c in digest) \
            or len(digest) != {"sha256": 64, "md5": 32}[algo]:
        raise RegistryError(
            f"{where}: weights {tag!r} hash {data['hash']!r} must be 'sha256:<64 hex>' or 'md5:<32 hex>'.")
    fields = dict(data)
    for key in ("config", "preprocessing"):
        fields[key] = _freeze(fields.get(key) or {})
    return WeightSpec(tag=tag, origin=origin, **fields)


def _parse_model(name, data, origin, contracts=()):
    where = f"{origin}: entry {name!r}"
    _check_keys(where, data, _MODEL_KEYS)
    for required in ("builder", "task", "spatial_dims", "params"):
        if required not in data:
            raise RegistryError(f"{where}: missing required key {required!r} ({_MODEL_KEYS[required]}).")
    _check_builder(where, data["builder"])
    if data["task"] not in TASKS:
        raise RegistryError(f"{where}: task {data['task']!r} must be one of {', '.join(TASKS)}.")
    dims = data["spatial_dims"]
    if not isinstance(dims, list) or not dims or any(d not in (1, 2, 3) for d in dims):
        raise RegistryError(f"{where}: spatial_dims {dims!r} must be a non-empty list of 1, 2, 3.")
    for key in ("params", "trainable_params"):
        if key in data and (not isinstance(data[key], int) or data[key] < 0):
            raise RegistryError(f"{where}: {key} {data[key]!r} must be a non-negative integer.")
    if "input" in data:
        _check_keys(f"{where}: input", data["input"], _INPUT_KEYS)
    if "sweep" in data:
        _check_keys(f"{where}: sweep", data["sweep"], _SWEEP_KEYS)
    for key in ("config", "reference"):
        if key in data and not isinstance(data[key], dict):
            raise RegistryError(f"{where}: {key} must be a mapping of builder keyword arguments.")
    weights = {tag: _parse_weight(where, tag, spec, origin) for tag, spec in (data.get("weights") or {}).items()}
    fields = dict(data)
    fields.update(
        spatial_dims=tuple(dims), weights=_freeze(weights), recipes=tuple(data.get("recipes") or ()),
        config=_freeze(data.get("config") or {}), input=_freeze(data.get("input") or {}),
        reference=_freeze(data.get("reference") or {}), sweep=_freeze(data.get("sweep") or {}),
        contract=_freeze(check_spec(where, data["contract"], contracts) if "contract" in data else {}))
    return ModelEntry(name=name, origin=origin, **fields)


def _read_yaml(path):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"registry file {str(path)!r} cannot be read ({e.strerror}); "
                            f"check the path (and {ENV_VAR} if you set it).") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise RegistryError(f"registry file {str(path)!r} is not valid YAML: {e}") from None
    data = data or {}
    _check_keys(str(path), data, {"models", "recipes", "weights", "contracts"})
    return data


@dataclasses.dataclass(frozen=True)
class Registry:
    models: types.MappingProxyType
    recipes: types.MappingProxyType
    files: tuple
    contracts: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))

    def names(self):
        return sorted(self.models)

    def get(self, name):
        if not isinstance(name, str):
            raise UnknownModelError(f"model name must be a string; got {name!r}.")
        if name in self.models:
            return self.models[name]
        key = name.lower().replace("-", "_")
        if key in self.models:
            return self.models[key]
        raise UnknownModelError(
            f"no model named {name!r} in the registry.{did_you_mean(key, self.models)} "
            "See zoo.list_models() (or `zoo list`) for all names.")

    def filter(self, pattern=None, task=None, spatial_dims=None, pretrained=None):
        out = []
        for name, entry in sorted(self.models.items()):
            if pattern and not fnmatch.fnmatch(name, pattern):
                continue
            if task and entry.task != task:
                continue
            if spatial_dims and spatial_dims not in entry.spatial_dims:
                continue
            if pretrained is not None and bool(entry.weights) != bool(pretrained):
                continue
            out.append(name)
        return out


def default_path():
    """The registry.yaml shipped in the package, or the repository's during development."""
    here = Path(__file__).resolve().parent  # zoo/hub
    for candidate in (here.parent / "registry.yaml", here.parent.parent / "registry.yaml"):
        if candidate.is_file():
            return candidate
    raise RegistryError(f"registry.yaml not found in {here.parent}; reinstall the package.")


def load_registry(paths=None):
    """Read the built-in registry plus the files in ``ZOO_REGISTRY`` (or ``paths``)."""
    if paths is None:
        extra = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
        paths = [default_path(), *extra]
    models, recipes, contracts = {}, {}, {}
    for path in paths:
        path = Path(path)
        data = _read_yaml(path)
        origin = str(path)
        section = data.get("contracts") or {}
        if not isinstance(section, dict):
            raise RegistryError(f"{origin}: contracts: must be a mapping of names to contract specs.")
        for cname, cspec in section.items():
            if cname in contracts:
                raise RegistryError(f"{origin}: contract {cname!r} is already defined; choose another name.")
            if not isinstance(cspec, dict):
                raise RegistryError(f"{origin}: contract {cname!r} must be a mapping of "
                                    f"{', '.join(sorted(SPEC_KEYS))}.")
            contracts[cname] = check_spec(f"{origin}: contract {cname!r}", cspec, contracts)
        for rname, spec in (data.get("recipes") or {}).items():
            if rname in recipes:
                raise RegistryError(f"{origin}: recipe {rname!r} is already defined in "
                                    f"{recipes[rname].options.get('_origin', 'another file')}; rename it.")
            if not isinstance(spec, dict) or spec.get("kind") not in _RECIPE_KINDS:
                raise RegistryError(f"{origin}: recipe {rname!r} kind {spec.get('kind')!r} must be one "
                                    f"of {', '.join(_RECIPE_KINDS)}.")
            recipes[rname] = Recipe(rname, spec["kind"], _freeze({k: v for k, v in spec.items() if k != "kind"}))
        for name, spec in (data.get("models") or {}).items():
            if name in models:
                raise RegistryError(
                    f"{origin}: model {name!r} is already defined in {models[name].origin}; a registry "
                    "file may add entries but not override them - choose another name.")
            models[name] = _parse_model(name, spec, origin, contracts)
        for name, tags in (data.get("weights") or {}).items():
            if name not in models:
                raise RegistryError(f"{origin}: weights for unknown model {name!r}."
                                    f"{did_you_mean(name, models)}")
            entry = models[name]
            merged = dict(entry.weights)
            for tag, wspec in tags.items():
                if tag in merged:
                    raise RegistryError(f"{origin}: weights {tag!r} of {name!r} already defined in "
                                        f"{merged[tag].origin}; choose another tag.")
                merged[tag] = _parse_weight(f"{origin}: weights of {name!r}", tag, wspec, origin)
            models[name] = dataclasses.replace(entry, weights=_freeze(merged))
    for name, entry in models.items():
        missing = [r for r in entry.recipes if r not in recipes]
        if missing:
            raise RegistryError(f"{entry.origin}: entry {name!r} names unknown recipe(s) {missing}; "
                                f"defined recipes: {sorted(recipes)}.")
    return Registry(_freeze(models), _freeze(recipes), tuple(str(p) for p in paths), contracts)


_CACHE = {}


def get_registry(reload=False):
    """The process-wide registry, re-read when ``ZOO_REGISTRY`` changes or on ``reload``."""
    key = os.environ.get(ENV_VAR, "")
    if reload or key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_registry()
    return _CACHE[key]
