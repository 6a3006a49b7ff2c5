"""ISBI 2012 EM segmentation challenge: neuronal membranes in serial-section TEM (U-Net's benchmark).

The training stack is two multi-page TIFF files of 30 slices of 512 x 512 pixels: the
images (8-bit grey) and their labels (0 = membrane, 255 = cell interior). Each slice is one
example: ``image`` uint8 (H, W, 1) and ``label`` uint8 (H, W, 1) with 1 = membrane, 0 = cell.
The last sixth of the stack (slices 25-29) is the ``validation`` split, the rest ``train``;
``split="train+validation"`` gives all 30 slices as in the U-Net paper. The test stack has no
public labels and is not included.
"""
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo.datasets import _kit

FILES = ("train-volume.tif", "train-labels.tif")
VALIDATION_FRACTION = 1 / 6


def read_stack(path):
    """A multi-page TIFF as a uint8 array (pages, H, W), read with Pillow."""
    Image = _kit.require("PIL.Image", "Reading the ISBI 2012 TIFF stacks")
    from PIL import ImageSequence
    with epath.Path(path).open("rb") as f, Image.open(f) as im:
        pages = [np.array(page.convert("L")) for page in ImageSequence.Iterator(im)]
    return np.stack(pages)


class Builder(_kit.ZooBuilder):
    """The ISBI 2012 EM training stack, one example per slice."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [_kit.ZooConfig(
        name="default", description="30 slices, 512 x 512, membrane vs cell",
        task="segmentation", spatial_dims=2, channels=1, classes=("cell", "membrane"),
        license="no explicit licence; research use, cite Cardona et al. 2010 and Arganda-Carreras et al. 2015",
        files=FILES, homepage="https://imagej.net/events/isbi-2012-segmentation-challenge",
        source="http://brainiac2.mit.edu/isbi_challenge/ (the challenge page; registration, then Downloads)")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Register at http://brainiac2.mit.edu/isbi_challenge/ and place train-volume.tif and "
        "train-labels.tif (multi-page TIFF stacks) in manual_dir.")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 1)),
                "label": tfds.features.Image(shape=(None, None, 1)),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage=self.builder_config.homepage,
        )

    def _split_generators(self, dl_manager):
        root = _kit.manual_root(dl_manager)
        absent = [f for f in FILES if root is None or not (root / f).exists()]
        if absent:
            raise _kit.missing_files(self, dl_manager, "the training stack is not in manual_dir.", absent)
        images, labels = (read_stack(root / f) for f in FILES)
        if images.shape != labels.shape:
            raise _kit.DatasetFilesError(
                f"{root / FILES[0]} holds {images.shape[0]} slices of {images.shape[1:]} but "
                f"{root / FILES[1]} holds {labels.shape[0]} of {labels.shape[1:]}; they must match. "
                "Download both files again.")
        values = set(np.unique(labels).tolist())
        if not values <= {0, 255}:
            raise _kit.DatasetFilesError(
                f"{root / FILES[1]}: holds values {sorted(values)[:8]}, but the ISBI labels are 0 "
                "(membrane) and 255 (cell); is it the label stack?")
        n_val = int(len(images) * VALIDATION_FRACTION)
        cut = len(images) - n_val
        return {"train": self._generate_examples(images[:cut], labels[:cut], 0),
                "validation": self._generate_examples(images[cut:], labels[cut:], cut)}

    def _generate_examples(self, images, labels, first):
        for k, (image, label) in enumerate(zip(images, labels)):
            key = f"slice_{first + k:02d}"
            yield key, {"image": image[..., None], "label": (label < 128).astype(np.uint8)[..., None],
                        "id": key}
