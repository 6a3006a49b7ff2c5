"""TFDS's builder test of camvid on dummy_data/ (SegNet's CamVid/ layout: 2 train, 1 val, 1 test)."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.camvid import camvid_dataset_builder


class CamVidTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = camvid_dataset_builder.Builder
    SPLITS = {"train": 2, "validation": 1, "test": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
