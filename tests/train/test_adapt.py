"""Domain-adversarial training (zoo.train.adapt): the gradient reversal and its schedule, the
domain head on the encoder's deepest features, the model that is saved and exported without
it, and the errors. (Two replicas and a SIGKILL resume: tests/train/test_semi.py.)"""
import json

import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.data import phantom_arrays
from zoo.errors import InvalidArgumentError
from zoo.train.adapt import DomainAdversarial, grl_lambda, reverse_gradient


def _tiny(**kw):
    return zoo.load("unet", filters=4, depth=2, input_shape=(32, 32, 1), **kw)


def test_the_gradient_is_reversed_and_scaled_by_the_papers_schedule():
    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = reverse_gradient(x, tf.constant(0.25))
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(y.numpy(), x.numpy())  # identity forward
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[-0.25, -0.5, -0.75]])
    assert grl_lambda(0, 100) == 0.0 and grl_lambda(100, 100) == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    assert grl_lambda(50, 100) == pytest.approx(2 / (1 + np.exp(-5)) - 1)


def test_the_head_learns_the_domains_and_the_encoder_is_pushed_the_other_way():
    """One SGD step by hand through DomainAdversarial's parts: the head's update lowers the domain
    loss, the encoder's raises it (the reversal), the decoder gets no domain gradient."""
    keras.backend.clear_session()
    x, _ = phantom_arrays(4, size=32, seed=1)
    student = _tiny(norm=None, dropout=0.0)
    net = DomainAdversarial(student, "stage1_out", weight=1.0, total_steps=1)
    xs, xt = tf.constant(x[:2]), tf.constant(1.0 - x[2:])

    def domain_loss(lam):
        f = reverse_gradient(tf.concat([net.features(xs), net.features(xt)], 0), tf.constant(lam))
        logits = net.head(f)
        d = tf.concat([tf.zeros((2, 1)), tf.ones((2, 1))], 0)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(d, logits))

    with tf.GradientTape(persistent=True) as tape:
        loss = domain_loss(1.0)
    head_grads = tape.gradient(loss, net.head.trainable_variables)
    encoder = net.features.trainable_variables
    enc_grads = tape.gradient(loss, encoder)
    decoder = [v for v in student.trainable_variables if all(v is not e for e in encoder)]
    assert decoder and all(g is None for g in tape.gradient(loss, decoder))
    before = float(domain_loss(0.0))
    step = 0.05
    for v, g in zip(net.head.trainable_variables, head_grads):
        v.assign_sub(step * g)
    after_head = float(domain_loss(0.0))
    for v, g in zip(encoder, enc_grads):
        v.assign_sub(step * g)
    after_encoder = float(domain_loss(0.0))
    assert after_head < before and after_encoder > after_head


def test_a_dann_run_saves_the_model_without_the_domain_head(tmp_path):
    x, y = phantom_arrays(12, size=32, seed=1)
    model = _tiny()
    names = [layer.name for layer in model.layers]
    h = zoo.finetune(model, (x[:6], y[:6]), (x[6:8], y[6:8]), unlabeled=1.0 - x[8:], adapt="dann", epochs=2,
                     steps_per_epoch=2, out_dir=tmp_path / "run", verbose=0, tensorboard=False)
    assert [layer.name for layer in model.layers] == names and model.count_params() == _tiny().count_params()
    assert {"domain_loss", "domain_accuracy", "domain_lambda", "val_dice"} <= set(h.history)
    assert 0 < h.history["domain_lambda"][0] < h.history["domain_lambda"][1] <= 1
    config = json.loads((tmp_path / "run" / "state.json").read_text())["config"]
    assert config["adapt"] == {"mode": "dann", "features": "stage3_out", "total_steps": 4}
    assert config["options"]["adapt"] == "dann" and config["options"]["adapt_weight"] == 1.0
    plain = _tiny()
    plain.load_weights(str(tmp_path / "run" / "best.h5"))
    for a, b in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    result = zoo.export(str(tmp_path / "run"), tmp_path / "m.tflite", quantization="float32", latency_runs=0,
                        representative_data=x[:4])
    assert result.verification["passed"]


@pytest.mark.parametrize("kwargs,expected", [
    (dict(adapt="dann"), "needs unlabeled data"),
    (dict(adapt="grl", unlabeled="phantoms"), "dann"),
    (dict(adapt="dann", semi="pseudo_label", unlabeled="phantoms"), "choose one"),
    (dict(adapt="dann", unlabeled="phantoms", adapt_weight=-1), "adapt_weight=-1 must be a number >= 0"),
])
def test_errors_name_the_fix(tmp_path, kwargs, expected):
    with pytest.raises(InvalidArgumentError) as e:
        zoo.finetune(_tiny(), "phantoms", epochs=1, steps_per_epoch=1, out_dir=tmp_path / "run", verbose=0, **kwargs)
    assert expected in str(e.value)
    assert not (tmp_path / "run").exists()


def test_a_model_without_stage_outputs_is_refused(tmp_path):
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs), name="plain")
    with pytest.raises(InvalidArgumentError, match="stage outputs of the layer-name contract"):
        zoo.finetune(model, "phantoms", unlabeled="phantoms", adapt="dann", epochs=1, steps_per_epoch=1,
                     out_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_other_scanner_inverts_the_contrast_under_a_smooth_bias_field():
    from zoo.data import other_scanner
    x, _ = phantom_arrays(3, size=32, seed=4)
    plain = other_scanner(x, strength=0.0)
    np.testing.assert_allclose(plain, 1.0 - x, atol=1e-6)
    shifted = other_scanner(x, seed=1)
    field = shifted / np.where(np.abs(plain) > 0.05, plain, np.nan)
    assert np.nanmin(field) >= 0.6 - 1e-4 and np.nanmax(field) <= 1.4 + 1e-4  # 1 +- strength
    assert not np.allclose(shifted[0], shifted[1] * (plain[0] / np.where(plain[1] == 0, 1, plain[1])))
    np.testing.assert_array_equal(other_scanner(x, seed=1), shifted)  # seeded


@pytest.mark.slow  # ~35 s: two runs of 400 steps
def test_dann_raises_the_target_scanners_dice(tmp_path):
    """The seed-0 rows of tools/bench_adapt.py, run by the tool's own code: dann's target-scanner
    Dice beats source-only training's by at least half the gain the README's table shows."""
    import argparse

    from _tools import load_tool
    bench = load_tool("bench_adapt")
    from zoo.data import other_scanner
    args = argparse.Namespace(size=64, classes=3, filters=8, depth=3, epochs=20, steps=20, adapt_weight=1.0)
    make = dict(spatial_dims=2, size=64, num_classes=3)
    test = phantom_arrays(64, seed=bench.HELD_OUT_SEED, **make)
    data = [phantom_arrays(64, seed=1, **make), phantom_arrays(32, seed=2, **make),
            other_scanner(phantom_arrays(64, seed=5, **make)[0], seed=5), test, other_scanner(test[0], seed=6)]
    rows = {mode: bench.run_one(mode, 0, data, args, tmp_path) for mode in bench.MODES}
    print(rows)
    measured = json.loads((bench.ROOT / "docs" / "models" / "measured.json").read_text())["benchmarks"]["bench_adapt"]
    table = {r["mode"]: r for r in measured["rows"] if r["seed"] == 0}
    gain = table["dann"]["target_dice"] - table["source_only"]["target_dice"]
    assert gain > 0, table
    assert rows["dann"]["target_dice"] >= rows["source_only"]["target_dice"] + gain / 2, (rows, gain)
