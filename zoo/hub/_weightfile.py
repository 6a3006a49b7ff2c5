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
    The same ``<layer name>/<i>`` keys in a safetensors file (read and written with numpy
    alone: an 8-byte header length, a JSON header, raw little-endian buffers; every offset is
    checked against the file size).

HDF5 files with soft or external links, virtual datasets, external raw storage or
non-numeric datasets are refused before any array is read.
"""
import dataclasses
import re
from pathlib import Path

import numpy as np

from zoo import _h5, _io
from zoo.errors import WeightsError

FORMATS = ("h5", "weights.h5", "npz", "safetensors")


@dataclasses.dataclass
class WeightFile:
    """Arrays per layer: ``layers[key] = [(short weight name or None, array), ...]``."""
    path: str
    format: str
    layers: dict
    order: list            # keys in the file's layer order (may be None for class-keyed files)
    keyed_by: str          # "name" or "keras_class"


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


# --------------------------------------------------------------------------- reading
def _check_hdf5(f, path):
    import h5py

    problems = []

    def visit(name, link):
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"{name!r} is an external link to {link.filename}:{link.path}")
        elif isinstance(link, h5py.SoftLink):
            problems.append(f"{name!r} is a soft link to {link.path}")
        else:
            obj = f[name]
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    problems.append(f"{name!r} is a virtual dataset")
                elif obj.external:
                    problems.append(f"{name!r} stores its data in external file(s)")
                elif obj.dtype.kind not in "fiub":
                    problems.append(f"{name!r} has non-numeric dtype {obj.dtype}")
        return None if not problems else True

    f.visititems_links(visit)
    if problems:
        raise WeightsError(f"refusing weights file {path}: {problems[0]}. Weight files must hold plain "
                           "numeric arrays; re-save it with zoo.save_weights or model.save_weights.")


def _attr_list(group, name):
    if name in group.attrs:
        return [_text(v) for v in np.atleast_1d(group.attrs[name])]
    out, chunk = [], 0  # Keras splits long attributes into name0, name1, ...
    while f"{name}{chunk}" in group.attrs:
        out += [_text(v) for v in np.atleast_1d(group.attrs[f"{name}{chunk}"])]
        chunk += 1
    return out if chunk else None


def _read_h5(f, path):
    root = f
    if _attr_list(f, "layer_names") is None and "model_weights" in f:
        root = f["model_weights"]
    names = _attr_list(root, "layer_names")
    if names is None:
        raise WeightsError(f"{path} is an HDF5 file but not in the Keras 2 weights layout (no "
                           "'layer_names' attribute); if it is a Keras 3 file, name it *.weights.h5.")
    layers = {}
    for name in names:
        if name not in root:
            raise WeightsError(f"{path}: layer {name!r} is listed but has no group; the file is damaged.")
        group = root[name]
        weight_names = _attr_list(group, "weight_names") or []
        layers[name] = [(short_name(w), np.asarray(group[w])) for w in weight_names]
    return WeightFile(str(path), "h5", layers, list(names), "name")


def _read_weights_h5(f, path):
    import h5py

    if "layers" not in f:
        raise WeightsError(f"{path} has no 'layers' group: not a Keras 3 .weights.h5 file. If it is a "
                           "Keras 2 file, rename it to *.h5.")
    layers, order, by_name = {}, {}, []
    for key, group in f["layers"].items():
        if any(k != "vars" for k in group):
            raise WeightsError(f"{path}: layer group {key!r} contains nested layers ({sorted(group)}); "
                               "nested models are not supported - save a flat model.")
        variables = group.get("vars", {})
        arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
        if len(arrays) != len(variables):
            raise WeightsError(f"{path}: layer group {key!r} has vars not numbered 0..{len(variables) - 1}.")
        name = group.attrs.get("zoo_layer_name")
        by_name.append(name is not None)
        name = _text(name) if name is not None else key
        layers[name] = [(None, a) for a in arrays]
        order[name] = int(group.attrs.get("zoo_order", -1))
    if "vars" in f and isinstance(f["vars"], h5py.Group) and len(f["vars"]):
        raise WeightsError(f"{path}: model-level variables are not supported.")
    named = bool(by_name) and all(by_name)
    return WeightFile(str(path), "weights.h5", layers,
                      sorted(layers, key=order.get) if named else None, "name" if named else "keras_class")


_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
              "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def _read_safetensors(path):
    import json

    data = Path(path).read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n]) if 8 + n <= len(data) else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a safetensors file (bad header).")
    body, out = memoryview(data)[8 + n:], {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info.get("data_offsets", (0, -1))
        dtype = _ST_DTYPES.get(info.get("dtype"))
        shape = tuple(info.get("shape", ()))
        if dtype is None or not 0 <= begin <= end <= len(body) or \
                end - begin != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise WeightsError(f"{path}: tensor {key!r} has an unsupported dtype {info.get('dtype')!r} or "
                               "offsets outside the file; the file is damaged or not plain numeric data.")
        out[key] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).astype(
            np.dtype(dtype).newbyteorder("="))
    return out


def _layer_keyed(path, items):
    layers = {}
    for key, array in items:
        layer, _, index = key.rpartition("/")
        if not layer or not index.isdigit():
            raise WeightsError(f"{path}: array {key!r} is not named '<layer name>/<index>'.")
        layers.setdefault(layer, {})[int(index)] = np.asarray(array)
    return layers


def read(path, fmt=None):
    """Read every layer's arrays from ``path`` (see the module docstring for the formats)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt in ("npz", "safetensors"):
        if fmt == "safetensors":
            layers = _layer_keyed(path, _read_safetensors(path).items())
        else:
            try:
                with np.load(path, allow_pickle=False) as data:
                    layers = _layer_keyed(path, ((k, data[k]) for k in data.files))
            except (ValueError, OSError) as e:
                raise WeightsError(f"cannot read {path} as .npz weights ({e}); object arrays are refused "
                                   "because loading them would unpickle code.") from None
        for layer, arrays in layers.items():
            if sorted(arrays) != list(range(len(arrays))):
                raise WeightsError(f"{path}: layer {layer!r} has indices {sorted(arrays)}; expected 0..n-1.")
            layers[layer] = [(None, arrays[i]) for i in range(len(arrays))]
        return WeightFile(str(path), fmt, layers, list(layers), "name")
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"cannot open {path} as HDF5 ({e}); the file is damaged or not an .h5 file.") from None
    with f:
        _check_hdf5(f, path)
        return _read_h5(f, path) if fmt == "h5" else _read_weights_h5(f, path)


# --------------------------------------------------------------------------- writing
def _write_h5(model, fh):
    _h5.write_model_weights(fh, model)


def _write_weights_h5(model, fh):
    import h5py

    keys = keras_class_keys(model)
    with h5py.File(fh, "w") as f:
        f.attrs["zoo_format"] = "zoo weights.h5 v1 (Keras 3 layout + zoo_layer_name attributes)"
        layers = f.create_group("layers")
        for order, layer in enumerate(model.layers):
            group = layers.create_group(keys[layer.name])
            group.attrs["zoo_layer_name"] = layer.name
            group.attrs["zoo_order"] = order
            variables = group.create_group("vars")
            for i, w in enumerate(layer._trainable_weights + layer._non_trainable_weights):
                variables.create_dataset(str(i), data=np.asarray(w.numpy()))
        f.create_group("vars")


def _write_npz(model, fh):
    arrays = {f"{layer.name}/{i}": np.asarray(w.numpy())
              for layer in model.layers for i, w in enumerate(layer.weights)}
    np.savez(fh, **arrays)


def _write_safetensors(model, fh):
    import json

    header, buffers, offset = {}, [], 0
    codes = {np.dtype(v): k for k, v in _ST_DTYPES.items()}
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            array = np.ascontiguousarray(np.asarray(w.numpy()))
            array = array.astype(array.dtype.newbyteorder("<"))
            raw = array.tobytes()
            header[f"{layer.name}/{i}"] = {"dtype": codes[array.dtype], "shape": list(array.shape),
                                           "data_offsets": [offset, offset + len(raw)]}
            buffers.append(raw)
            offset += len(raw)
    header["__metadata__"] = {"format": "zoo"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    fh.write(len(text).to_bytes(8, "little") + text)
    for raw in buffers:
        fh.write(raw)


def write(model, path, fmt=None):
    """Write ``model``'s weights to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path).expanduser().resolve()
    fmt = detect_format(path, fmt)
    writer = {"h5": _write_h5, "weights.h5": _write_weights_h5, "npz": _write_npz,
              "safetensors": _write_safetensors}[fmt]

    def write_file(tmp):
        with open(tmp, "w+b") as fh:  # a file object: np.savez adds no suffix, h5py reads back
            writer(model, fh)

    _io.atomic_write_bytes(path, write_file)
    return path
