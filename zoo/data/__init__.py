"""The input pipeline's pieces: synthetic phantoms, image folders, NIfTI, DICOM, NumPy arrays,
patches and augmentation.

Every source gives a ``tf.data.Dataset`` of unbatched (image, label) pairs: images float32,
channels last; labels int32 class indices (classification) or ``(*spatial, 1)`` int32 maps
(segmentation). Above these readers sit the catalogue of named data sets (``zoo.datasets``,
which reads its data sets with them) and the one data path (:mod:`zoo.datapath`: ``from_source``
dispatches any data argument to a reader, ``prepare`` makes it ready for a model and a purpose).
"""
from zoo.data.arrays import from_arrays, npz
from zoo.data.checks import DataError, check_pairs
from zoo.data.dicom import dicom, holds_series, read_dicom_series
from zoo.data.folders import IMAGE_SUFFIXES, image_folder, read_image, segmentation_folder
from zoo.data.patches import fit_patch
from zoo.data.phantoms import other_scanner, phantom_arrays, phantoms
from zoo.data.volumes import NIFTI_SUFFIXES, load_nifti, nifti

__all__ = ["phantoms", "phantom_arrays", "other_scanner", "image_folder", "segmentation_folder", "read_image", "nifti",
           "load_nifti", "dicom", "read_dicom_series", "from_arrays", "npz", "fit_patch", "check_pairs",
           "holds_series", "DataError", "IMAGE_SUFFIXES", "NIFTI_SUFFIXES"]
