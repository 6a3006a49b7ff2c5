"""Pretrained weights: resolve, fetch, transfer by layer name, adapt, inflate, save.

``zoo.load(name, weights=...)`` calls :func:`load_weights_into`. ``weights`` may be

* a tag of the registry entry (``"imagenet"``), or a tag + ``"-inflated"`` (``"imagenet-inflated"``)
  to load 2D weights into the 3D variant (see *Inflation*);
* a local file path (used in place; verified when its hash is known);
* a ``https://`` or ``file://`` URL (downloaded into the cache, see :mod:`zoo.hub._fetch`). A URL
  may carry its hash as a fragment, ``...file.h5#sha256=<hex>`` (or ``#md5=``); a URL equal to
  a registered one gets that spec's hash; otherwise its sha256 is recorded on first download.

**Transfer is strict, by layer name.** Every model layer that has weights must be in the file
with the same shapes, and every layer of the file must be in the model. The exceptions:

* the *class heads* - the layers with a kernel that produce the model's outputs (found by
  walking back from each output through weightless layers that keep the class axis: adds,
  activations, dropout, resizes; see :func:`class_heads`), plus a layer named ``classifier``
  (zoo) or ``predictions`` (keras.applications) - may differ in their number of outputs (or be
  absent from the file, or absent from a headless model): they are then left as initialised by
  the builder ("re-initialised"). This covers several heads at once: DeepLab's ``classifier``
  and ``aux_classifier``, DeepLab-v2's four summed branches, GoogLeNet's three classifiers;
* *auxiliary heads* - layers named ``aux``, ``aux_*``, ``aux<N>`` or ``aux<N>_*`` (training-only
  branches) - may be in the file but not in the model ("skipped") or in the model but not in
  the file (left as initialised);
* the *first conv* - ``stem_conv``/``conv1_conv``/``conv1``, else the first layer whose kernel
  has 3+ axes - may differ in input channels: for 1 channel the kernel is summed over its input
  axis; for N channels it is tiled to N and multiplied by C/N (C = the file's channels), so a
  grey image repeated on every channel gives the same activations (exactly when N is a
  multiple of C; otherwise the same scale).

Everything is checked before anything is assigned: a file from another architecture raises
:class:`~zoo.errors.WeightsError` naming the first mismatching layer and leaves the model as built.

**Inflation** (I3D, Carreira & Zisserman 2017): a 2D kernel ``(kh, kw, cin, cout)`` becomes
``(kd, kh, kw, cin, cout)`` by repeating it ``kd`` times along depth and dividing by ``kd`` (``kd``
is the model's kernel depth), so a volume of identical slices gives, away from the depth borders
(zero padding), the features the 2D network gives on one slice. Other arrays are unchanged.
"""
import dataclasses
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import yaml

from zoo.errors import InvalidArgumentError, WeightsError, did_you_mean
from zoo.hub import _fetch, _weightfile, _weightread, convert
from zoo.hub.build import build_kwargs
from zoo.hub.contract import class_heads, contract, kernel_of
from zoo.hub.registry import get_registry
from zoo.record import attached

INFLATED_SUFFIX = "-inflated"
# builder arguments that weights may legitimately differ in (everything else must agree)
_ADAPTABLE = {"num_classes", "in_channels", "spatial_dims", "input_shape", "classifier_activation",
              "dropout", "name"}


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_weights_into` did. ``str(report)`` is a readable summary.

    Attributes:
        source: where the file came from (its URL or local path).
        path: the local file read.
        format: ``h5``, ``weights.h5``, ``npz`` or ``safetensors``.
        hash: the expected ``algorithm:hex`` it was checked against, or None.
        tag: the registry tag, or None for a path or URL outside the registry.
        model: the entry (or model) name.
        inflated: 2D kernels were inflated to 3D.
        loaded: the layers whose weights were loaded as they are.
        adapted: ``{layer: how}`` for layers loaded with a change (channels, inflation).
        reinitialised: ``{layer: why}`` for layers left at their initial values (e.g. a new head).
        skipped: ``{file layer: why}`` for layers of the file the model does not have.
        file_config: builder keywords taken from the file.
        config_differs: ``{keyword: (file's value, model's value)}`` where the model was built otherwise.
    """
    source: str
    path: str
    format: str
    hash: str = None
    tag: str = None
    model: str = None
    inflated: bool = False
    loaded: list = dataclasses.field(default_factory=list)
    adapted: dict = dataclasses.field(default_factory=dict)         # layer -> how
    reinitialised: dict = dataclasses.field(default_factory=dict)   # layer -> why
    skipped: dict = dataclasses.field(default_factory=dict)         # file layer -> why
    file_config: dict = dataclasses.field(default_factory=dict)     # builder keywords taken from the file
    config_differs: dict = dataclasses.field(default_factory=dict)  # keyword -> (file's, model's)
    converted_from: str = None  # the upstream file (format monai, medicalnet, genesis) the zoo file was made from
    conversion: str = None      # "converted now" or "cached" (converted by an earlier load)

    def __str__(self):
        what = f"{self.model or 'model'}" + (f" weights {self.tag!r}" if self.tag else "")
        lines = [f"{what} from {self.source}"]
        if self.converted_from:
            lines.append(f"  upstream file: {self.converted_from} ({self.hash}), {self.conversion}")
        lines += [f"  file: {self.path} ({self.format}" + (f", {self.hash})" if self.hash and not self.converted_from
                                                           else ")"),
                 f"  loaded: {len(self.loaded)} layers" + (" (2D kernels inflated to 3D)" if self.inflated else "")]
        for title, items in (("adapted", self.adapted), ("re-initialised", self.reinitialised),
                             ("skipped (in the file, not in the model)", self.skipped)):
            lines += [f"  {title}: {name}: {why}" for name, why in items.items()]
        if self.file_config:
            lines.append("  built with the file's config: "
                         + ", ".join(f"{k}={v!r}" for k, v in sorted(self.file_config.items())))
        lines += [f"  note: the file was saved with {k}={f!r}; the model was built with {k}={m!r}"
                  for k, (f, m) in sorted(self.config_differs.items())]
        return "\n".join(lines)


# --------------------------------------------------------------------------- resolution
def _hash_from_fragment(url):
    frag = urllib.parse.urlsplit(url).fragment
    if "=" in frag:
        algo, _, value = frag.partition("=")
        algo, value = _fetch.parse_hash(f"{algo}:{value}")
        return f"{algo}:{value}"
    return None


def resolve(weights, entry=None):
    """Say what ``weights`` names, without fetching anything.

    Args:
        weights: a registry tag of ``entry`` (``"imagenet"``, ``"imagenet-inflated"``), a URL
            (``#sha256=...`` fragment optional) or a local file path (str or PathLike).
        entry: the registry entry whose tags apply, or None.

    Returns:
        ``(spec or None, url or None, local path or None, inflate, tag)``: a registered spec for
        a tag (or a URL a spec registers), else the URL or the resolved local path; ``inflate`` is
        True for a ``-inflated`` tag.

    Raises:
        InvalidArgumentError: ``weights`` is not a non-empty string or path.
        WeightsError: it is neither a tag of ``entry``, an existing file nor a URL.
    """
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise InvalidArgumentError(f"weights={weights!r} must be a registry tag, a file path or a URL.")
    tags = dict(entry.weights) if entry is not None else {}
    if weights in tags:
        return tags[weights], None, None, False, weights
    if weights.endswith(INFLATED_SUFFIX) and weights[:-len(INFLATED_SUFFIX)] in tags:
        tag = weights[:-len(INFLATED_SUFFIX)]
        return tags[tag], None, None, True, weights
    if "://" in weights:
        clean = urllib.parse.urlunsplit(urllib.parse.urlsplit(weights)._replace(fragment=""))
        for spec in tags.values():
            if spec.url == clean:
                return spec, None, None, False, spec.tag
        return None, weights, None, False, None
    if Path(weights).expanduser().is_file():
        path = str(Path(weights).expanduser().resolve())
        spec = _registered_copy(path, tags)
        if spec is not None:  # a hand-fetched copy of a registered file that needs the spec (conversion, no hash)
            return spec, None, path, False, spec.tag
        if path.lower().endswith(_TORCH_SUFFIXES) and entry is not None:
            names = [f"{t!r}: {_fetch.url_filename(sp.url)}" for t, sp in tags.items() if sp.converted]
            raise WeightsError(
                f"weights={weights!r} is a PyTorch file, which the zoo converts only as a registered file of "
                f"{entry.name!r}: name your copy as the registry's URL does ({'; '.join(names) or 'no such weights'}), "
                "or convert it yourself with zoo.from_monai(network_def, path).")
        return None, None, path, False, None
    where = f" of {entry.name!r} (tags: {', '.join(sorted(tags)) or 'none'})" if entry else ""
    raise WeightsError(
        f"weights={weights!r} is neither a registered tag{where}, an existing file, nor a URL."
        f"{did_you_mean(weights, tags)} Pass a tag, a path to a .h5/.weights.h5/.npz/.safetensors file, or an "
        "https:// URL.")


_TORCH_SUFFIXES = (".pt", ".pth", ".pth.tar", ".ckpt")


def _registered_copy(path, tags):
    """The registered spec a local file is a copy of, by the URL's file name, when the spec is needed
    to load it (its format is converted, or the registry has no hash for it); else None."""
    name = Path(path).name
    for spec in tags.values():
        if (spec.converted or spec.hash is None) and _fetch.url_filename(spec.url) == name:
            return spec
    return None


def _spec_location(spec):
    """A spec's url as ``(url, None)`` or ``(None, local path)`` (relative = to its registry file)."""
    scheme = urllib.parse.urlsplit(spec.url).scheme
    if scheme:
        return spec.url, None
    base = Path(spec.origin).parent if spec.origin else Path.cwd()
    return None, str((base / spec.url).expanduser().resolve())


def _verify_local(path, expected):
    if not Path(path).is_file():
        raise WeightsError(f"weights file {path} does not exist; check the path (a relative registry "
                           "url is relative to the registry file).")
    if expected:
        algo, value = _fetch.parse_hash(expected)
        got = _fetch.hash_file(path, (algo,))[algo]
        if got != value:
            raise WeightsError(f"hash mismatch for {path}: {algo} {got}, expected {value}. The file "
                               "is not the registered one; replace it or fix the registry hash.")


def fetch_weights(weights, entry=None, progress=None):
    """Resolve ``weights`` (:func:`resolve`) and make them a verified local file.

    Args:
        weights: as for :func:`resolve`.
        entry: the registry entry whose tags apply, or None.
        progress: show download progress (None: on a terminal or as ``ZOO_PROGRESS`` says).

    Returns:
        ``(local path, spec, inflate, tag, source, hash)``: a URL is downloaded into the cache
        (checked against the registered hash or the URL's ``#algo=`` fragment); a local file is
        checked against the spec's hash when it has one.

    Raises:
        WeightsError: unresolvable weights, a missing file, a failed download or a hash mismatch.
        InvalidArgumentError: ``weights`` is not a non-empty string or path.
    """
    spec, url, path, inflate, tag = resolve(weights, entry)
    expected = None
    if spec is not None:
        expected = spec.hash
        if path is None:
            url, path = _spec_location(spec)
    elif url is not None:
        expected = _hash_from_fragment(url)
        url = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(fragment=""))
    if url is not None and spec is not None and spec.hash is None:
        path = _manual_copy(spec, entry, url)
        url = None
    if url is not None:
        local = _fetch.fetch(url, hash=expected, size=spec.size if spec else None, progress=progress)
        return str(local), spec, inflate, tag, url, expected
    _verify_local(path, expected)
    if spec is not None and spec.hash is None:
        expected = _announce_sha256(path, spec, entry)
    return path, spec, inflate, tag, path, expected


def _manual_copy(spec, entry, url):
    """A file the registry has no hash for is never downloaded: its copy in the cache (placed there by
    hand), or an error that says how to fetch it."""
    cached = _fetch.cache_path(url, None)
    if cached.is_file():
        return str(cached)
    name = entry.name if entry is not None else "the model"
    raise WeightsError(
        f"weights {spec.tag!r} of {name}: the registry knows no hash for {url}, so the zoo does not download it "
        f"(it could not check what it got). {spec.manual_download} Then load your copy with "
        f"zoo.load({name!r}, weights='/path/to/{_fetch.url_filename(url)}') (keep that file name), or put it at "
        f"{cached}. Loading a copy checks its layout and prints its sha256, to compare with the publisher's.")


def _announce_sha256(path, spec, entry):
    """Print (and return as 'sha256:...') the hash of a hand-fetched file the registry has none for."""
    digest = _fetch.hash_file(path, ("sha256",))["sha256"]
    size = Path(path).stat().st_size
    expected = f" (the publisher's size: {spec.size} bytes)" if spec.size else ""
    print(f"{path}: sha256 {digest}, {size} bytes{expected}. The registry has no hash for weights {spec.tag!r} of "
          f"{entry.name if entry is not None else 'this model'}: compare it with the publisher's before trusting "
          "the file.")
    if spec.size and size != spec.size:
        raise WeightsError(f"{path} has {size} bytes but the publisher's file {_fetch.url_filename(spec.url)} has "
                           f"{spec.size}: it is not the published file (truncated or another version).")
    return f"sha256:{digest}"


# --------------------------------------------------------------------------- transfer
def _kernel(layer):
    return kernel_of(layer)


def _match_arrays(layer, arrays, variables, wf):
    """Pair the file's arrays of one layer with the layer's variables."""
    if len(arrays) != len(variables):
        raise WeightsError(
            f"weights file {wf.path}: layer {layer.name!r}: the file has {len(arrays)} arrays, the model's "
            f"layer has {len(variables)} ({', '.join(_weightfile.short_name(v.name) for v in variables)}). "
            "The file was saved from another model, or a different layer type or configuration (e.g. "
            "bias on/off); load it into the model it was saved from.")
    names = [n for n, _ in arrays]
    want = [_weightfile.short_name(v.name) for v in variables]
    if None not in names and sorted(names) == sorted(want) and len(set(names)) == len(names):
        lookup = dict(arrays)
        return [lookup[n] for n in want]
    return [a for _, a in arrays]


def _inflate(array, target_shape):
    depth = target_shape[0]
    return np.repeat(array[None], depth, axis=0) / depth


def _adapt_channels(kernel, cin):
    have = kernel.shape[-2]
    if cin == 1:
        return kernel.sum(axis=-2, keepdims=True)
    reps = -(-cin // have)
    return np.concatenate([kernel] * reps, axis=-2)[..., :cin, :] * (have / cin)


def plan_transfer(model, wf, *, inflate=False, entry=None, allow_non_finite=False, headless_file=False):
    """Check the weight file ``wf`` against ``model`` and plan the transfer; assign nothing.

    The first conv, class heads and auxiliary heads come from the model's contract. Every shape
    and dtype is checked before any array data is read; values are checked (finite) after.

    Args:
        model: the built ``keras.Model``.
        wf: an open :class:`zoo.hub._weightfile.WeightFile` (from ``_weightread.read``).
        inflate: inflate 2D kernels to 3D.
        entry: the registry entry (for the contract), or None.
        allow_non_finite: accept NaN/Inf values.
        headless_file: the registry says the file holds no head (``num_classes: 0``), so every
            layer outside the model's encoder (a classifier's hidden layers, a segmentation head)
            may be missing from it and keeps its initial weights.

    Returns:
        ``(assignments, report parts)``: ``[(layer, variables, values)]`` and the dict of
        ``loaded``, ``adapted``, ``reinitialised`` and ``skipped`` for a :class:`LoadReport`.

    Raises:
        WeightsError: a layer, shape, dtype or value that does not fit (the file was saved from
            another architecture or configuration, or holds NaN/Inf).
    """
    layers = [layer for layer in model.layers if layer.weights]
    parts = contract(model, entry)
    encoder = set(parts.encoder) if headless_file and parts.encoder else None
    stem = model.get_layer(parts.first_conv) if parts.first_conv else None
    heads = {id(model.get_layer(n)) for n in parts.classifiers} | {id(h) for h in class_heads(model)}  # aux heads too
    aux = re.compile(parts.spec["aux"])
    keys = _weightfile.keras_class_keys(model) if wf.keyed_by == "keras_class" else {}
    key_of = (lambda layer: keys[layer.name]) if keys else (lambda layer: layer.name)
    in_channels = model.input_shape[-1] if not isinstance(model.input_shape, list) else None
    file_layers = {k: v for k, v in wf.layers.items() if v}
    file_order = [k for k in (wf.order or []) if k in file_layers]
    file_heads = {k for k in parts.spec["classifier"] if k in file_layers} or set(file_order[-1:])
    model_keys = {key_of(layer): layer for layer in layers}
    plan, loaded, adapted, reinit, skipped = [], [], {}, {}, {}
    found = sum(1 for k in model_keys if k in file_layers)
    context = (f" ({found} of {len(model_keys)} model layers with weights are in the file: "
               f"{'probably another architecture' if found < len(model_keys) // 2 else 'another configuration?'}).")
    for layer in layers:
        key = key_of(layer)
        label = layer.name + (f" (file key {key!r})" if keys else "")
        if key not in file_layers:
            if id(layer) in heads:
                reinit[layer.name] = "not in the file (headless weights)"
                continue
            if aux.fullmatch(layer.name):
                reinit[layer.name] = "auxiliary head, not in the file"
                continue
            if encoder is not None and layer.name not in encoder:
                reinit[layer.name] = "head layer, not in the file (headless weights)"
                continue
            raise WeightsError(f"weights file {wf.path} has no layer {label} (a {type(layer).__name__} "
                               f"of the model) - only the classifier and auxiliary heads may be "
                               f"missing.{context}")
        variables = layer._trainable_weights + layer._non_trainable_weights if wf.format == "weights.h5" \
            else layer.weights
        arrays = _match_arrays(layer, file_layers[key], variables, wf)
        steps, how = [], []
        for var, arr in zip(variables, arrays):  # shapes only: no array data is read here
            target, shape = tuple(var.shape), tuple(arr.shape)
            kind = _weightfile.short_name(var.name)
            ops = []
            if inflate and len(shape) == len(target) - 1 and kind in ("kernel", "depthwise_kernel") \
                    and len(shape) >= 3 and shape == target[1:]:
                ops.append(("inflate", target))
                shape = target
                how.append("inflated")
            if shape != target and layer is stem and kind == "kernel" and len(shape) == len(target) \
                    and shape[:-2] == target[:-2] and shape[-1] == target[-1] and target[-2] == in_channels:
                ops.append(("channels", target[-2]))
                how.append(f"in_channels {shape[-2]} -> {target[-2]} "
                           + ("(summed)" if target[-2] == 1 else "(tiled and rescaled)"))
                shape = target
            if shape != target:
                steps = None
                break
            _weightread.check_dtype(wf, label, kind, arr, var)
            steps.append((var, arr, ops))
        if steps is None:
            file_shapes = [tuple(a.shape) for _, a in file_layers[key]]
            model_shapes = [tuple(v.shape) for v in variables]
            if id(layer) in heads and len(file_shapes) == len(model_shapes) and all(
                    len(f) == len(m) and f[:-1] == m[:-1] for f, m in zip(file_shapes, model_shapes)) \
                    and len({f[-1] for f in file_shapes if f}) == 1:  # the file's head agrees with itself
                reinit[layer.name] = f"{file_shapes[0][-1]} outputs in the file, {model_shapes[0][-1]} in the model"
                continue
            hint = ""
            if file_shapes and model_shapes and len(file_shapes[0]) == len(model_shapes[0]) - 1:
                hint = " The file looks 2D and the model 3D: use a '-inflated' tag (or inflate=True)."
            raise WeightsError(
                f"weights file {wf.path}: layer {label} has shapes {file_shapes} in the file but "
                f"{model_shapes} in the model. Only the class heads (num_classes) and the first conv "
                f"(in_channels) may differ.{hint}{context}")
        plan.append((layer, label, steps))
        changes = [h for h in how if h != "inflated"]
        if changes:
            adapted[layer.name] = "; ".join(changes)
        else:
            loaded.append(layer.name)
    for key in file_layers:
        if key not in model_keys:
            if key in file_heads:
                skipped[key] = "classifier of the file; the model has no such layer"
                continue
            if aux.fullmatch(key):
                skipped[key] = "auxiliary head of the file; the model was built without it"
                continue
            raise WeightsError(
                f"weights file {wf.path} has layer {key!r} which the model lacks - the file was saved "
                f"from a different architecture or configuration.{context}")
    values = [(layer, _weightread.variable_values(wf, label, steps, _inflate, _adapt_channels, allow_non_finite))
              for layer, label, steps in plan]
    return ([(layer, [v for v, _ in pairs], [x for _, x in pairs]) for layer, pairs in values],
            {"loaded": loaded, "adapted": adapted, "reinitialised": reinit, "skipped": skipped})


def file_build_defaults(path, entry):
    """Builder keywords recorded in a weights file, for building ``entry`` before loading it.

    Args:
        path: a local weights file (``zoo.save_weights`` and tools/convert_torchvision.py embed them).
        entry: the registry entry to build, or None.

    Returns:
        The recorded keywords (a dict); ``{}`` without ``entry``, when the file records none or
        when it was saved from another builder.

    Raises:
        WeightsError: the file cannot be read or its metadata is damaged.
    """
    with _weightread.read(path) as wf:
        meta = wf.meta
    if entry is None or not meta.get("config"):
        return {}
    if meta.get("builder", entry.builder) != entry.builder:
        return {}
    return dict(meta["config"])


def _config_differs(meta, build_kwargs):
    """``{keyword: (file's value, model's value)}`` for recorded keywords the model was built otherwise."""
    if not meta.get("config") or not build_kwargs:
        return {}
    return {k: (v, _plain(build_kwargs[k])) for k, v in meta["config"].items()
            if k in build_kwargs and k not in _ADAPTABLE and _plain(build_kwargs[k]) != _plain(v)}


def _plain(value):
    """A keyword's value as a file records it (JSON/YAML have lists, not tuples), for comparing."""
    return list(value) if isinstance(value, tuple) else value


def _model_dims(model):
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    return len(shape) - 2


def _check_config(spec, build_kwargs, name):
    if spec is None or not build_kwargs:
        return
    for key, value in spec.config.items():
        if key in _ADAPTABLE or key not in build_kwargs:
            continue
        got = build_kwargs[key]
        if _plain(got) != _plain(value):
            raise WeightsError(
                f"weights {spec.tag!r} of {name} were saved from {key}={value!r} but the model is built "
                f"with {key}={got!r}; only num_classes, in_channels and spatial_dims may differ. Build with "
                f"{key}={value!r} or pick other weights.")


def load_weights_into(model, *, weights, entry=None, build_kwargs=None, inflate=None, progress=None,
                      allow_non_finite=False):
    """Fetch ``weights`` and transfer them into ``model`` (strict; see the module docstring).

    Args:
        model: the built ``keras.Model``.
        weights: a registry tag of ``entry``, a local file path or a URL (see :func:`resolve`).
        entry: the registry entry the model was built from, or None.
        build_kwargs: the builder keywords the model was built with, checked against the
            weights' recorded config (only ``num_classes``, ``in_channels``, ``spatial_dims`` and
            a few others may differ).
        inflate: None = only for a ``-inflated`` tag; True/False to force 2D->3D inflation.
        progress: show download progress (None: on a terminal or as ``ZOO_PROGRESS`` says).
        allow_non_finite: accept arrays holding NaN or Inf (refused by default, naming the layer
            and the count).

    Returns:
        A :class:`LoadReport`. Nothing is assigned unless every layer checks.

    Raises:
        WeightsError: the weights cannot be fetched or verified, their spatial dims or config
            differ from the model's, or a layer does not fit.
        InvalidArgumentError: ``weights`` is not a non-empty string or path.
    """
    local, spec, tag_inflate, tag, source, expected = fetch_weights(weights, entry, progress)
    inflate = tag_inflate if inflate is None else bool(inflate)
    dims = _model_dims(model)
    name = entry.name if entry is not None else model.name
    file_dims = spec.spatial_dims if spec is not None and spec.spatial_dims else None
    if inflate and dims != 3:
        raise WeightsError(f"weights={weights!r} asks for 2D->3D inflation but the model is {dims}D; drop "
                           f"the '{INFLATED_SUFFIX}' suffix (or pass spatial_dims=3).")
    if inflate and file_dims not in (None, 2):
        raise WeightsError(f"weights={weights!r}: inflation needs 2D weights; these are {file_dims}D.")
    if not inflate and file_dims is not None and file_dims != dims:
        fix = (f" Pass weights={tag + INFLATED_SUFFIX!r} to inflate the 2D kernels to 3D."
               if file_dims == 2 and dims == 3
               else "")
        raise WeightsError(f"weights {tag!r} of {name} are {file_dims}D but the model is {dims}D.{fix}")
    _check_config(spec, build_kwargs, name)
    upstream, conversion = None, None
    if spec is not None and spec.converted:
        upstream = local
        local, fresh = _convert(local, spec, entry, expected)
        conversion = "converted now" if fresh else "cached (converted by an earlier load)"
    with _weightread.read(local, spec.file_format if spec is not None else None) as wf:
        plan, parts = plan_transfer(model, wf, inflate=inflate, entry=entry, allow_non_finite=allow_non_finite,
                                    headless_file=spec is not None and spec.num_classes == 0)
        parts["config_differs"] = _config_differs(wf.meta, build_kwargs) if upstream is None else {}
    for _, variables, values in plan:  # everything checked: now assign
        for var, value in zip(variables, values):
            var.assign(value)
    return LoadReport(source=source, path=str(local), format=wf.format, hash=expected, tag=tag, model=name,
                      inflated=inflate, converted_from=upstream, conversion=conversion, **parts)


def _convert(source, spec, entry, digest):
    """The zoo weights file converted from the upstream file ``source`` (cached by its hash)."""
    if entry is None:
        raise WeightsError(f"weights {spec.tag!r} (format {spec.format}) are converted for a registry entry; load "
                           "them with zoo.load(NAME, weights=TAG).")

    def build():
        builder, kwargs = build_kwargs(entry, {"spatial_dims": spec.spatial_dims}, spec)
        kwargs.pop("input_shape", None)
        return builder(**kwargs), kwargs

    return convert.converted_file(source, spec, entry, digest, build)


@dataclasses.dataclass
class SavedWeights:
    """Result of :func:`save_weights`; ``str()`` is the registry snippet.

    Attributes:
        path: the file written.
        sha256: its SHA-256 hex digest.
        size: its size in bytes.
        snippet: the YAML registry snippet (see :func:`registry_snippet`).
    """
    path: str
    sha256: str
    size: int
    snippet: str

    def __str__(self):
        return self.snippet


def registry_snippet(model, path, sha256, size, *, model_name=None, tag="finetuned", config=None):
    """YAML for a user registry file's top-level ``weights:`` section, with a layer summary.

    Args:
        model: the model the file was saved from.
        path: the weights file (its ``file://`` URL goes in the snippet).
        sha256: the file's SHA-256 hex digest.
        size: the file's size in bytes.
        model_name: the registry entry (default: the model's record, its load report, else its name).
        tag: the weights tag under the entry.
        config: builder keywords to record (tuples as lists).

    Returns:
        The snippet (a string): comments with the layer summary, then the YAML.

    Raises:
        InvalidArgumentError: the model's contract cannot be read (not a functional ``keras.Model``).
    """
    layers = [layer for layer in model.layers if layer.weights]
    parts = contract(model)
    stem = model.get_layer(parts.first_conv) if parts.first_conv else None
    head = model.get_layer(parts.classifiers[0]) if parts.classifiers else None
    report = getattr(model, "zoo_load_report", None)
    known = attached(model)
    model_name = model_name or (known.name if known else None) or getattr(report, "model", None) or model.name
    spec = {"url": Path(path).as_uri(), "hash": f"sha256:{sha256}", "size": int(size),
            "format": _weightfile.detect_format(path), "in_channels": int(model.input_shape[-1]),
            "num_classes": int(_kernel(head).shape[-1]) if head is not None else 0,
            "spatial_dims": _model_dims(model)}
    if config:
        spec["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items()}
    spec["source"] = f"zoo.save_weights of model {model.name!r}"
    tensors = sum(len(layer.weights) for layer in layers)
    values = sum(int(np.prod(w.shape)) for layer in layers for w in layer.weights)
    summary = [f"# {len(layers)} layers with weights, {tensors} arrays, {values:,} values"]
    for title, layer in (("first conv", stem), ("classifier", head)):
        if layer is not None:
            summary.append(f"# {title}: {layer.name} kernel {tuple(_kernel(layer).shape)}")
    body = yaml.safe_dump({"weights": {model_name: {tag: spec}}}, sort_keys=False, default_flow_style=False)
    return "\n".join([
        f"# zoo registry snippet for {path}",
        "# Add it to a YAML file named in ZOO_REGISTRY (merge with an existing top-level 'weights:').",
        "# Replace 'url' by where the file will be published (https://..., file://... or a path",
        "# relative to that YAML file); keep hash and size.", *summary, body.rstrip()]) + "\n"


def save_weights(model, path, *, model_name=None, tag="finetuned", config=None, format=None,
                 verbose=True):
    """Write ``model``'s weights atomically; print and return the registry snippet.

    The file and the snippet embed the entry, its builder and the builder kwargs (``config``,
    else the ones ``zoo.load`` built the model with, which a run folder records too), so
    ``zoo.load(model_name, weights=path)`` and ``zoo.load(model_name, weights=tag)`` rebuild the
    same architecture (e.g. ``filters: 8``, aux heads) without being told. The snippet goes into a user registry
    file named in ``ZOO_REGISTRY`` so that ``zoo.load(model_name, weights=tag)`` finds the file on
    another machine.

    Args:
        model: the ``keras.Model`` to save.
        path: the target file; the format follows its suffix: ``.weights.h5`` (Keras 3 layout +
            layer names), ``.h5`` (Keras 2 HDF5), ``.npz`` or ``.safetensors``.
        model_name: the registry entry (default: the entry the model was loaded as, else ``model.name``).
        tag: the weights tag in the snippet.
        config: builder kwargs the model was built with (recorded and checked on load).
        format: the format, overriding the suffix.
        verbose: print the snippet.

    Returns:
        :class:`SavedWeights` (path, sha256, size, snippet).

    Raises:
        WeightsError: the suffix or ``format`` is not a known weights format.
        InvalidArgumentError: ``model`` is not a functional ``keras.Model`` (its contract feeds the snippet).
    """
    known = attached(model)
    registry = get_registry()
    entry_name = model_name or (known.name if known and known.name in registry.names() else None)
    builder = registry.get(entry_name).builder if entry_name in registry.names() else None
    recorded = config if config is not None else (known.build if known else None)
    meta = _weightfile.meta_text(entry_name, builder, recorded)
    path = _weightfile.write(model, path, format, meta)
    digest = _fetch.hash_file(path, ("sha256",))["sha256"]
    size = path.stat().st_size
    # the snippet carries the build (filters, depth ...): a tag load in a fresh process rebuilds it
    build = {k: v for k, v in dict(recorded or {}).items() if k not in ("input_shape", "name", "spatial_dims")}
    text = registry_snippet(model, path, digest, size, model_name=model_name, tag=tag, config=build or None)
    if verbose:
        print(text)
    return SavedWeights(str(path), digest, size, text)
