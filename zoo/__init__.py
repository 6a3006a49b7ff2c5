"""zoo: a Keras (tf_keras) model zoo for medical image analysis.

The public API (re-exports only; TensorFlow is imported on first use, not by ``import zoo``)::

    zoo.list_models("resnet*")      zoo.info("unet3d")      zoo.load("unet3d", num_classes=3)
    zoo.finetune(model, train="data/train", val="data/val", epochs=50, out_dir="runs/liver")
    small, report = zoo.compress("runs/liver", "prune_80", train="data/train", val="data/val")
    zoo.export(small, "liver.tflite", quantization="int8", representative_data="data/train")
    zoo.predict("liver.tflite", "case_001.nii.gz")          zoo.run("unet3d")   # all of it, verified
    zoo.from_monai(network_def, "model.pt")   # a MONAI network + state dict as a zoo model

``docs/architecture.md`` maps the packages and the way of a call.
"""
import importlib

# The packages zoo.compress and zoo.export share their names with two verbs. Their __init__
# modules import nothing heavy; importing them here first binds the package names, which the
# del below removes, so zoo.compress and zoo.export resolve to the verbs (PEP 562 __getattr__).
# Later imports of their modules (zoo.compress.recipes ...) do not rebind zoo.compress.
import zoo.compress  # noqa: F401
import zoo.export  # noqa: F401
from zoo._version import __version__
from zoo.errors import (
    InvalidArgumentError,
    MissingDependencyError,
    RegistryError,
    UnknownArgumentError,
    UnknownModelError,
    WeightsError,
    ZooError,
)
from zoo.hub import contract, info, list_models, load, save_weights

del compress, export  # noqa: F821 - the submodule names bound by the imports above


# Exports that need TensorFlow, imported on first access so ``import zoo`` stays light.
_LAZY = {"finetune": "zoo.api", "compress": "zoo.api", "export": "zoo.api", "predict": "zoo.api",
         "run": "zoo.pipeline", "list_recipes": "zoo.compress.listing", "load_model": "zoo.resolve",
         "load_run": "zoo.resolve", "load_tflite": "zoo.export.runtime", "FitOptions": "zoo.train.options",
         "ModelInfo": "zoo.record", "info_of": "zoo.record", "RecipeNotApplicableError": "zoo.compress.recipes",
         "from_monai": "zoo.hub.convert"}

# zoo.datasets (the data-set catalogue), zoo.data (the input pipeline), zoo.train, zoo.callbacks
# (Keras callbacks), zoo.quality (GAN distances), zoo.losses, zoo.metrics: imported on first access
_SUBMODULES = ("datasets", "data", "train", "callbacks", "quality", "losses", "metrics", "scoring")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"zoo.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = ["load", "load_model", "load_run", "load_tflite", "list_models", "info", "save_weights", "contract",
           "finetune", "compress", "export", "predict", "run", "list_recipes", "FitOptions", "ModelInfo", "from_monai",
           "info_of", "RecipeNotApplicableError", "ZooError", "RegistryError", "UnknownModelError",
           "UnknownArgumentError", "InvalidArgumentError", "WeightsError", "MissingDependencyError", "__version__"]
