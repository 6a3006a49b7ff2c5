"""GoogLeNet (Inception v1): paper and torchvision (BN) layouts, aux heads, names, errors."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, ZooError
from zoo.models.googlenet import googlenet
from zoo.models.layers import LocalResponseNormalization

# Table 1 output channels of Inception 3a, 3b, 4a-4e, 5a, 5b; the last of each stage is stage{i}_out
MODULE_CHANNELS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
                   "5a": 832, "5b": 1024}
STAGE_OUT = {"3b": "stage3_out", "4e": "stage4_out", "5b": "stage5_out"}
# resolution of each stage at 224 input and its output channels (Table 1)
STAGE_SHAPES = {1: (112, 64), 2: (56, 192), 3: (28, 480), 4: (14, 832), 5: (7, 1024)}


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def concat_name(key):
    return STAGE_OUT.get(key, f"inception_{key}_concat")


@pytest.fixture(scope="module")
def paper224():
    return googlenet(input_shape=(224, 224, 3))


@pytest.fixture(scope="module")
def bn224():
    return googlenet(variant="bn", dropout=0.2, input_shape=(224, 224, 3))


# ------------------------------------------------------------------ parameter counts
def test_paper_param_count_without_aux(paper224):
    assert paper224.count_params() == 6_998_552
    assert trainable_count(paper224) == 6_998_552  # no BatchNorm: every weight trains
    keras.backend.clear_session()
    dynamic = googlenet()  # the count does not depend on the input size
    assert dynamic.count_params() == 6_998_552


def test_paper_param_count_with_aux_heads():
    model = googlenet(aux_heads=True)
    assert model.count_params() == 13_378_280
    assert trainable_count(model) == 13_378_280
    # the aux FC sees the 4x4x128 grid of avgpool 5x5/3 on the 14x14 Inception-4a/4d maps
    for prefix in ("aux1", "aux2"):
        assert model.get_layer(f"{prefix}_pool").output.shape[1:] == (4, 4, 512 if prefix == "aux1" else 528)
        assert tuple(model.get_layer(f"{prefix}_fc").kernel.shape) == (2048, 1024)


def test_bn_trainable_count_matches_torchvision(bn224):
    assert trainable_count(bn224) == 6_624_904  # torchvision googlenet(aux_logits=False)
    assert bn224.count_params() == 6_639_464   # + 14,560 BatchNorm moving statistics
    keras.backend.clear_session()
    aux = googlenet(variant="bn", aux_heads=True)
    assert trainable_count(aux) == 13_004_888  # torchvision googlenet(aux_logits=True)


def test_registry_entries_build_the_variants():
    paper = zoo.load("googlenet", num_classes=5, width=0.25)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in paper.layers)
    keras.backend.clear_session()
    bn = zoo.load("googlenet_bn", num_classes=5, width=0.25)
    assert bn.name == "googlenet_bn"
    assert bn.get_layer("head_dropout").rate == 0.2  # torchvision's dropout
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in bn.layers)


# ------------------------------------------------------------------ aux heads
def test_paper_aux_outputs_present_and_shaped():
    model = googlenet(aux_heads=True, num_classes=7)
    assert model.output_names == ["classifier", "aux1", "aux2"]
    assert model.input_shape == (None, 224, 224, 3)  # the aux FC fixes the size; default 224
    # aux1 hangs on Inception 4a, aux2 on 4d
    assert model.get_layer("aux1_pool").input.name.startswith("inception_4a_concat")
    assert model.get_layer("aux2_pool").input.name.startswith("inception_4d_concat")
    assert model.get_layer("aux1_dropout").rate == 0.7
    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
    outs = model(x, training=False)
    assert [tuple(o.shape) for o in outs] == [(2, 7)] * 3
    assert all(np.all(np.isfinite(np.asarray(o))) for o in outs)


def test_paper_aux_accepts_exactly_the_sizes_that_give_a_4x4_grid():
    for size in (209, 256):  # Inception 4a at 14..16 -> avgpool 5x5/3 -> 4x4
        model = googlenet(aux_heads=True, width=0.25, input_shape=(size, size, 3))
        assert model.get_layer("aux2_pool").output.shape[1:3] == (4, 4)
        keras.backend.clear_session()
    for size in (208, 257):
        with pytest.raises(InvalidArgumentError, match=r"209\.\.256"):
            googlenet(aux_heads=True, width=0.25, input_shape=(size, size, 3))


def test_bn_aux_heads_pool_adaptively_at_any_size():
    model = googlenet(variant="bn", aux_heads=True, num_classes=4, width=0.25)
    assert model.input_shape == (None, None, None, 3)
    assert model.output_names == ["classifier", "aux1", "aux2"]
    for size in (64, 100):
        x = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype("float32")
        assert [tuple(o.shape) for o in model(x, training=False)] == [(2, 4)] * 3


def test_aux_heads_in_3d_and_softmax():
    model = googlenet(variant="bn", aux_heads=True, spatial_dims=3, num_classes=3, width=0.25,
                      in_channels=1,
                      input_shape=(32, 32, 32, 1), classifier_activation="softmax")
    assert model.get_layer("aux1_pool").output.shape[1:4] == (4, 4, 4)
    outs = model(np.ones((1, 32, 32, 32, 1), "float32"), training=False)
    assert [tuple(o.shape) for o in outs] == [(1, 3)] * 3
    for o in outs:
        np.testing.assert_allclose(np.sum(np.asarray(o), axis=-1), 1.0, rtol=1e-5)


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize("fixture", ["paper224", "bn224"])
def test_inception_output_channels(fixture, request):
    model = request.getfixturevalue(fixture)
    for key, channels in MODULE_CHANNELS.items():
        layer = model.get_layer(concat_name(key))
        assert isinstance(layer, keras.layers.Concatenate)
        assert layer.output.shape[-1] == channels, key
    assert [model.get_layer(concat_name(k)).output.shape[-1] for k in MODULE_CHANNELS] == \
        [256, 480, 512, 512, 512, 528, 832, 832, 1024]


@pytest.mark.parametrize("fixture", ["paper224", "bn224"])
def test_layer_names_and_stage_shapes(fixture, request):
    model = request.getfixturevalue(fixture)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs[0].name == "stem_conv"
    assert tuple(convs[0].kernel.shape) == (7, 7, 3, 64) and convs[0].strides == (2, 2)
    for i, (size, channels) in STAGE_SHAPES.items():
        assert model.get_layer(f"stage{i}_out").output.shape[1:] == (size, size, channels), i
    assert model.layers[-1].name == "classifier"
    assert model.output_shape == (None, 1000)
    for layer in model.layers:
        ok = layer.name in ("input", "classifier") or layer.name.startswith(
            ("stem_", "stage", "inception_", "head_"))
        assert ok, layer.name


def test_paper_layers(paper224):
    lrn = [l for l in paper224.layers if isinstance(l, LocalResponseNormalization)]
    assert [l.name for l in lrn] == ["stage2_lrn1", "stage2_out"]
    assert all((l.size, l.alpha, l.beta, l.bias) == (5, 1e-4, 0.75, 1.0) for l in lrn)
    convs = [l for l in paper224.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 3 + 9 * 6  # stem, 1x1, 3x3 + six convs per Inception module
    assert all(c.use_bias for c in convs)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in paper224.layers)
    assert paper224.get_layer("inception_3a_5x5_conv").kernel_size == (5, 5)
    assert paper224.get_layer("inception_3a_pool").pool_size == (3, 3)
    assert paper224.get_layer("stage5_pool").pool_size == (3, 3)
    assert paper224.get_layer("head_dropout").rate == 0.4


def test_bn_layers_follow_torchvision(bn224):
    assert not any(isinstance(l, LocalResponseNormalization) for l in bn224.layers)
    convs = [l for l in bn224.layers if isinstance(l, keras.layers.Conv2D)]
    bns = [l for l in bn224.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(convs) == len(bns) == 57 and not any(c.use_bias for c in convs)
    assert all(b.epsilon == 1e-3 for b in bns)
    assert bn224.get_layer("inception_3a_5x5_conv").kernel_size == (3, 3)  # torchvision's 3x3
    assert bn224.get_layer("stage5_pool").pool_size == (2, 2)  # torchvision maxpool4 2x2/2
    assert bn224.get_layer("stage4_pool").pool_size == (3, 3)


def test_dynamic_input_size_without_aux():
    model = googlenet(num_classes=6, width=0.25)
    assert model.input_shape == (None, None, None, 3)
    for size in (32, 75, 224):
        x = np.random.default_rng(2).standard_normal((1, size, size + 8, 3)).astype("float32")
        assert tuple(model(x, training=False).shape) == (1, 6)


def test_headless_returns_pooled_features():
    model = googlenet(num_classes=0, in_channels=1)
    assert model.output_shape == (None, 1024)
    assert model.layers[-1].name == "head_pool"


def test_3d_paper_forward():
    model = googlenet(spatial_dims=3, num_classes=2, width=0.25, in_channels=1,
                      input_shape=(32, 32, 32, 1))
    assert model.get_layer("stage2_lrn1").output.shape.rank == 5
    assert model.get_layer("stage5_out").output.shape[1:] == (1, 1, 1, 256)
    assert tuple(model(np.ones((1, 32, 32, 32, 1), "float32"), training=False).shape) == (1, 2)


def test_width_scales_every_layer():
    model = googlenet(width=0.5, input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("stage5_out").output.shape[-1] == 512


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs,words", [
    ({"variant": "v3"}, ["variant='v3'", "'paper'", "'bn'"]),
    ({"aux_heads": "yes"}, ["aux_heads='yes'", "True or False"]),
    ({"spatial_dims": 1}, ["spatial_dims=1", "2", "3"]),
    ({"num_classes": -1}, ["num_classes=-1", ">= 0"]),
    ({"dropout": 1.5}, ["dropout=1.5", "[0, 1)"]),
    ({"width": 0}, ["width=0", "(0, 16]"]),
    ({"classifier_activation": "relu"}, ["classifier_activation='relu'", "'softmax'"]),
    ({"aux_heads": True, "num_classes": 0}, ["aux_heads=True", "num_classes=0", "aux_heads=False"]),
    ({"aux_heads": True, "input_shape": (160, 160, 3)},
     ["aux_heads=True", "(160, 160, 3)", "209..256", "input_shape=(224, 224, 3)", "variant='bn'",
      "aux_heads=False"]),
    ({"aux_heads": True, "input_shape": (None, None, 3)}, ["(None, None, 3)", "209..256", "224"]),
    ({"aux_heads": True, "spatial_dims": 3, "input_shape": (32, 32, 32, 1), "in_channels": 1},
     ["4x4x4", "input_shape=(224, 224, 224, 1)"]),
    ({"input_shape": (64, 64, 1)}, ["in_channels=3", "in_channels=1"]),
    ({"transform_input": 1}, ["transform_input=1", "True or False"]),
    ({"transform_input": True, "in_channels": 1}, ["transform_input=True", "in_channels=1", "transform_input=False"]),
])
def test_error_messages(kwargs, words):
    with pytest.raises(InvalidArgumentError) as info:
        googlenet(**kwargs)
    message = str(info.value)
    assert message.startswith("googlenet")
    for word in words:
        assert word in message, (word, message)


def test_errors_through_zoo_load():
    with pytest.raises(ZooError, match=r"209\.\.256"):
        zoo.load("googlenet", aux_heads=True, input_shape=(128, 128, 3))
    with pytest.raises(ZooError, match="aux_head"):
        zoo.load("googlenet", aux_head=True)  # misspelt keyword: did you mean aux_heads?


def _ceil_mode_max_pool(x, k=3, s=2):
    """Caffe/torchvision ceil-mode max pooling (no padding) of an (H, W) map, in numpy."""
    out = [-(-(n - k) // s) + 1 for n in x.shape]
    return np.array([[x[i * s:i * s + k, j * s:j * s + k].max() for j in range(out[1])]
                     for i in range(out[0])])


def test_same_pooling_matches_ceil_mode_at_even_sizes():
    # the notes' claim: 'same' 3x3/2 pooling == ceil mode at even sizes, one row/col more at odd
    pool = keras.layers.MaxPooling2D(3, strides=2, padding="same")
    rng = np.random.default_rng(3)
    for n in (8, 14):
        x = np.maximum(rng.standard_normal((n, n)), 0).astype("float32")  # post-ReLU
        got = np.asarray(pool(x[None, :, :, None]))[0, :, :, 0]
        np.testing.assert_array_equal(got, _ceil_mode_max_pool(x))
    x = rng.standard_normal((9, 9)).astype("float32")
    assert pool(x[None, :, :, None]).shape[1] == _ceil_mode_max_pool(x).shape[0] + 1


@pytest.mark.slow  # measured 5.4 s in the quick tier
def test_transform_input_maps_imagenet_normalised_input_to_half_centred_pixels():
    """torchvision's transform_input: x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5, per RGB channel,
    so that ImageNet-normalised pixels p end as (p - 0.5) / 0.5; 3D too."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for dims in (2, 3):
        model = googlenet(variant="bn", width=0.125, num_classes=2, transform_input=True, spatial_dims=dims)
        layer = model.get_layer("transform_input")
        assert model.layers.index(layer) == 1 and not layer.weights  # first, no weights to convert
        pixels = np.random.default_rng(dims).random((2,) + (8,) * dims + (3,))
        got = np.asarray(layer((pixels - mean) / std))
        np.testing.assert_allclose(got, (pixels - 0.5) / 0.5, atol=1e-5)
        keras.backend.clear_session()
    assert "transform_input" not in [layer.name for layer in googlenet(variant="bn", width=0.125).layers]
