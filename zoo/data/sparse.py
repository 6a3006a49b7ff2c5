"""Sparse annotation (the 3D U-Net paper's setting): a few annotated slices per volume.

:func:`sparse_slices` turns a dense label map into the labels an annotator who draws ``k``
orthogonal slices would give: those slices keep their labels, every other voxel gets
``ignore_label`` (not annotated). Train on them with ``ignore_label=`` (``zoo.finetune``,
``zoo run --ignore-label``): the losses and metrics leave the unannotated voxels out. This is how
the workflow is tried on the built-in phantoms.
"""
import numpy as np

from zoo.errors import InvalidArgumentError, check_positive_int


def sparse_slices(label_map, k=3, *, ignore_label=255, seed=0):
    """A dense label map -> the same map with only ``k`` orthogonal slices annotated.

    Args:
        label_map: one 2D or 3D label map ``(*spatial)`` or ``(*spatial, 1)`` (loop over a batch).
        k: annotated slices, taken in turn along each spatial axis (3 in 3D: one per axis; in 2D
            a slice is a row or a column).
        ignore_label: the value of the voxels left unannotated (not a class).
        seed: which slices: each is drawn among those holding foreground (label > 0), else any.

    Returns:
        An int32 array of ``label_map``'s shape.

    Raises:
        InvalidArgumentError: ``ignore_label`` is already a label value, ``k`` is not a positive
            integer, or the map is not 2D or 3D.
    """
    check_positive_int("k", k, "sparse_slices")
    labels = np.asarray(label_map).astype(np.int32)
    channel = labels.ndim in (3, 4) and labels.shape[-1] == 1
    dense = labels[..., 0] if channel else labels
    if dense.ndim not in (2, 3):
        raise InvalidArgumentError(f"sparse_slices: a label map of shape {labels.shape} is neither 2D nor 3D; "
                                   "pass one map at a time (loop over a batch).")
    if np.any(dense == ignore_label):
        raise InvalidArgumentError(f"sparse_slices: ignore_label={ignore_label} is already a label value of the "
                                   "map; pick a value it does not hold (e.g. 255).")
    rng = np.random.default_rng(seed)
    out = np.full(dense.shape, ignore_label, np.int32)
    for i in range(k):
        axis = i % dense.ndim
        moved = np.moveaxis(dense, axis, 0)
        with_fg = np.flatnonzero((moved > 0).reshape(len(moved), -1).any(-1))
        index = int(rng.choice(with_fg)) if len(with_fg) else int(rng.integers(len(moved)))
        np.moveaxis(out, axis, 0)[index] = moved[index]
    return out[..., None] if channel else out


__all__ = ["sparse_slices"]
