"""Losses for segmentation and classification (tf_keras Loss subclasses, serializable).

Predictions are logits by default (``from_logits=True``; the zoo's heads return logits):
``(batch, *spatial, C)`` for segmentation, ``(batch, C)`` for classification. ``C == 1`` means
one sigmoid output (binary). Labels are class indices ``(batch, *spatial)`` or
``(batch, *spatial, 1)`` (or one-hot ``(..., C)`` for dice/ce/focal). Every loss returns one
value per sample (mean over pixels), so ``sample_weight`` and Keras reductions work as usual.

``weighted_ce`` also takes a per-pixel weight channel: labels ``(batch, *spatial, 2)`` =
``[class index, weight]``, e.g. ``np.stack([mask, unet_weight_map(mask)], -1)``.

``ignore_label`` (every loss; None by default): voxels labelled with it (e.g. 255: not annotated,
the 3D U-Net paper's sparse annotation) contribute nothing, and the normalisation counts the
labelled voxels only: Dice sums over labelled voxels only (a sample with none scores a loss of
0, never NaN); cross-entropy and focal are averaged over the labelled voxels of the whole batch,
as torch's ``CrossEntropyLoss(ignore_index=...)`` and the paper's zero-weighted softmax are.

Definitions, where libraries differ (each compared with MONAI 1.6 / torch in the tests):

* ``dice``, ``dice_ce``, ``ce``: as MONAI's ``DiceLoss``/``DiceCELoss`` (softmax, batch of
  per-sample soft Dice averaged over classes) and torch's ``CrossEntropyLoss``.
* Weighted cross-entropy (``ce``/``weighted_ce`` with class weights or a weight map): the
  weighted sum over the batch divided by the sum of the weights, as torch's
  ``CrossEntropyLoss(weight=...)`` and MONAI do, so the loss scale does not change with the
  scale of the weights (each sample's value is rescaled so that Keras' mean over the batch
  gives exactly that).
* ``focal``: per pixel ``-alpha_t (1 - p_t)^gamma log p_t`` of the true class, averaged over
  pixels (Lin et al.'s per-anchor loss, kornia's ``focal_loss``): ``class_reduction="sum"``.
  MONAI's ``FocalLoss`` averages the same terms over the class axis too, so its value is this
  one divided by the number of classes: ``class_reduction="mean"`` gives MONAI's.
"""
import numpy as np

from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, MissingDependencyError, check_choice

_register = keras.utils.register_keras_serializable(package="zoo")


def _split(y_true, y_pred, ignore_label=None):
    """(labels int (B, N) or None, onehot float (B, N, C) or None, logits (B, N, C), labelled-voxel
    mask (B, N) float or None). With ``ignore_label``, ignored voxels get label 0 and mask 0."""
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.convert_to_tensor(y_true)
    c = y_pred.shape[-1]
    batch = tf.shape(y_pred)[0]
    logits = tf.reshape(y_pred, tf.stack([batch, -1, c]))
    sparse = (y_true.shape.rank == y_pred.shape.rank - 1 or y_true.shape[-1] in (1, None)
              or c == 1)
    if sparse:
        labels = tf.cast(tf.reshape(y_true, tf.stack([batch, -1])), tf.int32)
        if ignore_label is None:
            return labels, None, logits, None
        keep = tf.not_equal(labels, int(ignore_label))
        return tf.where(keep, labels, 0), None, logits, tf.cast(keep, tf.float32)
    if ignore_label is not None:
        raise InvalidArgumentError(f"ignore_label={ignore_label!r} needs class-index labels (..., 1), not one-hot "
                                   f"labels of shape {y_true.shape}.")
    if y_true.shape[-1] != c:
        raise InvalidArgumentError(f"labels of shape {y_true.shape} do not fit predictions of shape "
                                   f"{y_pred.shape}: pass class indices (..., 1) or one-hot (..., {c}).")
    return None, tf.cast(tf.reshape(y_true, tf.stack([batch, -1, c])), logits.dtype), logits, None


def _probs_onehot(y_true, y_pred, from_logits, ignore_label=None):
    """Per-class probabilities and one-hot targets, (B, N, K) (a sigmoid output becomes K = 2),
    and the labelled-voxel mask (B, N, 1) or None."""
    labels, onehot, logits, mask = _split(y_true, y_pred, ignore_label)
    logits = tf.cast(logits, tf.float32)
    if logits.shape[-1] == 1:
        p = tf.sigmoid(logits) if from_logits else logits
        probs = tf.concat([1.0 - p, p], axis=-1)
    else:
        probs = tf.nn.softmax(logits, axis=-1) if from_logits else logits
    if onehot is None:
        onehot = tf.one_hot(labels, probs.shape[-1], dtype=tf.float32)
    return probs, tf.cast(onehot, tf.float32), None if mask is None else mask[..., None]


def _log_probs_true(y_true, y_pred, from_logits, ignore_label=None):
    """(log p(true class) per pixel (B, N), numerically stable from logits; the true class;
    the labelled-voxel mask (B, N) or None)."""
    labels, onehot, logits, mask = _split(y_true, y_pred, ignore_label)
    logits = tf.cast(logits, tf.float32)
    if logits.shape[-1] == 1:
        z = logits[..., 0]
        y = tf.cast(labels if labels is not None else onehot[..., 0], tf.float32)
        if from_logits:
            return -tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z), y, mask
        p = tf.clip_by_value(z, 1e-7, 1.0 - 1e-7)
        return y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p), y, mask
    logp = tf.nn.log_softmax(logits, -1) if from_logits else tf.math.log(tf.clip_by_value(logits, 1e-7, 1.0))
    if onehot is None:
        onehot = tf.one_hot(labels, logits.shape[-1], dtype=tf.float32)
    return tf.reduce_sum(onehot * logp, -1), tf.cast(tf.argmax(onehot, -1), tf.float32), mask


class _ZooLoss(keras.losses.Loss):
    _params = ()
    ignore_label = None

    def _set_ignore(self, ignore_label):
        if ignore_label is not None and (isinstance(ignore_label, bool) or not isinstance(ignore_label, int)):
            raise InvalidArgumentError(f"{self.name}: ignore_label={ignore_label!r} must be an integer label value "
                                       "(e.g. 255) or None.")
        self.ignore_label = ignore_label

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in self._params})
        config["ignore_label"] = self.ignore_label
        return config


@_register
class DiceLoss(_ZooLoss):
    """Soft Dice loss, 1 - mean over classes of (2 sum(p g) + smooth) / (sum p + sum g + smooth)."""
    _params = ("from_logits", "smooth", "include_background")

    def __init__(self, from_logits=True, smooth=1e-5, include_background=True, name="dice", ignore_label=None,
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits, self.smooth = from_logits, float(smooth)
        self.include_background = include_background
        self._set_ignore(ignore_label)

    def call(self, y_true, y_pred):
        probs, onehot, mask = _probs_onehot(y_true, y_pred, self.from_logits, self.ignore_label)
        if mask is not None:  # unlabelled voxels count in no sum
            probs, onehot = probs * mask, onehot * mask
        if not self.include_background:
            probs, onehot = probs[..., 1:], onehot[..., 1:]
        inter = tf.reduce_sum(probs * onehot, axis=1)
        denom = tf.reduce_sum(probs, axis=1) + tf.reduce_sum(onehot, axis=1)
        dice = (2.0 * inter + self.smooth) / (denom + self.smooth)
        return 1.0 - tf.reduce_mean(dice, axis=-1)


@_register
class CrossEntropy(_ZooLoss):
    """Categorical (softmax) or binary (one sigmoid output) cross-entropy, optional class weights."""
    _params = ("from_logits", "class_weights")

    def __init__(self, from_logits=True, class_weights=None, name="ce", ignore_label=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = from_logits
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self._set_ignore(ignore_label)

    def _pixel_weights(self, cls):
        if self.class_weights is None:
            return 1.0
        return tf.gather(tf.constant(self.class_weights, tf.float32), tf.cast(cls, tf.int32))

    def call(self, y_true, y_pred):
        logp, cls, mask = _log_probs_true(y_true, y_pred, self.from_logits, self.ignore_label)
        if self.class_weights is None and mask is None:
            return tf.reduce_mean(-logp, axis=-1)
        return _weighted_mean(-logp, self._pixel_weights(cls) * (1.0 if mask is None else mask))


def _weighted_mean(loss, weights):
    """Per-sample values whose mean over the batch is sum(w * loss) / sum(w) over the whole batch
    (torch's CrossEntropyLoss(weight=...) reduction), for (batch, pixels) loss and weights."""
    weights = tf.broadcast_to(tf.cast(weights, loss.dtype), tf.shape(loss))
    per_sample = tf.reduce_sum(weights * loss, axis=-1)
    batch = tf.cast(tf.shape(loss)[0], loss.dtype)
    return tf.math.divide_no_nan(per_sample * batch, tf.reduce_sum(weights))


@_register
class WeightedCrossEntropy(CrossEntropy):
    """Cross-entropy with class weights and/or a per-pixel weight channel (U-Net weight map).

    Labels: class indices ``(..., 1)`` or ``[class index, weight]`` pairs ``(..., 2)``.
    """

    def __init__(self, from_logits=True, class_weights=None, name="weighted_ce", ignore_label=None, **kwargs):
        super().__init__(from_logits=from_logits, class_weights=class_weights, name=name, ignore_label=ignore_label,
                         **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.convert_to_tensor(y_true)
        y_pred = tf.convert_to_tensor(y_pred)
        pixel = 1.0
        if y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] == 2:
            batch = tf.shape(y_pred)[0]
            pixel = tf.reshape(tf.cast(y_true[..., 1], tf.float32), tf.stack([batch, -1]))
            y_true = y_true[..., :1]
        elif y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] not in (1, None):
            raise InvalidArgumentError(f"weighted_ce: labels of shape {y_true.shape} must be class "
                                       "indices (..., 1) or [class, weight] pairs (..., 2).")
        logp, cls, mask = _log_probs_true(y_true, y_pred, self.from_logits, self.ignore_label)
        return _weighted_mean(-logp, self._pixel_weights(cls) * pixel * (1.0 if mask is None else mask))


@_register
class DiceCELoss(_ZooLoss):
    """``dice_weight * DiceLoss + ce_weight * CrossEntropy`` (nnU-Net's default)."""
    _params = ("from_logits", "smooth", "include_background", "dice_weight", "ce_weight")

    def __init__(self, from_logits=True, smooth=1e-5, include_background=True, dice_weight=1.0,
                 ce_weight=1.0, name="dice_ce", ignore_label=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits, self.smooth = from_logits, float(smooth)
        self.include_background = include_background
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self._set_ignore(ignore_label)
        self._dice = DiceLoss(from_logits, smooth, include_background, ignore_label=ignore_label)
        self._ce = CrossEntropy(from_logits, ignore_label=ignore_label)

    def call(self, y_true, y_pred):
        return (self.dice_weight * self._dice.call(y_true, y_pred)
                + self.ce_weight * self._ce.call(y_true, y_pred))


@_register
class FocalLoss(_ZooLoss):
    """Focal loss -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017), softmax or sigmoid.

    alpha: None (no weighting), a float (sigmoid output: weight of the positive class, 1 - alpha
    for the negative; softmax: a constant factor) or one weight per class. class_reduction:
    "sum" (the per-pixel loss of the paper and kornia) or "mean" (MONAI's FocalLoss: the same
    divided by the number of classes).
    """
    _params = ("from_logits", "gamma", "alpha", "class_reduction")

    def __init__(self, from_logits=True, gamma=2.0, alpha=None, class_reduction="sum", name="focal",
                 ignore_label=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._set_ignore(ignore_label)
        if gamma < 0:
            raise InvalidArgumentError(f"focal: gamma={gamma!r} must be >= 0 (2 in the paper).")
        self.class_reduction = check_choice("class_reduction", class_reduction, ("sum", "mean"), "focal")
        self.from_logits, self.gamma = from_logits, float(gamma)
        self.alpha = alpha if alpha is None or np.isscalar(alpha) else [float(a) for a in alpha]

    def call(self, y_true, y_pred):
        logp, cls, mask = _log_probs_true(y_true, y_pred, self.from_logits, self.ignore_label)
        loss = -tf.pow(1.0 - tf.exp(logp), self.gamma) * logp
        if self.alpha is not None:
            if np.isscalar(self.alpha) and tf.convert_to_tensor(y_pred).shape[-1] == 1:
                loss = loss * (cls * self.alpha + (1.0 - cls) * (1.0 - self.alpha))
            elif np.isscalar(self.alpha):
                loss = loss * float(self.alpha)
            else:
                loss = loss * tf.gather(tf.constant(self.alpha, tf.float32), tf.cast(cls, tf.int32))
        if self.class_reduction == "mean":
            loss = loss / float(tf.convert_to_tensor(y_pred).shape[-1])
        if mask is not None:
            return _weighted_mean(loss, mask)
        return tf.reduce_mean(loss, axis=-1)


LOSSES = {"dice": DiceLoss, "dice_ce": DiceCELoss, "ce": CrossEntropy,
          "weighted_ce": WeightedCrossEntropy, "focal": FocalLoss}


def get_loss(name, **kwargs):
    """A loss by name.

    Args:
        name: ``"dice"``, ``"dice_ce"``, ``"ce"``, ``"weighted_ce"``, ``"focal"``, or a Keras
            ``Loss`` (returned as is).
        **kwargs: keywords of the loss class (``from_logits``, ``class_weights``, ``gamma`` ...).

    Returns:
        A ``keras.losses.Loss``.

    Raises:
        InvalidArgumentError: an unknown name.
    """
    if isinstance(name, keras.losses.Loss):
        return name
    check_choice("loss", name, tuple(LOSSES), "get_loss")
    return LOSSES[name](**kwargs)


def unet_weight_map(mask, w0=10.0, sigma=5.0, class_weights=None):
    """U-Net weight map w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2)) (numpy, 2D or 3D).

    mask: a binary mask whose connected components are the cells, or an instance map (0 =
    background, one positive id per cell). d1, d2: distance to the nearest and second-nearest
    cell. class_weights: ``(w_background, w_foreground)``; None balances the class frequencies
    (w_c = N / (2 N_c)) as in the paper. With fewer than two cells the border term is 0.
    """
    try:
        from scipy import ndimage  # heavy: scipy.ndimage (~0.5 s); only this weight map needs it
    except ImportError:
        raise MissingDependencyError(
            "unet_weight_map needs scipy; install it with: pip install scipy") from None
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise InvalidArgumentError(f"unet_weight_map: mask must be 2D or 3D; got shape {mask.shape}.")
    if np.isin(mask, (0, 1)).all():
        instances, n = ndimage.label(mask > 0)
        ids = range(1, n + 1)
    else:
        instances = mask.astype(np.int64)
        ids = [i for i in np.unique(instances) if i > 0]
    fg = instances > 0
    if class_weights is None:
        counts = np.array([np.sum(~fg), np.sum(fg)], np.float64)
        class_weights = np.where(counts > 0, mask.size / (2.0 * np.maximum(counts, 1)), 0.0)
    wc = np.where(fg, class_weights[1], class_weights[0]).astype(np.float32)
    if len(ids) < 2:
        return wc
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    for i in ids:
        d = ndimage.distance_transform_edt(instances != i)
        d2 = np.where(d < d1, d1, np.minimum(d2, d))
        d1 = np.minimum(d1, d)
    return (wc + w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))).astype(np.float32)
