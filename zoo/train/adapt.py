"""Unsupervised domain adaptation on the run loop: domain-adversarial training (DANN).

``zoo.finetune(model, train="scanner_A", unlabeled="scanner_B", adapt="dann")`` trains the model
on the labelled *source* data as supervised training does and, at the same time, makes the
encoder's features unable to tell source images from the unlabelled *target* images (Ganin &
Lempitsky, 2015):

* a *domain head* reads the encoder's deepest features (the last stage output of the layer-name
  contract: the U-Net's bottleneck, a ResNet's last stage): global average pooling, layer
  normalisation (the head sees the features' pattern, not their scale: without it the reversed
  gradient grows the features without bound), a hidden dense layer with ReLU
  (``min(256, channels)`` units), and one logit, "target or source";
* between the encoder and the head sits a gradient reversal layer: the head learns to tell the
  domains apart, and the encoder receives the opposite of its gradient, scaled by
  ``lambda = 2 / (1 + exp(-10 p)) - 1`` (the paper's schedule, ``p`` going from 0 to 1 over the
  run's steps): the encoder learns features in which the domains look alike;
* the domain loss (binary cross-entropy over a source batch and a target batch of the same
  size) is weighted by ``adapt_weight`` (default 1.0).

What is saved, compressed and exported is the model alone: ``best.h5``/``last.h5`` hold its
weights; the domain head lives in the resume point (with the step count) and is dropped at the
end. The logs add ``domain_loss`` and ``domain_accuracy`` (0.5 when the features no longer tell
the domains apart) and ``domain_lambda``.
"""
import math

from zoo._h5 import weight_layout
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError
from zoo.hub.contract import contract
from zoo.train import loop
from zoo.train.semi import Semi

MODES = ("dann",)


def grl_lambda(step, total):
    """The paper's schedule ``2 / (1 + exp(-10 p)) - 1``, ``p = min(1, step / total)``."""
    p = 1.0 if total <= 0 else min(1.0, step / total)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


@tf.custom_gradient
def reverse_gradient(x, lam):
    """Identity forward; the gradient times ``-lam`` backward (none for ``lam``)."""
    def grad(dy):
        return -lam * dy, tf.zeros_like(lam)
    return tf.identity(x), grad


def encoder_output(model):
    """The name of ``model``'s deepest stage output (the layer-name contract)."""
    stages = contract(model).stage_outputs
    if not stages:
        raise InvalidArgumentError(
            f"finetune: adapt='dann' reads the encoder's deepest features (the stage outputs of the layer-name "
            f"contract); model {model.name!r} names none. Build it with zoo.load, or train without adapt.")
    return stages[-1]


class DomainAdversarial(keras.Model):
    """The model, its encoder's features and the domain head in one Keras model: ``call`` is the
    model's, ``train_step`` adds the domain loss through the gradient reversal (module doc)."""

    def __init__(self, student, stage, *, weight, total_steps, seed=0):
        super().__init__(name="dann_" + student.name)
        self.student = student
        features = student.get_layer(stage).output
        self.both = keras.Model(student.inputs, [student.outputs[0], features], name="dann_both")
        self.features = keras.Model(student.inputs, features, name="dann_features")
        units = int(min(256, features.shape[-1]))
        self.head = keras.Sequential([keras.layers.GlobalAveragePooling2D() if features.shape.rank == 4
                                      else keras.layers.GlobalAveragePooling3D(),
                                      # scale-free input: otherwise the reversed gradient grows the
                                      # features without bound (a domain loss of 1e5 within 5 epochs)
                                      keras.layers.LayerNormalization(name="domain_norm"),
                                      keras.layers.Dense(units, activation="relu", name="domain_hidden",
                                                         kernel_initializer=keras.initializers.GlorotUniform(seed)),
                                      keras.layers.Dense(1, name="domain_logit",
                                                         kernel_initializer=keras.initializers.GlorotUniform(
                                                             seed + 1))],
                                     name="domain_head")  # seeded: the same head on any strategy
        self.head.build(features.shape)
        self.weight, self.total_steps = weight, float(total_steps)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="dann_step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.domain_loss_tracker = keras.metrics.Mean("domain_loss")
        self.domain_accuracy = keras.metrics.BinaryAccuracy("domain_accuracy", threshold=0.0)
        self.lambda_tracker = keras.metrics.Mean("domain_lambda")

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _lambda(self):
        p = tf.minimum(1.0, tf.cast(self.step, tf.float32) / max(self.total_steps, 1.0))
        return 2.0 / (1.0 + tf.exp(-10.0 * p)) - 1.0

    def train_step(self, data):
        (x, y), xt = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        lam = self._lambda()
        n, m = tf.shape(x)[0], tf.shape(xt)[0]
        with tf.GradientTape() as tape:
            # one batch of both domains: BatchNorm's statistics (and its moving averages, used at
            # inference) are the mixture's, in training as after it; separate passes would leave
            # moving averages that match neither domain's training batches
            pred, features = self.both(tf.concat([x, xt], 0), training=True)
            pred = pred[:n]
            supervised = self.compiled_loss(y, pred, regularization_losses=self.student.losses)
            logits = tf.cast(self.head(reverse_gradient(features, lam), training=True), tf.float32)
            domains = tf.concat([tf.zeros((n, 1)), tf.ones((m, 1))], 0)
            domain = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(domains, logits))
            total = supervised + self.weight * domain / replicas  # compiled_loss is scaled per replica alike
        variables = self.optimized_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        self.step.assign_add(1)
        self.compiled_metrics.update_state(y, pred)
        self.domain_loss_tracker.update_state(domain)
        self.domain_accuracy.update_state(domains, logits)
        self.lambda_tracker.update_state(lam)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data[:2]
        pred = self.student(x, training=False)
        self.compiled_loss(y, pred, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(y, pred)
        extra = (self.domain_loss_tracker, self.domain_accuracy, self.lambda_tracker)
        return {m.name: m.result() for m in self.metrics if m not in extra}

    def optimized_variables(self):
        """The variables the optimizer trains: the model's and the domain head's."""
        return self.student.trainable_variables + self.head.trainable_variables

    def extra_state(self):
        """The variables the resume point keeps besides the model's and the optimizer's (the
        domain head's weights and the step count)."""
        return weight_layout(self.head)[1] + [self.step]


class Adapt(Semi):
    """The loop's adapter for labelled source and unlabelled target data (see the module doc)."""

    mode_option = "adapt"

    def check_mode(self):
        if self.options.adapt not in MODES:
            raise InvalidArgumentError(f"finetune: adapt={self.options.adapt!r} must be one of {', '.join(MODES)}.")

    def prepare(self, strategy):
        config = super(Semi, self).prepare(strategy)
        o = self.options
        self.stage = encoder_output(self.model)
        self.total_steps = self.with_unlabeled(strategy)
        config["options"].update(adapt=o.adapt, unlabeled=loop.data_record(self.unlabeled),
                                 adapt_weight=o.adapt_weight)
        config["adapt"] = {"mode": o.adapt, "features": self.stage, "total_steps": self.total_steps}
        return config

    def build(self, strategy):
        student = super(Semi, self).build(strategy)
        with strategy.scope():
            return DomainAdversarial(student, self.stage, weight=self.options.adapt_weight,
                                     total_steps=self.total_steps, seed=self.options.seed)

    def callbacks(self, run_state):
        return [run_state]


def finetune(model, info, train, val, unlabeled, options, strategy):
    """Train a classifier or segmenter on labelled source data and unlabelled target data (DANN).

    Args:
        model: the ``keras.Model`` (its encoder: the layer-name contract's stage outputs).
        info: its :class:`zoo.record.ModelInfo`.
        train, val: the labelled source data and the validation data (or None).
        unlabeled: the unlabelled target-domain data (:mod:`zoo.datapath.unlabeled`).
        options: a :class:`zoo.train.FitOptions` with ``adapt`` set.
        strategy: the ``tf.distribute`` strategy.

    Returns:
        The run's Keras ``History``; the model ends with its best (or last) weights, without
        the domain head.

    Raises:
        InvalidArgumentError: options, data or a model without stage outputs (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    return loop.fit(Adapt(model, info, train, val, unlabeled, options), strategy)


__all__ = ["finetune", "Adapt", "DomainAdversarial", "MODES", "grl_lambda", "reverse_gradient", "encoder_output"]
