"""WGAN / WGAN-GP training (zoo/models/_wgan_train.py): clipping, gradient penalty, the critic
schedule, NaN guard, sampling, SampleGrid, export of the generator, and that training learns."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.data import phantom_arrays
from zoo.errors import InvalidArgumentError
from zoo.models import _wgan_train as T


def tiny(name="wgan_gp", **kw):
    keras.backend.clear_session()
    return zoo.load(name, image_size=16, channels=1, filters=4, **kw)


def phantoms(n=64, seed=0):
    return phantom_arrays(n, size=16, seed=seed)[0]


def reference_schedule(n_gen):
    """The WGAN reference loop (main.py): critic updates done before each generator update."""
    done, out = 0, []
    for g in range(n_gen):
        out.append(done)
        done += 100 if g < 25 or g % 500 == 0 else 5
    return out


def test_schedule_matches_the_reference_loop():
    s = T.DEFAULTS["wgan"]
    expected = reference_schedule(1600)
    assert [T.critic_steps_before(g, s) for g in range(1600)] == expected
    tensor = T.critic_steps_before(tf.range(1600, dtype=tf.int64), s).numpy().tolist()
    assert tensor == expected
    assert expected[25] == 2500 and T.critic_steps_for(500, s) == 100 and T.critic_steps_for(501, s) == 5
    gp = T.DEFAULTS["wgan_gp"]
    assert [T.critic_steps_before(g, gp) for g in range(5)] == [0, 5, 10, 15, 20]


def test_wgan_clipping_holds_and_warmup_runs_100_critic_steps():
    gan = tiny("wgan")
    gan.compile()  # the paper: RMSprop 5e-5, c = 0.01, 100 critic steps for the first 25 generator steps
    assert isinstance(gan.optimizer, keras.optimizers.RMSprop) and gan.optimizer.rho == pytest.approx(0.99)
    x = phantoms(64)
    seen = []
    rec = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(
        (int(logs["critic_steps"]), int(logs["generator_steps"]), float(logs["loss"]))))
    gan.fit(x, batch_size=8, epochs=13, verbose=0, callbacks=[rec])  # 8 steps per epoch: 104 critic steps
    assert [c for c, _, _ in seen] == list(range(1, 105))
    assert [g for _, g, _ in seen] == [0] * 99 + [1] * 5  # the first generator step after 100 critic steps
    assert all(np.isfinite(v) for _, _, v in seen)
    weights = np.concatenate([v.numpy().ravel() for v in gan.critic.trainable_variables])
    assert np.abs(weights).max() <= 0.01 + 1e-7
    assert np.isclose(np.abs(weights), 0.01).mean() > 0.1  # the box is active: many weights sit on it
    gen = np.concatenate([v.numpy().ravel() for v in gan.generator.trainable_variables])
    assert np.abs(gen).max() > 0.5  # the generator is not clipped


def test_wgan_gp_paper_settings_5_to_1_and_positive_penalty():
    gan = tiny()
    gan.compile()
    opt = gan.optimizer
    assert isinstance(opt, keras.optimizers.Adam) and opt.beta_1 == 0.0 and opt.beta_2 == pytest.approx(0.9)
    assert float(opt.learning_rate) == pytest.approx(1e-4) and gan.generator_optimizer is not opt
    h = gan.fit(phantoms(40), batch_size=8, epochs=2, verbose=0)
    assert h.history["critic_steps"] == [5.0, 10.0] and h.history["generator_steps"] == [1.0, 2.0]
    assert all(v > 0 for v in h.history["gp"])
    for key in ("loss", "wasserstein", "gp", "g_loss"):
        assert all(np.isfinite(h.history[key])), key
    # the critic loss is -W + 10 * gp, epoch means of the same steps
    np.testing.assert_allclose(h.history["loss"], -np.array(h.history["wasserstein"]) + 10 * np.array(
        h.history["gp"]), rtol=1e-4)


def test_gradient_penalty_is_computed_on_interpolates():
    # critic(x) = sum(x^2) / 2: its gradient at x is x, so the penalty is mean((|x_hat| - 1)^2)
    inp = keras.Input((4, 4, 1))
    sq = keras.layers.Flatten()(keras.layers.Multiply()([inp, inp]))
    out = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(0.5))(sq)
    critic = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (3, 4, 4, 1)).astype(np.float32)
    fake = rng.normal(2, 1, (3, 4, 4, 1)).astype(np.float32)
    eps = np.array([0.0, 0.3, 1.0], np.float32).reshape(3, 1, 1, 1)
    gp, x_hat = T.gradient_penalty(critic, tf.constant(real), tf.constant(fake), tf.constant(eps))
    hat = eps * real + (1 - eps) * fake
    np.testing.assert_allclose(x_hat.numpy(), hat, rtol=1e-6)
    expected = np.mean((np.linalg.norm(hat.reshape(3, -1), axis=1) - 1) ** 2)
    assert expected > 0
    np.testing.assert_allclose(float(gp), expected, rtol=1e-5)
    at_real = np.mean((np.linalg.norm(real.reshape(3, -1), axis=1) - 1) ** 2)
    assert abs(expected - at_real) > 0.1  # not the value at the real images


def test_nan_stops_finetune_with_a_zoo_error(tmp_path):
    gan = tiny()
    x = phantoms(32)
    x[5, 3, 3, 0] = np.nan  # in the first batch of 8 of the unshuffled dataset
    ds = tf.data.Dataset.from_tensor_slices(x).batch(8)
    with pytest.raises(zoo.ZooError, match="nan"):
        zoo.finetune(gan, train=ds, epochs=2, batch_size=8, out_dir=tmp_path / "run", metrics=[], verbose=0,
                     tensorboard=False)
    assert not (tmp_path / "run" / "last.h5").exists()  # the NaN epoch wrote no checkpoint


def test_sample_is_deterministic_and_in_the_data_range():
    gan = tiny(value_range=(-100, 400))
    a, b = gan.sample(6, seed=3), gan.sample(6, seed=3)
    assert a.shape == (6, 16, 16, 1) and np.array_equal(a, b)
    assert not np.allclose(a, gan.sample(6, seed=4))
    head = gan.generator.get_layer("head_conv")
    head.kernel.assign(head.kernel * 1e3)  # saturate tanh: samples reach the range's ends
    s = gan.sample(8, seed=0)
    assert s.min() >= -100 and s.max() <= 400 and s.min() < -90 and s.max() > 390
    path = gan.interpolate(1, 2, steps=5)
    np.testing.assert_allclose(path[0], gan.sample(1, seed=1)[0], atol=1e-3)
    np.testing.assert_allclose(path[-1], gan.sample(1, seed=2)[0], atol=1e-3)
    clone = keras.models.model_from_json(gan.to_json())
    assert clone.value_range == (-100.0, 400.0)
    with pytest.raises(InvalidArgumentError, match="value_range"):
        gan.value_range = (1, 0)


def test_sample_grid_writes_png_and_nifti(tmp_path):
    import nibabel as nib
    from PIL import Image
    gan = tiny()
    gan.compile()
    grid = zoo.callbacks.SampleGrid(tmp_path / "s", every=2, n=4)
    gan.fit(phantoms(16), batch_size=8, epochs=2, verbose=0, callbacks=[grid])
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["epoch_0002.png"]
    im = np.asarray(Image.open(tmp_path / "s" / "epoch_0002.png"))
    assert im.shape == (38, 38) and im.dtype == np.uint8  # 2 x 2 tiles of 16 px, 2 px padding
    expected = np.round(np.clip(gan.sample(4, seed=0), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(im[2:18, 20:36], expected[1, ..., 0])
    keras.backend.clear_session()
    gan3 = zoo.load("wgan_gp", image_size=16, channels=1, filters=2, spatial_dims=3)
    grid3 = zoo.callbacks.SampleGrid(tmp_path / "v", n=2, nifti=True)
    grid3.set_model(gan3)
    grid3.on_epoch_end(0)
    assert np.asarray(Image.open(tmp_path / "v" / "epoch_0001.png")).shape == (20, 2 * (48 + 2) + 2)
    vol = nib.load(str(tmp_path / "v" / "epoch_0001_sample01.nii.gz")).get_fdata()
    np.testing.assert_allclose(vol, gan3.sample(2, seed=0)[1, ..., 0], atol=1e-6)


def test_short_training_on_phantoms_lowers_the_sliced_wasserstein_distance():
    from zoo.callbacks import GanQuality
    keras.backend.clear_session()
    gan = zoo.load("wgan_gp", image_size=16, channels=1, filters=16)
    gan.compile(learning_rate=1e-3, seed=0)  # 10x the paper's rate: a few seconds of CPU training
    reference = phantom_arrays(256, size=16, seed=7919)[0] * 2 - 1
    quality = GanQuality(reference, seed=0)
    before = quality.measure(gan)
    gan.fit(phantoms(1024), batch_size=32, epochs=3, verbose=0, shuffle=False)  # 96 critic, 19 generator steps
    after = quality.measure(gan)
    assert after["swd"] < 0.75 * before["swd"], (before, after)
    assert after["fd"] < 0.75 * before["fd"], (before, after)


def test_generator_converts_to_tflite_and_agrees_with_keras():
    from ai_edge_litert.interpreter import Interpreter
    gan = tiny()
    converter = tf.lite.TFLiteConverter.from_keras_model(gan.generator)
    interp = Interpreter(model_content=converter.convert())
    interp.allocate_tensors()
    z = gan.latent(1, seed=0)
    interp.set_tensor(interp.get_input_details()[0]["index"], z)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, gan.generator(z, training=False).numpy(), atol=1e-5)


def test_compile_errors_name_the_fix():
    gan = tiny()
    with pytest.raises(InvalidArgumentError, match="critic_optimizer"):
        gan.compile(optimizer="adam")
    with pytest.raises(InvalidArgumentError, match="clip_value"):
        gan.compile(clip_value=-1)
    with pytest.raises(InvalidArgumentError, match="compile"):
        gan.fit(phantoms(8), batch_size=8, verbose=0)
