"""The objects a compressed model needs to be rebuilt from its config (strategy clones,
``model.json``, ``.keras``/``.h5`` files): tfmot's classes and the zoo's compression classes."""
from zoo._keras import keras
from zoo.compress import _distill, _prune, _quantize
from zoo.compress.tfmot import tfmot_objects


def custom_objects():
    """tfmot's classes (:func:`zoo.compress.tfmot.tfmot_objects`), the zoo's pruning schedule and
    wrapper, quantize configs and layers, and the distillation head."""
    return {**tfmot_objects(), **_prune.CUSTOM_OBJECTS, **_quantize.CUSTOM_OBJECTS, **_distill.CUSTOM_OBJECTS}


def scope():
    """A Keras custom-object scope in which compressed models deserialize."""
    return keras.utils.custom_object_scope(custom_objects())
