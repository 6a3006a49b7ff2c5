"""TFDS's builder test of the Decathlon tasks on dummy_data/ (5 cases per task: 4 train, 1
validation). Task04 comes as its .tar (with the macOS ._ files the real tars hold), the others as
extracted folders; Task05 has two channels (T2, ADC), Task01 four."""
import pytest
import tensorflow_datasets as tfds

from zoo.datasets.builders.decathlon import decathlon_dataset_builder

FIRST = ["task02_heart", "task04_hippocampus", "task05_prostate"]


class DecathlonTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = decathlon_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = FIRST
    SPLITS = {"train": 4, "validation": 1}


@pytest.mark.slow  # ~2 s per task
class DecathlonOtherTasksTest(DecathlonTest):
    BUILDER_CONFIG_NAMES_TO_TEST = [c.name for c in decathlon_dataset_builder.Builder.BUILDER_CONFIGS
                                    if c.name not in FIRST]


if __name__ == "__main__":
    tfds.testing.test_main()
