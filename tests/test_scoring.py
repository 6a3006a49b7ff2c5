"""zoo.scoring: the numbers zoo.run, zoo.compress and an export's verification print mean what the
Keras metrics of zoo.finetune's history mean."""
import numpy as np
import pytest

from zoo import metrics
from zoo.scoring import case_dice, case_iou, dice_per_class, labels, probabilities


@pytest.mark.parametrize("classes", [2, 4])
def test_case_dice_and_iou_equal_the_keras_metrics(classes):
    rng = np.random.default_rng(classes)
    truth = rng.integers(0, classes, (6, 12, 12))
    truth[2] = 0  # a case without foreground: left out of the mean by both
    logits = rng.normal(size=(6, 12, 12, classes)).astype(np.float32)
    logits[..., 0] -= 0.5
    pred = labels(logits)
    for ours, keras_metric in ((case_dice, metrics.DiceScore(classes)), (case_iou, metrics.IoUScore(classes))):
        keras_metric.update_state(truth[..., None], logits)
        assert ours(truth, pred, classes) == pytest.approx(float(keras_metric.result()), abs=1e-5)


def test_labels_and_probabilities_of_one_sigmoid_channel():
    logits = np.array([[-1.0], [0.5]])
    assert labels(logits).tolist() == [0, 1]
    np.testing.assert_allclose(probabilities(logits)[:, 0], 1 / (1 + np.exp(-logits[:, 0])), rtol=1e-6)
    np.testing.assert_allclose(probabilities(np.zeros((2, 3))).sum(-1), 1.0, rtol=1e-6)


def test_dice_per_class_is_pooled_and_none_where_no_map_has_the_class():
    a = np.array([[0, 1], [1, 1]])
    b = np.array([[0, 1], [0, 1]])
    assert dice_per_class(a, b, 3) == [pytest.approx(2 / 3), pytest.approx(4 / 5), None]
