"""Read and validate ``registry.yaml`` into frozen dataclasses; resolve names.

The registry is data: it names a builder registered in ``zoo.models`` (see
``zoo.models.register_builder``), the builder's keyword arguments, the reference parameter
count, the paper, the weights and the compression recipes. Extra registry files can be named in
``ZOO_REGISTRY`` (``os.pathsep``-separated); they may add entries and weights, never replace
them, and name registered builders only. Files are read by ``zoo.hub._yaml`` (bounded, strict
YAML) and checked field by field against the typed schema of ``zoo.hub._schema``.
"""
import dataclasses
import fnmatch
import importlib
import inspect
import os
import types
from pathlib import Path

from zoo.errors import RegistryError, UnknownModelError, did_you_mean
from zoo.hub import _schema, _yaml
from zoo.hub._contract_spec import SPEC_KEYS, check_spec
from zoo.hub._weightfile import FORMATS
from zoo.hub.convert import FORMATS as CONVERTED
from zoo.models import BUILDERS, registered_builders

TASKS = ("classification", "segmentation", "generation")
ENV_VAR = "ZOO_REGISTRY"
_RECIPE_KINDS = ("prune", "qat", "cluster", "ptq", "chain", "distill")
_SECTIONS = ("models", "recipes", "weights", "contracts")


# a weight spec's format: a file the zoo reads (keras = by the suffix), or one converted on first use
WEIGHT_FORMATS = ("keras",) + FORMATS + CONVERTED
_WEIGHT_FIELDS = _schema.Fields(_schema.weight_fields(WEIGHT_FORMATS), required=("url",), what="a weight spec")


def _WEIGHT(where, data):
    """A weight spec: its fields, and a hash unless ``manual_download`` says why there is none."""
    _WEIGHT_FIELDS(where, data)
    if "hash" not in data and "manual_download" not in data:
        raise RegistryError(f"{where}: missing required key 'hash' ('sha256:<hex>' or 'md5:<hex>'); a file "
                                    "whose hash is not known needs 'manual_download' instead (how to fetch it by "
                                    "hand).")
    if "hash" in data and "manual_download" in data:
        raise RegistryError(f"{where}: has both 'hash' and 'manual_download'; a file with a known hash is "
                                    "downloaded automatically - drop 'manual_download'.")
    return data

_MODEL = _schema.Fields(_schema.model_fields(_WEIGHT, _schema.Contract(), TASKS),
                        required=("builder", "task", "spatial_dims", "params"), first=("builder",),
                        what="a model entry")
# an entry of a user's registry file: params is optional (checked when given); the zoo's own
# entries need it, as the registry sweep checks every count
_USER_MODEL = _schema.Fields(_MODEL.fields, required=("builder", "task", "spatial_dims"), first=("builder",),
                             what="a model entry")
_RECIPE = _schema.Recipe(_RECIPE_KINDS)
_TOP = _schema.Fields({k: (_schema.Optional(_schema.DictOf(_schema.RECIPE_NAME if k == "recipes" else _schema.NAME,
                                                           _schema.ANY, what="a mapping of names to specs")),
                           f"the {k}: section") for k in _SECTIONS}, what="a mapping")


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
    hash: str = None          # None: no known hash; manual_download says how to fetch the file
    manual_download: str = None
    size: int = None
    format: str = None
    in_channels: int = None
    num_classes: int = None
    spatial_dims: int = 2
    config: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    preprocessing: types.MappingProxyType = dataclasses.field(default_factory=lambda: _freeze({}))
    labels: object = None
    license: str = None
    code_license: str = None
    commercial_use: bool = None
    source: str = None
    upstream_version: str = None
    upstream_metric: types.MappingProxyType = None
    network_def: types.MappingProxyType = None
    notes: str = None
    origin: str = None  # the registry file that declared it

    @property
    def converted(self):
        """True when the file is converted on first use (format monai, medicalnet, genesis)."""
        return self.format in CONVERTED

    @property
    def file_format(self):
        """The zoo reader's format of the file itself (None: by the suffix)."""
        return None if self.format in (None, "keras") or self.converted else self.format

    @property
    def hash_algorithm(self):
        return self.hash.split(":", 1)[0] if self.hash else None

    @property
    def hash_value(self):
        return self.hash.split(":", 1)[1].lower() if self.hash else None


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
    params: int  # None for an entry of a user's registry file that does not state it
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
        """The builder function, which must be registered with ``zoo.models.register_builder``;
        the entry's keyword arguments (config, reference, sweep, weights' config) must be its own."""
        module_name = self.builder.split(":")[0]
        where = f"{self.origin}: entry {self.name!r}: builder {self.builder!r}"
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if not e.name or not (module_name == e.name or module_name.startswith(e.name + ".")):
                raise
            raise RegistryError(f"{where}: the zoo has no module {module_name}; registered builders: "
                                f"{', '.join(sorted(registered_builders()))}.") from None
        builder = BUILDERS.get(self.builder)
        if builder is None:
            known = registered_builders()
            raise RegistryError(
                f"{where} is not a registered builder (only functions decorated with "
                f"@zoo.models.register_builder may be named); registered builders: {', '.join(sorted(known))}."
                f"{did_you_mean(self.builder, known)}")
        self.check_keywords(builder)
        return builder

    def check_keywords(self, builder):
        """Every keyword the entry passes to ``builder`` must be one of its arguments."""
        params = inspect.signature(builder).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return
        valid = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        sources = [("config", self.config), ("reference", self.reference),
                   ("sweep.config", self.sweep.get("config", {}))]
        sources += [(f"weights {tag!r} config", spec.config) for tag, spec in self.weights.items()]
        for label, kwargs in sources:
            unknown = [k for k in kwargs if k not in valid]
            if unknown:
                raise RegistryError(
                    f"{self.origin}: entry {self.name!r}: {label} has {unknown[0]!r}, which is not a keyword "
                    f"argument of {self.builder}.{did_you_mean(unknown[0], valid)} Its keywords: "
                    f"{', '.join(valid)}.")

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

    def sweep_kwargs(self, dims):
        """Builder kwargs of the entry's small sweep build in ``dims`` spatial dims (what the
        registry sweep, the recipe check and the export sweep build)."""
        kwargs = dict(thaw(self.sweep.get("config", {})))
        size = self.sweep.get("size") or self.input.get("min_size") or 32
        channels = kwargs.get("in_channels", self.config.get("in_channels", self.input.get("channels", 3)))
        kwargs.update(spatial_dims=dims, input_shape=(size,) * dims + (channels,))
        return kwargs

    def as_dict(self):
        d = {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["weights"] = {t: {f.name: thaw(getattr(w, f.name)) for f in dataclasses.fields(w)
                            if getattr(w, f.name) not in (None, {}, ())}
                        for t, w in self.weights.items()}
        return {k: v for k, v in d.items() if v not in (None, {}, (), [])}


def _parse_weight(where, tag, data, origin):
    fields = dict(_WEIGHT(f"{where}: weights {tag!r}", data))
    for key in ("config", "preprocessing"):
        fields[key] = _freeze(fields.get(key) or {})
    for key in ("upstream_metric", "network_def"):
        if key in fields:
            fields[key] = _freeze(fields[key])
    for key in ("labels", "notes"):
        if isinstance(fields.get(key), list):
            fields[key] = _freeze(fields[key])
    return WeightSpec(tag=tag, origin=origin, **fields)


def _parse_model(name, data, origin, contracts=(), builtin=True):
    where = f"{origin}: entry {name!r}"
    (_MODEL if builtin else _USER_MODEL)(where, data)
    contract = data.get("contract")
    weights = {tag: _parse_weight(where, tag, spec, origin) for tag, spec in (data.get("weights") or {}).items()}
    fields = dict(data)
    fields.setdefault("params", None)
    fields.update(
        spatial_dims=tuple(data["spatial_dims"]), weights=_freeze(weights), recipes=tuple(data.get("recipes") or ()),
        config=_freeze(data.get("config") or {}), input=_freeze(data.get("input") or {}),
        reference=_freeze(data.get("reference") or {}), sweep=_freeze(data.get("sweep") or {}),
        contract=_freeze(check_spec(where, contract, contracts) if "contract" in data else {}),
        notes=" ".join(map(str, data["notes"])) if isinstance(data.get("notes"), list) else data.get("notes"))
    return ModelEntry(name=name, origin=origin, **fields)


def _read_yaml(path):
    data = _yaml.read_yaml(path, "registry file", f"check the path (and {ENV_VAR} if you set it)")
    if data is None:
        return {}
    _TOP(str(path), data)
    return {k: v for k, v in data.items() if v is not None}


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
    models, recipes, contracts, recipe_origin = {}, {}, {}, {}
    for path in paths:
        path = Path(path)
        data = _read_yaml(path)
        origin = str(path)
        builtin = path.resolve() == default_path().resolve()
        for cname, cspec in (data.get("contracts") or {}).items():
            where = f"{origin}: contract {cname!r}"
            if cname in contracts:
                raise RegistryError(f"{where} is already defined; choose another name.")
            if not isinstance(cspec, dict):
                raise RegistryError(f"{where} is {_schema.show(cspec)}; expected a mapping of "
                                    f"{', '.join(sorted(SPEC_KEYS))}.")
            _schema.Contract()(where, cspec)
            contracts[cname] = check_spec(where, cspec, contracts)
        for rname, spec in (data.get("recipes") or {}).items():
            if rname in recipes:
                raise RegistryError(f"{origin}: recipe {rname!r} is already defined in {recipe_origin[rname]}; "
                                    "rename it.")
            _RECIPE(f"{origin}: recipe {rname!r}", spec)
            recipes[rname] = Recipe(rname, spec["kind"], _freeze({k: v for k, v in spec.items() if k != "kind"}))
            recipe_origin[rname] = origin
        for name, spec in (data.get("models") or {}).items():
            if name in models:
                raise RegistryError(
                    f"{origin}: model {name!r} is already defined in {models[name].origin}; a registry "
                    "file may add entries but not override them - choose another name.")
            models[name] = _parse_model(name, spec, origin, contracts, builtin=builtin)
        for name, tags in (data.get("weights") or {}).items():
            if name not in models:
                raise RegistryError(f"{origin}: weights for unknown model {name!r}."
                                    f"{did_you_mean(name, models)}")
            _schema.DictOf(_schema.NAME, _schema.ANY, what="a mapping of weight tags to weight specs")(
                f"{origin}: weights of {name!r}", tags)
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
