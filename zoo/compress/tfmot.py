"""The one import of tensorflow-model-optimization, and the objects a wrapped model needs to be
rebuilt from its config (strategy clones, ``model.json``, ``.keras``/``.h5`` files)."""
from zoo._keras import keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tfmot imports Keras)
from zoo.errors import MissingDependencyError

try:
    import tensorflow_model_optimization as tfmot
except ImportError:  # pragma: no cover - tfmot is an install requirement
    raise MissingDependencyError(
        "zoo.compress needs tensorflow-model-optimization 0.8: pip install "
        "'tensorflow-model-optimization>=0.8,<0.9'") from None

from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper  # noqa: E402

sparsity = tfmot.sparsity.keras
quantization = tfmot.quantization.keras
clustering = tfmot.clustering.keras

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
ClusterWeights = cluster_wrapper.ClusterWeights


def custom_objects():
    """Every tfmot class a pruned, clustered or quantization-aware model may name in its config,
    plus the zoo's own schedule, wrapper and quantize configs."""
    from zoo.compress import _prune, _quantize
    objects = {"PruneLowMagnitude": PruneLowMagnitude, "ClusterWeights": ClusterWeights,
               "PolynomialDecay": sparsity.PolynomialDecay, "ConstantSparsity": sparsity.ConstantSparsity}
    scope_ = quantization.quantize_scope()  # tfmot's own list of quantization classes
    for part in scope_.custom_objects:  # a tuple of dicts
        objects.update(part)
    objects.update(_prune.CUSTOM_OBJECTS)
    objects.update(_quantize.CUSTOM_OBJECTS)
    # a quantize wrapper rebuilds its inner layer by class name alone ("ResizeLike", not the
    # registered "zoo>ResizeLike"): the zoo's registered layers under their bare names too
    for key, value in keras.utils.get_custom_objects().items():
        if key.startswith("zoo>") and value is not None:
            objects.setdefault(key[len("zoo>"):], value)
    return objects


def scope():
    """A Keras custom-object scope in which wrapped models deserialize."""
    return keras.utils.custom_object_scope(custom_objects())


def register():
    """Make the objects of :func:`custom_objects` known to Keras for good (``zoo.load_model``)."""
    keras.utils.get_custom_objects().update(custom_objects())
