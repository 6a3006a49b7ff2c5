"""Every catalogue builder's own TFDS test (``datasets/<name>/<name>_dataset_builder_test.py``, a
``tfds.testing.DatasetBuilderTestCase`` on its ``dummy_data/``), collected here so ``pytest``
runs them. The modules are imported under the package name ``zoo.datasets.builders`` (as the
zoo imports the builders), so each builder registers with TFDS exactly once."""
import importlib

import pytest
import tensorflow_datasets as tfds

from zoo.datasets._catalog import folders

BUILDERS = list(folders())
# builder tests whose download_and_prepare took 8.4-9.0 s in the quick tier (two workers on the 2-core machine)
SLOW = {"MedMNISTTest", "PhantomsTest"}


def _not_a_test(method):
    def call(self, *args, **kwargs):
        return method(self, *args, **kwargs)
    call.__test__ = False  # pytest collects no method marked so
    return call


def _slow(method):
    def call(self, *args, **kwargs):
        return method(self, *args, **kwargs)
    call.__name__ = method.__name__
    return pytest.mark.slow(call)


def _collect():
    found = {}
    for name in BUILDERS:
        module = importlib.import_module(f"zoo.datasets.builders.{name}.{name}_dataset_builder_test")
        for attr, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, tfds.testing.DatasetBuilderTestCase) \
                    and obj is not tfds.testing.DatasetBuilderTestCase:
                # tf.test.TestCase's test_session() is a helper TFDS calls, not a test (pytest would
                # collect it and report a skip)
                body = {"test_session": _not_a_test(obj.test_session), "__module__": __name__}
                if attr in SLOW:
                    body["test_download_and_prepare_as_dataset"] = _slow(obj.test_download_and_prepare_as_dataset)
                found[attr] = type(attr, (obj,), body)
    return found


globals().update(_collect())


def test_every_builder_folder_has_a_builder_test():
    found = _collect()
    tested = {cls.DATASET_CLASS.name for cls in found.values()}
    assert tested, "no builder tests found"
    assert SLOW <= set(found), sorted(SLOW - set(found))
    assert tested == set(BUILDERS), set(BUILDERS) - tested
