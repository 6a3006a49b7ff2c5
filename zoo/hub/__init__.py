"""The model hub: the registry (``registry.yaml``), building entries, pretrained weights.

``zoo.load``, ``zoo.list_models``, ``zoo.info`` and ``zoo.save_weights`` come from here. Nothing in
this package imports TensorFlow at import time.
"""
from zoo.hub.api import build_kwargs, info, list_models, load
from zoo.hub.contract import contract
from zoo.hub.registry import get_registry
from zoo.hub.weights import save_weights

__all__ = ["load", "list_models", "info", "save_weights", "contract", "get_registry", "build_kwargs"]
