"""Read and write per-layer weight files. Nothing is ever unpickled.

Formats (chosen by the file's suffix unless ``format`` is given):

``h5``
    Keras 2 HDF5, as written by tf_keras ``model.save_weights("x.h5")`` and as the official
    keras.applications files are; a full-model ``model.save("x.h5")`` file (its
    ``model_weights`` group) works too. The root's ``layer_names`` attribute lists the layers;
    each layer group's ``weight_names`` attribute lists its arrays (``conv1/kernel:0`` ...).
    Layers match by name; a layer's arrays match by their short name (``kernel``, ``bias``,
    ``gamma`` ...) when both sides have the same set, else by position.
``weights.h5``
    The Keras 3 layout (``layers/<key>/vars/<i>``, also tf_keras ``save_weights("x.weights.h5")``).
    Keras names ``<key>`` after the layer's class in model order (``conv2d``, ``conv2d_1`` ...),
    not after the layer's name. The zoo's writer stores the layer's name in an attribute
    ``zoo_layer_name`` of each group (Keras ignores it), so zoo-written files match by name;
    other files match by the Keras rule, i.e. by class and position.
``npz``
    ``numpy.savez`` with one array per weight named ``<layer name>/<i>``, ``i`` being the
    position in ``layer.weights`` (kernel, bias; gamma, beta, moving_mean, moving_variance).
    Read with ``allow_pickle=False``.
``safetensors``
    The same ``<layer name>/<i>`` keys in a safetensors file, read and written with the
    ``safetensors`` package (which checks that the header's offsets tile the data exactly).

Every format can carry the zoo's metadata (:func:`meta_text`, :func:`parse_meta`): the registry
entry, builder and builder keywords the weights were saved from, as JSON in the HDF5 root
attribute ``zoo_meta``, the safetensors metadata key ``zoo_meta``, or the npz member
``__zoo_meta__`` (its UTF-8 bytes as a uint8 array). ``zoo.load(name, weights=FILE)`` builds
with that config (e.g. GoogLeNet's ``aux_heads``/``transform_input``), overrides winning.

Reading is lazy and never trusts a header: shapes and dtypes are known first, data is read
only for arrays the model takes (see :class:`Array`). HDF5 files with soft or external links,
virtual datasets, external raw storage or non-numeric datasets are refused before any array is
read, as are npz members that are encrypted, duplicated or not plain numeric ``.npy`` arrays,
and safetensors files with overlapping or out-of-file offsets or duplicate names.
"""
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import safetensors.numpy

from zoo import _h5, _io
from zoo.errors import WeightsError

FORMATS = ("h5", "weights.h5", "npz", "safetensors")
META_KEY = "zoo_meta"          # HDF5 root attribute / safetensors metadata key
NPZ_META = "__zoo_meta__"      # npz member (uint8 array of the JSON's UTF-8 bytes)
META_LIMIT = 65536             # bytes of metadata JSON accepted
_META_FIELDS = {"model": str, "builder": str, "config": dict}


@dataclasses.dataclass
class WeightFile:
    """Arrays per layer: ``layers[key] = [(short weight name or None, Array), ...]``."""
    path: str
    format: str
    layers: dict
    order: list            # keys in the file's layer order (may be None for class-keyed files)
    keyed_by: str          # "name" or "keras_class"
    closer: object = None  # closes the open file
    meta: dict = dataclasses.field(default_factory=dict)  # the zoo's metadata (parse_meta), {} if none

    def close(self):
        if self.closer is not None:
            self.closer()
            self.closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def detect_format(path, fmt=None):
    if fmt is not None:
        if fmt not in FORMATS:
            raise WeightsError(f"weights format {fmt!r} is not supported; allowed: {', '.join(FORMATS)}.")
        return fmt
    name = Path(str(path)).name.lower()
    if name.endswith(".weights.h5"):
        return "weights.h5"
    if name.endswith((".h5", ".hdf5", ".keras.h5")):
        return "h5"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".safetensors"):
        return "safetensors"
    raise WeightsError(
        f"cannot tell the format of weights file {name!r} from its name; supported suffixes: .h5 "
        "(Keras 2 HDF5), .weights.h5 (Keras 3 layout), .npz or .safetensors (arrays '<layer>/<i>'). "
        "Rename the file "
        "or set 'format:' in its registry spec.")


def _text(value):
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def short_name(weight_name):
    """``'conv1_conv/kernel:0'`` -> ``'kernel'``."""
    return str(weight_name).rsplit("/", 1)[-1].split(":", 1)[0]


def keras_class_key(cls_name):
    """tf_keras' ``to_snake_case`` of a class name (the key Keras uses in .weights.h5 files)."""
    s = re.sub("(.)([A-Z][a-z0-9]+)", r"\1_\2", cls_name)
    s = re.sub("([a-z])([A-Z])", r"\1_\2", s).lower()
    return s if s[0] != "_" else "private" + s


def keras_class_keys(model):
    """``{layer name: key}`` exactly as Keras numbers ``model.layers`` in .weights.h5 files."""
    used, keys = {}, {}
    for layer in model.layers:
        key = keras_class_key(type(layer).__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[layer.name] = key
    return keys


# --------------------------------------------------------------------------- metadata
def _json_value(value):
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{value!r} ({type(value).__name__}) is not a JSON scalar or list")


def meta_text(model_name=None, builder=None, config=None):
    """The metadata JSON written into a weights file; None when there is nothing to record.
    ``config``: builder keywords (``input_shape`` and ``name`` are left out: the file fits any size)."""
    meta = {}
    if model_name:
        meta["model"] = str(model_name)
    if builder:
        meta["builder"] = str(builder)
    if config:
        meta["config"] = {str(k): _json_value(v) for k, v in dict(config).items()
                          if k not in ("input_shape", "name")}
    return json.dumps(meta, sort_keys=True) if meta else None


def parse_meta(path, text):
    """Validate the metadata ``text`` read from ``path`` -> dict (``{}`` for None). Anything but a
    small JSON object of the known fields is a WeightsError naming the file."""
    if text is None:
        return {}
    if isinstance(text, (bytes, np.bytes_, np.ndarray)):
        raw = bytes(np.asarray(text, dtype=np.uint8).tobytes()) if isinstance(text, np.ndarray) else bytes(text)
    else:
        raw = str(text).encode("utf-8")
    fix = ("save the weights again with zoo.save_weights, or remove the metadata (the arrays alone "
           "still load with zoo.load(..., weights=FILE) given the builder keywords).")
    if len(raw) > META_LIMIT:
        raise WeightsError(f"{path}: its zoo metadata is {len(raw)} bytes (at most {META_LIMIT}); {fix}")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsError(f"{path}: its zoo metadata is not valid JSON ({e}); {fix}") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: its zoo metadata is a {type(meta).__name__}, not a JSON object; {fix}")
    for key, value in meta.items():
        kind = _META_FIELDS.get(key)
        if kind is not None and not isinstance(value, kind):
            raise WeightsError(f"{path}: zoo metadata field {key!r} is {value!r}, expected a "
                               f"{'JSON object' if kind is dict else 'string'}; {fix}")
    for key, value in meta.get("config", {}).items():
        try:
            _json_value(value)
        except TypeError as e:
            raise WeightsError(f"{path}: zoo metadata config {key}={e}; {fix}") from None
    return meta


# --------------------------------------------------------------------------- writing
def _write_h5(model, fh, meta):
    _h5.write_model_weights(fh, model, attrs={META_KEY: meta} if meta else None)


def _write_weights_h5(model, fh, meta):
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    keys = keras_class_keys(model)
    with h5py.File(fh, "w") as f:
        f.attrs["zoo_format"] = "zoo weights.h5 v1 (Keras 3 layout + zoo_layer_name attributes)"
        if meta:
            f.attrs[META_KEY] = meta
        layers = f.create_group("layers")
        for order, layer in enumerate(model.layers):
            group = layers.create_group(keys[layer.name])
            group.attrs["zoo_layer_name"] = layer.name
            group.attrs["zoo_order"] = order
            variables = group.create_group("vars")
            for i, w in enumerate(layer._trainable_weights + layer._non_trainable_weights):
                variables.create_dataset(str(i), data=np.asarray(w.numpy()))
        f.create_group("vars")


def _write_npz(model, fh, meta):
    arrays = {f"{layer.name}/{i}": np.asarray(w.numpy())
              for layer in model.layers for i, w in enumerate(layer.weights)}
    if meta:
        arrays[NPZ_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    np.savez(fh, **arrays)


def _write_safetensors(model, fh, meta):
    arrays = {f"{layer.name}/{i}": np.ascontiguousarray(np.asarray(w.numpy()))
              for layer in model.layers for i, w in enumerate(layer.weights)}
    fh.write(safetensors.numpy.save(arrays, metadata={"format": "zoo", **({META_KEY: meta} if meta else {})}))


def write(model, path, fmt=None, meta=None):
    """Write ``model``'s weights to ``path`` atomically (temp file in the same folder + rename).
    ``meta``: the metadata JSON (:func:`meta_text`) to embed, or None."""
    path = Path(path).expanduser().resolve()
    fmt = detect_format(path, fmt)
    writer = {"h5": _write_h5, "weights.h5": _write_weights_h5, "npz": _write_npz,
              "safetensors": _write_safetensors}[fmt]

    def write_file(tmp):
        with open(tmp, "w+b") as fh:  # a file object: np.savez adds no suffix, h5py reads back
            writer(model, fh, meta)

    _io.atomic_write_bytes(path, write_file)
    return path
