"""TFDS's builder test of promise12 on dummy_data/ (5 cases: 3 in TrainingData_Part1.zip, 2
extracted in TrainingData_Part2/; 4 train, 1 validation)."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.promise12 import promise12_dataset_builder


class Promise12Test(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = promise12_dataset_builder.Builder
    SPLITS = {"train": 4, "validation": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
