"""Scores in NumPy: labels from logits, Dice and IoU per class and per case, accuracy, the
held-out set. ``zoo.run``'s scores, ``zoo.compress``'s before/after numbers and an export's
verification all count here, with the definitions of :mod:`zoo.metrics` (the Keras metrics
that ``zoo.finetune`` logs), so a figure means the same wherever it is printed.

- :func:`labels`: argmax over the class axis, or ``logit > 0`` for one sigmoid output.
- :func:`case_dice`: per case (an image, a patch), the mean Dice over the foreground classes
  present in that case's labels; the mean over the cases with any foreground (MONAI's
  ``DiceMetric(ignore_empty=True)``, :class:`zoo.metrics.DiceScore` with ``average="case"``).
- :func:`dice_per_class`: pooled over all samples, one value per class (None where neither map
  has the class): how an export's label maps agree with the Keras model's.
"""
import numpy as np

from zoo.datapath.prepare import Target, samples


def labels(logits):
    """Class indices from logits (channels last).

    Args:
        logits: an array ``(..., classes)``.

    Returns:
        An int array ``(...)``: argmax over the last axis, or ``logit > 0`` for one channel.
    """
    logits = np.asarray(logits)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=-1)


def probabilities(logits):
    """Probabilities from logits (channels last).

    Args:
        logits: an array ``(..., classes)``.

    Returns:
        A float32 array of the same shape: softmax over the last axis (sigmoid for one channel).
    """
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def dice_per_class(ref, got, num_classes):
    """Dice per class, pooled over all samples: 2|A n B| / (|A| + |B|).

    Args:
        ref: a class-index map (any shape).
        got: a class-index map of the same shape.
        num_classes: the classes (at least 2 are scored).

    Returns:
        A list with one float per class; None where neither map has the class.
    """
    out = []
    for c in range(max(num_classes, 2)):
        a, b = ref == c, got == c
        total = int(a.sum()) + int(b.sum())
        out.append(None if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total))
    return out


def _case_scores(truth, pred, num_classes, ratio):
    """(per-case score or None, per-case per-class scores) for one ratio (Dice or IoU)."""
    k = max(num_classes, 2)
    cases = []
    for t, p in zip(truth, pred):
        scores = []
        for c in range(1, k):
            a, b = t == c, p == c
            if not a.any():  # a class absent from this case's labels does not count
                continue
            tp, fp, fn = np.sum(a & b), np.sum(~a & b), np.sum(a & ~b)
            scores.append(ratio(tp, fp, fn))
        cases.append(float(np.mean(scores)) if scores else None)
    return cases


def _case_mean(truth, pred, num_classes, ratio):
    """The mean over the cases with foreground of their per-case scores (NaN without any)."""
    cases = [c for c in _case_scores(np.asarray(truth), np.asarray(pred), num_classes, ratio) if c is not None]
    return float(np.mean(cases)) if cases else float("nan")


def case_dice(truth, pred, num_classes):
    """Mean over cases of the mean foreground Dice per case (see the module doc).

    Args:
        truth: class-index maps ``(cases, spatial...)``.
        pred: predicted class-index maps of the same shape.
        num_classes: the classes (class 0 is background and not scored).

    Returns:
        A float; NaN when no case has foreground in ``truth``.
    """
    return _case_mean(truth, pred, num_classes, lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn))


def case_iou(truth, pred, num_classes):
    """As :func:`case_dice` (same arguments and result) with IoU = TP / (TP + FP + FN)."""
    return _case_mean(truth, pred, num_classes, lambda tp, fp, fn: tp / (tp + fp + fn))


def accuracy(truth, pred):
    """Top-1 accuracy.

    Args:
        truth: class indices ``(n,)`` or one-hot rows ``(n, classes)``.
        pred: predicted class indices ``(n,)``.

    Returns:
        The fraction of ``pred`` equal to ``truth`` (a float).
    """
    truth = np.asarray(truth).reshape(len(pred), -1)
    truth = truth.argmax(-1) if truth.shape[-1] > 1 else truth[:, 0]
    return float(np.mean(np.asarray(pred).reshape(-1) == truth.astype(int)))


def score(task, truth, logits):
    """The task's metric, from the labels and the model's logits.

    Args:
        task: ``"classification"``, else segmentation.
        truth: the labels (class indices, one-hot rows for classification, or label maps).
        logits: the model's outputs (channels last).

    Returns:
        ``("accuracy", top-1)`` for classification, ``("dice", case_dice)`` otherwise.
    """
    pred = labels(logits)
    if task == "classification":
        return "accuracy", accuracy(truth, pred)
    truth = np.asarray(truth).reshape(pred.shape).astype(int)
    return "dice", case_dice(truth, pred, np.asarray(logits).shape[-1])


def held_out(model, info, source, n, *, patch_size=None, seed=0, options=None):
    """``n`` validation (image, label) pairs of ``source`` as arrays, cut to the model's patch:
    the same samples for every stage a caller compares.

    Args:
        model: the ``keras.Model``.
        info: its :class:`zoo.record.ModelInfo` (its patch size and preprocessing apply).
        source: any data argument of the verbs.
        n: at most this many pairs.
        patch_size: the patch (default: the model's static input size, else its record's).
        seed: the source's seed.
        options: the data source's keywords.

    Returns:
        ``(images, labels)`` arrays (see :func:`zoo.datapath.samples`).

    Raises:
        DataError: the source gives no samples or cannot be read.
        InvalidArgumentError: a bad ``patch_size``, or elements that do not fit the model.
    """
    target = Target.of(model, info, patch_size)
    return samples(source, target, n, seed=seed, options=options, preprocessing=info.preprocessing)


def predict_arrays(model, xs, batch_size=2):
    """The first output of a Keras model (or an exported file's runner) for ``xs``.

    Args:
        model: a ``keras.Model`` or a :class:`zoo.export.runtime.TFLiteModel` (run one sample at a time).
        xs: a batch of inputs.
        batch_size: Keras' batch size.

    Returns:
        The outputs as one array.
    """
    if getattr(model, "zoo_tflite", False):
        return np.concatenate([model.predict_on_batch(x[None]) for x in xs])
    out = model.predict(xs, batch_size=batch_size, verbose=0)
    return out[0] if isinstance(out, list) else out


__all__ = ["labels", "probabilities", "dice_per_class", "case_dice", "case_iou", "accuracy", "score",
           "held_out", "predict_arrays"]
