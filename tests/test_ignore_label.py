"""Sparse annotation: a label value (``ignore_label``, e.g. 255) marks voxels nobody annotated.
Every loss and metric leaves them out and counts the labelled voxels only; each is checked here
against the same quantity computed by hand in NumPy on the labelled voxels, 2D and 3D, on a batch
whose samples have different labelled fractions (one has none)."""
import numpy as np
import pytest

from zoo import losses, metrics

IGNORE = 255


def _batch(spatial, classes, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (3, *spatial))
    keep = np.stack([rng.random(spatial) < f for f in (0.6, 0.1, 0.0)])  # labelled fractions; the last: none
    sparse = np.where(keep, labels, IGNORE)
    logits = rng.normal(size=(3, *spatial, classes)).astype(np.float32)
    return sparse, keep, logits


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ce(sparse, keep, logits):
    """Cross-entropy averaged over the labelled voxels of the whole batch."""
    logp = np.log(_softmax(logits.astype(np.float64)))
    labels = np.where(keep, sparse, 0)
    picked = np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    return -(picked * keep).sum() / keep.sum()


def _dice(sparse, keep, logits, smooth=1e-5):
    """1 - mean over classes of the soft Dice per sample over its labelled voxels, batch mean."""
    p = _softmax(logits.astype(np.float64)) * keep[..., None]
    g = np.eye(logits.shape[-1])[np.where(keep, sparse, 0)] * keep[..., None]
    axes = tuple(range(1, p.ndim - 1))
    inter, denom = (p * g).sum(axes), p.sum(axes) + g.sum(axes)
    return float(np.mean(1 - ((2 * inter + smooth) / (denom + smooth)).mean(-1)))


@pytest.mark.parametrize("spatial", [(9, 7), (5, 6, 4)])
def test_each_loss_counts_the_labelled_voxels_only(spatial):
    sparse, keep, logits = _batch(spatial, 3)
    y = sparse[..., None]
    ce = float(losses.get_loss("ce", ignore_label=IGNORE)(y, logits))
    assert ce == pytest.approx(_ce(sparse, keep, logits), rel=1e-5)
    dice = float(losses.get_loss("dice", ignore_label=IGNORE)(y, logits))
    assert dice == pytest.approx(_dice(sparse, keep, logits), rel=1e-5)
    dice_ce = float(losses.get_loss("dice_ce", ignore_label=IGNORE)(y, logits))
    assert dice_ce == pytest.approx(_ce(sparse, keep, logits) + _dice(sparse, keep, logits), rel=1e-5)
    # focal: -(1 - p_t)^gamma log p_t over the labelled voxels of the batch
    p = _softmax(logits.astype(np.float64))
    pt = np.take_along_axis(p, np.where(keep, sparse, 0)[..., None], -1)[..., 0]
    focal = (-(1 - pt) ** 2 * np.log(pt) * keep).sum() / keep.sum()
    assert float(losses.get_loss("focal", ignore_label=IGNORE)(y, logits)) == pytest.approx(focal, rel=1e-5)
    # weighted CE: class weights times the labelled-voxel mask
    w = np.array([0.5, 1.0, 2.0])
    labels = np.where(keep, sparse, 0)
    logp = np.take_along_axis(np.log(p), labels[..., None], -1)[..., 0]
    weighted = -(w[labels] * keep * logp).sum() / (w[labels] * keep).sum()
    got = float(losses.get_loss("weighted_ce", class_weights=list(w), ignore_label=IGNORE)(y, logits))
    assert got == pytest.approx(weighted, rel=1e-5)
    # and without the ignore label the 255s would have been read as a class: a different number
    assert ce != pytest.approx(float(losses.get_loss("ce")(np.where(keep, sparse, 0)[..., None], logits)), rel=1e-3)


def test_a_batch_without_any_labelled_voxel_contributes_nothing_and_no_nan():
    logits = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype(np.float32)
    y = np.full((2, 6, 6, 1), IGNORE)
    for name in ("ce", "dice", "dice_ce", "focal", "weighted_ce"):
        value = float(losses.get_loss(name, ignore_label=IGNORE)(y, logits))
        assert np.isfinite(value) and value == pytest.approx(0.0, abs=1e-6), name


@pytest.mark.parametrize("spatial", [(9, 7), (5, 6, 4)])
def test_dice_and_iou_metrics_leave_out_unlabelled_voxels(spatial):
    from zoo.scoring import case_dice, labels
    sparse, keep, logits = _batch(spatial, 3, seed=2)
    pred = labels(logits)
    # by hand: a prediction on an unlabelled voxel is neither a false positive nor a hit
    truth = np.where(keep, sparse, -1)
    pred_l = np.where(keep, pred, -1)
    want = case_dice(truth, pred_l, 3)
    metric = metrics.DiceScore(3, ignore_label=IGNORE)
    metric.update_state(sparse[..., None], logits)
    assert float(metric.result()) == pytest.approx(want, abs=1e-5)
    plain = metrics.DiceScore(3)
    plain.update_state(np.where(keep, sparse, 0)[..., None], logits)
    assert float(plain.result()) != pytest.approx(want, abs=1e-3)
    assert metrics.get_metrics("segmentation", 3, ignore_label=IGNORE)[0].ignore_label == IGNORE


def test_an_ignore_label_survives_a_saved_loss_and_metric():
    loss = losses.get_loss("dice_ce", ignore_label=IGNORE)
    again = losses.DiceCELoss.from_config(loss.get_config())
    assert again.ignore_label == IGNORE and again._ce.ignore_label == IGNORE
    metric = metrics.DiceScore(2, ignore_label=IGNORE)
    assert metrics.DiceScore.from_config(metric.get_config()).ignore_label == IGNORE
    with pytest.raises(Exception, match="ignore_label='255' must be an integer"):
        losses.get_loss("ce", ignore_label="255")
