"""WGAN / WGAN-GP networks (zoo/models/wgan.py): sizes, counts, variants, save/load, errors."""
import numpy as np
import pytest

import zoo
from zoo.models.wgan import WGAN, valid_sizes, wgan


def trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def out_shapes(model, names):
    return [tuple(model.get_layer(n).output_shape[1:]) for n in names]


def test_reference_64x64x3_counts_and_shapes():
    from zoo._keras import keras
    model = zoo.load("wgan")
    assert isinstance(model, WGAN) and isinstance(model, keras.Model)
    gen, critic = model.generator, model.critic
    assert isinstance(gen, keras.Model) and isinstance(critic, keras.Model)
    assert trainable(gen) == 3_576_704 and gen.count_params() == 3_578_624
    assert trainable(critic) == 2_765_568 and critic.count_params() == 2_767_360
    assert trainable(model) == 3_576_704 + 2_765_568 and model.count_params() == 6_345_984
    assert model.input_shape == (None, 100) and model.z_dim == 100
    assert model.output_shape == (None, 1) and model.image_shape == (64, 64, 3)
    # generator: 1x1x100 -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3 (tanh)
    assert out_shapes(gen, ["stem_reshape", "stage0_out", "stage1_out", "stage2_out", "stage3_out",
                            "head_tanh"]) == [(1, 1, 100), (4, 4, 512), (8, 8, 256), (16, 16, 128),
                                              (32, 32, 64), (64, 64, 3)]
    assert [type(layer).__name__ for layer in gen.layers[2:5]] == [
        "Conv2DTranspose", "BatchNormalization", "ReLU"]
    assert gen.layers[-1].get_config()["activation"] == "tanh"
    # critic: 64 -> 32x32x64 (LeakyReLU 0.2, no norm) -> 16x16x128 -> 8x8x256 -> 4x4x512 -> 1
    assert out_shapes(critic, ["stage0_out", "stage1_out", "stage2_out", "stage3_out", "classifier",
                               "score"]) == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512),
                                             (1, 1, 1), (1,)]
    assert [type(layer).__name__ for layer in critic.layers[1:6]] == [
        "Conv2D", "LeakyReLU", "Conv2D", "BatchNormalization", "LeakyReLU"]
    relus = layers_of(critic, keras.layers.LeakyReLU)
    assert len(relus) == 4 and all(abs(r.alpha - 0.2) < 1e-7 for r in relus)
    assert critic.get_layer("classifier").get_config()["activation"] == "linear"  # no sigmoid
    assert len(layers_of(gen, keras.layers.BatchNormalization)) == 4
    assert len(layers_of(critic, keras.layers.BatchNormalization)) == 3
    # no biases anywhere (the only 1-D trainable weights are BN gamma/beta)
    for net in (gen, critic):
        for layer in net.layers:
            assert not getattr(layer, "use_bias", False), layer.name
    assert not [w.name for w in model.weights if "bias" in w.name]


def test_forward_outputs_in_range_and_wrapper_is_critic_of_generator():
    model = wgan(image_size=64, filters=16)
    z = np.random.default_rng(0).standard_normal((3, 100)).astype("float32")
    head = model.generator.get_layer("head_conv")
    head.kernel.assign(head.kernel * 1e4)  # drive the pre-activation far beyond [-1, 1]
    images = np.asarray(model.generator(z, training=False))
    assert images.shape == (3, 64, 64, 3)
    assert np.all(np.isfinite(images)) and images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5
    fake = model.generator(z, training=False)
    scores = np.asarray(model(z, training=False))
    assert scores.shape == (3, 1) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, np.asarray(model.critic(fake, training=False)),
                               rtol=1e-5, atol=1e-6)
    assert len(np.unique(scores.round(6))) == 3  # one unbounded score per sample


def test_128x128x1_variant_shapes_and_counts():
    model = zoo.load("wgan", image_size=128, channels=1)
    gen, critic = model.generator, model.critic
    assert gen.output_shape == (None, 128, 128, 1) and critic.input_shape == (None, 128, 128, 1)
    assert out_shapes(gen, ["stage0_out", "stage1_out", "stage4_out", "head_tanh"]) == [
        (4, 4, 1024), (8, 8, 512), (64, 64, 64), (128, 128, 1)]
    assert out_shapes(critic, ["stage0_out", "stage4_out", "classifier"]) == [
        (64, 64, 64), (4, 4, 1024), (1, 1, 1)]
    # one extra stage each: convs 100*1024*16 + 1024*512*16 + ... + 64*1*16, BN 2*(1024+...+64)
    assert trainable(gen) == 12_784_512
    assert trainable(critic) == 11_162_368
    z = np.random.default_rng(1).standard_normal((1, 100)).astype("float32")
    image = np.asarray(gen(z, training=False))
    assert image.shape == (1, 128, 128, 1) and np.abs(image).max() <= 1.0
    assert np.asarray(model(z, training=False)).shape == (1, 1)


def test_input_shape_is_the_image_shape():
    model = zoo.load("wgan", input_shape=(32, 32, 1), filters=8, z_dim=16)
    assert model.generator.output_shape == (None, 32, 32, 1)
    assert model.input_shape == (None, 16)  # the model's own input is z
    assert zoo.load("wgan", input_shape=(32, 32), in_channels=2, filters=8).image_shape == (32, 32, 2)


def test_batch_norm_false_has_no_norm_layers_and_fewer_params():
    from zoo._keras import keras
    norms = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
             keras.layers.GroupNormalization)
    model = zoo.load("wgan", batch_norm=False)
    for net in (model.generator, model.critic):
        assert not layers_of(net, norms)
    assert trainable(model.generator) == 3_574_784 < 3_576_704
    assert trainable(model.critic) == 2_763_776 < 2_765_568
    assert model.count_params() == trainable(model)  # no moving statistics left


def test_gp_critic_uses_layer_normalization_and_is_per_sample():
    from zoo._keras import keras
    model = zoo.load("wgan_gp", image_size=32, filters=8)
    critic = model.critic
    lns = layers_of(critic, keras.layers.LayerNormalization)
    assert [ln.name for ln in lns] == ["stage1_ln", "stage2_ln"]
    assert all(list(ln.axis) == [1, 2, 3] for ln in lns)  # over H, W, C of each sample
    assert not layers_of(critic, keras.layers.BatchNormalization)
    assert len(layers_of(model.generator, keras.layers.BatchNormalization)) == 3  # G keeps BN
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    # in training mode a sample's score must not depend on the rest of the batch (GP needs it)
    alone = np.asarray(critic(x[:1], training=True))
    np.testing.assert_allclose(alone, np.asarray(critic(x, training=True))[:1], rtol=1e-4, atol=1e-5)
    bn_critic = wgan(image_size=32, filters=8).critic  # the BN critic mixes the batch
    assert not np.allclose(np.asarray(bn_critic(x[:1], training=True)),
                           np.asarray(bn_critic(x, training=True))[:1], atol=1e-3)


def test_gp_reference_count():
    model = zoo.load("wgan_gp")
    assert trainable(model.critic) == 2_878_464  # 2,763,776 convs + 2*(16*16*128+8*8*256+4*4*512)
    assert trainable(model.generator) == 3_576_704
    assert model.count_params() == 6_457_088


def test_3d_volumes():
    model = zoo.load("wgan", spatial_dims=3, image_size=16, channels=1, filters=4, z_dim=8)
    assert model.generator.output_shape == (None, 16, 16, 16, 1)
    assert model.generator.get_layer("stage0_out").output_shape == (None, 4, 4, 4, 8)
    assert model.critic.get_layer("stage0_out").output_shape == (None, 8, 8, 8, 4)
    assert model.critic.get_layer("stage1_out").output_shape == (None, 4, 4, 4, 8)
    z = np.zeros((1, 8), "float32")
    assert np.asarray(model(z, training=False)).shape == (1, 1)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_save_load_keeps_generator_and_critic(tmp_path, fmt):
    from zoo._keras import keras
    model = zoo.load("wgan_gp", image_size=16, filters=8, z_dim=12)
    rng = np.random.default_rng(3)
    for w in model.weights:  # non-default BN/LN statistics and scales must survive too
        w.assign(w.numpy() + 0.05 * rng.standard_normal(w.shape).astype("float32"))
    z = rng.standard_normal((2, 12)).astype("float32")
    x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    path = tmp_path / f"gan.{fmt}"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert isinstance(loaded, WGAN) and loaded.z_dim == 12 and loaded.image_shape == (16, 16, 3)
    assert isinstance(loaded.generator, keras.Model) and isinstance(loaded.critic, keras.Model)
    for a, b in ((model, loaded), (model.generator, loaded.generator)):
        np.testing.assert_allclose(np.asarray(a(z, training=False)), np.asarray(b(z, training=False)),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.critic(x, training=False)),
                               np.asarray(loaded.critic(x, training=False)), rtol=1e-5, atol=1e-6)
    # the loaded sub-models share weights with the wrapper: changing one changes the other
    loaded.critic.get_layer("classifier").kernel.assign_add(
        np.ones(loaded.critic.get_layer("classifier").kernel.shape, "float32"))
    assert not np.allclose(np.asarray(loaded(z, training=False)), np.asarray(model(z, training=False)))


def test_config_round_trip_keeps_class():
    model = wgan(image_size=16, filters=4)
    clone = WGAN.from_config(model.get_config())
    assert isinstance(clone, WGAN) and clone.generator.name == "generator"
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


def test_valid_sizes():
    assert valid_sizes(100) == [64, 128] and valid_sizes(48) == [32, 64]
    assert valid_sizes(8) == [16] and valid_sizes(64) == [64]


@pytest.mark.parametrize("kwargs,needles", [
    ({"image_size": 100}, ["image_size=100", "power of two", "64 or 128"]),
    ({"image_size": 8}, ["image_size=8", ">= 16", "image_size=16"]),
    ({"image_size": 48.0}, ["image_size=48.0", "32 or 64"]),
    ({"input_shape": (96, 96, 3)}, ["input_shape size=96", "64 or 128"]),
    ({"input_shape": (64, 32, 3)}, ["input_shape=(64, 32, 3)", "square"]),
    ({"input_shape": (None, None, 3)}, ["fixed"]),
    ({"input_shape": (64, 64, 1), "channels": 3}, ["1 channels", "channels=3"]),
    ({"channels": 1, "in_channels": 3}, ["channels=1", "in_channels=3", "disagree"]),
    ({"image_size": 32, "input_shape": (64, 64, 3)}, ["image_size=32", "disagree"]),
    ({"critic_norm": "instance"}, ["critic_norm='instance'", "'layer'"]),
    ({"spatial_dims": 1}, ["spatial_dims=1"]),
    ({"z_dim": 0}, ["z_dim=0"]),
    ({"filters": 2.5}, ["filters=2.5"]),
    ({"batch_norm": "yes"}, ["batch_norm='yes'"]),
])
def test_errors_name_argument_and_fix(kwargs, needles):
    with pytest.raises(zoo.InvalidArgumentError) as info:
        wgan(**kwargs)
    for needle in needles:
        assert needle in str(info.value)


def test_load_rejects_bad_size_with_zoo_error():
    with pytest.raises(zoo.ZooError, match="64 or 128"):
        zoo.load("wgan", image_size=100)
