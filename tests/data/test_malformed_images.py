"""Malformed NIfTI and DICOM files, case by case (the numbers are issue 16's items; weight files:
hub/test_malformed_weights.py): each ends in a DataError that names the file and the problem, before
any model runs; valid files still load."""
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from _files import _series
from _fuzz_images import set_dicom_element

import zoo
from zoo.data import DataError, load_nifti, read_dicom_series


# --------------------------------------------------------------------------- 3, 7. NIfTI geometry checked on reading
def nifti(tmp_path, name="v.nii", **fields):
    img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(6, 5, 4)).astype("float32"), np.diag([1.5, 2, 2.5, 1]))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path = tmp_path / name
    nib.save(img, path)
    data = bytearray(path.read_bytes())
    offsets = {"sizeof_hdr": (0, "<i"), "dim1": (42, "<h"), "pixdim1": (80, "<f"), "scl_slope": (112, "<f"),
               "qoffset_x": (268, "<f"), "srow": (280, "<12f"), "srow_x0": (280, "<f"), "magic": (344, "4s")}
    for field, value in fields.items():
        offset, fmt = offsets[field]
        struct.pack_into(fmt, data, offset, *(value if isinstance(value, tuple) else (value,)))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("fields,match", [
    ({"pixdim1": float("nan")}, r"voxel size \(pixdim\) \(nan, 2, 2.5\) is not valid"),
    ({"pixdim1": float("inf")}, r"voxel size \(pixdim\) \(inf, 2, 2.5\)"),
    ({"pixdim1": 0.0}, r"voxel size \(pixdim\) \(0, 2, 2.5\)"),
    ({"pixdim1": 1e30}, r"voxel size \(pixdim\) \(1e\+30, 2, 2.5\)"),
    ({"qoffset_x": float("nan")}, r"the qform .*qoffset \[nan, 0.0, 0.0\].* is not a finite rotation"),
    ({"srow": (0.0,) * 12}, r"the sform is singular"),
    ({"srow_x0": float("inf")}, r"the sform holds NaN/Inf values"),
    ({"sizeof_hdr": 0}, r"not a NIfTI header: sizeof_hdr is 0, expected 348"),
    ({"sizeof_hdr": 123456}, r"sizeof_hdr is 123456"),
    ({"magic": b"ni1\0"}, r"magic b'ni1' .* 'ni1' marks a header whose data lives in a separate .img file"),
    ({"scl_slope": float("inf")}, r"scl_slope=inf"),
    ({"dim1": 0}, r"NIfTI dim \[3, 0, 5, 4\] is not a valid image size"),
])
def test_3_7_nifti_geometry_is_checked_on_reading(tmp_path, fields, match):
    path = nifti(tmp_path, **fields)
    with pytest.raises(DataError, match=match):
        load_nifti(path)
    out = tmp_path / "seg.nii.gz"
    with pytest.raises(DataError, match=match):  # predict reads the same way: refused before any model runs
        zoo.predict(_tiny_segmenter(), path, out=out, patch_size=(4, 4, 4))
    assert not out.exists()


def _tiny_segmenter():
    from zoo._keras import keras
    return keras.Sequential([keras.Input((None, None, None, 1)), keras.layers.Conv3D(2, 1)])


def test_3_real_nifti_files_still_load():
    data_dir = Path(nib.__file__).parent / "tests" / "data"
    for name in ("anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii", "standard.nii.gz"):
        volume, spacing, affine = load_nifti(data_dir / name)
        assert volume.size and all(s > 0 for s in spacing) and np.isfinite(affine).all(), name


# --------------------------------------------------------------------------- 3, 7, 10, issue 10 item 8. DICOM
def _edit(folder, name, keyword, value):
    """Store ``value`` as the raw text of ``keyword`` (pydicom would refuse to write it)."""
    path = folder / name
    path.write_bytes(set_dicom_element(path.read_bytes(), keyword, value.encode()))


@pytest.mark.parametrize("keyword,value,match", [
    ("PixelSpacing", "-1\\-1", r"PixelSpacing is '\[-1.*-1\]', not 2 positive finite numbers"),
    ("PixelSpacing", "0.5", r"PixelSpacing is '0.5', not 2 positive finite numbers"),
    ("PixelSpacing", "abc\\1", r"PixelSpacing is .*abc.*, not 2 positive finite numbers"),
    ("ImagePositionPatient", "x\\1\\2", r"ImagePositionPatient is .*x.*, not 3 finite numbers"),
    ("RescaleSlope", "abc", r"RescaleSlope is 'abc', not a finite number"),
])
def test_3_7_malformed_dicom_fields_are_data_errors(tmp_path, keyword, value, match):
    folder = _series(tmp_path / "s", [0, 1, 2])
    for name in sorted(p.name for p in folder.iterdir()):
        _edit(folder, name, keyword, value)
    with pytest.raises(DataError, match=match):
        read_dicom_series(folder)


def test_3_negative_slice_thickness_of_a_single_slice(tmp_path):
    folder = _series(tmp_path / "s", [0])
    ds = pydicom.dcmread(folder / "IM0000.dcm")
    ds.SliceThickness = -5
    ds.save_as(folder / "IM0000.dcm")
    with pytest.raises(DataError, match=r"SliceThickness is -5 mm; a thickness cannot be negative"):
        read_dicom_series(folder)
    ds.SliceThickness = 5
    ds.save_as(folder / "IM0000.dcm")
    assert read_dicom_series(folder)[1][2] == 5.0


def test_issue10_8_mixed_orientations_are_refused_naming_the_files():
    folder = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892003" / "MR700"
    with pytest.raises(DataError) as info:
        read_dicom_series(folder)
    msg = str(info.value)
    assert "the slices have different orientations (ImageOrientationPatient)" in msg
    assert "4467 has [0.654, 0.7565" in msg and "4528 [0.9592" in msg and "(6 of 7 files differ)" in msg


def test_10_truncated_slice_is_reported_as_truncated_not_as_another_series(tmp_path):
    folder = _series(tmp_path / "s", [0, 1, 2])
    cut = folder / "IM0001.dcm"
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(DataError) as info:
        read_dicom_series(folder)
    assert "IM0001.dcm: holds no pixel data (200 bytes" in str(info.value) and "truncated" in str(info.value)
    assert "series" not in str(info.value).split("truncated")[0]
