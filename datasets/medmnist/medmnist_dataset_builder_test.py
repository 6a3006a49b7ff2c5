"""TFDS's builder test of MedMNIST on dummy_data/: one configuration per size and kind (RGB,
grey, multi-label, 3D), each file with 3 train, 1 val and 2 test images."""
import tensorflow_datasets as tfds

from zoo.datasets.builders.medmnist import medmnist_dataset_builder


class MedMNISTTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = medmnist_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["pathmnist_28", "chestmnist_64", "breastmnist_128",
                                    "pneumoniamnist_224", "retinamnist_224", "organmnist3d_28",
                                    "nodulemnist3d_64"]
    SPLITS = {"train": 3, "validation": 1, "test": 2}


if __name__ == "__main__":
    tfds.testing.test_main()
