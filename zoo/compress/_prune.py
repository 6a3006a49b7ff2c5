"""Magnitude pruning with tfmot, on a schedule derived from the run's real number of steps.

tfmot's ``PolynomialDecay`` needs begin/end steps and a frequency up front, and its defaults fail
short runs silently (a frequency of 100 prunes nothing in 16 steps; an end step that is not
``begin + k * frequency`` stops short of the target). :class:`StepsSchedule` keeps them in
variables that :class:`ScheduleSteps` sets when training starts, from Keras' steps per epoch and
the stage's epochs: ``n`` mask updates, ``frequency`` steps apart, the last one exactly at
``end = end_fraction * total steps``, where the schedule reaches the target. The steps after
``end`` fine-tune with the final masks.

Layers are wrapped one by one (tfmot's model-level call refuses the zoo's custom layers, which
have no weights to prune); excluded layers and layers without a prunable kernel stay as they are.
"""
import numpy as np
from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry, pruning_schedule

from zoo._keras import keras, tf
from zoo.compress.tfmot import PruneLowMagnitude
from zoo.compress.tfmot import sparsity as S

_KERNEL_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "Conv3DTranspose", "Dense")


@keras.utils.register_keras_serializable(package="zoo")
class StepsSchedule(pruning_schedule.PruningSchedule):
    """Polynomial decay (tfmot's formula, power 3) from ``initial_sparsity`` to ``final_sparsity``
    whose begin/end steps and frequency are set at the start of training (see module doc)."""

    def __init__(self, final_sparsity, initial_sparsity=0.0, power=3, begin_fraction=0.0,
                 end_fraction=0.5, updates=16):
        self.final_sparsity, self.initial_sparsity = float(final_sparsity), float(initial_sparsity)
        self.power, self.updates = power, int(updates)
        self.begin_fraction, self.end_fraction = float(begin_fraction), float(end_fraction)
        self._validate_sparsity(self.final_sparsity, "final_sparsity")
        self._validate_sparsity(self.initial_sparsity, "initial_sparsity")
        # (begin, end, frequency): variables made here, in the caller's strategy scope (never in a
        # replica context), assigned by ScheduleSteps; not model weights (re-derived every run)
        with tf.init_scope():
            self.steps = [tf.Variable(v, trainable=False, dtype=tf.int64, name=n,
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                          for v, n in ((0, "prune_begin"), (1, "prune_end"), (1, "prune_frequency"))]

    def _vars(self):
        return self.steps

    def plan(self, total_steps):
        """(begin, end, frequency) for ``total_steps`` training steps (tfmot counts from 1)."""
        total = max(int(total_steps), 1)
        end = min(total, max(1, int(round(self.end_fraction * total))))
        first = min(end, max(1, int(round(self.begin_fraction * total))))
        n = max(1, min(self.updates, end - first + 1))
        frequency = max(1, (end - first) // max(n - 1, 1)) if n > 1 else 1
        begin = end - (n - 1) * frequency
        return begin, end, frequency

    def set_total_steps(self, total_steps):
        plan = self.plan(total_steps)
        for var, value in zip(self._vars(), plan):
            var.assign(value)
        return plan

    def __call__(self, step):
        begin, end, frequency = self._vars()
        p = tf.minimum(1.0, tf.maximum(0.0, tf.cast(step - begin, tf.float32)
                                       / tf.cast(tf.maximum(end - begin, 1), tf.float32)))
        p = tf.where(end > begin, p, 1.0)  # a single update (begin == end) goes to the target
        value = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * tf.pow(1.0 - p, self.power)
        return self._should_prune_in_step(step, begin, end, frequency), value

    def get_config(self):
        return {"class_name": "zoo>StepsSchedule", "config": {
            "final_sparsity": self.final_sparsity, "initial_sparsity": self.initial_sparsity,
            "power": self.power, "begin_fraction": self.begin_fraction, "end_fraction": self.end_fraction,
            "updates": self.updates}}


@keras.utils.register_keras_serializable(package="zoo")
class PruneWrapper(PruneLowMagnitude):
    """tfmot's PruneLowMagnitude whose config keeps ``sparsity_m_by_n`` (tfmot drops it, so a
    clone - a strategy scope, mixed precision - would silently prune unstructured)."""

    def __init__(self, layer, sparsity_m_by_n=None, **kwargs):
        super().__init__(layer, sparsity_m_by_n=sparsity_m_by_n, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["sparsity_m_by_n"] = list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        schedule = config.pop("pruning_schedule")
        config["pruning_schedule"] = keras.utils.deserialize_keras_object(
            schedule, custom_objects={"zoo>StepsSchedule": StepsSchedule, **_SCHEDULES})
        config["layer"] = keras.layers.deserialize(config.pop("layer"))
        return cls(**config)


_SCHEDULES = {"PolynomialDecay": S.PolynomialDecay, "ConstantSparsity": S.ConstantSparsity}
CUSTOM_OBJECTS = {"zoo>StepsSchedule": StepsSchedule, "zoo>PruneWrapper": PruneWrapper}


class ScheduleSteps(keras.callbacks.Callback):
    """Sets every :class:`StepsSchedule` from Keras' steps per epoch x ``epochs`` at train start."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self.plan = epochs, None

    def on_train_begin(self, logs=None):
        steps = self.params.get("steps") or 1
        for layer in wrappers(self.model):
            if isinstance(layer.pruning_schedule, StepsSchedule):
                self.plan = layer.pruning_schedule.set_total_steps(steps * self.epochs)


def prunable(layer):
    """Whether ``layer`` has a kernel tfmot can prune (a wrapped layer's kernel)."""
    return type(layer).__name__ in _KERNEL_LAYERS and prune_registry.PruneRegistry.supports(layer)


def m_by_n_problems(layer, m_by_n):
    """Why tfmot's ``m_by_n`` sparsity cannot hold exactly on ``layer`` (None when it can)."""
    kernel = layer.kernel
    if len(kernel.shape) not in (2, 4):
        return (f"{len(kernel.shape) - 2}D kernel (tfmot's {m_by_n[0]}:{m_by_n[1]} sparsity handles Dense and "
                "Conv2D only)")
    cin = kernel.shape[-2]
    if cin % m_by_n[1]:
        return f"{cin} input channels, not a multiple of {m_by_n[1]}"
    return None


def wrap(model, *, final_sparsity, exclude=(), m_by_n=None, **schedule):
    """A copy of ``model`` whose prunable layers (all but ``exclude``) are wrapped for pruning."""
    sched = StepsSchedule(final_sparsity if not m_by_n else m_by_n[0] / m_by_n[1], **schedule)

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if layer.name in exclude or not prunable(layer):
            return copy
        return PruneWrapper(copy, pruning_schedule=sched, sparsity_m_by_n=tuple(m_by_n) if m_by_n else None)

    wrapped = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            target = wrapped.get_layer(_wrapped_name(wrapped, layer.name))
            (target.layer if isinstance(target, PruneLowMagnitude) else target).set_weights(layer.get_weights())
    return wrapped


def _wrapped_name(model, name):
    names = {layer.name for layer in model.layers}
    return name if name in names else f"prune_wrapper_{name}"


def wrappers(model):
    return [layer for layer in model.layers if isinstance(layer, PruneLowMagnitude)]


def callbacks(epochs):
    return [S.UpdatePruningStep(), ScheduleSteps(epochs)]


def apply_masks(model):
    """kernel = kernel * mask in every wrapper (the last gradient step leaves pruned weights
    slightly non-zero until the next forward pass masks them)."""
    pairs = []
    for layer in wrappers(model):
        for weight, mask, _ in layer.pruning_vars:
            pairs.append((weight, weight.numpy() * mask.numpy()))
    keras.backend.batch_set_value(pairs)


def strip(model):
    """The plain Keras model of a pruned one (masks applied, wrappers removed)."""
    apply_masks(model)
    return S.strip_pruning(model)


def sparsity_of(kernel):
    kernel = np.asarray(kernel)
    return float(np.mean(kernel == 0)) if kernel.size else 0.0


def layer_sparsity(model, names):
    """``{layer name: fraction of zero weights in its kernel}``."""
    return {n: sparsity_of(model.get_layer(n).kernel.numpy()) for n in names}


def pruning_state(model):
    """``{wrapper name: (pruning step, [mask arrays])}`` of a wrapped model (the resume test)."""
    return {layer.name: (int(layer.pruning_step.numpy()), [m.numpy() for _, m, _ in layer.pruning_vars])
            for layer in wrappers(model)}
