"""Weight clustering (weight sharing) with tfmot: every clustered kernel keeps at most k values.

Layers are wrapped one by one: kernels of Conv1D/2D/3D, their transposes and Dense layers, except
``exclude``, and except kernels with fewer than ``min_weights`` values (tfmot skips Conv2D kernels
it cannot cluster; the zoo applies one rule to every layer). ``preserve_sparsity=True`` (after
pruning) keeps the zeros: the zero cluster stays at 0 and pruned weights stay pruned.
"""
import numpy as np

from zoo._keras import keras
from zoo.compress.tfmot import ClusterWeights
from zoo.compress.tfmot import clustering as C

_KERNEL_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Dense")
INITS = {"kmeans++": C.CentroidInitialization.KMEANS_PLUS_PLUS, "linear": C.CentroidInitialization.LINEAR,
         "density": C.CentroidInitialization.DENSITY_BASED, "random": C.CentroidInitialization.RANDOM}


def clusterable(layer, clusters):
    """Whether ``layer`` has a kernel large enough to cluster into ``clusters`` values."""
    if type(layer).__name__ not in _KERNEL_LAYERS or not layer.trainable_weights:
        return False
    return int(np.prod(layer.kernel.shape)) >= max(4 * clusters, 64)


def wrap(model, *, clusters, exclude=(), init="kmeans++", preserve_sparsity=False):
    """A copy of ``model`` whose clusterable layers (all but ``exclude``) are wrapped."""

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if layer.name in exclude or not clusterable(layer, clusters):
            return copy
        copy.build(layer.input_shape)
        copy.set_weights(layer.get_weights())  # the centroids are initialised from these weights
        return ClusterWeights(copy, number_of_clusters=int(clusters), cluster_centroids_init=INITS[init],
                              preserve_sparsity=bool(preserve_sparsity))

    wrapped = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        target = wrapped.get_layer(layer.name if layer.name in _names(wrapped) else f"cluster_{layer.name}")
        if layer.weights and not isinstance(target, ClusterWeights):
            target.set_weights(layer.get_weights())
    return wrapped


def _names(model):
    return {layer.name for layer in model.layers}


def wrappers(model):
    return [layer for layer in model.layers if isinstance(layer, ClusterWeights)]


def strip(model):
    """The plain Keras model of a clustered one (each kernel holds its clustered values)."""
    for layer in wrappers(model):
        layer.update_clustered_weights_associations()
    return C.strip_clustering(model)


def unique_values(kernel):
    return int(np.unique(np.asarray(kernel)).size)


def layer_uniques(model, names):
    """``{layer name: number of distinct values in its kernel}``."""
    return {n: unique_values(model.get_layer(n).kernel.numpy()) for n in names}
