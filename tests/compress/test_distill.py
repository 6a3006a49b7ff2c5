"""Distillation (zoo/compress/_distill.py): the loss a student trains on is the task loss weighted
by 1 - alpha plus alpha T^2 KL(softmax(teacher / T) || softmax(student / T)), each checked against
a hand computation in NumPy (float64)."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.compress._distill import DistillationHead
from zoo.data import phantom_arrays
from zoo.errors import InvalidArgumentError
from zoo.losses import get_loss


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def distillation_term(student, teacher, temperature, alpha):
    """alpha T^2 KL(p_teacher || p_student) at temperature T, per pixel (last axis: classes), mean."""
    log_s = log_softmax(np.asarray(student, np.float64) / temperature)
    log_t = log_softmax(np.asarray(teacher, np.float64) / temperature)
    kl = (np.exp(log_t) * (log_t - log_s)).sum(-1)
    return alpha * temperature ** 2 * kl.mean()


def test_distillation_head_returns_the_student_and_adds_alpha_t2_kl_per_pixel():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(2, 5, 4, 3)).astype("float32") * 3
    teacher = rng.normal(size=(2, 5, 4, 3)).astype("float32") * 3
    head = DistillationHead(temperature=2.5, alpha=0.3)
    out = head([tf.constant(student), tf.constant(teacher)])
    np.testing.assert_array_equal(out.numpy(), student)
    assert len(head.losses) == 1
    want = distillation_term(student, teacher, 2.5, 0.3)
    assert want > 0.1  # far from 0: a missing or mis-weighted term cannot pass by rounding
    np.testing.assert_allclose(float(head.losses[0]), want, rtol=1e-5)
    # the per-pixel KL, not the KL of pixel-averaged distributions nor a sum over pixels
    assert abs(distillation_term(student.mean((1, 2)), teacher.mean((1, 2)), 2.5, 0.3) - want) > 1e-2 * want
    # classification logits (batch, classes); no teacher term when the two agree
    head = DistillationHead(temperature=1.0, alpha=0.5)
    head([tf.constant(student[:, 0, 0]), tf.constant(teacher[:, 0, 0])])
    np.testing.assert_allclose(float(head.losses[0]), distillation_term(student[:, 0, 0], teacher[:, 0, 0], 1, 0.5),
                               rtol=1e-5)
    head = DistillationHead(temperature=4.0, alpha=0.5)
    head([tf.constant(student), tf.constant(student)])
    assert abs(float(head.losses[0])) < 1e-5
    # no gradient reaches the teacher's logits; the student's gradient is the KL's
    s, t = tf.Variable(student), tf.Variable(teacher)
    with tf.GradientTape() as tape:
        head = DistillationHead(temperature=2.0, alpha=1.0)
        head([s, t])
        loss = head.losses[0]
    grad_s, grad_t = tape.gradient(loss, [s, t])
    assert grad_t is None and float(tf.reduce_max(tf.abs(grad_s))) > 0


class KeepNet(keras.callbacks.Callback):
    """The compiled network a training run fits (Keras sets ``self.model``)."""

    def on_train_end(self, logs=None):
        self.net = self.model


@pytest.mark.slow  # measured 6.7-7.0 s in the quick tier
def test_a_distill_step_trains_a_smaller_student_on_the_weighted_task_loss_plus_the_teacher_term(tmp_path):
    teacher = zoo.load("unet", filters=8, depth=2, dropout=0.0, input_shape=(16, 16, 1))
    classifier = teacher.get_layer("classifier")  # a confident teacher (as a trained one is): a large KL term
    classifier.set_weights([w * 20 for w in classifier.get_weights()])
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    x, y = phantom_arrays(4, size=16, seed=0)
    keep = KeepNet()
    temperature, alpha = 2.0, 0.7
    recipe = {"kind": "distill", "name": "distill_small", "temperature": temperature, "alpha": alpha}
    kw = dict(epochs=1, batch_size=4, learning_rate=1e-3, verbose=0, tensorboard=False)
    small, report = zoo.compress(teacher, recipe, (x, y), student=zoo.load(
        "unet", filters=4, depth=2, dropout=0.0, input_shape=(16, 16, 1)), out_dir=tmp_path / "c",
        callbacks=[keep], **kw)
    assert small.count_params() < teacher.count_params() and len(small.outputs) == 1
    assert "student" in report["steps"][0]["summary"]
    net = keep.net
    assert isinstance(net.get_layer("distill"), DistillationHead)
    student, teacher_in_net = net.get_layer("student"), net.get_layer("teacher")
    for got, want in zip(teacher_in_net.get_weights(), teacher_weights):  # the teacher is frozen
        np.testing.assert_array_equal(got, want)
    for got, want in zip(small.get_weights(), student.get_weights()):  # the result is the trained student
        np.testing.assert_array_equal(got, want)
    # one batch, in inference mode: the compiled loss of the network the step trained
    total = net.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)["loss"]
    s, t = student(x, training=False).numpy(), teacher_in_net(x, training=False).numpy()
    task = float(get_loss("dice_ce")(y, s))  # the segmentation task loss (zoo.losses, tested against MONAI)
    term = distillation_term(s, t, temperature, alpha)
    assert term > 0.1 * total and (1 - alpha) * task > 0.1 * total  # both parts weigh
    np.testing.assert_allclose(total, (1 - alpha) * task + term, rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match="needs a student"):
        zoo.compress(teacher, {"kind": "distill"}, (x, y), out_dir=tmp_path / "none", **kw)
    with pytest.raises(InvalidArgumentError, match="outputs .* must match"):
        zoo.compress(teacher, {"kind": "distill"}, (x, y), out_dir=tmp_path / "bad", **kw,
                     student=zoo.load("unet", filters=4, depth=2, num_classes=3, input_shape=(16, 16, 1)))
