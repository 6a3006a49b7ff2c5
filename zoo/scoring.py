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
    """Class indices from logits (channels last): argmax, or ``logit > 0`` for one channel."""
    logits = np.asarray(logits)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=-1)


def probabilities(logits):
    """Softmax over the class axis (sigmoid for one channel)."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def dice_per_class(ref, got, num_classes):
    """Per class: 2|A n B| / (|A| + |B|) pooled over all samples; None where neither has the class."""
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


def case_dice(truth, pred, num_classes):
    """Mean over cases of the mean foreground Dice per case (see the module doc); ``truth`` and
    ``pred`` are class-index maps ``(cases, spatial...)``. NaN when no case has foreground."""
    cases = [c for c in _case_scores(np.asarray(truth), np.asarray(pred), num_classes,
                                     lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn)) if c is not None]
    return float(np.mean(cases)) if cases else float("nan")


def case_iou(truth, pred, num_classes):
    """As :func:`case_dice` with IoU = TP / (TP + FP + FN)."""
    cases = [c for c in _case_scores(np.asarray(truth), np.asarray(pred), num_classes,
                                     lambda tp, fp, fn: tp / (tp + fp + fn)) if c is not None]
    return float(np.mean(cases)) if cases else float("nan")


def accuracy(truth, pred):
    """Top-1 accuracy; ``truth`` is class indices (or one-hot rows)."""
    truth = np.asarray(truth).reshape(len(pred), -1)
    truth = truth.argmax(-1) if truth.shape[-1] > 1 else truth[:, 0]
    return float(np.mean(np.asarray(pred).reshape(-1) == truth.astype(int)))


def score(task, truth, logits):
    """The task's metric: ``("dice", case_dice)`` for segmentation, ``("accuracy", top-1)`` for
    classification, from the labels and the model's logits."""
    pred = labels(logits)
    if task == "classification":
        return "accuracy", accuracy(truth, pred)
    truth = np.asarray(truth).reshape(pred.shape).astype(int)
    return "dice", case_dice(truth, pred, np.asarray(logits).shape[-1])


def held_out(model, info, source, n, *, patch_size=None, seed=0, options=None):
    """``n`` validation (image, label) pairs of ``source`` as arrays, cut to the model's patch:
    the same samples for every stage a caller compares."""
    target = Target.of(model, info, patch_size)
    return samples(source, target, n, seed=seed, options=options, preprocessing=info.preprocessing)


def predict_arrays(model, xs, batch_size=2):
    """The first output of a Keras model (or an exported file's runner) for ``xs``."""
    if getattr(model, "zoo_tflite", False):
        return np.concatenate([model.predict_on_batch(x[None]) for x in xs])
    out = model.predict(xs, batch_size=batch_size, verbose=0)
    return out[0] if isinstance(out, list) else out


__all__ = ["labels", "probabilities", "dice_per_class", "case_dice", "case_iou", "accuracy", "score",
           "held_out", "predict_arrays"]
