"""DICOM series -> volume (pydicom, the optional extra ``medzoo[dicom]``).

Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product
of the two ImageOrientationPatient direction cosines); the slice spacing is the median
difference of those projections, the in-plane spacing comes from PixelSpacing; pixels get
RescaleSlope/RescaleIntercept (Hounsfield units for CT). The volume is float32
``(X, Y, Z, 1)`` = (columns, rows, slices, channel), the same voxel order as NIfTI, with
spacing ``(column spacing, row spacing, slice spacing)`` in mm and an LPS affine.

A file counts as DICOM (for folder detection in ``zoo.data.from_source``) when its name
ends with .dcm/.dicom/.ima or it carries the DICOM Part 10 marker ``DICM`` at byte 128.
"""
import os
import warnings
from pathlib import Path

import numpy as np

from zoo.data._common import DataError, as_path, describe, require
from zoo.data.volumes import match_labels, volume_dataset

SKIP_NAMES = {"dicomdir"}
SKIP_SUFFIXES = (".txt", ".json", ".xml", ".csv", ".md", ".ini")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def is_dicom_file(path):
    """Whether ``path`` looks like a DICOM file: its suffix, else the Part 10 ``DICM`` marker."""
    name = Path(path).name.lower()
    if name.endswith(DICOM_SUFFIXES):
        return True
    if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def holds_series(folder, probe=3):
    """Whether ``folder`` directly holds DICOM files (its first ``probe`` candidate files are read)."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower() not in SKIP_NAMES and not p.name.lower().endswith(SKIP_SUFFIXES))
    return any(is_dicom_file(f) for f in files[:probe])


def _series_files(source):
    if isinstance(source, (list, tuple)):
        files = [Path(f) for f in source]
        where = f"the {len(files)} given files"
    else:
        folder = as_path(source, "series", kind="folder")
        if not folder.is_dir():
            raise DataError(f"{folder} is a file; pass the folder that holds one DICOM series.")
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name.lower() not in SKIP_NAMES and not p.name.lower().endswith(SKIP_SUFFIXES))
        where = str(folder)
    if not files:
        raise DataError(f"{where}: no DICOM files found (empty folder?). Pass a folder of .dcm slices.")
    return files


def _read(pydicom, path):
    try:
        return pydicom.dcmread(str(path))
    except Exception as e:  # InvalidDicomError, EOFError, struct errors on truncated headers ...
        raise DataError(f"{path}: cannot be read as DICOM ({describe(e)}); the file is not "
                        "DICOM, or it is truncated. Remove or replace it.") from None


def _tag(ds, path, name, n=None):
    value = getattr(ds, name, None)
    if value is None or (n is not None and len(value) != n):
        raise DataError(f"{path}: the DICOM tag {name} is missing or malformed ({value!r}); it is "
                        "needed to build a volume from the series.")
    return [float(v) for v in value] if n is not None else value


def read_dicom_series(source, *, series_uid=None):
    """Read one DICOM series (a folder or a list of files): ``(volume, spacing, affine)``."""
    pydicom = require("pydicom", "Reading DICOM series")
    files = _series_files(source)
    slices = [(f, _read(pydicom, f)) for f in files]
    groups = {}
    for f, ds in slices:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "?")), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise DataError(f"series_uid={series_uid!r} is not in {source}; it holds "
                            f"{', '.join(sorted(groups))}.")
        slices = groups[series_uid]
    elif len(groups) > 1:
        listing = "; ".join(f"{uid} ({len(v)} files)" for uid, v in sorted(groups.items()))
        raise DataError(f"{source} mixes {len(groups)} DICOM series: {listing}. Put each series in its "
                        "own folder or pass series_uid=...")
    first, ds0 = slices[0]
    if int(getattr(ds0, "NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{first}: a multi-frame (enhanced) DICOM object; only one-slice-per-file "
                        "series are supported. Convert it (e.g. dcm2niix) and use zoo.data.nifti.")
    orient = np.asarray(_tag(ds0, first, "ImageOrientationPatient", 6))
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    positions = {}
    for f, ds in slices:
        pos = float(np.dot(_tag(ds, f, "ImagePositionPatient", 3), normal))
        other = next((g for g, p in positions.items() if abs(p - pos) < 1e-4), None)
        if other is not None:
            raise DataError(f"{f} and {other} sit at the same slice position ({pos:.3f} mm along the "
                            "slice normal): duplicate slices or two series in one folder.")
        positions[f] = pos
    slices.sort(key=lambda item: positions[item[0]])
    proj = np.array([positions[f] for f, _ in slices])
    row_spacing, col_spacing = _tag(ds0, first, "PixelSpacing", 2)
    if len(slices) > 1:
        gaps = np.diff(proj)
        dz = float(np.median(gaps))
        if np.max(np.abs(gaps - dz)) > 0.01 * dz + 1e-3:
            warnings.warn(f"{source}: uneven slice spacing ({gaps.min():.3f}..{gaps.max():.3f} mm; a "
                          f"missing slice?); using the median {dz:.3f} mm.", stacklevel=2)
    else:
        dz = float(getattr(ds0, "SliceThickness", 1.0) or 1.0)
    planes = []
    for f, ds in slices:
        try:
            pixels = ds.pixel_array
        except Exception as e:
            raise DataError(f"{f}: the DICOM pixel data cannot be decoded ({describe(e)}); the "
                            "file is truncated, or compressed without the decoder installed.") from None
        expected = planes[0].shape if planes else None
        if pixels.ndim != 2 or (expected is not None and pixels.shape != expected):
            raise DataError(f"{f}: slice of shape {pixels.shape} does not fit the series "
                            f"({expected or 'one 2D grayscale plane expected'}).")
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        planes.append(pixels.astype(np.float32) * slope + intercept)
    volume = np.stack(planes, axis=-1).transpose(1, 0, 2)[..., None]  # (cols, rows, slices, 1)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = normal * dz
    affine[:3, 3] = _tag(slices[0][1], slices[0][0], "ImagePositionPatient", 3)
    return volume, (float(col_spacing), float(row_spacing), dz), affine


def _series_list(series):
    if isinstance(series, (list, tuple)):
        return list(series)
    root = as_path(series, "series", kind="folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    has_files = any(p.is_file() and not p.name.startswith(".") for p in root.iterdir())
    if subdirs and not has_files:
        return subdirs
    return [root]


def dicom(series, labels=None, *, patch_size=None, samples_per_volume=1, fg_fraction=0.5, window=None,
          normalize="auto", spacing=None, num_classes=None, in_channels=None, label_suffix="",
          shuffle=True, seed=0, cache=True):
    """DICOM series as a tf.data.Dataset (the preprocessing and patches of :func:`zoo.data.nifti`).

    series: one series folder, a folder of series folders, or a list of series folders.
    labels: None, one class index per series, a list of label volume files, or a folder of
    them matched by name: series folder ``<case>`` takes ``<case><label_suffix>.nii.gz`` (or
    .nii, .npy). A label volume must be in the volume's voxel order, (columns, rows, slices
    sorted by position), as :func:`read_dicom_series` returns it.
    """
    require("pydicom", "Reading DICOM series")
    folders = _series_list(series)
    if isinstance(labels, (str, os.PathLike)):
        if not all(isinstance(f, (str, Path)) for f in folders):
            raise DataError("dicom: a labels folder is matched to series folders by name; pass the "
                            "series as folders, or labels as a list of files.")
        labels = match_labels(folders, labels, label_suffix, key=lambda f: Path(f).name,
                              what="series folder")
    return volume_dataset(folders, labels, read=read_dicom_series, patch_size=patch_size,
                          samples_per_volume=samples_per_volume, fg_fraction=fg_fraction, window=window,
                          normalize=normalize, spacing=spacing, num_classes=num_classes,
                          in_channels=in_channels, shuffle=shuffle, seed=seed, cache=cache)
