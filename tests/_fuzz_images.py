"""Seeded mutations of NIfTI headers and DICOM elements for the fuzz suite (tests/_fuzz.py); same
conventions as tests/_fuzz_mutate.py: ``(description, new content)`` from a ``random.Random``."""
import math
import struct

from _fuzz_mutate import mutate_bytes

# --------------------------------------------------------------------------- NIfTI
_NIFTI_FIELDS = {  # name: (offset, struct format, hostile values)
    "sizeof_hdr": (0, "<i", [0, 123456, -1, 540]),
    "dim0": (40, "<h", [0, -1, 8, 2, 5]),
    "dim1": (42, "<h", [0, -3, 1, 32767]),
    "dim3": (46, "<h", [0, 1, 2, 9]),
    "datatype": (70, "<h", [0, 999, 2, 32, 128, 1536]),
    "bitpix": (72, "<h", [0, 7, 64]),
    "qfac": (76, "<f", [math.nan, 0.0, 2.0, -1.0]),
    "pixdim1": (80, "<f", [math.nan, math.inf, 0.0, -2.0, 1e30, 1e-30]),
    "pixdim3": (88, "<f", [math.nan, 0.0, -1.0]),
    "vox_offset": (108, "<f", [math.nan, 0.0, 1e9, 300.0, 352.0]),
    "scl_slope": (112, "<f", [math.inf, -math.inf, math.nan, 0.0, 2.0, 1e-40]),
    "scl_inter": (116, "<f", [math.inf, math.nan, 5.0]),
    "qform_code": (252, "<h", [0, 1, 77, -1]),
    "sform_code": (254, "<h", [0, 2, 99, -5]),
    "quatern_b": (256, "<f", [math.nan, 5.0, 1.0]),
    "qoffset_x": (268, "<f", [math.nan, math.inf, 1e38]),
    "srow_x": (280, "<4f", [(0.0,) * 4, (math.inf, 0, 0, 0), (math.nan,) * 4]),
    "srow_all": (280, "<12f", [(0.0,) * 12]),
    "magic": (344, "4s", [b"ni1\0", b"xyz\0", b"n+2\0", b"\0\0\0\0"]),
}


def mutate_nifti(rng, raw):
    """One header field of an uncompressed NIfTI-1 file, a data value, or its bytes."""
    op = rng.choice(["field"] * 6 + ["nan_data", "bytes"])
    if op == "field":
        name = rng.choice(sorted(_NIFTI_FIELDS))
        offset, fmt, values = _NIFTI_FIELDS[name]
        value = rng.choice(values)
        data = bytearray(raw)
        struct.pack_into(fmt, data, offset, *(value if isinstance(value, tuple) else (value,)))
        return f"{name} = {value!r}", bytes(data)
    if op == "nan_data":
        data = bytearray(raw)
        at = 352 + 4 * rng.randrange((len(raw) - 352) // 4)
        struct.pack_into("<f", data, at, math.nan)
        return f"NaN voxel at byte {at}", bytes(data)
    return mutate_bytes(rng, raw, protect=352)


# --------------------------------------------------------------------------- DICOM
_DICOM_TAGS = {  # keyword: ((group, element), VR, hostile raw values)
    "PixelSpacing": ((0x0028, 0x0030), "DS", [b"abc\\1", b"-1\\-1", b"0.5", b"0\\0", b"nan\\1", b"1e400\\1", b""]),
    "ImagePositionPatient": ((0x0020, 0x0032), "DS", [b"x\\1\\2", b"1\\2", b"nan\\0\\0", b""]),
    "ImageOrientationPatient": ((0x0020, 0x0037), "DS", [b"1\\0\\0\\0\\0\\1", b"1\\1\\0\\0\\1\\0", b"0\\0\\0\\0\\0\\0",
                                                         b"a\\b\\c\\d\\e\\f"]),
    "SliceThickness": ((0x0018, 0x0050), "DS", [b"-5", b"abc", b"0", b"inf"]),
    "RescaleSlope": ((0x0028, 0x1053), "DS", [b"inf", b"abc", b"0", b"-1e308"]),
    "RescaleIntercept": ((0x0028, 0x1052), "DS", [b"nan", b"x"]),
    "NumberOfFrames": ((0x0028, 0x0008), "IS", [b"abc", b"2", b"-1", b"0"]),
    "Rows": ((0x0028, 0x0010), "US", [b"\x00\x00", b"\xff\xff", b"\x05\x00"]),
    "SeriesInstanceUID": ((0x0020, 0x000E), "UI", [b"1.2.3.999", b""]),
}
PIXEL_DATA = struct.pack("<HH", 0x7FE0, 0x0010)


def _find_element(raw, tag, vr):
    """(start, value start, value end) of a short-VR explicit little-endian element, or None."""
    at = raw.find(struct.pack("<HH", *tag) + vr.encode(), 132)
    if at < 0:
        return None
    length = struct.unpack("<H", raw[at + 6:at + 8])[0]
    return at, at + 8, at + 8 + length


def set_dicom_element(raw, keyword, value):
    tag, vr, _ = _DICOM_TAGS[keyword]
    found = _find_element(raw, tag, vr)
    if found is None:
        return raw
    start, begin, end = found
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    return raw[:begin - 2] + struct.pack("<H", len(value)) + value + raw[end:]


def mutate_dicom_series(rng, files):
    """``files``: {name: bytes} of a valid explicit-VR little-endian series. Returns
    (description, {name: bytes})."""
    name = rng.choice(sorted(files))
    out = dict(files)
    op = rng.choice(["element"] * 6 + ["truncate", "delete_pixels", "bytes", "drop_element", "all_files"])
    if op == "truncate":
        size = rng.choice([0, 10, 132, 200, 400, len(files[name]) - 10])
        out[name] = files[name][:size]
        return f"{name} truncated to {size} bytes", out
    if op == "bytes":
        desc, out[name] = mutate_bytes(rng, files[name], protect=132)
        return f"{name}: {desc}", out
    if op == "delete_pixels":
        at = files[name].find(PIXEL_DATA, 132)
        out[name] = files[name][:at]
        return f"{name}: PixelData cut off", out
    keyword = rng.choice(sorted(_DICOM_TAGS))
    if op == "drop_element":
        tag, vr, _ = _DICOM_TAGS[keyword]
        found = _find_element(files[name], tag, vr)
        if found:
            out[name] = files[name][:found[0]] + files[name][found[2]:]
        return f"{name}: {keyword} removed", out
    value = rng.choice(_DICOM_TAGS[keyword][2])
    targets = sorted(files) if op == "all_files" else [name]
    for target in targets:
        out[target] = set_dicom_element(out[target], keyword, value)
    return f"{'every file' if op == 'all_files' else name}: {keyword} = {value!r}", out
