"""The one import of tensorflow-model-optimization, and tfmot's classes a wrapped model names in
its config (the whole list, with the zoo's own, is :mod:`zoo.compress.objects`)."""
import warnings

from zoo._keras import keras  # first: sets TF_USE_LEGACY_KERAS before tfmot imports Keras
from zoo.errors import MissingDependencyError

# tfmot 0.8 compares versions with distutils' LooseVersion, whose DeprecationWarning would reach a
# user through every `zoo` command that compresses: the import is quiet about it
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:  # pragma: no cover - tfmot is an install requirement
        raise MissingDependencyError(
            "zoo.compress needs tensorflow-model-optimization 0.8: pip install "
            "'tensorflow-model-optimization>=0.8,<0.9'") from None
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

sparsity = tfmot.sparsity.keras
quantization = tfmot.quantization.keras
clustering = tfmot.clustering.keras

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
ClusterWeights = cluster_wrapper.ClusterWeights


def tfmot_objects():
    """Every tfmot class a pruned, clustered or quantization-aware model may name in its config,
    and the zoo's registered layers under their bare class names too: a quantize wrapper
    rebuilds its inner layer by class name alone ("ResizeLike", not the registered "zoo>ResizeLike").
    The zoo's own compression classes are added by :func:`zoo.compress.objects.custom_objects`."""
    objects = {"PruneLowMagnitude": PruneLowMagnitude, "ClusterWeights": ClusterWeights,
               "PolynomialDecay": sparsity.PolynomialDecay, "ConstantSparsity": sparsity.ConstantSparsity}
    scope_ = quantization.quantize_scope()  # tfmot's own list of quantization classes
    for part in scope_.custom_objects:  # a tuple of dicts
        objects.update(part)
    for key, value in keras.utils.get_custom_objects().items():
        if key.startswith("zoo>") and value is not None:
            objects.setdefault(key[len("zoo>"):], value)
    return objects
