"""TFDS's builder test of isbi2012_em on dummy_data/ (6 slices of 32 x 32: 5 train, 1 validation)."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.isbi2012_em import isbi2012_em_dataset_builder


class Isbi2012EmTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = isbi2012_em_dataset_builder.Builder
    SPLITS = {"train": 5, "validation": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
