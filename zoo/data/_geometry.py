"""Geometry checks on reading: a volume whose voxel sizes or patient-space affine are not a valid
image is refused before any model runs on it (the writer would otherwise copy the garbage into
the output, with non-finite voxel sizes or a singular affine).

NIfTI headers are checked as stored: nibabel repairs some fields on load (a ``sizeof_hdr`` of 0
becomes 348, a zero ``pixdim`` becomes 1, a negative one its absolute value, the magic ``ni1`` of
a header-only file is accepted in a ``.nii``), which would hide a damaged file, so the raw header
is parsed without those fixes.
"""
import numpy as np

from zoo.data.checks import DataError, describe

MAX_VOXEL_SIZE = 1e5   # in the file's units (mm, or um/m per xyzt_units): 100 m per voxel is not an image
MAX_OFFSET = 1e7       # an origin 10 km (in mm) from the scanner's is no patient position
_XFORM_CODES = range(0, 6)  # unknown, scanner, aligned, Talairach, MNI-152, template (NIfTI-1 / -2)


def check_affine(affine, source, what="affine"):
    """A 4x4 voxel-to-patient transform: finite, and a 3x3 part that is not (nearly) singular."""
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise DataError(f"{source}: the {what} holds NaN/Inf values ({_rows(affine)}); the image has no valid "
                        "position in space. Fix the header (e.g. re-export the image) before using it.")
    if np.abs(affine[:3, 3]).max() > MAX_OFFSET:
        raise DataError(f"{source}: the {what} puts the image origin {np.abs(affine[:3, 3]).max():.3g} units from "
                        f"the scanner origin (more than {MAX_OFFSET:g}); the header is damaged. Fix it or re-export "
                        "the image.")
    sv = np.linalg.svd(affine[:3, :3], compute_uv=False)
    if not sv[0] > 0 or sv[-1] <= 1e-6 * sv[0]:
        raise DataError(f"{source}: the {what} is singular ({_rows(affine)}): its voxel axes do not span 3D "
                        "space, so voxel sizes and orientation are undefined. Fix the header (e.g. re-export "
                        "the image) before using it.")
    return affine


def _rows(affine):
    return "; ".join(" ".join(f"{v:.4g}" for v in row) for row in np.asarray(affine)[:3])


def check_spacing(spacing, source, what="voxel size"):
    values = [float(s) for s in spacing]
    bad = [s for s in values if not (np.isfinite(s) and 0 < s <= MAX_VOXEL_SIZE)]
    if bad:
        shown = "(" + ", ".join(f"{v:g}" for v in values) + ")"
        raise DataError(f"{source}: the {what} {shown} is not valid ({bad[0]:g} is not a positive "
                        f"finite size up to {MAX_VOXEL_SIZE:g}); the header is damaged. Fix it or re-export "
                        "the image.")
    return tuple(values)


def quiet_nibabel(nib, fn, *args):
    """``fn(*args)`` with nibabel's logger off (it prints its header repairs to stderr)."""
    logger = nib.imageglobals.logger
    was = logger.disabled
    logger.disabled = True
    try:
        return fn(*args)
    finally:
        logger.disabled = was


def read_nifti_header(nib, path):
    """The NIfTI-1/-2 header of ``path`` as stored (no repairs), or DataError."""
    from nibabel.openers import ImageOpener  # optional: the nifti extra (the caller required nibabel)

    try:
        with ImageOpener(str(path)) as fh:
            raw = fh.read(540)
    except Exception as e:  # gzip/zlib errors, permissions ...
        raise DataError(f"{path}: cannot read this NIfTI file ({describe(e)}). It is unreadable or "
                        "truncated; re-export or remove it.") from None
    size = None
    for order in ("<", ">"):
        if len(raw) >= 4 and int(np.frombuffer(raw[:4], f"{order}i4")[0]) in (348, 540):
            size = int(np.frombuffer(raw[:4], f"{order}i4")[0])
    if size is None or len(raw) < size:
        got = int(np.frombuffer(raw[:4], "<i4")[0]) if len(raw) >= 4 else None
        raise DataError(f"{path}: not a NIfTI header: sizeof_hdr is {got}, expected 348 (NIfTI-1) or 540 "
                        f"(NIfTI-2){'' if len(raw) >= (size or 348) else ', and the file is shorter than a header'}. "
                        "The file is damaged or not NIfTI; re-export it.")
    cls = nib.Nifti1Header if size == 348 else nib.Nifti2Header
    try:
        return cls(binaryblock=raw[:size], check=False)
    except Exception as e:
        raise DataError(f"{path}: the NIfTI header cannot be parsed ({describe(e)}); re-export the image.") from None


def check_nifti_header(nib, path):
    """Refuse a NIfTI header that does not describe a valid single-file image (see the module docstring)."""
    hdr = read_nifti_header(nib, path)
    magic = bytes(hdr["magic"]).rstrip(b"\x00")
    if magic not in (b"n+1", b"n+2"):
        hint = (" 'ni1' marks a header whose data lives in a separate .img file" if magic in (b"ni1", b"ni2")
                else "")
        raise DataError(f"{path}: NIfTI magic {magic!r} is not 'n+1' (or 'n+2') of a single-file .nii image"
                        f"{';' + hint if hint else ''}; the file is damaged or mislabelled - re-export it.")
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7 or any(d < 1 for d in dim[1:dim[0] + 1]):
        raise DataError(f"{path}: NIfTI dim {dim[:max(1, min(dim[0], 7)) + 1]} is not a valid image size (dim[0] "
                        "= number of axes, 1..7; each axis at least 1 voxel); the header is damaged.")
    pixdim = [float(p) for p in hdr["pixdim"]]
    check_spacing(pixdim[1:min(dim[0], 3) + 1], path, "voxel size (pixdim)")
    offset = float(hdr["vox_offset"])
    if not np.isfinite(offset) or offset < hdr["sizeof_hdr"]:
        raise DataError(f"{path}: vox_offset {offset!r} does not point past the header; the header is damaged.")
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    scaled = np.isfinite(slope) and slope != 0  # 0 or NaN = no scaling (the NIfTI convention)
    if np.isinf(slope) or (scaled and not np.isfinite(inter)):
        raise DataError(f"{path}: intensity scaling scl_slope={slope!r}, scl_inter={inter!r} is not finite; "
                        "every voxel value would be garbage. Fix the header (scl_slope 0 or NaN = no scaling).")
    for kind in ("qform", "sform"):
        code = int(hdr[f"{kind}_code"])
        if code not in _XFORM_CODES:
            raise DataError(f"{path}: {kind}_code {code} is not a NIfTI transform code (0-5); the header is "
                            "damaged.")
        if code == 0:
            continue
        if kind == "qform":
            quat = [float(hdr[f"quatern_{c}"]) for c in "bcd"] + [float(hdr[f"qoffset_{c}"]) for c in "xyz"]
            if not np.all(np.isfinite(quat)) or sum(q * q for q in quat[:3]) > 1.0 + 1e-3:
                raise DataError(f"{path}: the qform (quatern_b/c/d {quat[:3]}, qoffset {quat[3:]}) is not a "
                                "finite rotation; the header is damaged. Fix it or re-export the image.")
            try:
                qform = hdr.get_qform()
            except Exception as e:  # qfac (pixdim[0]) not +-1, ...
                raise DataError(f"{path}: the qform cannot be computed ({describe(e)}); the header is "
                                "damaged. Fix it or re-export the image.") from None
            check_affine(qform, path, "qform")
        else:
            check_affine(np.vstack([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"], [0, 0, 0, 1]]), path, "sform")
    return hdr
