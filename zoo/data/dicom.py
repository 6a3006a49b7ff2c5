"""DICOM series -> volume (pydicom, the optional extra ``medzoo[dicom]``).

Slices are sorted by ImagePositionPatient projected on the slice normal (the cross product
of the two ImageOrientationPatient direction cosines); the slice spacing is the median
difference of those projections, the in-plane spacing comes from PixelSpacing; pixels get
RescaleSlope/RescaleIntercept (Hounsfield units for CT). The volume is float32
``(X, Y, Z, 1)`` = (columns, rows, slices, channel), the same voxel order as NIfTI, with
spacing ``(column spacing, row spacing, slice spacing)`` in mm and an LPS affine.

A file counts as DICOM (for folder detection in ``zoo.datapath.sources.from_source``) when its name
ends with .dcm/.dicom/.ima or it carries the DICOM Part 10 marker ``DICM`` at byte 128.
"""
import os
import warnings
from pathlib import Path

import numpy as np

from zoo._deps import require
from zoo.data._geometry import check_affine, check_spacing
from zoo.data.checks import DataError, as_path, describe
from zoo.data.volumes import match_labels, volume_dataset

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's patient space (LPS) to NIfTI's (RAS)

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
        with warnings.catch_warnings():  # pydicom's value warnings: the checks below say what matters
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
            ds = pydicom.dcmread(str(path))
    except Exception as e:  # InvalidDicomError, EOFError, struct errors on truncated headers ...
        raise DataError(f"{path}: cannot be read as DICOM ({describe(e)}); the file is not "
                        "DICOM, or it is truncated. Remove or replace it.") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        size = Path(path).stat().st_size
        raise DataError(f"{path}: holds no pixel data ({size} bytes, {len(ds)} element(s) read): the file is "
                        "truncated, or it is not an image slice (a report, a DICOMDIR). Remove or replace it.")
    return ds


def _numbers(ds, path, name, n=1, *, required=True, positive=False, default=None):
    """Tag ``name`` as ``n`` finite floats (one float when ``n == 1``); DataError when it is malformed
    (non-numeric text, the wrong count of values, NaN/Inf, or a non-positive value where a size is meant)."""
    try:
        with warnings.catch_warnings():  # pydicom warns, then hands over the raw text: judged below
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
            value = ds.get(name)
    except Exception as e:  # a DS/IS string pydicom cannot convert
        raise DataError(f"{path}: the DICOM tag {name} cannot be read ({describe(e)}).") from None
    if value is None or value == "":
        if required:
            raise DataError(f"{path}: the DICOM tag {name} is missing; it is needed to build a volume from "
                            "the series.")
        return default
    values = list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else [value]  # MultiValue
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        floats = None
    if floats is None or len(floats) != n or not all(np.isfinite(floats)) or \
            (positive and not all(f > 0 for f in floats)):
        kind = f"{n if n > 1 else 'a'} {'positive ' if positive else ''}finite number{'s' if n > 1 else ''}"
        raise DataError(f"{path}: the DICOM tag {name} is {str(value)!r}, not {kind}; the header is damaged. "
                        "Fix or remove the file.")
    return floats if n > 1 else floats[0]


def _orientation(ds, path):
    orient = np.asarray(_numbers(ds, path, "ImageOrientationPatient", 6))
    row, col = orient[:3], orient[3:]
    if abs(np.linalg.norm(row) - 1) > 0.01 or abs(np.linalg.norm(col) - 1) > 0.01 or abs(row @ col) > 0.01:
        raise DataError(f"{path}: ImageOrientationPatient {orient.tolist()} is not two orthogonal unit vectors; "
                        "the header is damaged.")
    return orient


GAPS = ("error", "split", "median")


def _even_runs(proj):
    """Runs of slices whose neighbours are one (median) spacing apart: ``[(start, stop)]``."""
    gaps = np.diff(proj)
    dz = float(np.median(gaps))
    runs, start = [], 0
    for i, gap in enumerate(gaps):
        if abs(gap - dz) > 0.01 * dz + 1e-3:
            runs.append((start, i + 1))
            start = i + 1
    runs.append((start, len(proj)))
    return runs, dz


def read_dicom_series(source, *, series_uid=None, gaps="error"):
    """Read one DICOM series (a folder or a list of files): ``(volume, spacing, affine)``.

    Refused: files without pixel data (truncated), several series (unless ``series_uid``), slices
    of different orientations, duplicate positions, and malformed geometry (non-numeric or
    non-finite positions, one-value or non-positive PixelSpacing, negative SliceThickness).

    ``gaps``: what to do when the slices are not evenly spaced (a missing slice, two stacks in one
    series): ``"error"`` (the default: refused, naming the gap), ``"split"`` (keep the longest
    evenly spaced run of slices, with a warning naming the ones left out) or ``"median"`` (stack
    every slice at the median spacing, with a warning: the volume's geometry is then wrong between
    the slices around the gap - only for a user who asks for it)."""
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
    for f, ds in slices:
        frames = _numbers(ds, f, "NumberOfFrames", required=False, default=1.0)
        if frames != 1:
            raise DataError(f"{f}: a multi-frame (enhanced) DICOM object ({frames:g} frames); only one-slice-"
                            "per-file series are supported. Convert it (e.g. dcm2niix) and use zoo.data.nifti.")
    orient = _orientation(ds0, first)
    others = [(f, o) for f, o in ((f, _orientation(ds, f)) for f, ds in slices[1:]) if np.abs(o - orient).max() > 1e-3]
    if others:
        shown = "; ".join(f"{Path(f).name} {np.round(o, 4).tolist()}" for f, o in others[:4])
        raise DataError(f"{source}: the slices have different orientations (ImageOrientationPatient): "
                        f"{Path(first).name} has {np.round(orient, 4).tolist()}, but {shown}"
                        f"{' ...' if len(others) > 4 else ''} ({len(others)} of {len(slices)} files differ). "
                        "They cannot be stacked into one volume (a localiser or a radial acquisition); keep "
                        "one orientation per folder.")
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    positions = {}
    for f, ds in slices:
        pos = float(np.dot(_numbers(ds, f, "ImagePositionPatient", 3), normal))
        other = next((g for g, p in positions.items() if abs(p - pos) < 1e-4), None)
        if other is not None:
            raise DataError(f"{f} and {other} sit at the same slice position ({pos:.3f} mm along the "
                            "slice normal): duplicate slices or two series in one folder.")
        positions[f] = pos
    slices.sort(key=lambda item: positions[item[0]])
    proj = np.array([positions[f] for f, _ in slices])
    row_spacing, col_spacing = _numbers(ds0, first, "PixelSpacing", 2, positive=True)
    for f, ds in slices:
        other = _numbers(ds, f, "PixelSpacing", 2, positive=True)
        if not np.allclose(other, (row_spacing, col_spacing), rtol=1e-4):
            raise DataError(f"{source}: the slices have different PixelSpacing ({Path(first).name}: "
                            f"{row_spacing:g}\\{col_spacing:g}, {Path(f).name}: {other[0]:g}\\{other[1]:g}); "
                            "they are not one volume. Keep one series per folder.")
        thick = _numbers(ds, f, "SliceThickness", required=False)
        if thick is not None and thick < 0:
            raise DataError(f"{f}: SliceThickness is {thick:g} mm; a thickness cannot be negative - the "
                            "header is damaged.")
    thickness = _numbers(ds0, first, "SliceThickness", required=False)
    if gaps not in GAPS:
        raise DataError(f"gaps={gaps!r} is not one of {', '.join(GAPS)} (what to do with unevenly spaced slices).")
    if len(slices) > 1:
        runs, dz = _even_runs(proj)
        if len(runs) > 1:
            steps = np.diff(proj)
            where = ", ".join(f"{proj[b - 1]:.1f} -> {proj[b]:.1f} mm" for _, b in runs[:-1][:4])
            text = (f"{source}: uneven slice spacing ({steps.min():.3f}..{steps.max():.3f} mm, median "
                    f"{dz:.3f} mm; gaps at {where}: a missing slice, or two stacks in one series)")
            if gaps == "error":
                raise DataError(f"{text}. Stacking them at one spacing would misplace the slices beyond the gap. "
                                "Pass gaps='split' to keep the longest evenly spaced run of slices, or "
                                "gaps='median' to stack them all anyway (the geometry is then wrong at the gap).")
            if gaps == "split":
                start, stop = max(runs, key=lambda r: r[1] - r[0])
                left = [Path(f).name for f, _ in slices[:start] + slices[stop:]]
                warnings.warn(f"{text}; kept the {stop - start} evenly spaced slices {start + 1}..{stop}, left out "
                              f"{len(left)}: {', '.join(left[:6])}{' ...' if len(left) > 6 else ''}.", stacklevel=2)
                slices, proj = slices[start:stop], proj[start:stop]
            else:
                warnings.warn(f"{text}; stacked at the median {dz:.3f} mm as asked (gaps='median'): the "
                              "geometry is wrong between the slices around the gap.", stacklevel=2)
    else:
        dz = thickness or 1.0
    planes = []
    for f, ds in slices:
        try:
            pixels = ds.pixel_array
        except Exception as e:
            raise DataError(f"{f}: the DICOM pixel data cannot be decoded ({describe(e)}); the "
                            "file is truncated, or compressed without the decoder installed.") from None
        expected = planes[0].shape if planes else None
        if pixels.ndim != 2 or (expected is not None and pixels.shape != expected) or not pixels.size:
            raise DataError(f"{f}: slice of shape {pixels.shape} does not fit the series "
                            f"({expected or 'one 2D grayscale plane expected'}).")
        slope = _numbers(ds, f, "RescaleSlope", required=False, default=1.0)
        intercept = _numbers(ds, f, "RescaleIntercept", required=False, default=0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            plane = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        if slope == 0 or not np.all(np.isfinite(plane)):
            raise DataError(f"{f}: RescaleSlope {slope:g} / RescaleIntercept {intercept:g} turn the pixels into "
                            f"{'zeros' if slope == 0 else 'NaN/Inf'}; the header is damaged. Fix or remove the file.")
        planes.append(plane)
    volume = np.stack(planes, axis=-1).transpose(1, 0, 2)[..., None]  # (cols, rows, slices, 1)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = normal * dz
    affine[:3, 3] = _numbers(slices[0][1], slices[0][0], "ImagePositionPatient", 3)
    spacing = check_spacing((col_spacing, row_spacing, dz), source)
    return volume, spacing, check_affine(affine, source)


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
          shuffle=True, seed=0, cache=True, gaps="error", orientation=None, ignore_label=None):
    """DICOM series as a tf.data.Dataset (the preprocessing and patches of :func:`zoo.data.nifti`).

    series: one series folder, a folder of series folders, or a list of series folders.
    labels: None, one class index per series, a list of label volume files, or a folder of
    them matched by name: series folder ``<case>`` takes ``<case><label_suffix>.nii.gz`` (or
    .nii, .npy). A label volume must be in the volume's voxel order, (columns, rows, slices
    sorted by position), as :func:`read_dicom_series` returns it. ``gaps``: unevenly spaced slices
    are refused (``"error"``), cut to their longest even run (``"split"``) or stacked anyway
    (``"median"``), see :func:`read_dicom_series`.
    """
    require("pydicom", "Reading DICOM series")
    folders = _series_list(series)
    if isinstance(labels, (str, os.PathLike)):
        if not all(isinstance(f, (str, Path)) for f in folders):
            raise DataError("dicom: a labels folder is matched to series folders by name; pass the "
                            "series as folders, or labels as a list of files.")
        labels = match_labels(folders, labels, label_suffix, key=lambda f: Path(f).name,
                              what="series folder")
    def read(folder):  # the series' LPS affine in NIfTI's RAS+ world, which ``orientation`` names
        volume, spacing, lps_affine = read_dicom_series(folder, gaps=gaps)
        return volume, spacing, LPS_TO_RAS @ lps_affine


    return volume_dataset(folders, labels, read=read, patch_size=patch_size,
                          samples_per_volume=samples_per_volume, fg_fraction=fg_fraction, window=window,
                          normalize=normalize, spacing=spacing, num_classes=num_classes,
                          in_channels=in_channels, shuffle=shuffle, seed=seed, cache=cache,
                          orientation=orientation, ignore_label=ignore_label)
