"""PROMISE12 (Litjens et al. 2014): prostate segmentation in T2-weighted MRI, V-Net's benchmark.

50 training cases from four centres, as MetaImage pairs ``CaseNN.mhd`` + ``CaseNN.raw`` with the
label ``CaseNN_segmentation.mhd`` + ``.raw`` (0 background, 1 prostate), shipped as
``TrainingData_Part1.zip`` .. ``Part3.zip``. Read with SimpleITK. Examples: ``image`` float32
(X, Y, Z, 1), ``label`` uint8 (X, Y, Z), ``spacing`` (mm), ``affine`` (voxel-to-RAS, converted
from ITK's LPS), ``id`` (``Case07``). Splits as for the Decathlon: the cases in name order,
shuffled with ``RandomState(0)``, 20% ``validation``, the rest ``train``. The 30 test cases have
no public labels and are not included.
"""
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo.datasets import _kit

PARTS = tuple(f"TrainingData_Part{k}.zip" for k in (1, 2, 3))
CASE = re.compile(r"^Case(\d\d)\.mhd$")
SOURCE = "https://promise12.grand-challenge.org/ (registration, then the Download page)"


def data_file(header):
    """The file an .mhd header points to (``ElementDataFile``), next to it; None when LOCAL."""
    for line in epath.Path(header).read_bytes().decode("latin-1").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            return None if value.upper() == "LOCAL" else epath.Path(header).parent / value
    return None


def read_metaimage(path):
    """A MetaImage volume as ``(array (X, Y, Z), spacing (3,), affine (4, 4) voxel-to-RAS)``."""
    sitk = _kit.require("SimpleITK", "Reading MetaImage (.mhd/.raw) files")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise _kit.DatasetFilesError(f"{path}: SimpleITK cannot read it ({' '.join(str(e).split())[:300]}); "
                                     "the .mhd or its .raw is damaged or truncated. Extract it again.") from None
    array = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))  # ITK arrays are (z, y, x)
    spacing = np.asarray(img.GetSpacing(), np.float64)
    direction = np.asarray(img.GetDirection(), np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    lps[:3, 3] = img.GetOrigin()
    return array, spacing, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK's LPS -> NIfTI's RAS


class Builder(_kit.ZooBuilder):
    """PROMISE12's labelled training cases."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [_kit.ZooConfig(
        name="default", description="50 T2w prostate MRI volumes, prostate vs background",
        task="segmentation", spatial_dims=3, channels=1, classes=("background", "prostate"),
        license="challenge terms of promise12.grand-challenge.org (registration; research use, cite "
                "Litjens et al. 2014)",
        files=PARTS + ("or their extracted CaseNN.mhd/.raw + CaseNN_segmentation.mhd/.raw",),
        source=SOURCE, homepage="https://promise12.grand-challenge.org/")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Register at https://promise12.grand-challenge.org/ and place TrainingData_Part1.zip, "
        "TrainingData_Part2.zip and TrainingData_Part3.zip (or their extracted files) in manual_dir.")

    def _info(self):
        return self.dataset_info_from_configs(
            features=_kit.volume_features(1), supervised_keys=("image", "label"),
            homepage=self.builder_config.homepage)

    def _cases(self, dl_manager):
        root = _kit.manual_root(dl_manager)
        if root is None:
            raise _kit.missing_files(self, dl_manager, "manual_dir is missing or empty.", PARTS)
        roots = [root] + [epath.Path(dl_manager.extract(z)) for z in sorted(root.glob("TrainingData_Part*.zip"))]
        cases = {}
        for r in roots:
            for header in _kit.find(r, "Case*.mhd"):
                match = CASE.match(header.name)
                if match:
                    cases.setdefault(f"Case{match.group(1)}", header)
        if not cases:
            raise _kit.missing_files(self, dl_manager, "no CaseNN.mhd training images in manual_dir "
                                     "or in its TrainingData_Part*.zip files.", PARTS)
        absent, pairs = [], []
        for case, header in sorted(cases.items()):
            seg = header.parent / f"{case}_segmentation.mhd"
            for mhd in (header, seg):
                raw = data_file(mhd) if mhd.exists() else mhd.with_suffix(".raw")
                missing = [p for p in (mhd, raw) if p is not None and not p.exists()]
                absent += [str(p.relative_to(root) if str(p).startswith(str(root)) else p.name)
                           for p in missing]
            pairs.append((case, header, seg))
        if absent:
            raise _kit.missing_files(self, dl_manager, f"the training data is incomplete: {len(absent)} "
                                     f"file(s) of its {len(pairs)} cases are missing.", absent)
        return pairs

    def _split_generators(self, dl_manager):
        train, validation = _kit.validation_split(self._cases(dl_manager))
        return {"train": self._generate_examples(train), "validation": self._generate_examples(validation)}

    def _generate_examples(self, pairs):
        for case, header, seg in pairs:
            image, spacing, affine = read_metaimage(header)
            label, label_spacing, _ = read_metaimage(seg)
            if not np.allclose(spacing, label_spacing, rtol=1e-4):
                raise _kit.DatasetFilesError(f"{seg}: voxel spacing {label_spacing} differs from its "
                                             f"image's {spacing} ({header}); the pair does not belong together.")
            yield case, _kit.volume_example(case, image[..., None], label, spacing, affine,
                                            source=str(header), num_classes=2)
