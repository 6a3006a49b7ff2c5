"""Medical Segmentation Decathlon (Antonelli, Reinke et al. 2022): ten 3D segmentation tasks.

Each task is a folder ``TaskNN_Name/`` with ``dataset.json`` (modalities, labels, the list of
training cases), ``imagesTr/`` and ``labelsTr/`` (NIfTI) and ``imagesTs/`` (no public labels,
not included). One configuration per task, e.g. ``decathlon/task04_hippocampus``. Examples:
``image`` float32 (X, Y, Z, C) with one channel per modality (Task01: FLAIR, T1w, T1gd, T2w;
Task05: T2, ADC), ``label`` uint8 (X, Y, Z), ``spacing`` (mm), ``affine`` (the NIfTI
voxel-to-RAS matrix), ``id``. Splits: the labelled cases, split as MONAI's
``DecathlonDataset(seed=0, val_frac=0.2)`` does (``train`` 80%, ``validation`` 20%).
"""
import dataclasses
import json

import tensorflow_datasets as tfds
from etils import epath

from zoo.datasets import _kit

S3 = "https://msd-for-monai.s3-us-west-2.amazonaws.com"  # MONAI's mirror of the official tars
SOURCE = f"http://medicaldecathlon.com/ or MONAI's mirror {S3}/"
LICENSE = "CC BY-SA 4.0"
# task folder, modalities, classes (index order of dataset.json), MD5 of the tar (as MONAI publishes)
TASKS = (
    ("Task01_BrainTumour", ("FLAIR", "T1w", "t1gd", "T2w"),
     ("background", "edema", "non-enhancing tumor", "enhancing tumour"), "240a19d752f0d9e9101544901065d872"),
    ("Task02_Heart", ("MRI",), ("background", "left atrium"), "06ee59366e1e5124267b774dbd654057"),
    ("Task03_Liver", ("CT",), ("background", "liver", "cancer"), "a90ec6c4aa7f6a3d087205e23d4e6397"),
    ("Task04_Hippocampus", ("MRI",), ("background", "Anterior", "Posterior"), "9d24dba78a72977dbd1d2e110310f31b"),
    ("Task05_Prostate", ("T2", "ADC"), ("background", "PZ", "TZ"), "35138f08b1efaef89d7424d2bcc928db"),
    ("Task06_Lung", ("CT",), ("background", "cancer"), "8afd997733c7fc0432f71255ba4e52dc"),
    ("Task07_Pancreas", ("CT",), ("background", "pancreas", "cancer"), "4f7080cfca169fa8066d17ce6eb061e4"),
    ("Task08_HepaticVessel", ("CT",), ("background", "Vessel", "Tumour"), "641d79e80ec66453921d997fbf12a29c"),
    ("Task09_Spleen", ("CT",), ("background", "spleen"), "410d4a301da4e5b2f6f86ec3ddba524e"),
    ("Task10_Colon", ("CT",), ("background", "colon cancer primaries"), "bad7a188931dc2f6acf72b08eb6202d0"),
)


@dataclasses.dataclass(eq=False)
class DecathlonConfig(_kit.ZooConfig):
    folder: str = ""  # TaskNN_Name, as in the tar
    modalities: tuple = ()  # the image channels, in dataset.json's order


def _config(folder, modalities, classes, md5):
    return DecathlonConfig(
        name=folder.lower(), description=f"{folder}: {', '.join(modalities)} -> {', '.join(classes[1:])}",
        task="segmentation", spatial_dims=3, channels=len(modalities), classes=classes, license=LICENSE,
        files=(f"{folder}.tar or its extracted {folder}/ (dataset.json, imagesTr/, labelsTr/)",), source=SOURCE,
        download=f"{S3}/{folder}.tar", md5=md5,
        homepage="http://medicaldecathlon.com/", folder=folder, modalities=modalities)


class Builder(_kit.ZooBuilder):
    """The Decathlon's labelled training cases, one configuration per task."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [_config(*task) for task in TASKS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place TaskNN_Name.tar (from http://medicaldecathlon.com/) or its extracted folder "
        "TaskNN_Name/ in manual_dir; without it the tar is downloaded from MONAI's mirror and its "
        "MD5 checked.")

    def _info(self):
        return self.dataset_info_from_configs(
            features=_kit.volume_features(self.builder_config.channels),
            supervised_keys=("image", "label"),
            homepage=self.builder_config.homepage,
        )

    def _task_folder(self, dl_manager):
        cfg = self.builder_config
        folder_name = cfg.folder
        root = _kit.manual_root(dl_manager)
        if root is not None and (root / folder_name).is_dir():
            folder = root / folder_name
            if not (folder / "dataset.json").exists():
                raise _kit.missing_files(self, dl_manager, f"{folder} has no dataset.json.",
                                         [f"{folder_name}/dataset.json"])
            return folder
        tar = _kit.fetch(self, dl_manager, f"{folder_name}.tar", url=cfg.download, md5=cfg.md5)
        folder = epath.Path(dl_manager.extract(tar)) / folder_name
        if not (folder / "dataset.json").exists():
            raise _kit.DatasetFilesError(f"{tar} does not hold {folder_name}/dataset.json; it is not "
                                         f"the Decathlon's {folder_name}.tar. Download it again.")
        return folder

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        folder = self._task_folder(dl_manager)
        meta = json.loads((folder / "dataset.json").read_text())
        modalities = [meta.get("modality", {})[k] for k in sorted(meta.get("modality", {}), key=int)]
        labels = [meta.get("labels", {})[k] for k in sorted(meta.get("labels", {}), key=int)]
        if len(modalities) != cfg.channels or len(labels) != len(cfg.classes):
            raise _kit.DatasetFilesError(
                f"{folder / 'dataset.json'}: modalities {modalities} and labels {labels}, but "
                f"{cfg.folder} has {list(cfg.modalities)} and {list(cfg.classes)}; is it another task?")
        cases = [(folder / c["image"], folder / c["label"]) for c in meta.get("training", [])]
        absent = [str(p.relative_to(folder)) for pair in cases for p in pair if not p.exists()]
        if not cases or absent:
            raise _kit.missing_files(
                self, dl_manager, f"{folder} is incomplete: dataset.json lists {len(cases)} training "
                f"cases, {len(absent)} of their files are missing.", absent or ["imagesTr/", "labelsTr/"])
        train, validation = _kit.validation_split(cases)
        return {"train": self._generate_examples(train), "validation": self._generate_examples(validation)}

    def _generate_examples(self, cases):
        from zoo.data.volumes import load_label_volume, load_nifti
        for image_path, label_path in cases:
            case = image_path.name[: -len(".nii.gz")] if image_path.name.endswith(".nii.gz") else image_path.stem
            image, spacing, affine = load_nifti(image_path)
            yield case, _kit.volume_example(case, image, load_label_volume(label_path), spacing, affine,
                                            source=str(image_path), num_classes=len(self.builder_config.classes))
