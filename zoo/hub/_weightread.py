"""Read weight files lazily and refuse anything that is not plain, consistent numeric data.

A header is never trusted: shapes and dtypes are known first and the data of an array is read
only when the model takes it (:class:`Array`), so a 1 MB npz that declares a 1 GiB member, or
an HDF5 dataset of 2**40 elements, costs nothing until its shape has matched a layer. Every
failure of a library underneath (zipfile, zlib, h5py, safetensors) becomes a WeightsError that
names the file and the problem.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
from safetensors import safe_open

from zoo.errors import WeightsError, ZooError
from zoo.hub._weightfile import META_KEY, META_LIMIT, NPZ_META, WeightFile, _text, detect_format, parse_meta, short_name

_MAX_OBJECTS = 200_000  # objects in an HDF5 weights file (ResNet-152: ~2,000)
_MAX_INDEX_DIGITS = 6   # '<layer>/<index>': no layer has a million arrays


class Array:
    """One array of a weights file: shape and dtype come from the file's header; the data is read
    only by :meth:`read`, after the shape was checked against the model (a 1 MB file may declare
    a 1 GiB array of zeros, or 2**40 elements)."""
    __slots__ = ("name", "shape", "dtype", "_load")

    def __init__(self, name, shape, dtype, load):
        self.name, self.shape, self.dtype, self._load = name, tuple(int(d) for d in shape), np.dtype(dtype), load

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=object))

    def read(self):
        try:
            value = np.asarray(self._load())
        except ZooError:
            raise
        except Exception as e:  # zlib/CRC errors, short reads, HDF5 filter failures ...
            raise WeightsError(f"{self.name}: the array data cannot be read ({_describe(e)}); the file is "
                               "damaged or truncated - download or save it again.") from None
        if value.shape != self.shape or value.dtype != self.dtype:
            raise WeightsError(f"{self.name}: the file declares shape {self.shape} {self.dtype} but holds "
                               f"{value.shape} {value.dtype}; the file is damaged.")
        return value

    def __array__(self, dtype=None, copy=None):
        value = self.read()
        return value if dtype is None else value.astype(dtype)

    def __repr__(self):
        return f"Array({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _describe(exc):
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _check_hdf5(f, path):
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    problems, count = [], [0]

    def visit(name, link):
        count[0] += 1
        if count[0] > _MAX_OBJECTS:
            problems.append(f"it holds more than {_MAX_OBJECTS:,} objects")
        elif isinstance(link, h5py.ExternalLink):
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
                elif obj.dtype.kind not in "fiub" or obj.dtype.hasobject:
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


def _dataset(path, parent, key, what):
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    obj = parent.get(key)
    if not isinstance(obj, h5py.Dataset):
        found = "nothing" if obj is None else f"a {type(obj).__name__.lower()}"
        raise WeightsError(f"{path}: {what} {key!r} is listed but the file holds {found} there, not a "
                           "dataset; the file is damaged or was not written by Keras or the zoo.")
    return Array(f"{path}: {parent.name.strip('/')}/{key}", obj.shape, obj.dtype, lambda: obj[()])


def _unique(path, names, what):
    seen = set()
    for n in names:
        if n in seen:
            raise WeightsError(f"{path}: {what} {n!r} appears twice; the file is ambiguous - save it again.")
        seen.add(n)


def _read_h5(f, path):
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    root = f
    if _attr_list(f, "layer_names") is None and isinstance(f.get("model_weights"), h5py.Group):
        root = f["model_weights"]
    names = _attr_list(root, "layer_names")
    if names is None:
        raise WeightsError(f"{path} is an HDF5 file but not in the Keras 2 weights layout (no "
                           "'layer_names' attribute); if it is a Keras 3 file, name it *.weights.h5.")
    _unique(path, names, "layer")
    layers = {}
    for name in names:
        group = root.get(name)
        if not isinstance(group, h5py.Group):
            raise WeightsError(f"{path}: layer {name!r} is listed but has no group; the file is damaged.")
        weight_names = _attr_list(group, "weight_names") or []
        _unique(path, weight_names, f"weight of layer {name!r}")
        layers[name] = [(short_name(w), _dataset(path, group, w, "weight")) for w in weight_names]
    return WeightFile(str(path), "h5", layers, list(names), "name")


def _h5_meta(f, path):
    if META_KEY not in f.attrs:
        return None
    value = f.attrs[META_KEY]
    if not isinstance(value, (str, bytes, np.bytes_)):
        raise WeightsError(f"{path}: root attribute {META_KEY!r} is a {type(value).__name__}, not the "
                           "metadata's JSON text; save the weights again with zoo.save_weights.")
    return value


def _read_weights_h5(f, path):
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    top = f.get("layers")
    if not isinstance(top, h5py.Group):
        raise WeightsError(f"{path} has no 'layers' group: not a Keras 3 .weights.h5 file. If it is a "
                           "Keras 2 file, rename it to *.h5.")
    layers, order, by_name = {}, {}, []
    for key, group in top.items():
        if not isinstance(group, h5py.Group):
            raise WeightsError(f"{path}: layers/{key} is a {type(group).__name__.lower()}, not a layer group; "
                               "the file is damaged.")
        if any(k != "vars" for k in group):
            raise WeightsError(f"{path}: layer group {key!r} contains nested layers ({sorted(group)}); "
                               "nested models are not supported - save a flat model.")
        variables = group.get("vars")
        if variables is not None and not isinstance(variables, h5py.Group):
            raise WeightsError(f"{path}: layers/{key}/vars is a dataset, not a group of variables; the file "
                               "is damaged.")
        variables = variables if variables is not None else {}
        if sorted(variables, key=lambda k: (len(k), k)) != [str(i) for i in range(len(variables))]:
            raise WeightsError(f"{path}: layer group {key!r} has vars {sorted(variables)[:8]}, not numbered "
                               f"0..{len(variables) - 1}; the file is damaged.")
        arrays = [_dataset(path, variables, str(i), "variable") for i in range(len(variables))]
        name = group.attrs.get("zoo_layer_name")
        by_name.append(name is not None)
        name = _text(name) if name is not None else key
        if name in layers:
            raise WeightsError(f"{path}: two layer groups are named {name!r}; the file is ambiguous.")
        layers[name] = [(None, a) for a in arrays]
        raw_order = group.attrs.get("zoo_order", -1)
        order[name] = int(raw_order) if np.ndim(raw_order) == 0 and np.asarray(raw_order).dtype.kind in "iu" else -1
    extra = f.get("vars")
    if extra is not None and (not isinstance(extra, h5py.Group) or len(extra)):
        raise WeightsError(f"{path}: model-level variables are not supported.")
    named = bool(by_name) and all(by_name)
    return WeightFile(str(path), "weights.h5", layers,
                      sorted(layers, key=order.get) if named else None, "name" if named else "keras_class")


_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4",
              "I64": "<i8", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise WeightsError(f"the header names {next(k for k in keys if keys.count(k) > 1)!r} twice")
    return dict(pairs)


def _read_safetensors(path):
    """Header and offsets are validated by the ``safetensors`` package (contiguous, in bounds, sizes
    matching dtype x shape); duplicate names, which it keeps silently (last wins), are refused here."""
    try:
        handle = safe_open(str(path), framework="numpy")
    except Exception as e:  # SafetensorError, OSError
        raise WeightsError(f"{path} is not a valid safetensors file ({_describe(e)}); it is damaged, "
                           "truncated or not safetensors.") from None
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            json.loads(fh.read(n), object_pairs_hook=_unique_keys)  # flat: safetensors checked the layout
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}; the file is ambiguous - save it again.") from None
    out = {}
    for key in handle.keys():
        info = handle.get_slice(key)
        code = info.get_dtype()
        if code not in _ST_DTYPES:
            raise WeightsError(f"{path}: tensor {key!r} has dtype {code}, which numpy cannot hold; convert "
                               "the weights to float32 (e.g. tensor.float() in PyTorch) and save again.")
        out[key] = Array(f"{path}: {key}", info.get_shape(), np.dtype(_ST_DTYPES[code]).newbyteorder("="),
                         lambda key=key: handle.get_tensor(key))
    meta = (handle.metadata() or {}).get(META_KEY)
    return out, meta, lambda: handle.__exit__(None, None, None)


def _read_npz(path):
    """An ``np.savez`` zip, read member by member: every member must be a plain numeric ``.npy``
    whose header is read (not its data) here; encrypted, duplicated and object members are refused."""
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except Exception as e:  # BadZipFile (truncated, a flipped bit, a .npy named .npz), EOFError, OSError
        raise WeightsError(f"cannot read {path} as .npz weights ({_describe(e)}): it is not a zip archive "
                           "of .npy arrays (np.savez), or it is damaged or truncated.") from None
    try:
        names = [i.filename for i in infos]
        _unique(path, names, "array")
        out, meta = {}, None
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None:
                raise WeightsError(f"{path}: member {info.filename!r} is not a .npy array; a weights .npz holds "
                                   "only arrays named '<layer>/<index>'.")
            if info.flag_bits & 0x1:
                raise WeightsError(f"{path}: member {info.filename!r} is encrypted; save the weights without a "
                                   "password.")
            array = _npy_member(path, zf, info)
            if key == NPZ_META:
                if array.dtype != np.uint8 or array.ndim != 1 or array.size > META_LIMIT:
                    raise WeightsError(f"{path}: member {NPZ_META!r} must be the metadata's UTF-8 bytes (a "
                                       f"1-D uint8 array of at most {META_LIMIT} bytes); got {array.dtype} "
                                       f"{tuple(array.shape)}. Save the weights again with zoo.save_weights.")
                meta = array.read()
                continue
            out[key] = array
    except ZooError:
        zf.close()
        raise
    except Exception as e:
        zf.close()
        raise WeightsError(f"cannot read {path} as .npz weights ({_describe(e)}); the file is damaged.") from None
    return out, meta, zf.close


def _npy_member(path, zf, info):
    where = f"{path}: {info.filename[:-4]}"
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise WeightsError(f"{where}: .npy format version {version} is not supported (1.0 or 2.0).")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    if dtype.hasobject or dtype.kind not in "fiucb":
        raise WeightsError(f"{where} has dtype {dtype} (Python objects or records), not numbers; it is refused "
                           "because loading it would unpickle code. Save plain numeric arrays.")

    def load():
        with zf.open(info) as member:
            value = np.lib.format.read_array(member, allow_pickle=False)
            if member.read(1):  # reading to the end also makes zipfile check the CRC
                raise WeightsError(f"{where}: bytes after the array data; the file is damaged.")
        return value
    return Array(where, shape, dtype, load)


def _layer_keyed(path, items):
    layers = {}
    for key, array in items:
        layer, _, index = key.rpartition("/")
        if not layer or not index.isdigit() or len(index) > _MAX_INDEX_DIGITS:
            raise WeightsError(f"{path}: array {key[:100]!r} is not named '<layer name>/<index>'.")
        layers.setdefault(layer, {})[int(index)] = array
    for layer, arrays in layers.items():
        if sorted(arrays) != list(range(len(arrays))):
            found = sorted(arrays)
            more = " ..." if len(found) > 10 else ""
            raise WeightsError(f"{path}: layer {layer!r} has array indices {found[:10]}{more}"
                               f"; expected 0..{len(arrays) - 1}.")
        layers[layer] = [(None, arrays[i]) for i in range(len(arrays))]
    return layers


def read(path, fmt=None):
    """Every layer's arrays in ``path`` (see the module docstring for the formats), as :class:`Array`
    objects whose data is read on demand; the returned :class:`WeightFile` holds the file open
    until ``close()`` (it is a context manager). A damaged or hostile file raises WeightsError."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is not a regular file (missing, a folder or a device).")
    if fmt in ("npz", "safetensors"):
        items, meta, closer = (_read_safetensors if fmt == "safetensors" else _read_npz)(path)
        try:
            layers = _layer_keyed(path, items.items())
            meta = parse_meta(path, meta)
        except ZooError:
            closer()
            raise
        return WeightFile(str(path), fmt, layers, list(layers), "name", closer, meta)
    import h5py  # heavy: h5py (~30 ms); import zoo and zoo list must not pay for it

    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise WeightsError(f"cannot open {path} as HDF5 ({_describe(e)}); the file is damaged or not an .h5 "
                           "file.") from None
    try:
        _check_hdf5(f, path)
        wf = _read_h5(f, path) if fmt == "h5" else _read_weights_h5(f, path)
        wf.meta = parse_meta(path, _h5_meta(f, path))
    except ZooError:
        f.close()
        raise
    except Exception as e:  # "Link visitation failed", damaged headers, attributes of odd types ...
        f.close()
        raise WeightsError(f"cannot read {path} as {fmt} weights ({_describe(e)}); the file is damaged.") from None
    wf.closer = f.close
    return wf


# --------------------------------------------------------------------------- values for the model
_FLOATS = ("float16", "float32", "float64")


def check_dtype(wf, label, kind, arr, var):
    """Only float16/32/64 may change width on the way into a variable; anything else (integers,
    booleans, complex numbers into float variables) means the file does not hold these weights."""
    want = np.dtype(var.dtype.as_numpy_dtype)
    if arr.dtype == want or (arr.dtype.name in _FLOATS and want.name in _FLOATS):
        return
    raise WeightsError(
        f"weights file {wf.path}: layer {label} {kind} is {arr.dtype} in the file but {want} in the model; "
        "only float16, float32 and float64 are converted into each other. Convert the array to float32 "
        "(e.g. array.astype('float32')) and save the file again.")


def variable_values(wf, label, steps, inflate, adapt_channels, allow_non_finite=False):
    """Read the planned arrays of one layer (their shapes matched), inflate/adapt them as planned
    (``steps``: ``(variable, Array, [(op, arg)])``), cast them to the variables' dtypes, and refuse
    NaN/Inf values (also those a narrowing cast makes) unless ``allow_non_finite``."""
    pairs = []
    for var, arr, ops in steps:
        value = arr.read() if hasattr(arr, "read") else np.asarray(arr)
        for op, arg in ops:
            value = inflate(value, arg) if op == "inflate" else adapt_channels(value, arg)
        dtype = np.dtype(var.dtype.as_numpy_dtype)
        if dtype.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                value = value.astype(dtype, copy=False)
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            if bad and not allow_non_finite:
                raise WeightsError(
                    f"weights file {wf.path}: layer {label} {short_name(var.name)} holds {bad} NaN/Inf "
                    f"value(s) of {value.size}{' after the cast to ' + dtype.name if arr.dtype != dtype else ''}; "
                    "such weights make every output NaN or constant. Use another file, or pass "
                    "allow_non_finite=True if you really mean to load them.")
        pairs.append((var, value))
    return pairs
