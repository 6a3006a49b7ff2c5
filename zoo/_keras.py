"""The one place that imports TensorFlow and Keras.

The zoo uses the Keras 2 API (``tf_keras``) because tensorflow-model-optimization
only supports Keras 2. ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is
imported so that ``tf.keras`` inside TensorFlow and tfmot resolves to tf_keras too.
If the user imported TensorFlow first, ``tf.keras`` may already be Keras 3; the
zoo does not depend on ``tf.keras`` and always uses ``tf_keras`` directly.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
