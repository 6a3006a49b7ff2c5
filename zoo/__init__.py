"""zoo: a Keras (tf_keras) model zoo for medical image analysis.

Public API (re-exports only; TensorFlow is imported on first use, not by ``import zoo``)::

    zoo.list_models("resnet*")      zoo.info("unet3d")      zoo.load("unet3d", num_classes=3)
    zoo.export(model, "unet3d.tflite", quantization="int8")   # verified TFLite + JSON sidecar
    zoo.from_monai(network_def, "model.pt")   # a MONAI network + state dict as a zoo model
"""
from zoo.errors import (InvalidArgumentError, MissingDependencyError, RegistryError,
                        UnknownArgumentError, UnknownModelError, WeightsError, ZooError)
from zoo.hub import contract, info, list_models, load, load_model, save_weights

__version__ = "0.1.0"

# Exports that need TensorFlow, imported on first access (PEP 562) so ``import zoo`` stays light.
_LAZY = {"finetune": "zoo.train", "predict": "zoo.inference", "compress": "zoo.compress",
         "list_recipes": "zoo.compress", "export": "zoo.export", "run": "zoo.pipeline",
         "from_monai": "zoo.hub.convert"}


# zoo.datasets (the data-set catalogue), zoo.callbacks (Keras callbacks: imports TensorFlow, so
# only on first access), zoo.quality (GAN distances)
_SUBMODULES = ("datasets", "callbacks", "quality")


def __getattr__(name):
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f"zoo.{name}")
    if name in _LAZY:
        import importlib
        module = importlib.import_module(_LAZY[name])
        # zoo.export is the package itself, callable (zoo.export(...) and zoo.export.rewrite_3d)
        value = module if module.__name__ == f"zoo.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))

__all__ = ["load", "load_model", "list_models", "info", "save_weights", "contract", "ZooError", "RegistryError", "UnknownModelError",
           "UnknownArgumentError", "InvalidArgumentError", "WeightsError", "MissingDependencyError",
           "__version__", "finetune", "predict", "compress", "list_recipes", "export", "run", "from_monai"]
