"""Metrics: per-class Dice and IoU, accuracy, AUC; ``get_metrics(task, num_classes)``.

Predictions are logits by default; a class is predicted by argmax (or logit > 0 / probability
> 0.5 for one sigmoid output).

Dice and IoU come in two definitions, chosen by ``average``:

* ``"case"`` (the default, and what ``zoo.finetune``'s ``history.csv`` holds as ``dice``/``iou``):
  the score of each case (each element of a batch: an image, a patch), averaged over the
  classes present in that case's labels, then averaged over all cases seen - MONAI's
  ``DiceMetric(reduction="mean", ignore_empty=True)`` and the per-case means reported by the
  Medical Segmentation Decathlon. A class absent from a case's labels is left out of that
  case; a case with no labelled foreground class is left out of the mean.
* ``"pooled"``: true/false positives and false negatives of every voxel of every batch are
  summed first, then one score per class (a dataset-level score; large cases weigh more).

A class never present in the labels is left out of the mean over classes; asked for alone
(``class_id``) it scores 0. ``ignore_label`` (e.g. 255, sparse annotation): voxels with that label
count nowhere, neither as the class a prediction missed nor as a false positive.
"""
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, check_choice

_register = keras.utils.register_keras_serializable(package="zoo")


def _classes(y_true, y_pred, from_logits):
    """Flattened (true, predicted) class indices and K = number of classes."""
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.convert_to_tensor(y_true)
    c = y_pred.shape[-1]
    if c == 1:
        pred = tf.cast(y_pred[..., 0] > (0.0 if from_logits else 0.5), tf.int32)
        k = 2
    else:
        pred = tf.cast(tf.argmax(y_pred, -1), tf.int32)
        k = c
    if y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] not in (1, None) and c != 1:
        true = tf.cast(tf.argmax(y_true, -1), tf.int32)  # one-hot
    else:
        true = tf.cast(tf.reshape(y_true, tf.shape(pred)), tf.int32)
    return tf.reshape(true, [-1]), tf.reshape(pred, [-1]), tf.shape(pred), k


class _Overlap(keras.metrics.Metric):
    def __init__(self, num_classes, class_id=None, from_logits=True, include_background=False,
                 name=None, dtype=None, average="case", ignore_label=None):
        super().__init__(name=name, dtype=dtype)
        if ignore_label is not None and (isinstance(ignore_label, bool) or not isinstance(ignore_label, int)):
            raise InvalidArgumentError(f"{type(self).__name__}: ignore_label={ignore_label!r} must be an integer "
                                       "label value (e.g. 255) or None.")
        self.ignore_label = ignore_label
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InvalidArgumentError(f"{type(self).__name__}: num_classes={num_classes!r} must be an "
                                       "int >= 1 (1 = one sigmoid output).")
        check_choice("average", average, ("case", "pooled"), type(self).__name__)
        self.num_classes, self.class_id, self.average = num_classes, class_id, average
        self.from_logits, self.include_background = from_logits, include_background
        k = max(num_classes, 2)
        if class_id is not None and not 0 <= class_id < k:
            raise InvalidArgumentError(
                f"{type(self).__name__}: class_id={class_id!r} must lie in 0..{k - 1}.")
        if average == "pooled":
            self.tp = self.add_weight("tp", shape=(k,), initializer="zeros")
            self.fp = self.add_weight("fp", shape=(k,), initializer="zeros")
            self.fn = self.add_weight("fn", shape=(k,), initializer="zeros")
        else:  # sums of per-case scores and the number of cases that count, per class and overall
            self.class_sum = self.add_weight("class_sum", shape=(k,), initializer="zeros")
            self.class_count = self.add_weight("class_count", shape=(k,), initializer="zeros")
            self.case_sum = self.add_weight("case_sum", shape=(), initializer="zeros")
            self.case_count = self.add_weight("case_count", shape=(), initializer="zeros")

    def _counts(self, y_true, y_pred, sample_weight):
        """Per-case true positives, false positives, false negatives: three (batch, K) tensors."""
        c = tf.convert_to_tensor(y_pred).shape[-1]
        if c is not None and c != self.num_classes:
            raise InvalidArgumentError(
                f"{self.name}: predictions have {c} channel(s) but num_classes={self.num_classes}; "
                f"create the metric with num_classes={c}.")
        true, pred, shape, k = _classes(y_true, y_pred, self.from_logits)
        batch = shape[0]
        t = tf.reshape(tf.one_hot(true, k), tf.stack([batch, -1, k]))
        p = tf.reshape(tf.one_hot(pred, k), tf.stack([batch, -1, k]))
        w = 1.0
        if self.ignore_label is not None:  # unlabelled voxels: neither a miss nor a false positive
            w = tf.reshape(tf.cast(tf.not_equal(true, self.ignore_label), tf.float32), tf.stack([batch, -1]))[..., None]
        if sample_weight is not None:  # per sample (batch,) or per pixel, broadcast to the labels
            sw = tf.reshape(tf.cast(sample_weight, tf.float32), tf.stack([batch, -1]))
            w = w * tf.broadcast_to(sw, tf.shape(t)[:2])[..., None]
        return (tf.reduce_sum(w * t * p, 1), tf.reduce_sum(w * (1.0 - t) * p, 1),
                tf.reduce_sum(w * t * (1.0 - p), 1))

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, fn = self._counts(y_true, y_pred, sample_weight)
        if self.average == "pooled":
            self.tp.assign_add(tf.reduce_sum(tp, 0))
            self.fp.assign_add(tf.reduce_sum(fp, 0))
            self.fn.assign_add(tf.reduce_sum(fn, 0))
            return
        num, den = self._ratio(tp, fp, fn)
        scores = tf.math.divide_no_nan(num, den)
        present = tf.cast(tp + fn > 0, tf.float32)  # the class is in this case's labels
        self.class_sum.assign_add(tf.reduce_sum(scores * present, 0))
        self.class_count.assign_add(tf.reduce_sum(present, 0))
        start = 0 if self.include_background else 1
        n = tf.reduce_sum(present[:, start:], 1)
        case = tf.math.divide_no_nan(tf.reduce_sum(scores[:, start:] * present[:, start:], 1), n)
        self.case_sum.assign_add(tf.reduce_sum(case * tf.cast(n > 0, tf.float32)))
        self.case_count.assign_add(tf.reduce_sum(tf.cast(n > 0, tf.float32)))

    def per_class(self):
        if self.average == "case":
            return tf.math.divide_no_nan(self.class_sum, self.class_count)
        num, den = self._ratio(self.tp, self.fp, self.fn)
        return tf.math.divide_no_nan(num, den)

    def result(self):
        scores = self.per_class()
        if self.class_id is not None:
            return scores[self.class_id]
        if self.average == "case":
            return tf.math.divide_no_nan(self.case_sum, self.case_count)
        _, den = self._ratio(self.tp, self.fp, self.fn)
        start = 0 if self.include_background else 1
        valid = tf.cast(den[start:] > 0, tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(scores[start:] * valid), tf.reduce_sum(valid))

    def reset_state(self):
        for v in self.variables:
            v.assign(tf.zeros_like(v))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, class_id=self.class_id, from_logits=self.from_logits,
                      include_background=self.include_background, average=self.average,
                      ignore_label=self.ignore_label)
        return config


@_register
class DiceScore(_Overlap):
    """Dice = 2 TP / (2 TP + FP + FN) per class; the mean over classes (background excluded by
    default) or one class (``class_id``); per case (default) or pooled (see the module docstring)."""

    def __init__(self, num_classes, class_id=None, from_logits=True, include_background=False,
                 name=None, dtype=None, average="case", ignore_label=None):
        name = name or ("dice" if class_id is None else f"dice_{class_id}") + ("_pooled" if average == "pooled" else "")
        super().__init__(num_classes, class_id, from_logits, include_background, name, dtype, average, ignore_label)

    @staticmethod
    def _ratio(tp, fp, fn):
        return 2.0 * tp, 2.0 * tp + fp + fn


@_register
class IoUScore(_Overlap):
    """IoU (Jaccard) = TP / (TP + FP + FN) per class; mean or one class as for DiceScore."""

    def __init__(self, num_classes, class_id=None, from_logits=True, include_background=False,
                 name=None, dtype=None, average="case", ignore_label=None):
        name = name or ("iou" if class_id is None else f"iou_{class_id}") + ("_pooled" if average == "pooled" else "")
        super().__init__(num_classes, class_id, from_logits, include_background, name, dtype, average, ignore_label)

    @staticmethod
    def _ratio(tp, fp, fn):
        return tp, tp + fp + fn


@_register
class AUC(keras.metrics.AUC):
    """keras AUC from logits and class-index labels: one sigmoid output or 2 classes -> the
    positive class; more classes -> the mean of one-vs-rest AUCs."""

    def __init__(self, num_classes=2, from_logits=True, num_thresholds=200, curve="ROC", name="auc",
                 dtype=None, **kwargs):
        multi = num_classes > 2
        super().__init__(num_thresholds=num_thresholds, curve=curve, name=name, dtype=dtype,
                         multi_label=multi, num_labels=num_classes if multi else None)
        self.num_classes, self.logits = num_classes, from_logits

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(y_pred, tf.float32)
        c = y_pred.shape[-1]
        if c == 1:
            probs = tf.sigmoid(y_pred) if self.logits else y_pred
        else:
            probs = tf.nn.softmax(y_pred, -1) if self.logits else y_pred
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        probs = tf.reshape(probs, [-1, c])
        if c > 2:
            return super().update_state(tf.one_hot(labels, c), probs, sample_weight)
        return super().update_state(labels[:, None], probs[:, -1:], sample_weight)

    def get_config(self):
        return {"num_classes": self.num_classes, "from_logits": self.logits,
                "num_thresholds": self.num_thresholds, "curve": self.curve.value, "name": self.name,
                "dtype": self.dtype}


def accuracy(num_classes, from_logits=True):
    """Class accuracy: BinaryAccuracy for one sigmoid output, SparseCategoricalAccuracy otherwise."""
    if num_classes == 1:
        return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if from_logits else 0.5)
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def get_metrics(task, num_classes, from_logits=True, ignore_label=None):
    """The default metrics of a task.

    Args:
        task: ``"classification"`` or ``"segmentation"``.
        num_classes: output channels of the model (1: one sigmoid output).
        from_logits: the model outputs logits.
        ignore_label: a label value the segmentation metrics leave out (unlabelled voxels), or None.

    Returns:
        A list of Keras metrics: classification -> accuracy, AUC; segmentation -> per-case mean
        foreground Dice and IoU (``dice``, ``iou``, MONAI/Decathlon style), and per-class
        per-case Dice (``dice_1``...) when there are several foreground classes.

    Raises:
        InvalidArgumentError: an unknown ``task``, or ``num_classes`` not an int >= 1.
    """
    check_choice("task", task, ("classification", "segmentation"), "get_metrics")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"get_metrics: num_classes={num_classes!r} must be an int >= 1.")
    if task == "classification":
        return [accuracy(num_classes, from_logits), AUC(num_classes, from_logits)]
    kw = dict(from_logits=from_logits, ignore_label=ignore_label)
    out = [DiceScore(num_classes, **kw), IoUScore(num_classes, **kw)]
    if num_classes > 2:
        out += [DiceScore(num_classes, class_id=c, **kw) for c in range(1, num_classes)]
    return out
