"""The catalogue of named data sets: TFDS builders, loadable by name, offline first.

The builders live in the repository's top-level ``datasets/`` folder (one folder each, in the
layout ``tfds new`` creates) and ship inside the wheel as ``zoo.datasets.builders``::

    zoo.datasets.list()                                     # names, tasks, dims, licences, files
    zoo.datasets.prepare("decathlon/task04_hippocampus", manual_dir="~/downloads/msd")
    ds = zoo.datasets.load("isbi2012_em", split="train", manual_dir="~/downloads/isbi2012")
    zoo.finetune("unet", train="tfds:isbi2012_em", val="tfds:isbi2012_em")

Medical data mostly needs a licence accepted by hand, so a builder reads the files the user
placed in ``manual_dir`` (TFDS's convention); where a public URL with a published checksum
exists it downloads when the files are absent (never with ``ZOO_OFFLINE=1``). Missing or
incomplete files raise :class:`DatasetFilesError` listing the exact files expected and where
to get them. :func:`write_nifti` writes a volumetric example (or a prediction for it) as NIfTI
with its affine and voxel sizes. For ``tfds.load`` users: ``zoo.datasets.register()`` makes the
names known to TFDS. ``import zoo.datasets`` imports neither TensorFlow nor TFDS.
"""
from zoo.datasets._api import prepare
from zoo.datasets._catalog import DatasetFilesError, UnknownDatasetError, builder, info, list_datasets, register
from zoo.datasets._nifti import write_nifti
from zoo.datasets.reader import load

list = list_datasets  # noqa: A001 - zoo.datasets.list(), as zoo.list_models() for models

__all__ = ["list", "list_datasets", "info", "load", "prepare", "builder", "register", "write_nifti",
           "UnknownDatasetError", "DatasetFilesError"]
