"""Seeded mutations of valid files for the fuzz suite (tests/_fuzz.py): bytes, and structure-aware
edits of YAML registries and npz/safetensors/HDF5 weights (NIfTI and DICOM: tests/_fuzz_images.py).

Every function takes a ``random.Random`` and returns ``(description, new content)``; the
description says exactly what was changed, so a failing case can be read and reproduced.
"""
import io
import json
import struct
import zipfile

import numpy as np

HOSTILE = [None, True, False, 0, -1, -32, 1, 2, 3, 2 ** 31, 2 ** 63, 10 ** 30, 1.5, -0.0, 1e308,
           float("nan"), float("inf"), -float("inf"), "", "abc", "2", "zoo.models.x:y", "zoo._io:atomic_write_bytes",
           "../../etc/passwd", "a\u200bb", "r\u202el", "x\ny", "\x00", "é" * 3, [], [1], [[[]]], {}, {"a": 1},
           {1: 2}, list(range(50)), "x" * 5000]


def pick_hostile(rng):
    value = rng.choice(HOSTILE)
    return value.copy() if isinstance(value, (list, dict)) else value


# --------------------------------------------------------------------------- bytes
def mutate_bytes(rng, data, protect=0):
    """One generic byte-level mutation; ``protect`` leading bytes are left alone half of the time."""
    data = bytearray(data)
    start = protect if protect and rng.random() < 0.5 else 0
    n = len(data)
    op = rng.choice(["flip", "truncate", "zero", "insert", "repeat", "int32", "float32", "empty"])
    if n <= start or op == "empty":
        return "empty file", b""
    at = rng.randrange(start, n)
    if op == "flip":
        for _ in range(rng.choice([1, 1, 2, 8])):
            at = rng.randrange(start, n)
            data[at] ^= 1 << rng.randrange(8)
        return f"bit flip(s), last at byte {at}", bytes(data)
    if op == "truncate":
        return f"truncated to {at} of {n} bytes", bytes(data[:at])
    if op == "zero":
        length = rng.choice([1, 4, 16, 256])
        data[at:at + length] = bytes(min(length, n - at))
        return f"{length} bytes zeroed at {at}", bytes(data)
    if op == "insert":
        junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 16])))
        return f"{len(junk)} bytes inserted at {at}", bytes(data[:at] + junk + data[at:])
    if op == "repeat":
        length = rng.choice([8, 64, 512])
        return f"{length} bytes at {at} repeated", bytes(data[:at + length] + data[at:])
    fmt, value = ("<i", rng.choice([0, -1, 2 ** 31 - 1, -2 ** 31, 7, 348])) if op == "int32" else \
        ("<f", rng.choice([float("nan"), float("inf"), 0.0, -1.0, 1e30]))
    at = min(at, max(start, n - 4))
    struct.pack_into(fmt, data, at, value)
    return f"{op} {value!r} written at byte {at}", bytes(data)


# --------------------------------------------------------------------------- YAML registries
def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _get(value, path):
    for p in path:
        value = value[p]
    return value


def mutate_registry(rng, data, text):
    """A mutation of registry ``data`` (dumped again as YAML) or of its ``text``."""
    import yaml

    op = rng.choice(["value", "value", "value", "delete", "add_key", "int_key", "text", "bomb", "deep",
                     "bytes", "duplicate", "alias_cycle", "bad_utf8", "big_int"])
    if op in ("value", "delete", "add_key", "int_key"):
        data = json.loads(json.dumps(data))
        paths = [p for p in _paths(data) if p]
        path = rng.choice(paths)
        parent, key = _get(data, path[:-1]), path[-1]
        if op == "value":
            value = pick_hostile(rng)
            parent[key] = value
            desc = f"{'.'.join(map(str, path))} = {value!r:.60}"
        elif op == "delete":
            del parent[key]
            desc = f"deleted {'.'.join(map(str, path))}"
        elif op == "add_key" and isinstance(parent, dict):
            name = rng.choice(["paramz", "extra", "builder", "../x", "a b", "_private", "config"])
            parent[name if name not in parent else name + "2"] = pick_hostile(rng)
            desc = f"added key {name!r} at {'.'.join(map(str, path[:-1])) or 'top'}"
        elif isinstance(parent, dict):
            parent[rng.choice([1, 2.5, True])] = parent.pop(key)
            desc = f"key {key!r} at {'.'.join(map(str, path[:-1])) or 'top'} renamed to a non-string"
        else:
            return "unchanged (list parent)", text.encode()
        try:
            return desc, yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")
        except (yaml.YAMLError, UnicodeError):
            return desc + " (not representable: unchanged)", text.encode()
    if op == "text":
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        new = rng.choice(
            [
                "\t" + lines[i],
                lines[i] + ": x",
                lines[i].replace(":", ""),
                "- " + lines[i],
                "  ? [1, 2]\n  : 3",
                lines[i] + " &a",
                lines[i] + " !!python/object/apply:os.system ['true']",
                "%TAG ! x",
            ]
        )
        lines[i] = new
        return f"line {i + 1} -> {new!r:.60}", "\n".join(lines).encode()
    if op == "bomb":
        bomb = "bomb:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"  {c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
        return "YAML alias bomb (10**8 expanded values) appended as a top-level key", (text + "\n" + bomb).encode()
    if op == "deep":
        depth = rng.choice([30, 300, 30000])
        return f"a value nested {depth} deep", (text + f"\nextra: {'[' * depth}{']' * depth}\n").encode()
    if op == "bytes":
        return mutate_bytes(rng, text.encode())
    if op == "duplicate":
        lines = text.splitlines()
        i = rng.randrange(1, len(lines))
        return f"line {i + 1} duplicated", "\n".join(lines[:i + 1] + lines[i:]).encode()
    if op == "alias_cycle":
        return "a recursive alias", (text + "\ncycle: &c [*c]\n").encode()
    if op == "bad_utf8":
        raw = bytearray(text.encode())
        at = rng.randrange(len(raw))
        raw[at:at] = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])
        return f"invalid UTF-8 / NUL byte inserted at {at}", bytes(raw)
    digits = rng.choice([20, 400, 5000])
    huge = "params: 9" + "9" * (digits - 1) + " #"
    return f"an integer of {digits} digits", text.replace("params: ", huge, 1).encode()


# --------------------------------------------------------------------------- weights
def _npz_bytes(members, compress=False):
    buf = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", mode) as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return buf.getvalue()


def _npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def _value_mutation(rng, array):
    """A changed array: non-finite values, another dtype or shape, a huge or empty one."""
    op = rng.choice(["nan", "inf", "all_nan", "dtype", "dtype", "shape", "scalar", "empty", "huge64"])
    a = np.array(array)
    if op in ("nan", "inf", "all_nan"):
        if op == "all_nan":
            a[...] = np.nan
        else:
            a.reshape(-1)[rng.randrange(a.size)] = np.nan if op == "nan" else np.inf
        return op, a
    if op == "dtype":
        dtype = rng.choice(["int8", "int32", "bool", "complex64", "float16", "float64", "uint8", "int64"])
        return f"cast to {dtype}", a.astype(dtype)
    if op == "shape":
        return "reshaped", a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1)
    if op == "scalar":
        return "scalar", np.float32(1.0)
    if op == "empty":
        return "empty", np.zeros((0,) + a.shape[1:], a.dtype)
    return "float64 values beyond float32", a.astype("float64") * 1e300


def mutate_npz(rng, arrays):
    """``arrays``: {'<layer>/<i>': array} of a valid file."""
    names = list(arrays)
    name = rng.choice(names)
    members = [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]
    op = rng.choice(["value", "value", "value", "duplicate", "drop", "rename", "extra", "object", "header",
                     "encrypt", "not_npy", "compressed", "bytes", "bytes"])
    if op == "value":
        how, value = _value_mutation(rng, arrays[name])
        return f"{name}: {how}", _npz_bytes([(f"{k}.npy", _npy(value if k == name else v)) for k, v in arrays.items()])
    if op == "duplicate":
        twice = members + [(f"{name}.npy", _npy(np.zeros_like(arrays[name])))]
        return f"{name} stored twice (second one zeros)", _npz_bytes(twice)
    if op == "drop":
        return f"{name} removed", _npz_bytes([m for m in members if m[0] != f"{name}.npy"])
    if op == "rename":
        new = rng.choice(
            [
                "noslash",
                f"{name.rsplit('/', 1)[0]}/{10**9}",
                f"{name.rsplit('/', 1)[0]}/x",
                f"{name.rsplit('/', 1)[0]}/7",
                "/0",
                f"{name}/" + "9" * 5000,
            ]
        )
        renamed = [(f"{new}.npy" if m[0] == f"{name}.npy" else m[0], m[1]) for m in members]
        return f"{name} renamed {new[:40]!r}", _npz_bytes(renamed)
    if op == "extra":
        extra = rng.choice([("ghost/0", np.zeros(3, "float32")), ("aux_head/0", np.zeros(3, "float32"))])
        return f"extra member {extra[0]}", _npz_bytes(members + [(f"{extra[0]}.npy", _npy(extra[1]))])
    if op == "object":
        header = b"\x93NUMPY\x01\x00" + _padded_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }")
        pickled = [(m[0], header + b"\x80\x04N." if m[0] == f"{name}.npy" else m[1]) for m in members]
        return f"{name}: object dtype (a pickle)", _npz_bytes(pickled)
    if op == "header":
        shape = rng.choice(["(2**40,)", "(1073741824,)", "(-1,)", "(3, 3, 'a')", "(1e9,)", "()"])
        header = b"\x93NUMPY\x01\x00" + _padded_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape)
        return f"{name}: header declares shape {shape}", _npz_bytes(
            [(m[0], header + b"\0" * 64 if m[0] == f"{name}.npy" else m[1]) for m in members])
    if op == "encrypt":
        raw = bytearray(_npz_bytes(members))
        at = raw.find(b"PK\x03\x04")
        raw[at + 6] |= 1  # general purpose flag bit 0: encrypted
        central = raw.find(b"PK\x01\x02")
        raw[central + 8] |= 1
        return "first member flagged as encrypted", bytes(raw)
    if op == "not_npy":
        return "a .npy file (not a zip) with the .npz name", _npy(arrays[name])
    if op == "compressed":
        return "deflate-compressed members", _npz_bytes(members, compress=True)
    return mutate_bytes(rng, _npz_bytes(members, compress=rng.random() < 0.5))


def _padded_header(text):
    raw = text.encode("latin1")
    pad = 64 - (10 + len(raw) + 1) % 64
    raw += b" " * pad + b"\n"
    return struct.pack("<H", len(raw)) + raw


def _st_bytes(header, body):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def mutate_safetensors(rng, data):
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), bytearray(data[8 + n:])
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    info = header[name]
    op = rng.choice(["dtype", "shape", "offsets", "offsets", "duplicate", "deep", "metadata", "length", "nan",
                     "bytes", "bytes", "drop_body"])
    if op == "dtype":
        info["dtype"] = rng.choice(["I32", "I8", "BOOL", "F64", "F16", "BF16", "F8_E4M3", "C64", "XYZ", 3])
        return f"{name}: dtype {info['dtype']!r}", _st_bytes(header, bytes(body))
    if op == "shape":
        info["shape"] = rng.choice([[-2], [2 ** 40], [], [0], ["a"], [1.5], None, [[1]], list(reversed(info["shape"]))])
        return f"{name}: shape {info['shape']!r}", _st_bytes(header, bytes(body))
    if op == "offsets":
        begin, end = info["data_offsets"]
        info["data_offsets"] = rng.choice([[end, begin], [0, end - begin], [begin, end + 4], ["0", str(end)],
                                           [-4, end], [begin, 2 ** 62], [begin]])
        return f"{name}: data_offsets {info['data_offsets']!r}", _st_bytes(header, bytes(body))
    if op == "duplicate":
        text = json.dumps(header)
        entry = json.dumps({name: info})[1:-1]
        header = text[:-1].encode() + b", " + entry.encode() + b"}"
        return f"{name} listed twice in the header", _st_bytes(header, bytes(body))
    if op == "deep":
        depth = rng.choice([200, 100000])
        return f"a header nested {depth} deep", _st_bytes(b"[" * depth + b"]" * depth, bytes(body))
    if op == "metadata":
        header["__metadata__"] = rng.choice([{"a": 1}, [1], "x", {"a": {"b": "c"}}])
        return f"__metadata__ {header['__metadata__']!r}", _st_bytes(header, bytes(body))
    if op == "length":
        raw = bytearray(data)
        struct.pack_into("<Q", raw, 0, rng.choice([0, 1, n - 1, n + 1, 2 ** 40, 2 ** 64 - 1]))
        return f"header length field {struct.unpack('<Q', raw[:8])[0]}", bytes(raw)
    if op == "nan":
        begin, end = info["data_offsets"]
        if info["dtype"] == "F32" and end > begin:
            struct.pack_into("<f", body, begin, float("nan"))
        return f"{name}: a NaN value", _st_bytes(header, bytes(body))
    if op == "drop_body":
        return "data section truncated by 4 bytes", _st_bytes(header, bytes(body[:-4]))
    return mutate_bytes(rng, data, protect=8)


def mutate_h5(rng, path, layout):
    """Edit an HDF5 weights file in place with h5py; ``layout`` is 'h5' or 'weights.h5'."""
    import h5py

    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        target = rng.choice(datasets)
        op = rng.choice(["value", "value", "delete", "group", "huge", "softlink", "extlink", "attr", "attr",
                         "layers_kind", "vars_kind", "renumber", "string"])
        if op == "value":
            how, value = _value_mutation(rng, f[target][()])
            del f[target]
            f[target] = value
            return f"{target}: {how}"
        if op == "delete":
            del f[target]
            return f"{target} deleted"
        if op == "group":
            del f[target]
            f.create_group(target)
            return f"{target} replaced by a group"
        if op == "huge":
            shape = f[target].shape
            del f[target]
            f.create_dataset(target, shape=(2 ** 40,) if rng.random() < 0.5 else (2 ** 20,) + shape[1:],
                             dtype="f4", chunks=True)
            return f"{target}: an empty 2**40-element (or 2**20-row) chunked dataset"
        if op == "softlink":
            del f[target]
            f[target] = h5py.SoftLink("/" + rng.choice(datasets))
            return f"{target} replaced by a soft link"
        if op == "extlink":
            del f[target]
            f[target] = h5py.ExternalLink("/etc/hostname", "/x")
            return f"{target} replaced by an external link"
        if op == "string":
            del f[target]
            f[target] = np.array([b"abc"])
            return f"{target} replaced by a string dataset"
        if layout == "h5" and op == "attr":
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
            new = rng.choice([names + [names[0]], names[:-1], names + ["ghost"], [1, 2], [], ["x" * 1000]])
            f.attrs["layer_names"] = np.array([str(n).encode() for n in new], dtype="S") if new else np.zeros(0, "f8")
            return f"layer_names attribute = {str(new)[:60]}"
        if layout == "h5" and op in ("layers_kind", "vars_kind", "renumber"):
            group = rng.choice([k for k in f if isinstance(f[k], h5py.Group)])
            f[group].attrs["weight_names"] = np.array([b"a/b:0", b"a/b:0"])
            return f"{group}: weight_names lists a missing dataset twice"
        if op == "layers_kind" and "layers" in f:
            del f["layers"]
            f["layers"] = np.zeros(3)
            return "'layers' replaced by a dataset"
        if op in ("vars_kind", "renumber", "attr") and "layers" in f:
            key = rng.choice(list(f["layers"]))
            group = f["layers"][key]
            if op == "vars_kind":
                del group["vars"]
                group["vars"] = np.zeros(2)
                return f"layers/{key}/vars replaced by a dataset"
            if op == "renumber" and "0" in group["vars"]:
                group["vars"].move("0", "99")
                return f"layers/{key}/vars/0 renamed 99"
            group.attrs["zoo_layer_name"] = rng.choice(["stem_conv", "ghost", "x" * 1000])
            return f"layers/{key} zoo_layer_name changed"
        return "unchanged"
