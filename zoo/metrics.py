"""Metrics: streaming per-class Dice and IoU, accuracy, AUC; ``get_metrics(task, num_classes)``.

Predictions are logits by default; a class is predicted by argmax (or logit > 0 / probability
> 0.5 for one sigmoid output). Dice and IoU accumulate true/false positives and false
negatives per class over every batch (a dataset-level score, not a mean of batch scores).
A class never present in labels or predictions is left out of the mean; asked for alone
(``class_id``) it scores 0.
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
                 name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InvalidArgumentError(f"{type(self).__name__}: num_classes={num_classes!r} must be an "
                                       "int >= 1 (1 = one sigmoid output).")
        self.num_classes, self.class_id = num_classes, class_id
        self.from_logits, self.include_background = from_logits, include_background
        k = max(num_classes, 2)
        if class_id is not None and not 0 <= class_id < k:
            raise InvalidArgumentError(
                f"{type(self).__name__}: class_id={class_id!r} must lie in 0..{k - 1}.")
        self.tp = self.add_weight("tp", shape=(k,), initializer="zeros")
        self.fp = self.add_weight("fp", shape=(k,), initializer="zeros")
        self.fn = self.add_weight("fn", shape=(k,), initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        c = tf.convert_to_tensor(y_pred).shape[-1]
        if c is not None and c != self.num_classes:
            raise InvalidArgumentError(
                f"{self.name}: predictions have {c} channel(s) but num_classes={self.num_classes}; "
                f"create the metric with num_classes={c}.")
        true, pred, shape, k = _classes(y_true, y_pred, self.from_logits)
        t, p = tf.one_hot(true, k), tf.one_hot(pred, k)
        w = 1.0
        if sample_weight is not None:  # per sample (batch,) or per pixel, broadcast to the labels
            w = tf.cast(sample_weight, tf.float32)
            w = tf.reshape(w, tf.stack([shape[0], -1]))  # (batch, 1) or (batch, pixels)
            w = tf.reshape(tf.broadcast_to(w, tf.stack([shape[0], tf.size(true) // shape[0]])), [-1, 1])
        self.tp.assign_add(tf.reduce_sum(w * t * p, 0))
        self.fp.assign_add(tf.reduce_sum(w * (1.0 - t) * p, 0))
        self.fn.assign_add(tf.reduce_sum(w * t * (1.0 - p), 0))

    def per_class(self):
        num, den = self._ratio()
        return tf.math.divide_no_nan(num, den)

    def result(self):
        num, den = self._ratio()
        scores = tf.math.divide_no_nan(num, den)
        if self.class_id is not None:
            return scores[self.class_id]
        start = 0 if self.include_background else 1
        valid = tf.cast(den[start:] > 0, tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(scores[start:] * valid), tf.reduce_sum(valid))

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(tf.zeros_like(v))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, class_id=self.class_id, from_logits=self.from_logits,
                      include_background=self.include_background)
        return config


@_register
class DiceScore(_Overlap):
    """Dice = 2 TP / (2 TP + FP + FN) per class; the mean over classes (background excluded by
    default) or one class (``class_id``)."""

    def __init__(self, num_classes, class_id=None, from_logits=True, include_background=False,
                 name=None, dtype=None):
        name = name or ("dice" if class_id is None else f"dice_{class_id}")
        super().__init__(num_classes, class_id, from_logits, include_background, name, dtype)

    def _ratio(self):
        return 2.0 * self.tp, 2.0 * self.tp + self.fp + self.fn


@_register
class IoUScore(_Overlap):
    """IoU (Jaccard) = TP / (TP + FP + FN) per class; mean or one class as for DiceScore."""

    def __init__(self, num_classes, class_id=None, from_logits=True, include_background=False,
                 name=None, dtype=None):
        name = name or ("iou" if class_id is None else f"iou_{class_id}")
        super().__init__(num_classes, class_id, from_logits, include_background, name, dtype)

    def _ratio(self):
        return self.tp, self.tp + self.fp + self.fn


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


def get_metrics(task, num_classes, from_logits=True):
    """Default metrics: classification -> accuracy, AUC; segmentation -> mean foreground Dice, IoU,
    and per-class Dice when there are several foreground classes."""
    check_choice("task", task, ("classification", "segmentation"), "get_metrics")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"get_metrics: num_classes={num_classes!r} must be an int >= 1.")
    if task == "classification":
        return [accuracy(num_classes, from_logits), AUC(num_classes, from_logits)]
    out = [DiceScore(num_classes, from_logits=from_logits), IoUScore(num_classes, from_logits=from_logits)]
    if num_classes > 2:
        out += [DiceScore(num_classes, class_id=c, from_logits=from_logits) for c in range(1, num_classes)]
    return out
