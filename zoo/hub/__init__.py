"""The model hub: the registry (``registry.yaml``), building entries, pretrained weights.

``zoo.load``, ``zoo.list_models``, ``zoo.info``, ``zoo.load_model`` and ``zoo.save_weights``
come from here. Nothing in this package imports TensorFlow at import time.
"""
from zoo.hub.api import build_kwargs, info, list_models, load, load_model, register_custom_objects
from zoo.hub.registry import get_registry
from zoo.hub.contract import contract
from zoo.hub.weights import save_weights

__all__ = ["load", "load_model", "list_models", "info", "save_weights", "contract", "get_registry", "build_kwargs",
           "register_custom_objects"]
