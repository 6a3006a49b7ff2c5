"""Losses and metrics against the real peers on PyPI: MONAI 1.6 and torch, same logits and labels."""
import numpy as np
import pytest
import torch  # the test extra installs torch and monai: a missing peer fails, never skips
from monai.losses import DiceCELoss as MonaiDiceCE
from monai.losses import DiceLoss as MonaiDice
from monai.losses import FocalLoss as MonaiFocal
from monai.metrics import DiceMetric, MeanIoU

from zoo._keras import tf
from zoo.losses import CrossEntropy, DiceCELoss, DiceLoss, FocalLoss, WeightedCrossEntropy
from zoo.metrics import DiceScore, IoUScore

RNG = np.random.default_rng(0)
C = 4
LOGITS = RNG.normal(size=(3, 6, 5, 4, C)).astype(np.float32) * 2  # (B, D, H, W, C): channels last
LABELS = RNG.integers(0, C, (3, 6, 5, 4, 1))
LABELS[1][LABELS[1] == 3] = 0  # case 1 has no class 3: per-case metrics must leave it out


def _torch(logits, labels):
    """Channels-first torch tensors as MONAI expects them: (B, C, ...) logits, (B, 1, ...) labels."""
    x = torch.from_numpy(np.moveaxis(logits, -1, 1).copy())
    y = torch.from_numpy(np.moveaxis(labels, -1, 1).copy())
    return x, y


def test_dice_and_dice_ce_equal_monai():
    x, y = _torch(LOGITS, LABELS)
    ours = float(DiceLoss(smooth=1e-5)(LABELS, LOGITS))
    theirs = float(MonaiDice(softmax=True, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5)(x, y))
    assert ours == pytest.approx(theirs, abs=1e-6)
    ours = float(DiceCELoss(smooth=1e-5)(LABELS, LOGITS))
    theirs = float(MonaiDiceCE(softmax=True, to_onehot_y=True, smooth_nr=1e-5, smooth_dr=1e-5)(x, y))
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_weighted_ce_is_torchs_normalisation():
    weights = [0.2, 1.0, 3.0, 7.0]
    x, y = _torch(LOGITS, LABELS)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights))(x, y[:, 0].long())
    for loss in (CrossEntropy(class_weights=weights), WeightedCrossEntropy(class_weights=weights)):
        assert float(loss(LABELS, LOGITS)) == pytest.approx(float(theirs), rel=1e-5)
    plain = torch.nn.CrossEntropyLoss()(x, y[:, 0].long())
    assert float(CrossEntropy()(LABELS, LOGITS)) == pytest.approx(float(plain), rel=1e-5)


@pytest.mark.parametrize("alpha", [None, [0.1, 0.2, 0.3, 0.4]])
def test_focal_mean_over_classes_is_monais_and_sum_is_c_times(alpha):
    x, y = _torch(LOGITS, LABELS)
    theirs = float(MonaiFocal(gamma=2.0, alpha=alpha, use_softmax=True, to_onehot_y=True)(x, y))
    mean = float(FocalLoss(gamma=2.0, alpha=alpha, class_reduction="mean")(LABELS, LOGITS))
    assert mean == pytest.approx(theirs, rel=1e-5)
    assert float(FocalLoss(gamma=2.0, alpha=alpha)(LABELS, LOGITS)) == pytest.approx(C * theirs, rel=1e-5)


@pytest.mark.parametrize("ours,theirs", [(DiceScore, DiceMetric), (IoUScore, MeanIoU)])
def test_per_case_metric_streams_as_monais_cumulative_mean(ours, theirs):
    """Two batches streamed: the same number as MONAI's DiceMetric/MeanIoU over both batches
    (reduction mean, ignore_empty): per case over the classes present, then over cases."""
    metric = ours(C)
    peer = theirs(include_background=False, reduction="mean", ignore_empty=True)
    per_class = [ours(C, class_id=k) for k in range(1, C)]
    peer_class = theirs(include_background=False, reduction="mean_batch", ignore_empty=True)
    for b in (slice(0, 2), slice(2, 3)):
        logits, labels = LOGITS[b], LABELS[b]
        metric.update_state(labels, logits)
        for m in per_class:
            m.update_state(labels, logits)
        x, y = _torch(logits, labels)
        pred = torch.nn.functional.one_hot(x.argmax(1), C).movedim(-1, 1)
        gt = torch.nn.functional.one_hot(y[:, 0].long(), C).movedim(-1, 1)
        peer(pred, gt)
        peer_class(pred, gt)
    assert float(metric.result()) == pytest.approx(float(peer.aggregate()), abs=1e-6)
    np.testing.assert_allclose([float(m.result()) for m in per_class], peer_class.aggregate().numpy(), atol=1e-6)
    # pooled differs: it sums voxels over cases before the ratio
    pooled = ours(C, average="pooled")
    pooled.update_state(LABELS, LOGITS)
    assert abs(float(pooled.result()) - float(metric.result())) > 1e-4
    assert tf.is_tensor(metric.result())
