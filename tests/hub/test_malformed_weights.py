"""Malformed weight files (h5, weights.h5, npz, safetensors), case by case (the numbers are issue 16's
items; registry cases: hub/test_malformed_registry.py, NIfTI and DICOM: data/test_malformed_images.py):
each ends in a WeightsError that names the file and the problem; valid variants still load."""
import io
import json
import struct
import zipfile

import h5py
import numpy as np
import pytest
from test_weights import randomize, snapshot, tiny

import zoo
from zoo.errors import WeightsError
from zoo.hub import weights as W

FORMATS = ("h5", "weights.h5", "npz", "safetensors")


def saved(tmp_path, fmt, model=None):
    model = model or randomize(tiny())
    path = tmp_path / f"m.{fmt}"
    zoo.save_weights(model, path, verbose=False)
    return path


def npz_arrays(tmp_path):
    with np.load(saved(tmp_path, "npz")) as f:
        return {k: f[k] for k in f.files}


def write_npz(path, arrays, extra=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in list(arrays.items()) + list(extra):
            member = io.BytesIO()
            np.lib.format.write_array(member, v, allow_pickle=False)
            zf.writestr(f"{k}.npy", member.getvalue())
    path.write_bytes(buf.getvalue())
    return path


def refused(path, match, model=None):
    model = model or tiny()
    before = snapshot(model)
    with pytest.raises(WeightsError, match=match):
        W.load_weights_into(model, weights=str(path))
    for a, b in zip(before, model.get_weights()):  # nothing assigned
        np.testing.assert_array_equal(a, b)


def poison(arrays, key, how):
    arrays = dict(arrays)
    a = arrays[key].copy()
    if how == "nan":
        a[...] = np.nan
    arrays[key] = a
    return arrays


# --------------------------------------------------------------------------- 1. non-finite and wrong-type weights
@pytest.mark.parametrize("fmt", FORMATS)
def test_1_nan_weights_are_refused_in_every_format_unless_allowed(tmp_path, fmt):
    model = randomize(tiny())
    kernel = model.get_layer("classifier").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    path = saved(tmp_path, fmt, model)
    refused(path, r"layer classifier kernel holds 40 NaN/Inf value\(s\) of 40.*allow_non_finite=True")
    loaded = tiny()
    report = W.load_weights_into(loaded, weights=str(path), allow_non_finite=True)
    assert "classifier" in report.loaded and np.isnan(loaded.get_layer("classifier").get_weights()[0]).all()


@pytest.mark.parametrize("dtype", ["int8", "bool", "int32", "complex64", "uint8"])
def test_1_dtype_changes_other_than_float_widths_are_refused(tmp_path, dtype):
    arrays = npz_arrays(tmp_path)
    arrays["stem_conv/0"] = arrays["stem_conv/0"].astype(dtype)
    refused(write_npz(tmp_path / "bad.npz", arrays), rf"layer stem_conv kernel is {dtype} in the file but float32")


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_1_float_widths_are_converted(tmp_path, dtype):
    arrays = npz_arrays(tmp_path)
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    model = tiny()
    W.load_weights_into(model, weights=str(write_npz(tmp_path / "ok.npz", arrays)))
    np.testing.assert_allclose(model.get_layer("stem_conv").get_weights()[0], arrays["stem_conv/0"], rtol=1e-3)


def test_1_narrowing_overflow_to_inf_is_refused(tmp_path):
    arrays = npz_arrays(tmp_path)
    arrays["stage1_conv/0"] = arrays["stage1_conv/0"].astype("float64") * 1e300
    refused(
        write_npz(tmp_path / "big.npz", arrays),
        r"stage1_conv kernel holds 288 NaN/Inf value\(s\) of 288 after the cast to float32",
    )


def test_1_safetensors_int32_duplicate_member_and_overlapping_offsets(tmp_path):
    path = saved(tmp_path, "safetensors")
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]

    def write(h, name):
        text = json.dumps(h).encode() if isinstance(h, dict) else h
        (tmp_path / name).write_bytes(struct.pack("<Q", len(text)) + text + body)
        return tmp_path / name

    as_int = json.loads(json.dumps(header))
    as_int["stem_conv/0"]["dtype"] = "I32"
    refused(write(as_int, "i32.safetensors"), r"stem_conv kernel is int32 in the file but float32")
    overlap = json.loads(json.dumps(header))
    first, second = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])[:2]
    overlap[second]["data_offsets"] = [0, header[second]["data_offsets"][1] - header[second]["data_offsets"][0]]
    refused(write(overlap, "overlap.safetensors"), r"not a valid safetensors file .*invalid offset")
    text = json.dumps(header)
    duplicated = text[:-1] + ", " + json.dumps({first: header[first]})[1:-1] + "}"
    refused(write(duplicated.encode(), "dup.safetensors"), rf"the header names '{first}' twice")


def test_1_duplicate_npz_member_is_refused(tmp_path):
    arrays = npz_arrays(tmp_path)
    path = write_npz(tmp_path / "dup.npz", arrays, [("stem_conv/0", np.zeros_like(arrays["stem_conv/0"]))])
    refused(path, r"array 'stem_conv/0.npy' appears twice")


# --------------------------------------------------------------------------- 5. a small file declaring a huge array
def test_5_huge_member_is_refused_before_its_data_is_read(tmp_path):
    arrays = npz_arrays(tmp_path)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }"  # 1 GiB declared
    raw = header.encode() + b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + b"\0" * 1024  # 1 KB of data
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            m = io.BytesIO()
            np.lib.format.write_array(m, v)
            zf.writestr(f"{k}.npy", member if k == "stage1_conv/0" else m.getvalue())
    (tmp_path / "bomb.npz").write_bytes(buf.getvalue())
    # the shape is refused; reading the member would have failed with "cannot be read" instead
    refused(tmp_path / "bomb.npz",
            r"layer stage1_conv has shapes \[\(268435456,\)\] in the file but \[\(3, 3, 4, 8\)\]")
    with h5py.File(tmp_path / "huge.h5", "w") as f:  # 2**40 elements, nothing stored
        f.attrs["layer_names"] = np.array([b"stem_conv"])
        g = f.create_group("stem_conv")
        g.attrs["weight_names"] = np.array([b"stem_conv/kernel:0"])
        g.create_dataset("stem_conv/kernel:0", shape=(2 ** 40,), dtype="f4", chunks=True)
    assert (tmp_path / "huge.h5").stat().st_size < 100_000
    refused(tmp_path / "huge.h5", r"stem_conv has shapes \[\(1099511627776,\)\] in the file")


# --------------------------------------------------------------------------- 6. raw exceptions of the weight readers
@pytest.mark.parametrize("damage,match", [
    (lambda d: d[: len(d) // 2], r"cannot read .* as .npz weights \(BadZipFile"),
    (lambda d: d[:200] + bytes([d[200] ^ 0x10]) + d[201:], r"(Bad CRC-32|BadZipFile|damaged)"),
    (lambda d: b"", r"cannot read .* as .npz weights \(BadZipFile: File is not a zip file\)"),
])
def test_6_damaged_npz(tmp_path, damage, match):
    path = saved(tmp_path, "npz")
    path.write_bytes(damage(path.read_bytes()))
    refused(path, match)


def test_6_npy_named_npz_encrypted_member_and_object_arrays(tmp_path):
    arr = io.BytesIO()
    np.lib.format.write_array(arr, np.zeros(3, "float32"))
    (tmp_path / "plain.npz").write_bytes(arr.getvalue())
    refused(tmp_path / "plain.npz", r"not a zip archive of .npy arrays")
    raw = bytearray(saved(tmp_path, "npz").read_bytes())
    raw[raw.find(b"PK\x03\x04") + 6] |= 1
    raw[raw.find(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(raw))
    refused(tmp_path / "enc.npz", r"member 'stem_conv/0.npy' is encrypted")
    np.savez(tmp_path / "obj.npz", **{"stem_conv/0": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(WeightsError) as info:
        W.load_weights_into(tiny(), weights=str(tmp_path / "obj.npz"))
    assert "would unpickle code" in str(info.value) and "allow_pickle" not in str(info.value)  # 10: no bad advice


@pytest.mark.parametrize("edit,match", [
    ("missing_dataset", r"weight 'stem_conv/kernel:0' is listed but the file holds nothing there"),
    ("group_for_dataset", r"the file holds a group there, not a dataset"),
    ("duplicate_layer", r"layer 'stem_conv' appears twice"),
])
def test_6_damaged_keras2_h5(tmp_path, edit, match):
    path = saved(tmp_path, "h5")
    with h5py.File(path, "r+") as f:
        if edit == "missing_dataset":
            del f["stem_conv"]["stem_conv"]
        elif edit == "group_for_dataset":
            del f["stem_conv/stem_conv/kernel:0"]
            f.create_group("stem_conv/stem_conv/kernel:0")
        else:
            f.attrs["layer_names"] = np.array([b"stem_conv", b"stem_conv"])
    refused(path, match)


@pytest.mark.parametrize("edit,match", [
    ("layers_dataset", r"has no 'layers' group"),
    ("vars_dataset", r"vars is a dataset, not a group of variables"),
    ("renumbered", r"not numbered 0..1"),
])
def test_6_damaged_keras3_weights_h5(tmp_path, edit, match):
    path = saved(tmp_path, "weights.h5")
    with h5py.File(path, "r+") as f:
        if edit == "layers_dataset":
            del f["layers"]
            f["layers"] = np.zeros(3)
        elif edit == "vars_dataset":
            del f["layers/conv2d/vars"]
            f["layers/conv2d/vars"] = np.zeros(2)
        else:
            f["layers/dense/vars"].move("1", "7")
    refused(path, match)


def test_6_corrupted_hdf5_metadata_is_a_weights_error(tmp_path):
    """Every flipped byte of the metadata at the start of the file ("Link visitation failed",
    SystemError from h5py's lock, undecodable names, bad headers) ends in a WeightsError or loads."""
    from zoo.hub import _weightread
    data = saved(tmp_path, "h5").read_bytes()
    refusals = 0
    for at in range(0, 2400, 8):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        (tmp_path / "c.h5").write_bytes(bytes(damaged))
        try:
            with _weightread.read(tmp_path / "c.h5") as wf:
                for arrays in wf.layers.values():
                    [a.read() for _, a in arrays]
        except WeightsError as e:
            refusals += 1
            assert "c.h5" in str(e)
    assert refusals > 50


@pytest.mark.parametrize("header", [
    b'{"stem_conv/0": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}',
    b'{"stem_conv/0": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}',
    b'{"stem_conv/0": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}}',
    b'{"stem_conv/0": {"dtype": "F32", "shape": [2], "data_offsets": [4, 99]}}',
    b"[" * 100000 + b"]" * 100000,
])
def test_6_bad_safetensors_headers(tmp_path, header):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    refused(path, r"bad.safetensors is not a valid safetensors file \(SafetensorError")


def test_safetensors_written_by_the_package_reads_in_the_package(tmp_path):
    from safetensors.numpy import load_file
    model = randomize(tiny())
    arrays = load_file(str(saved(tmp_path, "safetensors", model)))
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            np.testing.assert_array_equal(arrays[f"{layer.name}/{i}"], w.numpy())
