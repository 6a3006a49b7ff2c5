"""Focused tests of zoo.models.resnet: parameter counts, layouts, output_stride, heads, errors."""
import numpy as np
import pytest

import zoo
from zoo.errors import InvalidArgumentError, ZooError
from zoo.models.resnet import resnet

# (depth, layout) -> (Keras total, trainable) at 224x224x3 and 1000 classes.
# trainable = torchvision num_params for the torchvision layout; totals for the keras
# layouts = keras.applications' count_params() (cross-checked in
# test_keras_applications_equivalence.py).
COUNTS = {
    (18, "torchvision"): (11_699_112, 11_689_512),
    (34, "torchvision"): (21_814_696, 21_797_672),
    (50, "torchvision"): (25_610_152, 25_557_032),
    (101, "torchvision"): (44_654_504, 44_549_160),
    (152, "torchvision"): (60_344_232, 60_192_808),
    (50, "keras"): (25_636_712, 25_583_592),
    (101, "keras"): (44_707_176, 44_601_832),
    (152, "keras"): (60_419_944, 60_268_520),
    (50, "keras_v2"): (25_613_800, 25_568_360),
    (101, "keras_v2"): (44_675_560, 44_577_896),
    (152, "keras_v2"): (60_380_648, 60_236_904),
}
ENTRIES = {"resnet18": (18, "torchvision"), "resnet34": (34, "torchvision"),
           "resnet50": (50, "keras"), "resnet101": (101, "keras"), "resnet152": (152, "keras"),
           "resnet50_tv": (50, "torchvision"), "resnet101_tv": (101, "torchvision"),
           "resnet152_tv": (152, "torchvision"), "resnet50v2": (50, "keras_v2"),
           "resnet101v2": (101, "keras_v2"), "resnet152v2": (152, "keras_v2")}


def trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def spatial(model, layer):
    return tuple(model.get_layer(layer).output.shape[1:-1])


def test_registry_counts_are_torchvision_and_keras_numbers():
    """The registry's counts (built and checked by test_registry.test_reference_param_count) are
    torchvision's num_params / keras.applications' count_params, and each entry has its layout."""
    for entry, (depth, layout) in ENTRIES.items():
        info = zoo.info(entry)
        assert (info["params"], info["trainable_params"]) == COUNTS[(depth, layout)], entry
        assert info["config"]["layout"] == layout and info["config"]["depth"] == depth


def _tv_modules(blocks, bottleneck):
    """torchvision ResNet state-dict module names that hold weights."""
    names = ["conv1", "bn1", "fc"]
    for i, n in enumerate(blocks, start=1):
        for j in range(n):
            for k in range(1, 4 if bottleneck else 3):
                names += [f"layer{i}.{j}.conv{k}", f"layer{i}.{j}.bn{k}"]
            if j == 0 and (i > 1 or bottleneck):
                names += [f"layer{i}.{j}.downsample.0", f"layer{i}.{j}.downsample.1"]
    return names


def _tv_to_zoo(module):
    """The mapping documented in zoo/models/resnet.py."""
    fixed = {"conv1": "stem_conv", "bn1": "stem_bn", "fc": "classifier"}
    if module in fixed:
        return fixed[module]
    layer, j, rest = module.split(".", 2)
    rest = {"downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}.get(rest, rest)
    return f"stage{layer[5:]}_block{int(j) + 1}_{rest}"


@pytest.mark.parametrize("depth,blocks", [(18, (2, 2, 2, 2)), (50, (3, 4, 6, 3))])
def test_torchvision_layout(depth, blocks):
    from zoo._keras import keras
    model = resnet(depth=depth, layout="torchvision", width=16, num_classes=7)
    L = keras.layers
    weighted = {l.name for l in model.layers if l.weights}
    assert weighted == {_tv_to_zoo(m) for m in _tv_modules(blocks, depth >= 50)}
    convs = [l for l in model.layers if isinstance(l, (L.Conv2D, L.Conv3D))]
    assert convs and not any(c.use_bias for c in convs)
    bns = [l for l in model.layers if isinstance(l, L.BatchNormalization)]
    assert all(b.epsilon == 1e-5 and b.momentum == 0.9 for b in bns)
    assert model.get_layer("stem_conv").kernel_size == (7, 7)
    assert model.get_layer("stem_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("stem_pool").pool_size == (3, 3)
    # stride on the 3x3 conv (v1.5 for bottlenecks), with symmetric explicit padding
    strided = "stage2_block1_conv2" if depth >= 50 else "stage2_block1_conv1"
    assert model.get_layer(strided).strides == (2, 2)
    assert model.get_layer(strided).padding == "valid"
    assert model.get_layer(strided.replace("conv", "pad")).padding == ((1, 1), (1, 1))
    assert model.get_layer("stage2_block1_downsample_conv").strides == (2, 2)
    if depth >= 50:
        assert model.get_layer("stage2_block1_conv1").strides == (1, 1)
    for i, n in enumerate(blocks, start=1):
        assert model.get_layer(f"stage{i}_out").input.shape[-1] == 16 * 2 ** (i - 1) * (
            4 if depth >= 50 else 1)
        assert f"stage{i}_block{n}_out" not in {l.name for l in model.layers}
    assert model.layers[-1].name == "classifier" and model.layers[-1].activation.__name__ == "linear"


def test_keras_layouts():
    from zoo._keras import keras
    L = keras.layers
    v1 = resnet(depth=50, layout="keras", width=16, num_classes=7)
    assert all(l.use_bias for l in v1.layers if isinstance(l, L.Conv2D))
    assert all(l.epsilon == 1.001e-5 for l in v1.layers if isinstance(l, L.BatchNormalization))
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)  # stride on the first 1x1
    assert v1.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert [l.name for l in v1.layers[1:6]] == ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu",
                                               "pool1_pad"]
    assert [l.name for l in v1.layers[-3:]] == ["conv5_block3_out", "avg_pool", "predictions"]
    keras.backend.clear_session()
    v2 = resnet(depth=50, layout="keras_v2", width=16, num_classes=7)
    names = {l.name for l in v2.layers}
    assert {"post_bn", "post_relu", "conv2_block3_0_pool", "conv4_block6_0_pool"} <= names
    assert "conv5_block3_0_pool" not in names and "conv1_bn" not in names
    assert v2.get_layer("conv2_block3_2_conv").strides == (2, 2)  # last block of the stage
    assert v2.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert v2.get_layer("conv5_block3_2_conv").strides == (1, 1)
    assert not v2.get_layer("conv2_block1_1_conv").use_bias
    assert v2.get_layer("conv2_block1_3_conv").use_bias and v2.get_layer("conv2_block1_0_conv").use_bias


SLOW = pytest.mark.slow  # the ResNet-50s: 5.3-7.0 s each in the quick tier (two workers on the 2-core machine)
LAYOUT_CASES = [(18, "torchvision"), pytest.param(50, "torchvision", marks=SLOW), pytest.param(50, "keras", marks=SLOW),
                pytest.param(50, "keras_v2", marks=SLOW)]


@pytest.mark.parametrize("depth,layout", LAYOUT_CASES)
def test_output_stride(depth, layout):
    """16/8 keep the last stage(s) at input/16 or input/8 without changing the parameters."""
    from zoo._keras import keras
    expected = {32: (16, 8, 4, 2), 16: (16, 8, 4, 4), 8: (16, 8, 8, 8)}  # at 64x64 input
    counts = {}
    for os_ in (32, 16, 8):
        model = resnet(depth=depth, layout=layout, width=16, num_classes=0, output_stride=os_,
                       input_shape=(64, 64, 3))
        names = zoo.contract(model).stage_outputs
        assert len(names) == 4
        assert [spatial(model, n)[0] for n in names] == list(expected[os_])
        assert spatial(model, names[-1]) == (64 // os_, 64 // os_)
        # headless: the final feature map, unpooled
        assert model.layers[-1].name == names[-1]
        assert model.output_shape == (None, 64 // os_, 64 // os_, 16 * 8 * (4 if depth >= 50 else 1))
        counts[os_] = (model.count_params(), trainable(model))
        if layout == "torchvision" and depth == 50 and os_ == 8:
            # replace_stride_with_dilation=[False, True, True]: the first block of a dilated
            # stage keeps the previous dilation
            dil = {n: model.get_layer(n).dilation_rate[0] for n in (
                "stage2_block1_conv2", "stage3_block1_conv2", "stage3_block2_conv2",
                "stage4_block1_conv2", "stage4_block3_conv2")}
            assert dil == {"stage2_block1_conv2": 1, "stage3_block1_conv2": 1,
                           "stage3_block2_conv2": 2, "stage4_block1_conv2": 2,
                           "stage4_block3_conv2": 4}
        keras.backend.clear_session()
    assert counts[16] == counts[32] == counts[8]


@pytest.mark.parametrize("depth,layout,expected", [
    (18, "torchvision", ("stage1_out", "stage2_out", "stage3_out", "stage4_out")),
    (101, "keras", ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out", "conv5_block3_out")),
    # 5.3 s in the quick tier (two workers on the 2-core machine)
    pytest.param(152, "keras_v2", ("conv2_block3_preact_relu", "conv3_block8_preact_relu", "conv4_block36_preact_relu",
                                   "post_relu"), marks=pytest.mark.slow)])
def test_stage_outputs_of_each_layout(depth, layout, expected):
    """The contract finds each layout's four stage outputs by name, with or without a registry entry."""
    from zoo._keras import keras
    model = resnet(depth=depth, layout=layout, width=4, num_classes=3, input_shape=(32, 32, 3))
    parts = zoo.contract(model)
    assert parts.stage_outputs == expected
    assert parts.first_conv == ("stem_conv" if layout == "torchvision" else "conv1_conv")
    assert parts.classifiers == (("classifier",) if layout == "torchvision" else ("predictions",))
    keras.backend.clear_session()


def test_3d_resnet18_single_channel():
    model = zoo.load("resnet18", num_classes=2, in_channels=1, spatial_dims=3,
                     input_shape=(64, 64, 64, 1))
    assert model.input_shape == (None, 64, 64, 64, 1)
    assert model.get_layer("stem_conv").kernel_size == (7, 7, 7)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 64, 1)).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.shape == (2, 2) and np.all(np.isfinite(out))
    assert spatial(model, "stage4_out") == (2, 2, 2)


def test_dynamic_input_size_and_head():
    from zoo._keras import keras
    model = resnet(depth=18, width=8, num_classes=0)
    assert model.input_shape == (None, None, None, 3)

    def size(n):  # PyTorch's formula: stem conv, max pool, then three stride-2 3x3 convs
        n = (n + 6 - 7) // 2 + 1
        n = (n + 2 - 3) // 2 + 1
        for _ in range(3):
            n = (n + 2 - 3) // 2 + 1
        return n

    for h, w in ((64, 64), (33, 47), (224, 200)):
        out = model(np.zeros((1, h, w, 3), "float32"), training=False)
        assert tuple(out.shape) == (1, size(h), size(w), 64)
    keras.backend.clear_session()
    soft = resnet(depth=18, width=8, num_classes=4, classifier_activation="softmax", dropout=0.3)
    plain = resnet(depth=18, width=8, num_classes=4, name="plain")
    assert soft.get_layer("head_dropout").rate == 0.3
    assert soft.count_params() == plain.count_params()
    probs = np.asarray(soft(np.ones((2, 40, 40, 3), "float32"), training=False))
    np.testing.assert_allclose(probs.sum(axis=1), [1.0, 1.0], rtol=1e-5)
    assert "head_dropout" not in {l.name for l in plain.layers}


def test_norm_options():
    from zoo._keras import keras
    L = keras.layers
    none = resnet(depth=18, width=32, num_classes=3, norm=None)
    assert not [l for l in none.layers if isinstance(l, L.BatchNormalization)]
    assert all(l.use_bias for l in none.layers if isinstance(l, L.Conv2D))
    group = resnet(depth=18, width=32, num_classes=3, norm="group", name="g")
    assert isinstance(group.get_layer("stem_bn"), L.GroupNormalization)


@pytest.mark.parametrize("kwargs,words", [
    ({"depth": 20}, ["depth=20", "18, 34, 50, 101, 152, 200"]),
    ({"depth": "50"}, ["depth='50'"]),
    ({"depth": 18, "block": "bottleneck"}, ["block='bottleneck'", "'basic'"]),
    ({"depth": 50, "block": "wide"}, ["block='wide'", "'bottleneck'"]),
    ({"depth": 50, "output_stride": 4}, ["output_stride=4", "8, 16, 32"]),
    ({"depth": 50, "output_stride": 12}, ["output_stride=12"]),
    ({"depth": 50, "layout": "caffe"}, ["layout='caffe'", "'torchvision'"]),
    ({"depth": 34, "layout": "keras"}, ["layout='keras'", "layout='torchvision'"]),
    ({"depth": 50, "dropout": 1.0}, ["dropout=1.0", "[0, 1)"]),
    ({"depth": 50, "num_classes": -1}, ["num_classes=-1"]),
    ({"depth": 50, "width": 0}, ["width=0"]),
    ({"depth": 50, "norm": "group", "width": 16}, ["width=16", "width=32"]),
    ({"depth": 50, "spatial_dims": 4}, ["spatial_dims=4"]),
    ({"depth": 50, "classifier_activation": "relu"}, ["classifier_activation='relu'"]),
])
def test_errors(kwargs, words):
    with pytest.raises(InvalidArgumentError) as err:
        resnet(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_errors_through_load():
    with pytest.raises(ZooError, match="output_stride=4"):
        zoo.load("resnet50", output_stride=4)
    with pytest.raises(ZooError, match="block='basic'"):
        zoo.load("resnet101_tv", block="basic")
    with pytest.raises(ZooError, match="depth=19"):
        zoo.load("resnet18", depth=19)
