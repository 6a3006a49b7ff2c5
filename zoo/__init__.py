"""zoo: a Keras (tf_keras) model zoo for medical image analysis.

Public API (re-exports only; TensorFlow is imported on first use, not by ``import zoo``)::

    zoo.list_models("resnet*")      zoo.info("unet3d")      zoo.load("unet3d", num_classes=3)
"""
from zoo.errors import (InvalidArgumentError, MissingDependencyError, RegistryError,
                        UnknownArgumentError, UnknownModelError, WeightsError, ZooError)
from zoo.hub import info, list_models, load

__version__ = "0.1.0"

__all__ = ["load", "list_models", "info", "ZooError", "RegistryError", "UnknownModelError",
           "UnknownArgumentError", "InvalidArgumentError", "WeightsError", "MissingDependencyError",
           "__version__"]
