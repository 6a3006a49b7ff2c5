"""U-Net (Ronneberger 2015) and 3D U-Net (Cicek 2016): the papers' numbers and the size checks."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras
from zoo.errors import InvalidArgumentError
from zoo.models.unet import check_spatial_size, nearest_valid_sizes, output_size, paper_param_count, unet, valid_sizes
from zoo.models.unet3d import unet3d

L = keras.layers
CONVS = (L.Conv1D, L.Conv2D, L.Conv3D)  # transposed convs subclass these


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def convs_of(model):
    return [layer for layer in model.layers if isinstance(layer, CONVS)]


def predict(model, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    return np.asarray(model(x, training=False))


# --------------------------------------------------------------------------- U-Net 2015
def test_unet_paper_network_valid_padding():
    model = unet(padding="valid", input_shape=(572, 572, 1), num_classes=2)
    assert model.output_shape == (None, 388, 388, 2)
    convs = convs_of(model)
    assert len(convs) == 23
    assert sum(isinstance(c, L.Conv2DTranspose) for c in convs) == 4
    assert model.count_params() == 31_030_658
    assert trainable_count(model) == 31_030_658
    assert paper_param_count(model) == 31_030_658
    widths = [model.get_layer(f"stage{i}_out").output_shape[-1] for i in range(1, 6)]
    assert widths == [64, 128, 256, 512, 1024]
    assert [model.get_layer(f"up{i}_upconv").filters for i in (4, 3, 2, 1)] == [512, 256, 128, 64]
    assert model.get_layer("stage5_out").output_shape == (None, 28, 28, 1024)
    assert model.get_layer("up4_crop").output_shape == (None, 56, 56, 512)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in model.layers)
    assert all(c.use_bias for c in convs)
    dropouts = [layer for layer in model.layers if isinstance(layer, L.Dropout)]
    assert sorted(d.name for d in dropouts) == ["stage4_dropout", "stage5_dropout"]
    assert all(d.rate == 0.5 for d in dropouts)


def test_unet_572_forward_gives_388_and_center_crop():
    # narrow (filters=2) so the real 572 x 572 forward pass runs in about a second
    model = unet(padding="valid", input_shape=(572, 572, 1), filters=2)
    assert predict(model, (1, 572, 572, 1)).shape == (1, 388, 388, 2)


def test_unet_names_logits_and_head_options():
    model = unet(filters=4, depth=2, input_shape=(32, 32, 1), num_classes=3)
    names = [layer.name for layer in model.layers]
    assert names[1] == "stem_conv" and names[-1] == "classifier"
    for name in ("stage1_out", "stage2_out", "stage3_out", "stage2_pool", "up2_upconv",
                 "up2_concat", "up2_out", "up1_out"):
        assert name in names
    assert model.get_layer("classifier").activation is keras.activations.linear
    soft = unet(filters=4, depth=2, input_shape=(32, 32, 1), num_classes=3,
                classifier_activation="softmax")
    np.testing.assert_allclose(predict(soft, (2, 32, 32, 1)).sum(-1), 1.0, rtol=1e-5)
    headless = unet(filters=4, depth=2, input_shape=(32, 32, 1), num_classes=0)
    assert headless.output_shape == (None, 32, 32, 4)
    assert "classifier" not in [layer.name for layer in headless.layers]


def test_unet_batch_norm_option():
    model = unet(filters=4, depth=2, input_shape=(16, 16, 1), norm="batch", dropout=0.0)
    assert model.get_layer("stem_conv").use_bias is False
    assert model.get_layer("stem_bn").input is model.get_layer("stem_conv").output
    assert model.get_layer("stem_relu").input is model.get_layer("stem_bn").output
    bns = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    assert len(bns) == 10  # two per level: 3 encoder + 2 decoder
    three = [c for c in convs_of(model) if c.kernel_size == (3, 3)]
    assert len(three) == 10 and not any(c.use_bias for c in three)
    assert model.get_layer("up1_upconv").use_bias and model.get_layer("classifier").use_bias
    assert not any(isinstance(layer, L.Dropout) for layer in model.layers)
    # params: the paper's count without 3x3 biases, plus 4 per BN channel
    plain = unet(filters=4, depth=2, input_shape=(16, 16, 1), dropout=0.0)
    bn_channels = sum(b.gamma.shape[0] for b in bns)
    assert model.count_params() == plain.count_params() - bn_channels + 4 * bn_channels


def test_unet_3d_and_depth_filters_options():
    model = unet(spatial_dims=3, filters=4, depth=3, in_channels=2, input_shape=(16, 24, 8, 2))
    assert model.output_shape == (None, 16, 24, 8, 2)
    assert len(convs_of(model)) == 2 * 4 + 3 + 2 * 3 + 1
    assert model.get_layer("stage4_out").output_shape == (None, 2, 3, 1, 32)
    assert predict(model, (1, 16, 24, 8, 2)).shape == (1, 16, 24, 8, 2)


# --------------------------------------------------------------------------- 3D U-Net 2016
def test_unet3d_paper_network():
    model = unet3d(padding="valid", input_shape=(132, 132, 116, 3), in_channels=3, num_classes=3)
    assert model.output_shape == (None, 44, 44, 28, 3)
    assert paper_param_count(model) == 19_069_955
    assert trainable_count(model) == 19_074_627
    assert model.count_params() == 19_074_627 + 4_672  # + BN moving mean/variance
    enc = [(model.get_layer("stem_conv" if i == 1 else f"stage{i}_conv1").filters,
            model.get_layer(f"stage{i}_conv2").filters) for i in range(1, 5)]
    assert enc == [(32, 64), (64, 128), (128, 256), (256, 512)]
    ups = [model.get_layer(f"up{i}_upconv") for i in (3, 2, 1)]
    assert [u.filters for u in ups] == [512, 256, 128]  # up-convs keep the channel count
    assert [u.input_shape[-1] for u in ups] == [512, 256, 128]
    assert not any(u.use_bias for u in ups)
    dec = [(model.get_layer(f"up{i}_conv1").filters, model.get_layer(f"up{i}_conv2").filters)
           for i in (3, 2, 1)]
    assert dec == [(256, 256), (128, 128), (64, 64)]
    three = [c for c in convs_of(model) if c.kernel_size == (3, 3, 3)]
    assert len(three) == 14 and all(c.use_bias for c in three)
    bns = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    assert len(bns) == 14 and sum(b.gamma.shape[0] for b in bns) == 2_336
    assert model.get_layer("stage4_out").output_shape == (None, 9, 9, 7, 512)
    assert model.get_layer("up1_concat").output_shape == (None, 48, 48, 32, 192)
    assert model.get_layer("classifier").kernel_size == (1, 1, 1)
    assert not any(isinstance(layer, L.Dropout) for layer in model.layers)


@pytest.mark.slow  # over 20 s on the 2-core CI machine
def test_unet3d_132x132x116_forward_narrow():
    model = unet3d(padding="valid", input_shape=(132, 132, 116, 3), in_channels=3,
                   num_classes=3, filters=1)
    assert predict(model, (1, 132, 132, 116, 3)).shape == (1, 44, 44, 28, 3)


def test_unet3d_in_2d():
    model = unet3d(spatial_dims=2, filters=4, input_shape=(24, 24, 1))
    assert model.output_shape == (None, 24, 24, 2)
    assert predict(model, (2, 24, 24, 1)).shape == (2, 24, 24, 2)


# --------------------------------------------------------------------------- sizes
def test_size_helpers():
    assert output_size(572, depth=4, padding="valid") == 388
    assert output_size(570, depth=4, padding="valid") is None
    assert output_size(132, depth=3, padding="valid") == 44
    assert output_size(116, depth=3, padding="valid") == 28
    assert output_size(96, depth=4) == 96 and output_size(100, depth=4) is None
    assert nearest_valid_sizes(570, depth=4, padding="valid") == (556, 572)
    assert nearest_valid_sizes(572, depth=4, padding="valid") == (572, 572)
    assert nearest_valid_sizes(100, depth=4) == (96, 112)
    assert nearest_valid_sizes(100, depth=4, padding="valid") == (None, 188)
    sizes = valid_sizes(depth=4, padding="valid", stop=600)
    assert sizes[0] == 188 and 572 in sizes and 556 in sizes and 570 not in sizes
    assert np.all(np.diff(sizes) == 16)
    assert valid_sizes(depth=3, padding="valid", stop=140) == [92, 100, 108, 116, 124, 132, 140]
    assert check_spatial_size((132, 132, 116, 3), spatial_dims=3, depth=3,
                              padding="valid") == (44, 44, 28)
    assert check_spatial_size((None, 64, 1), spatial_dims=2, depth=4, padding="same") == (None, 64)


def test_valid_padding_error_names_nearest_sizes():
    with pytest.raises(InvalidArgumentError) as err:
        unet(padding="valid", input_shape=(570, 570, 1))
    msg = str(err.value)
    assert "570" in msg and "556 (output 372)" in msg and "572 (output 388)" in msg
    assert "padding='valid'" in msg
    with pytest.raises(InvalidArgumentError) as err:
        unet3d(padding="valid", input_shape=(132, 132, 114, 3), in_channels=3)
    assert "114" in str(err.value) and "108 (output 20)" in str(err.value) \
        and "116 (output 28)" in str(err.value)
    with pytest.raises(InvalidArgumentError) as err:  # too small: only a size above exists
        unet(padding="valid", input_shape=(64, 64, 1))
    assert "nearest valid sizes: 188 (output 4). Use" in str(err.value)


def test_same_padding_divisibility_error():
    with pytest.raises(InvalidArgumentError) as err:
        unet(input_shape=(100, 100, 1))
    assert "unet depth 4 needs spatial size divisible by 16" in str(err.value)
    assert "got 100" in str(err.value) and "use 96 or 112, or pad" in str(err.value)
    with pytest.raises(InvalidArgumentError) as err:
        unet3d(input_shape=(64, 64, 20, 1))
    assert "unet3d depth 3 needs spatial size divisible by 8" in str(err.value)
    assert "got 20" in str(err.value) and "use 16 or 24" in str(err.value)
    with pytest.raises(InvalidArgumentError, match="use 16, or pad"):
        unet(input_shape=(10, 16, 1))
    # the check happens through zoo.load too
    with pytest.raises(InvalidArgumentError, match="divisible by 16"):
        zoo.load("unet", input_shape=(100, 100, 1))


def test_invalid_arguments():
    for kwargs in ({"padding": "full"}, {"dropout": 1.5}, {"classifier_activation": "relu"},
                   {"depth": 0}, {"filters": 0}, {"norm": "bach"}, {"activation": "nope"},
                   {"spatial_dims": 4}):
        with pytest.raises(InvalidArgumentError):
            unet(**kwargs)


# --------------------------------------------------------------------------- dynamic input
def test_dynamic_input_same_padding_two_sizes():
    model = unet(filters=4, depth=2)
    assert model.input_shape == (None, None, None, 1)
    assert predict(model, (1, 32, 32, 1)).shape == (1, 32, 32, 2)
    assert predict(model, (1, 48, 24, 1)).shape == (1, 48, 24, 2)


def test_dynamic_input_valid_padding_two_sizes():
    model = unet(padding="valid", filters=2, depth=2)
    sizes = valid_sizes(depth=2, padding="valid", stop=80)[:2]
    assert sizes == [44, 48]
    for s, expected in ((44, 4), (48, 8), (76, 36)):
        assert output_size(s, depth=2, padding="valid") == expected
        assert predict(model, (1, s, s, 1)).shape == (1, expected, expected, 2)


def test_dynamic_input_unet3d_two_sizes():
    model = unet3d(filters=2)
    assert model.input_shape == (None, None, None, None, 1)
    assert predict(model, (1, 16, 16, 16, 1)).shape == (1, 16, 16, 16, 2)
    assert predict(model, (1, 24, 16, 8, 1)).shape == (1, 24, 16, 8, 2)
    valid = unet3d(padding="valid", filters=1, depth=2)
    assert predict(valid, (1, 44, 48, 52, 1)).shape == (1, 4, 8, 12, 2)
    assert predict(valid, (1, 48, 44, 44, 1)).shape == (1, 8, 4, 4, 2)


# --------------------------------------------------------------------------- hub, save/load
def test_zoo_load_defaults():
    model = zoo.load("unet")
    assert model.input_shape == (None, None, None, 1) and model.output_shape == (None, None, None, 2)
    assert model.count_params() == 31_030_658
    keras.backend.clear_session()
    model = zoo.load("unet3d")
    assert model.input_shape == (None, None, None, None, 1)
    assert model.output_shape == (None, None, None, None, 2)
    keras.backend.clear_session()
    assert zoo.load("unet", spatial_dims=3, filters=2, depth=1).output_shape == (None,) * 4 + (2,)


def test_valid_padding_save_load_round_trip(tmp_path):
    model = unet(padding="valid", filters=2, depth=2, input_shape=(None, None, 1))
    x = np.random.default_rng(1).standard_normal((1, 48, 44, 1)).astype("float32")
    ref = np.asarray(model(x))
    assert ref.shape == (1, 8, 4, 2)
    for fname in ("m.keras", "m.h5"):
        model.save(tmp_path / fname)
        loaded = keras.models.load_model(tmp_path / fname, compile=False)
        np.testing.assert_allclose(np.asarray(loaded(x)), ref, rtol=1e-5, atol=1e-6)
