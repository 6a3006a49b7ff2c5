"""Quantization-aware training: tfmot's default 8-bit scheme plus the configs the zoo's layers need.

tfmot quantizes the layers its registry knows and folds Conv2D/Dense -> BatchNorm (-> ReLU). The
zoo adds configs for what its builders contain and tfmot rejects (:data:`ZOO_CONFIGS`):

* a BatchNormalization that does not follow a linear Conv2D/Dense - after a concatenation
  (FC-DenseNet), pre-activation (ResNetV2), before the ReLU of a decoder: its output is quantized
  (int8 MUL/ADD in TFLite);
* ``AdaptiveAveragePooling`` (AlexNet), ``ResizeLike`` (DeepLab): the output is quantized;
* ``CenterCropLike`` (U-Net with valid padding): a slice, nothing to quantize;
* ``LocalResponseNormalization`` (AlexNet-2012, GoogLeNet): a documented *float island*: its
  output is quantized, its inside (square, window sum, power, division) stays float in TFLite
  (:data:`FLOAT_ISLANDS` lists the TFLite ops that stay float).

3D layers (Conv3D, MaxPooling3D, ...) have no tfmot quantize config: QAT refuses them (see
``_check``) and points to the post-training int8 path of the export.

Chains keep what earlier steps achieved: after pruning, tfmot's prune-preserving scheme (PQAT);
after clustering, its cluster-preserving scheme (CQAT, with ``preserve_sparsity`` after both:
PCQAT). tfmot has no preserving quantizer for Conv2DTranspose; :class:`PreserveConvTransposeQuantizer`
keeps its zeros and cluster values. :func:`finalize` turns a preserving QAT model into a plain
default-8-bit one (same layers and quantizer ranges, no extra training variables), which saves
and loads with ``zoo.load_model``.
"""
import numpy as np
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops, quantize_wrapper
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer as _quantize_layer
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
    cluster_preserve_quantize_registry as _cqat,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
    default_8bit_cluster_preserve_quantize_scheme as _cqat_scheme,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    default_8bit_prune_preserve_quantize_scheme as _pqat_scheme,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _pqat,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as _configs8,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _registry8,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantizers as _quantizers8,
)

from zoo._keras import keras, tf
from zoo.compress import _rewrite
from zoo.compress.tfmot import quantization as Q
from zoo.compress.tfmot import tfmot_objects
from zoo.record import attach, attached

OutputConfig = _configs8.Default8BitOutputQuantizeConfig
NoOpConfig = _configs8.NoOpQuantizeConfig
_REGISTRY = _registry8.Default8BitQuantizeRegistry()

ZOO_CONFIGS = {  # layer class -> config factory (BatchNormalization: only where tfmot does not fold it)
    "BatchNormalization": OutputConfig,
    "AdaptiveAveragePooling": OutputConfig,
    "ResizeLike": OutputConfig,
    "LocalResponseNormalization": OutputConfig,
    "CenterCropLike": NoOpConfig,
}
# Layers whose inside stays float in an int8 TFLite model (dequantize -> float ops -> quantize),
# measured with tf.lite.TFLiteConverter on the zoo's models; the per-entry allow-list of float
# ops is the union over the layers a model has.
FLOAT_ISLANDS = {"LocalResponseNormalization": ("ADD", "DIV", "MUL", "PAD", "POW", "SQUARE", "STRIDED_SLICE"),
                 "AdaptiveAveragePooling": ("FULLY_CONNECTED", "RESHAPE", "TRANSPOSE")}  # dynamic or odd sizes


def folded_batch_norm(layer):
    """Whether tfmot folds this BatchNormalization into the conv before it (else :mod:`_rewrite`
    turns it into a 1x1 depthwise conv)."""
    return _rewrite.foldable_batch_norm(layer)


def zoo_config(layer):
    """The zoo's QuantizeConfig for ``layer``, or None when tfmot's default handles it."""
    kind = type(layer).__name__
    if kind == "BatchNormalization" and (folded_batch_norm(layer) or len(layer.input_shape) != 4):
        return None
    factory = ZOO_CONFIGS.get(kind)
    return factory() if factory is not None else None


def unsupported_layers(model, exclude=()):
    """``[(layer name, class name)]`` of the layers neither tfmot's 8-bit registry nor the zoo's
    configs can quantize (3D layers, nested models, unknown custom layers)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name in exclude:
            continue
        kind = type(layer).__name__
        if isinstance(layer, keras.Model):
            out.append((layer.name, f"{kind} (a nested model)"))
        elif kind == "BatchNormalization" and len(layer.input_shape) != 4:
            out.append((layer.name, f"{kind} on {len(layer.input_shape) - 2}D maps"))
        elif not (_REGISTRY.supports(layer) or kind in ZOO_CONFIGS):
            out.append((layer.name, kind))
    return out


def float_ops(model):
    """The TFLite ops allowed to stay float in the int8 conversion of a QAT model (its float
    islands: the layers of :data:`FLOAT_ISLANDS` it still has after :mod:`_rewrite`)."""
    ops = set()
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        ops.update(FLOAT_ISLANDS.get(type(inner).__name__, ()))
    return sorted(ops)


# --------------------------------------------------------------------------- preserving transposed conv
@keras.utils.register_keras_serializable(package="zoo")
class PreserveConvTransposeQuantizer(_quantizers8.Default8BitConvTransposeWeightsQuantizer):
    """tfmot's Conv2DTranspose weight quantizer that keeps the zeros (``sparsity``) and the cluster
    values (``clusters``) the kernel had when QAT started: each weight is snapped to the nearest
    initial value (straight-through gradient) and masked before it is quantized."""

    def __init__(self, sparsity=False, clusters=False):
        super().__init__()
        self.sparsity, self.clusters = bool(sparsity), bool(clusters)

    def build(self, tensor_shape, name, layer):
        out = super().build(tensor_shape, name, layer)
        kernel = tf.convert_to_tensor(getattr(layer.layer, name))
        out["zoo_mask"] = tf.cast(tf.not_equal(kernel, 0), kernel.dtype)
        values = np.unique(kernel.numpy()) if self.clusters else np.array([])
        out["zoo_centroids"] = tf.constant(values if 1 < len(values) <= 256 else [], kernel.dtype)
        return out

    @staticmethod
    def preserved(inputs, weights, sparsity, clusters, exact=False):
        """The kernel snapped to its initial values and masked (``exact``: the values themselves,
        else with a straight-through gradient)."""
        w = inputs
        centroids = weights["zoo_centroids"]
        if clusters and centroids.shape[0]:
            index = tf.argmin(tf.abs(w[..., None] - centroids), axis=-1)
            snapped = tf.gather(centroids, index)
            w = snapped if exact else w + tf.stop_gradient(snapped - w)
        if sparsity:
            w = w * weights["zoo_mask"]
        return w

    def __call__(self, inputs, training, weights, **kwargs):
        w = self.preserved(inputs, weights, self.sparsity, self.clusters)
        return super().__call__(w, training, weights, **kwargs)

    def get_config(self):
        return {"sparsity": self.sparsity, "clusters": self.clusters}


@keras.utils.register_keras_serializable(package="zoo")
class PreserveConvTransposeConfig(_registry8.Default8BitConvTransposeQuantizeConfig):
    """tfmot's Conv2DTranspose config with :class:`PreserveConvTransposeQuantizer`."""

    def __init__(self, sparsity=False, clusters=False, weight_attrs=("kernel",),
                 activation_attrs=("activation",), quantize_output=False):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.sparsity, self.clusters = bool(sparsity), bool(clusters)
        self.weight_quantizer = PreserveConvTransposeQuantizer(sparsity, clusters)

    def get_config(self):
        return {**super().get_config(), "sparsity": self.sparsity, "clusters": self.clusters}


CUSTOM_OBJECTS = {"zoo>PreserveConvTransposeQuantizer": PreserveConvTransposeQuantizer, "zoo>QuantizeLayer": None,
                  "zoo>PreserveConvTransposeConfig": PreserveConvTransposeConfig}


# --------------------------------------------------------------------------- apply
class _FreshClusterPreserveRegistry(_cqat.Default8bitClusterPreserveQuantizeRegistry):
    """tfmot's cluster-preserving registry hands every layer the *same* weight quantizer, and that
    quantizer turns its ``preserve_sparsity`` off for good at the first layer without zeros (e.g.
    an excluded first conv): every later layer would then lose its zeros. One quantizer per layer."""

    def __init__(self, preserve_sparsity):
        super().__init__(preserve_sparsity)
        self._zoo_preserve_sparsity = preserve_sparsity

    def get_quantize_config(self, layer):
        return _cqat.Default8bitClusterPreserveQuantizeRegistry(self._zoo_preserve_sparsity).get_quantize_config(layer)


class _ClusterPreserveScheme(_cqat_scheme.Default8BitClusterPreserveQuantizeScheme):
    def get_quantize_registry(self):
        return _FreshClusterPreserveRegistry(self.preserve_sparsity)


def scheme(preserve=()):
    """tfmot's scheme for what earlier chain steps left: () plain 8-bit, {"prune"} PQAT,
    {"cluster"} CQAT, {"prune", "cluster"} PCQAT."""
    preserve = set(preserve)
    if "cluster" in preserve:
        return _ClusterPreserveScheme(preserve_sparsity="prune" in preserve)
    if "prune" in preserve:
        return _pqat_scheme.Default8BitPrunePreserveQuantizeScheme()
    return Q.default_8bit.Default8BitQuantizeScheme()


def quantize(model, exclude=(), preserve=()):
    """The QAT model of ``model`` (not modified): every layer but ``exclude`` annotated with its
    zoo config (or tfmot's default), then ``quantize_apply`` with :func:`scheme`."""
    preserve = set(preserve)
    with keras.utils.custom_object_scope({**tfmot_objects(), **CUSTOM_OBJECTS}):
        exclude = set(exclude)
        model, _ = _rewrite.rewrite(model, exclude)  # a copy: annotation calls layers again
        for layer in model.layers:  # a BatchNorm folded into an excluded conv stays float with it
            if type(layer).__name__ == "BatchNormalization" and folded_batch_norm(layer) \
                    and _rewrite._inbound(layer)[0].name in exclude:
                exclude.add(layer.name)
        configs = {layer.name: zoo_config(layer) for layer in model.layers}  # before cloning adds nodes

        def annotate(layer):
            if layer.name in exclude:
                return layer.__class__.from_config(layer.get_config())
            config = configs.get(layer.name)
            if config is None and preserve and type(layer).__name__ == "Conv2DTranspose":
                config = PreserveConvTransposeConfig(sparsity="prune" in preserve, clusters="cluster" in preserve)
            return Q.quantize_annotate_layer(layer, config)

        annotated = keras.models.clone_model(model, clone_function=annotate)
        for layer in model.layers:  # excluded layers were rebuilt: give them their weights back
            if layer.name in exclude and layer.weights:
                annotated.get_layer(layer.name).set_weights(layer.get_weights())
        chosen = scheme(preserve)
        return _quantize_relu_inputs(Q.quantize_apply(annotated, chosen), chosen.get_quantize_registry())


@keras.utils.register_keras_serializable(package="zoo")
class QuantizeLayer(_quantize_layer.QuantizeLayer):
    """tfmot's input QuantizeLayer, marked built after ``build``: tfmot's does not set ``built``, so a
    model rebuilt from its JSON (``build_from_config``, then the call) made its range variables
    twice and no checkpoint matched it."""

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


def _quantize_relu_inputs(model, registry):
    """Replace tfmot's QuantizeLayer by :class:`QuantizeLayer`, and work around tfmot 0.8's
    LayerReLUQuantize: for a Conv2D/DepthwiseConv2D/Dense followed by a ReLU it sets
    NoOpQuantizeConfig, which leaves the *weights* unquantized during QAT (meant: no output
    quantizer between the layer and its ReLU). Such wrappers get the scheme's own
    config (its preserving quantizers included) without activation or output quantizers."""
    broken = {layer.name for layer in _wrappers(model)
              if type(layer.layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")
              and isinstance(layer.quantize_config, NoOpConfig)}

    def clone(layer):
        if type(layer) is _quantize_layer.QuantizeLayer:  # built before training: no state to keep
            return QuantizeLayer.from_config(layer.get_config())
        if layer.name not in broken:
            return layer  # reused as is: its quantizer state stays
        config = registry.get_quantize_config(layer.layer)
        config.activation_attrs, config.quantize_output = [], False
        return quantize_wrapper.QuantizeWrapperV2(layer.layer, config)

    return keras.models.clone_model(model, clone_function=clone)


def copy_model(model):
    """A functional copy of ``model`` with its weights (new layers, same names) and its record."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    known = attached(model)
    return attach(clone, known) if known is not None else clone


def _wrappers(model):
    return [layer for layer in model.layers if isinstance(layer, quantize_wrapper.QuantizeWrapper)]


def preserved_kernel(wrapper):
    """``[(weight variable, value)]``: the weights a preserving quantizer trains through (kernel *
    mask for PQAT, the clustered kernel for (P)CQAT, snapped and masked for transposed convs)."""
    out = []
    for weight, quantizer, qvars in wrapper._weight_vars:
        if isinstance(quantizer, PreserveConvTransposeQuantizer):
            out.append((weight, PreserveConvTransposeQuantizer.preserved(
                tf.convert_to_tensor(weight), qvars, quantizer.sparsity, quantizer.clusters, exact=True)))
        elif isinstance(quantizer, _cqat.ClusterPreserveDefaultWeightsQuantizer) \
                and _cqat.CLUSTER_CENTROIDS in qvars:
            impl = qvars[_cqat.CLUSTERING_IMPL]
            original = tf.convert_to_tensor(qvars[_cqat.ORIGINAL_WEIGHTS])
            centroids = tf.convert_to_tensor(impl.cluster_centroids)
            if quantizer.preserve_sparsity:
                original = original * qvars[_cqat.SPARSITY_MASK]
                centroids = centroids * qvars[_cqat.CENTROIDS_MASK]
                impl.cluster_centroids.assign(centroids)
            out.append((weight, impl.get_clustered_weight(impl.get_pulling_indices(original), original)))
        elif isinstance(quantizer, (_pqat.PrunePreserveDefaultWeightsQuantizer,
                                    _cqat.ClusterPreserveDefaultWeightsQuantizer)) and "sparsity_mask" in qvars:
            out.append((weight, tf.convert_to_tensor(weight) * qvars["sparsity_mask"]))
    return out


def _short(variable, layer):
    """A variable's name inside its layer, without the layer's (possibly uniquified) name."""
    name = variable.name.split(":")[0]
    for prefix in (layer.name, getattr(getattr(layer, "layer", None), "name", None)):
        if prefix and name.startswith(prefix + "/"):
            name = name[len(prefix) + 1:]
            break
    else:
        name = name.split("/")[-1]
    return name[len(layer.name) + 1:] if name.startswith(layer.name + "_") else name


def finalize(qat_model, float_model, exclude=(), preserve=()):
    """A plain default-8-bit QAT model with the trained values of ``qat_model`` (a preserving
    one's kernels as its quantizers see them). Without ``preserve`` the model is returned as is."""
    if not preserve:
        return qat_model
    kernels = {}
    for wrapper in _wrappers(qat_model):
        kernels.update({id(v): value for v, value in preserved_kernel(wrapper)})
    plain = quantize(float_model, exclude=exclude)
    if len(plain.layers) != len(qat_model.layers):
        raise RuntimeError(f"finalize: {len(plain.layers)} layers rebuilt, {len(qat_model.layers)} trained")
    pairs = []
    for layer, source in zip(plain.layers, qat_model.layers):  # same build, same order (names of
        if not layer.weights:                                  # generated layers may differ)
            continue
        values = {_short(v, source): v for v in source.weights}
        for v in layer.weights:
            src = values.get(_short(v, layer))
            if src is None or tuple(src.shape) != tuple(v.shape):
                raise RuntimeError(f"finalize: no trained value for {v.name} in {source.name}")
            pairs.append((v, kernels.get(id(src), src)))
    keras.backend.batch_set_value([(v, np.asarray(tf.convert_to_tensor(value))) for v, value in pairs])
    return plain


def quantizer_ranges_ok(model):
    """Whether every fake-quant range of a QAT model is finite (a trained model has real ranges)."""
    for layer in _wrappers(model):
        for v in layer.weights:
            if v.name.endswith(("_min:0", "_max:0")) and not np.all(np.isfinite(v.numpy())):
                return False
    return True


__all__ = ["quantize", "finalize", "unsupported_layers", "float_ops", "zoo_config", "scheme",
           "quant_ops"]


CUSTOM_OBJECTS["zoo>QuantizeLayer"] = QuantizeLayer
