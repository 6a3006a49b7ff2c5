"""TFDS's builder test of the phantoms (generated: every configuration, 64/16/16 samples)."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.phantoms import phantoms_dataset_builder


class PhantomsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = phantoms_dataset_builder.Builder
    SPLITS = {"train": 64, "validation": 16, "test": 16}


if __name__ == "__main__":
    tfds.testing.test_main()
