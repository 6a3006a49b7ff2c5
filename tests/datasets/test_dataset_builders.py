"""Every catalogue builder's own TFDS test (``datasets/<name>/<name>_dataset_builder_test.py``, a
``tfds.testing.DatasetBuilderTestCase`` on its ``dummy_data/``), collected here so ``pytest``
runs them. The modules are imported under the package name ``zoo.datasets.builders`` (as the
zoo imports the builders), so each builder registers with TFDS exactly once."""
import importlib

import tensorflow_datasets as tfds

from zoo.datasets._catalog import folders

BUILDERS = list(folders())


def _not_a_test(method):
    def call(self, *args, **kwargs):
        return method(self, *args, **kwargs)
    call.__test__ = False  # pytest collects no method marked so
    return call


def _collect():
    found = {}
    for name in BUILDERS:
        module = importlib.import_module(f"zoo.datasets.builders.{name}.{name}_dataset_builder_test")
        for attr, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, tfds.testing.DatasetBuilderTestCase) \
                    and obj is not tfds.testing.DatasetBuilderTestCase:
                # tf.test.TestCase's test_session() is a helper TFDS calls, not a test (pytest would
                # collect it and report a skip)
                found[attr] = type(attr, (obj,), {"test_session": _not_a_test(obj.test_session),
                                                  "__module__": __name__})
    return found


globals().update(_collect())


def test_every_builder_folder_has_a_builder_test():
    tested = {cls.DATASET_CLASS.name for cls in _collect().values()}
    assert tested, "no builder tests found"
    assert tested == set(BUILDERS), set(BUILDERS) - tested
