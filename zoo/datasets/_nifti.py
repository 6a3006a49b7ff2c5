"""A volumetric catalogue example (or a prediction for it) as a NIfTI file, with the example's
affine and voxel sizes, so ``zoo.predict`` and other tools see the case on its original grid."""
from pathlib import Path

import numpy as np

from zoo._deps import require
from zoo._io import atomic_write_bytes
from zoo.errors import InvalidArgumentError


def write_nifti(example, path, data=None, *, overwrite=False):
    """Write ``data`` (default: the example's ``image``; e.g. its ``label`` or a predicted label
    map) as NIfTI at ``path`` (.nii or .nii.gz) with ``example["affine"]`` as qform and sform
    and ``example["spacing"]`` as voxel sizes. ``example``: one of ``load(..., raw=True)``'s
    examples (tensors or NumPy). Written atomically; an existing file needs ``overwrite=True``.
    Returns the path."""
    nib = require("nibabel", "Writing NIfTI files")
    missing = [k for k in ("affine", "spacing") if k not in example]
    if missing:
        raise InvalidArgumentError(f"write_nifti: the example has no {missing}; only volumetric "
                                   "catalogue examples (load(name, raw=True) of a 3D data set) have them.")
    path = Path(path).expanduser()
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InvalidArgumentError(f"write_nifti: path={str(path)!r} must end with .nii or .nii.gz.")
    if path.exists() and not overwrite:
        raise InvalidArgumentError(f"write_nifti: {path} exists; pass overwrite=True to replace it.")
    values = np.asarray(example["image"] if data is None else data)
    affine = np.asarray(example["affine"], np.float64)
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.shape[:3] != np.asarray(example["label"]).shape[:3]:
        raise InvalidArgumentError(f"write_nifti: data of shape {values.shape} is not on the example's "
                                   f"grid {np.asarray(example['label']).shape}.")
    img = nib.Nifti1Image(values, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_zooms(tuple(float(z) for z in np.asarray(example["spacing"])) + img.header.get_zooms()[3:])
    atomic_write_bytes(path, lambda tmp: nib.save(img, tmp))
    return path
