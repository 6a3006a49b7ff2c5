"""zoo.losses and zoo.metrics: hand-computed values, perfect predictions, weight maps, serialization."""
import numpy as np
import pytest

from zoo._keras import keras, tf
from zoo.errors import ZooError
from zoo.losses import CrossEntropy, DiceCELoss, DiceLoss, FocalLoss, WeightedCrossEntropy, get_loss, unet_weight_map
from zoo.metrics import AUC, DiceScore, IoUScore, get_metrics

LABELS = np.array([[[0], [1], [2], [1]]], np.int32)  # one sample, 4 pixels (1D "image"), 3 classes
PROBS = np.array([[[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]]], np.float32)


def _perfect_logits(labels, c, margin=30.0):
    return (tf.one_hot(labels[..., 0], c) * 2.0 - 1.0) * margin


def test_dice_loss_hand_computed_and_perfect():
    onehot = np.eye(3)[LABELS[..., 0]]
    inter, sums = (PROBS * onehot).sum(1)[0], (PROBS + onehot).sum(1)[0]
    expected = 1.0 - np.mean(2 * inter / sums)  # (1.6/2.8 + 1.7/3.15 + 1.2/1.9) / 3 ...
    assert float(DiceLoss(from_logits=False, smooth=0.0)(LABELS, PROBS)) == pytest.approx(expected, rel=1e-5)
    no_bg = 1.0 - np.mean(2 * inter[1:] / sums[1:])
    assert float(DiceLoss(from_logits=False, smooth=0.0, include_background=False)(LABELS, PROBS)) == \
        pytest.approx(no_bg, rel=1e-5)
    labels = np.random.default_rng(0).integers(0, 3, (2, 8, 8, 1))
    assert float(DiceLoss()(labels, _perfect_logits(labels, 3))) == pytest.approx(0.0, abs=1e-5)
    onehot_labels = tf.one_hot(labels[..., 0], 3)
    assert float(DiceLoss()(onehot_labels, _perfect_logits(labels, 3))) == pytest.approx(0.0, abs=1e-5)
    binary = (labels > 0).astype(np.float32)  # one sigmoid output: logits > 0 where labels are 1
    assert float(DiceLoss()(binary, (binary * 2 - 1) * 30)) == pytest.approx(0.0, abs=1e-5)
    assert float(DiceLoss()(binary, (1 - binary * 2) * 30)) > 0.99


def test_cross_entropy_matches_keras_and_class_weights():
    logits = np.random.default_rng(1).normal(size=(2, 5, 5, 3)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 3, (2, 5, 5, 1))
    ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(CrossEntropy()(labels, logits)) == pytest.approx(float(ref), rel=1e-5)
    ce = -np.log(PROBS[0, np.arange(4), LABELS[0, :, 0]])
    weights = np.array([1.0, 2.0, 5.0])
    w = weights[LABELS[0, :, 0]]
    expected = np.sum(ce * w) / np.sum(w)  # torch's CrossEntropyLoss(weight=...) normalisation
    got = WeightedCrossEntropy(from_logits=False, class_weights=weights)(LABELS, PROBS)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    pixel = np.array([[[0.0], [1.0], [3.0], [0.5]]], np.float32)  # the U-Net weight channel
    with_map = WeightedCrossEntropy(from_logits=False)(np.concatenate([LABELS, pixel], -1), PROBS)
    assert float(with_map) == pytest.approx(np.sum(ce * pixel[0, :, 0]) / np.sum(pixel), rel=1e-5)
    # the scale of the weights does not change the loss
    assert float(WeightedCrossEntropy(from_logits=False, class_weights=weights * 10)(LABELS, PROBS)) == \
        pytest.approx(expected, rel=1e-5)
    dice_ce = DiceCELoss(from_logits=False)(LABELS, PROBS)
    dice = float(DiceLoss(from_logits=False)(LABELS, PROBS))
    assert float(dice_ce) == pytest.approx(dice + ce.mean(), rel=1e-5)
    binary = np.array([[1.0], [0.0]], np.float32)
    z = np.array([[2.0], [-1.0]], np.float32)
    assert float(CrossEntropy()(binary, z)) == pytest.approx(np.mean(np.log1p(np.exp(-np.abs(z)))), rel=1e-5)


def test_focal_loss_reduces_to_ce_and_down_weights_easy_pixels():
    logits = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    labels = np.array([0, 3, 1])
    assert float(FocalLoss(gamma=0.0)(labels, logits)) == pytest.approx(float(CrossEntropy()(labels, logits)),
                                                                      rel=1e-5)
    p_t = PROBS[0, np.arange(4), LABELS[0, :, 0]]
    expected = np.mean(-(1 - p_t) ** 2 * np.log(p_t) * np.array([0.25, 0.5, 1.0, 0.5]))
    got = FocalLoss(from_logits=False, alpha=[0.25, 0.5, 1.0])(LABELS, PROBS)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    y, z = np.array([[1.0]]), np.array([[0.0]], np.float32)  # sigmoid: p_t = 0.5
    assert float(FocalLoss(alpha=0.25)(y, z)) == pytest.approx(0.25 * 0.25 * np.log(2), rel=1e-5)


def test_get_loss_and_serialization_round_trip():
    for name, cls in (("dice", DiceLoss), ("dice_ce", DiceCELoss), ("ce", CrossEntropy),
                      ("weighted_ce", WeightedCrossEntropy), ("focal", FocalLoss)):
        loss = get_loss(name)
        assert isinstance(loss, cls)
        again = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(again) is cls and again.get_config() == loss.get_config()
    custom = get_loss("focal", gamma=1.5, alpha=[1.0, 2.0])
    assert keras.losses.deserialize(keras.losses.serialize(custom)).get_config()["alpha"] == [1.0, 2.0]
    with pytest.raises(ZooError, match=r"loss='dcie' is not supported; allowed: 'dice', 'dice_ce', 'ce', "
                                       r"'weighted_ce', 'focal'.*Did you mean 'dice'"):
        get_loss("dcie")


def test_unet_weight_map_peaks_between_touching_cells():
    mask = np.zeros((20, 21), np.int32)
    mask[5:15, 2:10] = 1
    mask[5:15, 11:19] = 1  # two cells, one background column (x = 10) between them
    w = unet_weight_map(mask, w0=10, sigma=5)
    n, n_fg = mask.size, mask.sum()
    w_bg, w_fg = n / (2 * (n - n_fg)), n / (2 * n_fg)  # frequency-balancing class weights
    assert w[10, 10] == pytest.approx(w_bg + 10 * np.exp(-(1 + 1) ** 2 / 50), rel=1e-5)  # d1 = d2 = 1
    assert np.unravel_index(np.argmax(np.where(mask == 0, w, 0)), w.shape)[1] == 10  # in the gap
    d1, d2 = np.hypot(5, 2), np.hypot(5, 11)  # corner (0, 0) to the nearest pixel of each cell
    assert w[0, 0] == pytest.approx(w_bg + 10 * np.exp(-(d1 + d2) ** 2 / 50), rel=1e-4)
    assert w[10, 5] > w_fg  # inside a cell: d1 = 0, border term from the other cell
    single = unet_weight_map(mask * (np.arange(21) < 10), class_weights=(1.0, 3.0))
    assert set(np.unique(single)) == {1.0, 3.0}  # one cell: no border term
    inst = mask.copy()
    inst[5:15, 11:19] = 7  # instance ids work too
    np.testing.assert_allclose(unet_weight_map(inst), w, rtol=1e-6)


def test_dice_and_iou_metrics_stream_over_batches():
    y1 = np.array([[0, 1, 1, 2]])
    p1 = np.array([[0, 1, 0, 2]])
    y2 = np.array([[2, 2, 0, 1]])
    p2 = np.array([[2, 1, 0, 1]])
    dice, iou = DiceScore(3, average="pooled"), IoUScore(3, average="pooled")
    per_class = [DiceScore(3, class_id=c, average="pooled") for c in range(3)]
    case, case_iou = DiceScore(3), IoUScore(3)  # the default: per-case means
    case_class = [DiceScore(3, class_id=c) for c in range(3)]
    for y, p in ((y1, p1), (y2, p2)):
        logits = tf.one_hot(p, 3) * 10.0
        for m in [dice, iou, *per_class, case, case_iou, *case_class]:
            m.update_state(y, logits)
    # per case: case 1 class 1 2/3, class 2 1 -> 5/6; case 2 class 1 2/3, class 2 2/3 -> 2/3
    assert float(case.result()) == pytest.approx((5 / 6 + 2 / 3) / 2)
    assert float(case_class[1].result()) == pytest.approx(2 / 3)
    assert float(case_class[2].result()) == pytest.approx((1 + 2 / 3) / 2)
    assert float(case_iou.result()) == pytest.approx(((1 / 2 + 1) / 2 + (1 / 2 + 1 / 2) / 2) / 2)
    assert (dice.name, case.name, case_class[1].name) == ("dice_pooled", "dice", "dice_1")
    # totals: class 1 tp=2 fp=1 fn=1; class 2 tp=2 fp=0 fn=1; class 0 tp=2 fp=1 fn=0
    assert float(per_class[1].result()) == pytest.approx(4 / 6)
    assert float(per_class[2].result()) == pytest.approx(4 / 5)
    assert float(per_class[0].result()) == pytest.approx(4 / 5)
    assert float(dice.result()) == pytest.approx((4 / 6 + 4 / 5) / 2)  # background excluded
    assert float(iou.result()) == pytest.approx((2 / 4 + 2 / 3) / 2)
    dice.reset_state()
    dice.update_state(y1, tf.one_hot(y1, 3) * 5.0)
    assert float(dice.result()) == pytest.approx(1.0)
    weighted = DiceScore(3, class_id=1, average="pooled")
    weighted.update_state(np.concatenate([y1, y2]), tf.one_hot(np.concatenate([p1, p2]), 3),
                          sample_weight=np.array([1.0, 0.0]))
    assert float(weighted.result()) == pytest.approx(2 / 3)  # only sample 1 counts: tp 1, fn 1
    binary = DiceScore(1)  # one sigmoid output
    binary.update_state(np.array([[1, 0, 1]]), np.array([[[2.0], [-1.0], [-3.0]]]))
    assert float(binary.result()) == pytest.approx(2 / 3)


def test_auc_and_default_metrics():
    auc = AUC(num_classes=2)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]], np.float32)
    auc.update_state(np.array([0, 1, 1, 0]), logits)
    assert float(auc.result()) == pytest.approx(1.0)
    multi = AUC(num_classes=3)
    multi.update_state(np.array([0, 1, 2]), np.eye(3, dtype=np.float32) * 4)
    assert float(multi.result()) == pytest.approx(1.0)
    assert keras.metrics.deserialize(keras.metrics.serialize(multi)).get_config() == multi.get_config()
    assert [m.name for m in get_metrics("classification", 2)] == ["accuracy", "auc"]
    assert [m.name for m in get_metrics("segmentation", 3)] == ["dice", "iou", "dice_1", "dice_2"]
    assert [m.name for m in get_metrics("segmentation", 1)] == ["dice", "iou"]
    with pytest.raises(ZooError, match="task"):
        get_metrics("generation", 2)


def test_losses_and_metrics_train_a_tiny_model():
    from zoo.data import phantom_arrays
    images, labels = phantom_arrays(8, size=16, num_classes=3, seed=0)
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(3, 3, padding="same")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=get_loss("dice_ce"),
                  metrics=get_metrics("segmentation", 3))
    history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) >= {"loss", "dice", "iou", "dice_1", "dice_2"}
