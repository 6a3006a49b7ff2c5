"""The one place that imports TensorFlow and Keras.

The zoo uses the Keras 2 API (``tf_keras``) because tensorflow-model-optimization
only supports Keras 2. ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is
imported so that ``tf.keras`` inside TensorFlow and tfmot resolves to tf_keras too.
If the user imported TensorFlow first, ``tf.keras`` may already be Keras 3; the
zoo does not depend on ``tf.keras`` and always uses ``tf_keras`` directly.

TensorFlow's C++ start-up logging (CUDA stub probes on machines without a GPU) is kept
quiet unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves: level 2 (warnings and
info hidden) where an NVIDIA device exists, 3 on a machine without one, where the only
C++ "errors" are the failed CUDA probes.
"""
import contextlib
import os
import sys

# A level the zoo set (marked by _ZOO_TF_QUIET, inherited by child processes such as test
# subprocesses and workers) is not the user's: those processes are quieted the same way.
_USER_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ and "_ZOO_TF_QUIET" not in os.environ
if not _USER_LOG_LEVEL:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if os.path.exists("/dev/nvidiactl") else "3"
    os.environ["_ZOO_TF_QUIET"] = "1"
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# oneDNN CPU kernels: TensorFlow only enables them by default on CPUs with AVX-512; elsewhere the
# plain kernels make 3D convolution gradients several times slower. Users can set 0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def _quiet_stderr_fd(active):
    """Silence C++ writes to fd 2 during the import (absl logs before its own init)."""
    if not active or "tensorflow" in sys.modules:
        yield
        return
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no usable fd 2 (embedded interpreters): import as is
        yield
        return
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_stderr_fd(not _USER_LOG_LEVEL):
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

# TensorFlow's Python warnings that say nothing to a zoo user: a freshly cloned or loaded model
# whose metrics are built on first use, and the per-batch callback timing of tiny test batches
# (the zoo's checkpointing runs once per epoch). The zoo's own messages and every other
# TensorFlow warning stay.
_NOISE = ("compiled metrics have yet to be built", "is slow compared to the batch time")


class _DropNoise:
    def filter(self, record):
        return not any(text in record.getMessage() for text in _NOISE)


tf.get_logger().addFilter(_DropNoise())

__all__ = ["tf", "keras"]
