"""Semi-supervised training on the run loop: labelled batches and unlabelled batches side by side.

``zoo.finetune(model, train, val, unlabeled=DATA, semi="mean_teacher")`` trains the model (the
*student*) on the labelled data as supervised training does, and adds a loss on the unlabelled
data that a second copy of the network (the *teacher*) provides:

* ``semi="mean_teacher"`` (Tarvainen & Valpola, 2017): the teacher's weights are an exponential
  moving average of the student's (``ema_decay``, default 0.99, after every step; BatchNorm's
  moving statistics included; the teacher runs in training mode, as in the paper's code); the student
  is pulled toward the teacher's class probabilities on the same unlabelled images under
  different noise (the mean squared difference of the softmax outputs, each input perturbed by
  Gaussian noise of standard deviation ``semi_noise`` x the batch's intensity spread);
* ``semi="pseudo_label"`` (Lee, 2013): the teacher is a frozen copy of the student, refreshed at
  the start of every epoch (``pseudo_refresh=False``: never; the teacher stays the model the
  run started from); every unlabelled pixel/voxel (image, for a classifier) whose teacher
  probability reaches ``confidence`` (default 0.9) becomes a training label for the student
  (cross-entropy, averaged over all unlabelled positions, so a confident minority weighs little).

The unlabelled loss is weighted by ``semi_weight`` (default :data:`DEFAULT_WEIGHTS`: 3.0 for
``mean_teacher``, 1.0 for ``pseudo_label``, the weights under which each beat labelled-only
training on both seeds of ``tools/bench_semi.py``) times the sigmoid ramp-up
``exp(-5 (1 - t)^2)`` of the papers, ``t`` going from 0 to 1 over the first ``semi_rampup``
share (default 0.3) of the run's steps: early on, the teacher knows little. Each step takes a
labelled batch of ``batch_size`` and an unlabelled batch of ``unlabeled_ratio`` x ``batch_size``
(default 1), per replica.

What is saved and exported is the student: ``best.h5``/``last.h5`` hold its weights only; the
resume point holds the teacher's weights and the step count too, so a resumed run continues
with the teacher it had. The logs add ``unlabeled_loss`` (the unweighted loss) and
``unlabeled_weight``; ``loss`` and ``val_*`` are the supervised loss and metrics, comparable
with a supervised run.
"""
import math

from zoo._h5 import weight_layout
from zoo._keras import keras, tf
from zoo.datapath.unlabeled import prepare_unlabeled
from zoo.errors import InvalidArgumentError, ZooError
from zoo.train import loop
from zoo.train._compile import _clone
from zoo.train.runfolder import RunState
from zoo.train.supervised import Supervised

MODES = ("mean_teacher", "pseudo_label")
DEFAULT_WEIGHTS = {"mean_teacher": 3.0, "pseudo_label": 1.0}


def rampup(step, total):
    """The sigmoid ramp-up ``exp(-5 (1 - t)^2)``, ``t = min(1, step / total)`` (1 when ``total`` is 0)."""
    t = 1.0 if total <= 0 else min(1.0, step / total)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class Consistency(keras.Model):
    """The student and the teacher in one Keras model: ``call`` is the student's, ``train_step``
    adds the unlabelled loss (see the module doc). Made in the strategy's scope."""

    def __init__(self, student, teacher, *, mode, weight, ema_decay, confidence, rampup_steps, noise):
        super().__init__(name="semi_" + student.name)
        self.student, self.teacher = student, teacher
        self.mode, self.weight, self.ema_decay, self.confidence = mode, weight, ema_decay, confidence
        self.rampup_steps, self.noise = float(rampup_steps), noise
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="semi_step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.unlabeled_tracker = keras.metrics.Mean("unlabeled_loss")
        self.weight_tracker = keras.metrics.Mean("unlabeled_weight")

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _ramp(self):
        if self.rampup_steps <= 0:
            return tf.constant(self.weight, tf.float32)
        t = tf.minimum(1.0, tf.cast(self.step, tf.float32) / self.rampup_steps)
        return self.weight * tf.exp(-5.0 * tf.square(1.0 - t))

    def _perturb(self, x):
        if not self.noise:
            return x
        spread = tf.math.reduce_std(x, axis=list(range(1, x.shape.rank)), keepdims=True)
        return x + tf.random.normal(tf.shape(x)) * self.noise * spread

    def _unlabeled_loss(self, student_logits, teacher_logits):
        student_logits = tf.cast(student_logits, tf.float32)
        teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
        if self.mode == "mean_teacher":
            return tf.reduce_mean(tf.square(tf.nn.softmax(student_logits) - tf.nn.softmax(teacher_logits)))
        probs = tf.nn.softmax(teacher_logits)
        keep = tf.cast(tf.reduce_max(probs, -1) >= self.confidence, tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.argmax(probs, -1), student_logits)
        return tf.reduce_mean(ce * keep)

    def _ema(self):
        decay = self.ema_decay

        def update(strategy, pairs):
            for t, s in pairs:
                strategy.extended.update(t, lambda tv, sv: tv.assign(decay * tv + (1.0 - decay) * sv),
                                         args=(s,), group=False)
        pairs = list(zip(weight_layout(self.teacher)[1], weight_layout(self.student)[1]))
        tf.distribute.get_replica_context().merge_call(update, args=(pairs,))

    def train_step(self, data):
        (x, y), xu = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        teacher_in = self._perturb(xu) if self.mode == "mean_teacher" else xu
        # the teacher in training mode, as in the paper's code: its BatchNorm normalises by the
        # batch, as the student's does (its moving statistics lag the student's and, at batch 2,
        # disagree with the batch's: on the phantoms that made one seed of two collapse)
        teacher_logits = self.teacher(teacher_in, training=self.mode == "mean_teacher")
        weight = self._ramp()
        with tf.GradientTape() as tape:
            pred = self.student(x, training=True)
            supervised = self.compiled_loss(y, pred, regularization_losses=self.student.losses)
            unlabeled = self._unlabeled_loss(self.student(self._perturb(xu), training=True), teacher_logits)
            total = supervised + weight * unlabeled / replicas  # compiled_loss is scaled per replica alike
        variables = self.optimized_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        self.step.assign_add(1)
        if self.mode == "mean_teacher":
            self._ema()
        self.compiled_metrics.update_state(y, pred)
        self.unlabeled_tracker.update_state(unlabeled)
        self.weight_tracker.update_state(weight)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data[:2]
        pred = self.student(x, training=False)
        self.compiled_loss(y, pred, regularization_losses=self.student.losses)
        self.compiled_metrics.update_state(y, pred)
        extra = (self.unlabeled_tracker, self.weight_tracker)
        return {m.name: m.result() for m in self.metrics if m not in extra}

    def optimized_variables(self):
        """The variables the optimizer trains (the student's: the teacher follows by EMA or copies)."""
        return self.student.trainable_variables

    def extra_state(self):
        """The variables the resume point keeps besides the student's and the optimizer's (the
        teacher's weights and the step count)."""
        return weight_layout(self.teacher)[1] + [self.step]


class SemiRunState(RunState):
    """The run folder's callback for a wrapper model (``net.student``, ``net.extra_state()`` and
    ``net.optimized_variables()``):
    checkpoints hold the student; the resume point also holds the extra state (the teacher and
    the step count; a domain head) before the optimizer's variables."""

    def _read(self):
        net = self.model
        opt = getattr(net, "optimizer", None)
        if getattr(self, "_semi_owner", (None, None)) != (net, opt):
            layout, variables = weight_layout(net.student)
            extra = net.extra_state() + (list(opt.variables) if opt is not None else [])
            self._semi_fn = tf.function(lambda: [tf.identity(v) for v in variables + extra], autograph=False)
            self._semi_fn._omit_frequent_tracing_warning = True
            self._semi_owner, self._layout, self._n = (net, opt), layout, len(variables)
        values = [t.numpy() for t in self._semi_fn()]
        return self._layout, values[:self._n], values[self._n:]


class RefreshTeacher(keras.callbacks.Callback):
    """``pseudo_label``: the teacher takes the student's weights at the start of every epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        student, teacher = (weight_layout(m)[1] for m in (self.model.student, self.model.teacher))
        keras.backend.batch_set_value(list(zip(teacher, keras.backend.batch_get_value(student))))


class Semi(Supervised):
    """The loop's adapter for labelled plus unlabelled data (see the module doc)."""

    run_state_class = SemiRunState

    mode_option = "semi"  # the option that chose this adapter, for messages

    def __init__(self, model, info, train, val, unlabeled, options):
        super().__init__(model, info, train, val, options)
        self.unlabeled = unlabeled
        self.check_mode()
        name, mode = self.mode_option, getattr(options, self.mode_option)
        if unlabeled is None:
            raise InvalidArgumentError(f"finetune: {name}={mode!r} needs unlabeled data; pass unlabeled= (a folder "
                                       "of images, NIfTI volumes or DICOM series, 'phantoms', an array ...), "
                                       "zoo finetune --unlabeled DIR.")
        if options.mixed_precision:
            raise InvalidArgumentError(f"finetune: {name}={mode!r} trains in float32; drop mixed_precision "
                                       f"(--mixed-precision) or {name}.")
        if len(model.outputs) > 1:
            raise InvalidArgumentError(f"finetune: {name}={mode!r} trains models with one output; "
                                       f"{info.name!r} has {len(model.outputs)} (auxiliary heads). Build it "
                                       f"without them (e.g. --set aux=false) or train without {name}.")

    def check_mode(self):
        if self.options.semi not in MODES:
            raise InvalidArgumentError(f"finetune: semi={self.options.semi!r} must be one of {', '.join(MODES)}.")

    def with_unlabeled(self, strategy, ratio=1):
        """Zip the training batches with unlabelled batches of ``ratio`` x the batch; returns the
        run's optimizer steps in all."""
        o = self.options
        unl = prepare_unlabeled(self.unlabeled, self.target, batch_size=self.batch_size * ratio
                                * strategy.num_replicas_in_sync, seed=o.seed, options=o.data_options,
                                preprocessing=self.info.preprocessing, augment=o.augment)
        self.train_ds = tf.data.Dataset.zip((self.train_ds, unl))
        steps = self.steps if self.steps is not None else int(tf.data.experimental.cardinality(self.train_ds))
        return o.epochs * max(steps, 0)

    def prepare(self, strategy):
        config = super().prepare(strategy)
        o = self.options
        total = self.with_unlabeled(strategy, o.unlabeled_ratio)
        self.rampup_steps = max(0, int(round(o.semi_rampup * total)))
        self.weight = DEFAULT_WEIGHTS[o.semi] if o.semi_weight is None else o.semi_weight
        config["options"].update(semi=o.semi, unlabeled=loop.data_record(self.unlabeled), semi_weight=self.weight,
                                 ema_decay=o.ema_decay, confidence=o.confidence, unlabeled_ratio=o.unlabeled_ratio,
                                 semi_rampup=o.semi_rampup,
                                 semi_noise=o.semi_noise, pseudo_refresh=o.pseudo_refresh)
        config["semi"] = {"mode": o.semi, "rampup_steps": self.rampup_steps}
        return config

    def build(self, strategy):
        student = Supervised.build(self, strategy)
        o = self.options
        with strategy.scope():
            teacher = _clone(student, False)  # never given to the optimizer: trained by EMA or copies only
            net = Consistency(student, teacher, mode=o.semi, weight=self.weight, ema_decay=o.ema_decay,
                              confidence=o.confidence, rampup_steps=self.rampup_steps, noise=o.semi_noise)
        return net

    def trained(self, net):
        return net.student

    def restore(self, net, snapshot, phase=None):
        if not hasattr(net, "extra_state"):
            return super().restore(net, snapshot, phase)
        student, state = weight_layout(net.student)[1], net.extra_state()
        saved, extra = snapshot["weights"], snapshot["optimizer"]
        if len(student) != len(saved) or len(extra) < len(state):
            raise ZooError(f"finetune: the resume point holds {len(saved)} student weights and {len(extra)} other "
                           f"values, but this run has {len(student)} and at least {len(state)}; "
                           "resume with the same model and options or choose a new out_dir.")
        keras.backend.batch_set_value(list(zip(student + state, list(saved) + list(extra[:len(state)]))))
        opt = getattr(net, "optimizer", None)
        if snapshot["phase"] != phase or opt is None:
            return
        opt.build(net.optimized_variables())
        rest = extra[len(state):]
        if len(opt.variables) != len(rest):
            raise ZooError(f"finetune: the resume point holds {len(rest)} optimizer variables but this optimizer "
                           f"has {len(opt.variables)}; resume with the same optimizer settings or choose a new "
                           "out_dir.")
        keras.backend.batch_set_value(list(zip(opt.variables, rest)))

    def callbacks(self, run_state):
        refresh = [RefreshTeacher()] if self.options.semi == "pseudo_label" and self.options.pseudo_refresh else []
        return [*refresh, run_state]


def finetune(model, info, train, val, unlabeled, options, strategy):
    """Train a classifier or segmenter on labelled and unlabelled data (see the module doc).

    Args:
        model: the ``keras.Model`` (the student; the teacher is made from it).
        info: its :class:`zoo.record.ModelInfo`.
        train, val: the labelled training data and the validation data (or None).
        unlabeled: the unlabelled data (:mod:`zoo.datapath.unlabeled`).
        options: a :class:`zoo.train.FitOptions` with ``semi`` set.
        strategy: the ``tf.distribute`` strategy.

    Returns:
        The run's Keras ``History``; the model ends with the student's best (or last) weights.

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    return loop.fit(Semi(model, info, train, val, unlabeled, options), strategy)


__all__ = ["finetune", "Semi", "Consistency", "MODES", "DEFAULT_WEIGHTS", "rampup"]
