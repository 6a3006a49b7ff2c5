"""TFDS's builder test of every Decathlon task on dummy_data/ (5 cases per task: 4 train, 1
validation; Task04 as its .tar with macOS ._ files, the others as extracted folders)."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.decathlon import decathlon_dataset_builder


class DecathlonTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = decathlon_dataset_builder.Builder
    SPLITS = {"train": 4, "validation": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
