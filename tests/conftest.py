import os
import sys

import numpy as np
import pytest

# the test extra: a missing package stops the run, naming it; a test that skips for a missing package
# fails instead (tests/_extras.py)
from _extras import pytest_make_collect_report, pytest_runtest_makereport, pytest_sessionstart  # noqa: F401

# torch 2.14's build brings triton, whose bundled LLVM crashes (segfault) a process that has loaded
# TensorFlow once torch._dynamo probes for it - which importing torchvision, and so monai.losses, does.
# No test needs triton (it compiles GPU kernels): hide it, so that the probe finds none.
sys.modules.setdefault("triton", None)

if os.environ.get("PYTEST_XDIST_WORKER") and "TF_NUM_INTRAOP_THREADS" not in os.environ:
    # several workers share the cores: one compute thread each avoids oversubscription
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ["TF_NUM_INTEROP_THREADS"] = "2"
    from zoo._keras import tf as _tf
    _tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
    _tf.config.threading.set_inter_op_parallelism_threads(2)


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


@pytest.fixture
def server():
    """A loopback HTTP server whose files and misbehaviour each test scripts (tests/_loopback_server.py)."""
    from _loopback_server import LoopbackServer
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture
def http_env(isolated_home, monkeypatch):
    """isolated_home plus plain http allowed (the loopback server), a tiny retry backoff, and no
    mirror, progress or retry settings inherited from the user's environment."""
    for key in ("ZOO_MIRROR", "ZOO_PROGRESS", "ZOO_RETRIES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ZOO_ALLOW_HTTP", "1")
    monkeypatch.setenv("ZOO_BACKOFF", "0.01")
    return isolated_home
