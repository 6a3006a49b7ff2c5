"""Focused tests of zoo.models.deeplab: counts, output sizes, output stride, heads, errors."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, ZooError
from zoo.models.deeplab import deeplab

# entry -> (Keras total, trainable) at 21 classes (input size does not matter: fully convolutional)
COUNTS = {
    "deeplabv3_resnet50": (42_061_290, 42_004_074),   # trainable = torchvision num_params
    "deeplabv3_resnet101": (61_105_642, 60_996_202),  # trainable = torchvision num_params
    "deeplabv3": (58_149_077, 58_040_661),
    "deeplabv3plus": (59_453_845, 59_344_309),
    "deeplabv2": (44_153_876, 44_048_532),
}
# small and fast: basic-block ResNet-18 backbone at width 8, 16 ASPP filters
SMALL = dict(backbone_depth=18, width=8, filters=16, low_level_filters=8, num_classes=3)


def trainable(model, layers=None):
    ws = model.trainable_weights if layers is None else [
        w for n in layers for w in model.get_layer(n).trainable_weights]
    return int(sum(np.prod(w.shape) for w in ws))


def spatial(model, layer):
    return tuple(model.get_layer(layer).output.shape[1:-1])


def inbound(model, layer):
    layers = model.get_layer(layer).inbound_nodes[0].inbound_layers
    return [lyr.name for lyr in (layers if isinstance(layers, list) else [layers])]


def run(model, shape, batch=1):
    x = np.random.default_rng(0).standard_normal((batch,) + tuple(shape)).astype("float32")
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def test_registry_counts():
    for name, (total, train) in COUNTS.items():
        info = zoo.info(name)
        assert (info["params"], info["trainable_params"]) == (total, train), name
        assert info["spatial_dims"] == [2, 3]


@pytest.mark.slow
def test_deeplabv3_resnet50_matches_torchvision():
    model = zoo.load("deeplabv3_resnet50")  # dynamic input size, 21 classes, aux head
    assert trainable(model) == 42_004_074
    assert model.count_params() == 42_061_290
    assert model.output_names == ["out", "aux"]
    assert model.output_shape == [(None, None, None, 21), (None, None, None, 21)]
    # the total splits into torchvision's modules
    aspp = [n for n in (lyr.name for lyr in model.layers) if n.startswith("aspp_")]
    assert trainable(model, aspp) == 15_535_104                  # classifier.0 (ASPP)
    assert trainable(model, ["head_conv", "head_bn"]) == 590_336  # classifier.1/2
    assert trainable(model, ["classifier"]) == 5_397              # classifier.4
    assert trainable(model, ["aux_conv", "aux_bn", "aux_classifier"]) == 2_359_808 + 5_397
    backbone = [lyr.name for lyr in model.layers if lyr.name.startswith(("stem_", "stage"))]
    assert trainable(model, backbone) == 23_508_032              # resnet50 without fc
    # torchvision's configuration: output stride 8, rates 12/24/36, dropout 0.5 / 0.1
    assert [model.get_layer(f"aspp_conv{i}_conv").dilation_rate[0] for i in range(4)] == [1, 12, 24, 36]
    assert model.get_layer("aspp_dropout").rate == 0.5 and model.get_layer("aux_dropout").rate == 0.1
    assert inbound(model, "aux_conv") == ["stage3_out"]
    assert model.get_layer("stage3_out").output.shape[-1] == 1024
    # the contract finds both 1x1 convs as class heads (re-initialised when num_classes differs)
    parts = zoo.contract(model)
    assert parts.classifiers == ("classifier",) and "aux_classifier" in parts.aux
    assert parts.stage_outputs == ("stage1_out", "stage2_out", "stage3_out", "stage4_out")

    keras.backend.clear_session()
    no_aux = zoo.load("deeplabv3_resnet50", aux_head=False)
    assert trainable(no_aux) == 39_638_869
    assert no_aux.output_names == ["out"]


@pytest.mark.parametrize("variant,extra", [("v2", {"output_stride": 8}), ("v3", {}), ("v3plus", {}),
                                           ("v3", {"head_conv": True, "aux_head": True, "output_stride": 8})])
def test_output_size_equals_odd_input_size_2d(variant, extra):
    model = deeplab(variant=variant, **SMALL, **extra)  # dynamic size
    outs = run(model, (65, 97, 3), batch=2)
    for out in outs:
        assert out.shape == (2, 65, 97, 3)
        assert np.all(np.isfinite(out))
    static = deeplab(variant=variant, input_shape=(65, 97, 3), **SMALL, **extra)
    shapes = static.output_shape if isinstance(static.output_shape, list) else [static.output_shape]
    assert all(s == (None, 65, 97, 3) for s in shapes)


@pytest.mark.parametrize("variant,stride", [("v3plus", 16), ("v2", 8)])
def test_output_size_equals_input_size_3d(variant, stride):
    model = deeplab(variant=variant, spatial_dims=3, output_stride=stride, aux_head=True, **SMALL)
    outs = run(model, (17, 21, 19, 3))
    assert [o.shape for o in outs] == [(1, 17, 21, 19, 3)] * 2
    assert spatial(model, "stage4_out") == (None, None, None)  # dynamic by default


@pytest.mark.parametrize("stride,rates", [(16, [6, 12, 18]), (8, [12, 24, 36])])
def test_output_stride_sets_feature_size_and_rates(stride, rates):
    model = deeplab(variant="v3", output_stride=stride, input_shape=(64, 96, 3), **SMALL)
    assert spatial(model, "aspp_concat") == (64 // stride, 96 // stride)
    assert spatial(model, "stage1_out") == (16, 24)
    assert [model.get_layer(f"aspp_conv{i}_conv").dilation_rate for i in range(1, 4)] == \
        [(r, r) for r in rates]
    assert model.get_layer("aspp_conv0_conv").kernel_size == (1, 1)
    # image pooling branch: 1x1 map resized to the feature map; concat of 5 branches
    assert spatial(model, "aspp_pool") == (1, 1)
    assert spatial(model, "aspp_pool_resize") == (64 // stride, 96 // stride)
    assert model.get_layer("aspp_concat").output.shape[-1] == 5 * 16
    assert model.get_layer("aspp_project_conv").filters == 16
    # dilation replaces the stride in the backbone (last block conv of stage 4)
    assert model.get_layer("stage4_block2_conv2").dilation_rate == ((2, 2) if stride == 16 else (4, 4))
    odd = deeplab(variant="v3", output_stride=stride, input_shape=(65, 97, 3), **SMALL)
    assert spatial(odd, "aspp_concat") == (-(-65 // stride), -(-97 // stride))  # ceil


def test_custom_atrous_rates():
    model = deeplab(variant="v3", atrous_rates=[3, 5], input_shape=(32, 32, 3), **SMALL)
    assert [model.get_layer(f"aspp_conv{i}_conv").dilation_rate for i in (1, 2)] == [(3, 3), (5, 5)]
    assert model.get_layer("aspp_concat").output.shape[-1] == 4 * 16
    assert "aspp_conv3_conv" not in [lyr.name for lyr in model.layers]


def test_v3plus_decoder_uses_stride4_features():
    model = deeplab(variant="v3plus", input_shape=(64, 96, 3), **SMALL)
    assert inbound(model, "decoder_low_level_conv") == ["stage1_out"]
    assert model.get_layer("decoder_low_level_conv").filters == 8
    concat_in = [tuple(t.shape) for t in model.get_layer("decoder_concat").input]
    assert concat_in == [(None, 16, 24, 16), (None, 16, 24, 8)]  # upsampled ASPP, low level
    assert spatial(model, "aspp_project_relu") == (4, 6)                # stride 16
    assert inbound(model, "decoder_upsample") == ["aspp_dropout", "decoder_low_level_relu"]
    assert [model.get_layer(f"decoder_conv{i}_conv").kernel_size for i in (1, 2)] == [(3, 3)] * 2
    assert spatial(model, "classifier") == (16, 24)
    assert model.output_shape == (None, 64, 96, 3)


def test_v3plus_full_width_decoder_shapes():
    model = deeplab(variant="v3plus", backbone_depth=50, input_shape=(64, 64, 3), num_classes=21)
    concat_in = [tuple(t.shape) for t in model.get_layer("decoder_concat").input]
    assert concat_in == [(None, 16, 16, 256), (None, 16, 16, 48)]
    assert model.get_layer("stage1_out").output.shape[-1] == 256


def test_deeplabv2_sums_four_branches():
    model = deeplab(variant="v2", output_stride=8, input_shape=(64, 64, 3), **SMALL)
    assert isinstance(model.get_layer("classifier"), keras.layers.Add)
    branches = inbound(model, "classifier")
    assert branches == [f"aspp_conv{i}" for i in range(4)]
    assert [model.get_layer(b).dilation_rate for b in branches] == [(r, r) for r in (6, 12, 18, 24)]
    assert all(model.get_layer(b).kernel_size == (3, 3) and model.get_layer(b).filters == 3
               and model.get_layer(b).use_bias for b in branches)
    assert all(inbound(model, b) == ["stage4_out"] for b in branches)
    assert spatial(model, "stage4_out") == (8, 8)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in branches + ["classifier"]])
    *parts, total = run(probe, (64, 64, 3))
    np.testing.assert_allclose(sum(parts), total, rtol=1e-5, atol=1e-5)
    assert model.output_shape == (None, 64, 64, 3)


def test_softmax_is_applied_after_the_resize():
    logits = deeplab(variant="v3", aux_head=True, **SMALL)
    probs = deeplab(variant="v3", aux_head=True, classifier_activation="softmax", **SMALL)
    probs.set_weights(logits.get_weights())
    assert probs.output_names == ["out", "aux"]
    for lo, pr in zip(run(logits, (33, 40, 3)), run(probs, (33, 40, 3))):
        e = np.exp(lo - lo.max(-1, keepdims=True))
        np.testing.assert_allclose(pr, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_headless_returns_classifier_features():
    v3 = deeplab(variant="v3", input_shape=(64, 64, 3), **{**SMALL, "num_classes": 0})
    assert v3.output_shape == (None, 4, 4, 16)
    plus = deeplab(variant="v3plus", input_shape=(64, 64, 3), **{**SMALL, "num_classes": 0})
    assert plus.output_shape == (None, 16, 16, 16)
    assert "classifier" not in [lyr.name for lyr in plus.layers]


def test_layer_names_and_keras_layout_backbone():
    model = deeplab(variant="v3plus", aux_head=True, **SMALL)
    names = [lyr.name for lyr in model.layers]
    assert names[1] == "stem_pad" and "stem_conv" in names
    assert all(f"stage{i}_out" in names for i in range(1, 5))
    assert model.output_names == ["out", "aux"]
    assert {"classifier", "aux_classifier", "decoder_concat", "aspp_concat"} <= set(names)
    keras_bb = deeplab(variant="v3plus", backbone_depth=50, backbone_layout="keras", width=8,
                       filters=16, low_level_filters=8, num_classes=3, input_shape=(32, 32, 3))
    assert inbound(keras_bb, "decoder_low_level_conv") == ["conv2_block3_out"]
    assert "conv1_conv" in [lyr.name for lyr in keras_bb.layers]
    assert keras_bb.output_shape == (None, 32, 32, 3)


@pytest.mark.parametrize("kwargs,words", [
    (dict(output_stride=32), ["output_stride=32", "8, 16"]),
    (dict(output_stride=4), ["output_stride=4"]),
    (dict(variant="v2", output_stride=16), ["output_stride=16", "v2", "output_stride=8"]),
    (dict(input_shape=(12, 64, 3)), ["12", "minimum is 16", "output_stride=8"]),
    (dict(output_stride=8, input_shape=(64, 7, 3)), ["7", "minimum is 8"]),
    (dict(spatial_dims=3, input_shape=(32, 32, 15, 3)), ["15", "minimum is 16"]),
    (dict(variant="v4"), ["variant", "v3"]),
    (dict(backbone_depth=77), ["backbone_depth=77", "101"]),
    (dict(backbone_layout="keras", backbone_depth=18), ["backbone_layout", "bottleneck"]),
    (dict(atrous_rates=[6, 0]), ["atrous_rates"]),
    (dict(atrous_rates=6), ["atrous_rates"]),
    (dict(variant="v2", output_stride=8, num_classes=0), ["num_classes", "v2"]),
    (dict(variant="v2", output_stride=8, dropout=0.5), ["dropout", "v2"]),
    (dict(variant="v3plus", head_conv=True), ["head_conv", "v3"]),
    (dict(aux_head=True, num_classes=0), ["aux_head", "num_classes=0"]),
    (dict(dropout=1.0), ["dropout"]),
    (dict(norm="group"), ["norm='group'", "multiple of 32"]),
    (dict(classifier_activation="relu"), ["classifier_activation"]),
])
def test_errors(kwargs, words):
    with pytest.raises(InvalidArgumentError) as info:
        deeplab(**{**SMALL, **kwargs})
    assert isinstance(info.value, ZooError)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_smallest_static_size_works():
    model = deeplab(variant="v3plus", input_shape=(16, 16, 3), **SMALL)
    assert spatial(model, "aspp_concat") == (1, 1)
    assert run(model, (16, 16, 3))[0].shape == (1, 16, 16, 3)
