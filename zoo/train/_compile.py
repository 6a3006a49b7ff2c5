"""How ``zoo.finetune`` builds and compiles the network it trains: the copy in the strategy's
scope (mixed precision), the loss and metrics, and each phase's optimizer and learning rate.

:class:`Recipe` is the per-phase compile step. A training mode with its own ``train_step``
(a GAN) or a wrapped model (tfmot) goes through the same ``compile(net, steps, trainable)``.
"""
import dataclasses

from zoo import losses as _losses
from zoo import metrics as _metrics
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, check_choice
from zoo.train.strategy import broadcast_weights

AUX_LOSS_WEIGHTS = {"classification": 0.3, "segmentation": 0.5}


def _mixed_precision_clone(model):
    config = model.get_config()
    out_names = {o[0] for o in config.get("output_layers", [])}
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":  # logits stay float32 for a stable loss
            layer["config"]["dtype"] = "float32" if layer["config"].get("name") in out_names \
                else "mixed_float16"
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _clone(model, mixed_precision):
    if mixed_precision:
        return _mixed_precision_clone(model)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _optimizer(spec, learning_rate, weight_decay):
    """A fresh optimizer (an instance is copied from its config: every phase and strategy
    scope needs its own, built for the current trainable variables)."""
    if isinstance(spec, keras.optimizers.Optimizer):
        config = spec.get_config()
        config["learning_rate"] = learning_rate
        return spec.__class__.from_config(config)
    check_choice("optimizer", spec, ("adam", "adamw", "sgd"), "finetune")
    if spec == "adam":
        return keras.optimizers.Adam(learning_rate)
    if spec == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)
    return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)


def _learning_rate(lr, schedule, total_steps):
    check_choice("lr_schedule", schedule, (None, "constant", "cosine"), "finetune")
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return lr.__class__.from_config(lr.get_config())
    if schedule == "cosine" and total_steps:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps, alpha=0.01)
    return lr


def initial_learning_rate(learning_rate, optimizer):
    """1e-3 unless given; an optimizer instance keeps its own rate (or schedule)."""
    if learning_rate is not None:
        return learning_rate
    if isinstance(optimizer, keras.optimizers.Optimizer):
        lr0 = optimizer.get_config()["learning_rate"]
        return keras.optimizers.schedules.deserialize(lr0) if isinstance(lr0, dict) else lr0
    return 1e-3


def metric_names(metrics, val, output_names=None):
    """The keys finetune's history will have (None when a metric has no known name). With
    several outputs, also each output's own loss (``<output>_loss``)."""
    names = ["loss"] + [f"{o}_loss" for o in output_names or []]
    for m in metrics:
        names.append(m if isinstance(m, str) else getattr(m, "name", None))
    if None in names:
        return None
    return names + [f"val_{n}" for n in names] if val else names


def aux_weight(weight, task):
    """The weight of each auxiliary output's loss: GoogLeNet's paper uses 0.3, torchvision's
    DeepLab/FCN recipe 0.5 - the defaults for classification and segmentation models."""
    if weight is None:
        return AUX_LOSS_WEIGHTS.get(task, 0.5)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise InvalidArgumentError(f"finetune: aux_loss_weight={weight!r} must be a number >= 0 (the "
                                   "weight of each auxiliary output's loss, e.g. 0.3; 0 ignores them).")
    return float(weight)


@dataclasses.dataclass
class Recipe:
    """How every phase compiles the network: optimizer (a name or an instance to copy), initial
    rate and schedule, loss and metric objects, loss weight of auxiliary outputs, precision."""
    optimizer: object
    learning_rate: object
    lr_schedule: object
    weight_decay: float
    loss: object
    metrics: list
    n_outputs: int = 1
    aux_weight: float = 0.5
    mixed_precision: bool = False
    jit_compile: bool = False

    def compile(self, net, steps, trainable=True):
        """Compile ``net`` for a phase of ``steps`` optimizer steps (None: unknown) with a fresh
        optimizer; a frozen-encoder phase (``trainable=False``) keeps the rate constant."""
        lr = _learning_rate(self.learning_rate, self.lr_schedule if trainable else "constant", steps)
        opt = _optimizer(self.optimizer, lr, self.weight_decay)
        if self.mixed_precision:
            opt = keras.mixed_precision.LossScaleOptimizer(opt)
        if self.n_outputs > 1:  # auxiliary heads: the same loss, weighted; metrics on the prediction only
            net.compile(optimizer=opt, loss=[self.loss] * self.n_outputs, jit_compile=self.jit_compile,
                        loss_weights=[1.0] + [self.aux_weight] * (self.n_outputs - 1),
                        metrics=[list(self.metrics)] + [[] for _ in range(self.n_outputs - 1)])
        else:
            net.compile(optimizer=opt, loss=self.loss, metrics=list(self.metrics),
                        jit_compile=self.jit_compile)


def build_in_scope(strategy, model, *, task, num_classes, loss, metrics, mixed_precision, ignore_label=None):
    """``(net, loss function, metric objects)`` made in ``strategy``'s scope. ``net`` is ``model``
    itself on the default strategy in float32, else a copy with its weights (variables must be
    created in the scope); a multi-worker copy starts from the chief's weights everywhere. With
    ``ignore_label``, a loss named by a string and the default metrics leave those voxels out (a
    loss or metric object the caller made is used as made)."""
    cloned = mixed_precision or strategy is not tf.distribute.get_strategy()  # (outside the scope!)
    with strategy.scope():
        net = _clone(model, mixed_precision) if cloned else model
        name = loss or ("dice_ce" if task == "segmentation" else "ce")
        ignore = {} if ignore_label is None or not isinstance(name, str) else {"ignore_label": ignore_label}
        loss_fn = _losses.get_loss(name, **ignore)
        metric_objs = ([m if isinstance(m, str) else m.__class__.from_config(m.get_config())
                        for m in metrics] if metrics is not None
                       else _metrics.get_metrics(task, num_classes,
                                                 ignore_label=ignore_label if task == "segmentation" else None))
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        broadcast_weights(strategy, net)
    return net, loss_fn, metric_objs
