import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s; CI runs it anyway")


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts from an empty Keras graph and fixed seeds."""
    from zoo._keras import keras, tf
    keras.backend.clear_session()
    np.random.seed(0)
    tf.random.set_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """A private ZOO_HOME and no user registries, so tests never touch the real cache."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    return tmp_path / "zoo_home"
