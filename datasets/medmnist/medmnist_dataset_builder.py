"""MedMNIST v2 (Yang et al. 2023) with MedMNIST+'s larger sizes: 12 2D and 6 3D biomedical
classification sets as ``.npz`` files, one configuration per set and size.

Configurations ``medmnist/<flag>_<size>``: 2D sets in 28, 64, 128 and 224 pixels (e.g.
``medmnist/pathmnist_28``, ``medmnist/chestmnist_224``), 3D sets in 28 and 64 voxels
(``medmnist/organmnist3d_64``). Each file (``<flag>.npz`` for size 28, ``<flag>_<size>.npz``
otherwise) holds ``train/val/test_images`` (uint8: (N, S, S), (N, S, S, 3), or (N, S, S, S) for
3D) and ``train/val/test_labels`` ((N, 1) class indices; ChestMNIST (N, 14) multi-label).
Examples: ``image`` uint8 (S, S, C) or (S, S, S, 1); ``label`` a class index (ChestMNIST: 14
binary labels, uint8). Splits: ``train``, ``validation`` (the files' ``val``), ``test``. The
files are read member by member, row by row: preparing even PathMNIST-224 (16 GB of pixels)
needs about TFDS's 1 GB shuffle buffer (tools/bench_catalog.py).
"""
import dataclasses
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo.datasets import _kit
from zoo.datasets.builders.medmnist._info import FLAGS, ZENODO

SPLITS = {"train": "train", "validation": "val", "test": "test"}


@dataclasses.dataclass(eq=False)
class MedMNISTConfig(_kit.ZooConfig):
    flag: str = ""
    size: int = 28


def file_name(flag, size):
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _config(flag, size):
    meta = FLAGS[flag]
    dims = 3 if flag.endswith("3d") else 2
    fname = file_name(flag, size)
    task = "multilabel" if meta["task"].startswith("multi-label") else "classification"
    return MedMNISTConfig(
        name=f"{flag}_{size}", flag=flag, size=size,
        description=f"{flag} {'x'.join([str(size)] * dims)}: {meta['task']}, {len(meta['classes'])} "
                    f"classes, {sum(meta['splits'].values())} images",
        task=task, spatial_dims=dims, channels=meta["channels"], classes=meta["classes"],
        license=meta["license"], files=(fname,), source=f"{ZENODO}/{fname} (MedMNIST, Zenodo 10519652)",
        download=f"{ZENODO}/{fname}?download=1", md5=meta["md5"][size], homepage="https://medmnist.com/")


class _Npz:
    """Arrays of an .npz file read from its zip members without loading them whole."""

    def __init__(self, path):
        self.path = epath.Path(path)
        try:
            with self.path.open("rb") as f, zipfile.ZipFile(f) as z:
                self.keys = sorted(n[:-4] for n in z.namelist() if n.endswith(".npy"))
        except zipfile.BadZipFile:
            raise _kit.DatasetFilesError(f"{self.path}: not an .npz (zip) file or truncated; download "
                                         "it again.") from None

    def header(self, key):
        with self.path.open("rb") as f, zipfile.ZipFile(f) as z, z.open(f"{key}.npy") as member:
            return _read_header(member)

    def rows(self, key):
        with self.path.open("rb") as f, zipfile.ZipFile(f) as z, z.open(f"{key}.npy") as member:
            shape, dtype = _read_header(member)
            size = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            for _ in range(shape[0]):
                block = member.read(size)
                if len(block) != size:
                    raise _kit.DatasetFilesError(f"{self.path}: {key} ends early; the file is truncated. "
                                                 "Download it again.")
                yield np.frombuffer(block, dtype).reshape(shape[1:])


def _read_header(member):
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(member)
    if fortran or dtype.hasobject:
        raise _kit.DatasetFilesError("a MedMNIST array is Fortran-ordered or holds Python objects; "
                                     "that is not a MedMNIST file.")
    return shape, dtype


class Builder(_kit.ZooBuilder):
    """MedMNIST v2 / MedMNIST+, one configuration per data set and size."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [_config(flag, size) for flag in FLAGS for size in FLAGS[flag]["md5"]]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place <flag>.npz (size 28) or <flag>_<size>.npz from https://zenodo.org/records/10519652 "
        "in manual_dir; without it the file is downloaded and its MD5 checked.")

    def _info(self):
        cfg = self.builder_config
        s, c = cfg.size, cfg.channels
        if cfg.spatial_dims == 3:
            image = tfds.features.Tensor(shape=(s, s, s, 1), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB)
        else:
            image = tfds.features.Image(shape=(s, s, c))
        label = (tfds.features.Tensor(shape=(len(cfg.classes),), dtype=np.uint8) if cfg.task == "multilabel"
                 else tfds.features.ClassLabel(names=list(cfg.classes)))
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"image": image, "label": label}),
            supervised_keys=("image", "label"), homepage=cfg.homepage)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        path = _kit.fetch(self, dl_manager, file_name(cfg.flag, cfg.size), url=cfg.download, md5=cfg.md5)
        npz = _Npz(path)
        needed = [f"{s}_{kind}" for s in SPLITS.values() for kind in ("images", "labels")]
        absent = [k for k in needed if k not in npz.keys]
        if absent:
            raise _kit.missing_files(self, dl_manager, f"{path} lacks the arrays {absent} (it has "
                                     f"{npz.keys}); it is not a MedMNIST file.", [path.name])
        s = cfg.size
        want = (s,) * cfg.spatial_dims + ((3,) if cfg.channels == 3 else ())
        for split in SPLITS.values():
            (shape, _), (lshape, _) = npz.header(f"{split}_images"), npz.header(f"{split}_labels")
            if tuple(shape[1:]) != want or lshape[0] != shape[0]:
                raise _kit.DatasetFilesError(
                    f"{path}: {split}_images has shape {shape} and {split}_labels {lshape}, but "
                    f"{cfg.name} has images of {want} and one label row per image; is it the "
                    f"{file_name(cfg.flag, cfg.size)} of another size?")
        return {name: self._generate_examples(npz, split) for name, split in SPLITS.items()}

    def _generate_examples(self, npz, split):
        cfg = self.builder_config
        for k, (image, label) in enumerate(zip(npz.rows(f"{split}_images"), npz.rows(f"{split}_labels"))):
            image = image[..., None] if image.ndim == cfg.spatial_dims else image
            value = label.astype(np.uint8) if cfg.task == "multilabel" else int(label.reshape(-1)[0])
            yield k, {"image": image.astype(np.uint8), "label": value}
