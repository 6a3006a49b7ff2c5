"""AlexNet and VGG: exact parameter counts, feature-map sizes, layer layout, errors, and
numerical equivalence with keras.applications VGG16/VGG19 (weights copied by layer name)."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.hub.registry import get_registry
from zoo.models.alexnet import alexnet, min_input_size
from zoo.models.vgg import vgg


def trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def spatial(layer):
    return tuple(layer.output_shape[1:-1])


# ----------------------------------------------------------------------------- AlexNet
def test_alexnet_torchvision_counts_and_sizes():
    m = alexnet(input_shape=(224, 224, 3))
    assert m.count_params() == 61_100_840
    assert trainable(m) == 61_100_840
    # torchvision's feature maps: 55 -> 27 -> 13 -> 6
    assert spatial(m.get_layer("stem_conv")) == (55, 55)
    assert spatial(m.get_layer("stage1_out")) == (55, 55)
    assert spatial(m.get_layer("stage2_conv1")) == (27, 27)
    assert spatial(m.get_layer("stage2_out")) == (27, 27)
    assert spatial(m.get_layer("stage3_out")) == (13, 13)
    assert spatial(m.get_layer("stage4_out")) == (6, 6)
    assert m.get_layer("stem_pad").output_shape[1:3] == (228, 228)  # explicit pad 2, valid conv
    assert m.get_layer("stem_conv").padding == "valid"
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(l.filters, l.kernel_size, l.strides) for l in convs] == [
        (64, (11, 11), (4, 4)), (192, (5, 5), (1, 1)), (384, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)), (256, (3, 3), (1, 1))]
    assert not any(type(l).__name__ == "LocalResponseNormalization" for l in m.layers)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [4096, 4096, 1000]
    assert m.layers[-1].name == "classifier" and m.output_shape == (None, 1000)
    assert sum(isinstance(l, keras.layers.Dropout) for l in m.layers) == 2


@pytest.mark.parametrize("size", [224, 256, 63])
def test_alexnet_adaptive_pooling_gives_6x6(size):
    m = alexnet(num_classes=10, fc_units=16)  # dynamic spatial size by default
    assert m.input_shape == (None, None, None, 3)
    pooled = keras.Model(m.input, m.get_layer("head_avgpool").output)
    x = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype("float32")
    assert pooled(x).shape == (1, 6, 6, 256)
    assert m(x).shape == (1, 10)


def test_alexnet_adaptive_pooling_values_match_torch_bins():
    # 13x13 -> 6x6: PyTorch bin i covers [floor(13i/6), ceil(13(i+1)/6))
    m = alexnet(input_shape=(256, 256, 3), num_classes=4, fc_units=8)
    feats = keras.Model(m.input, [m.get_layer("stage4_out").output, m.get_layer("head_avgpool").output])
    x = np.random.default_rng(1).standard_normal((1, 256, 256, 3)).astype("float32")
    f, p = (np.asarray(t) for t in feats(x))
    n = f.shape[1]
    assert n == 7
    for i in range(6):
        a, b = (i * n) // 6, -((-(i + 1) * n) // 6)
        for j in range(6):
            c, d = (j * n) // 6, -((-(j + 1) * n) // 6)
            np.testing.assert_allclose(p[0, i, j], f[0, a:b, c:d].mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)


def test_alexnet_2012_paper_counts_groups_and_lrn():
    m = alexnet(variant="paper")
    assert m.input_shape == (None, 227, 227, 3)
    assert m.count_params() == 60_965_224
    assert trainable(m) == 60_965_224
    convs = [l for l in m.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(l.name, l.filters, l.kernel_size[0], l.groups) for l in convs] == [
        ("stem_conv", 96, 11, 1), ("stage2_conv1", 256, 5, 2), ("stage3_conv1", 384, 3, 1),
        ("stage3_conv2", 384, 3, 2), ("stage3_conv3", 256, 3, 2)]
    assert m.get_layer("stage2_conv1").kernel.shape == (5, 5, 48, 256)  # each tower sees 48 maps
    lrns = [l for l in m.layers if type(l).__name__ == "LocalResponseNormalization"]
    assert [l.name for l in lrns] == ["stage1_out", "stage2_out"]
    for l in lrns:  # paper alpha 1e-4 un-divided == layer alpha 5e-4 (divided by size 5)
        assert (l.size, l.alpha, l.beta, l.bias) == (5, 5e-4, 0.75, 2.0)
        assert l.alpha / l.size == pytest.approx(1e-4)
    assert spatial(m.get_layer("stem_conv")) == (55, 55)
    assert spatial(m.get_layer("stage2_out")) == (27, 27)
    assert spatial(m.get_layer("stage3_out")) == (13, 13)
    assert spatial(m.get_layer("stage4_out")) == (6, 6)
    assert m.get_layer("head_flatten").output_shape == (None, 9216)
    assert [l.units for l in m.layers if isinstance(l, keras.layers.Dense)] == [4096, 4096, 1000]
    assert [l.rate for l in m.layers if isinstance(l, keras.layers.Dropout)] == [0.5, 0.5]


def test_alexnet_2012_lrn_matches_paper_formula():
    m = alexnet(variant="paper", input_shape=(67, 67, 3), num_classes=2, fc_units=4)
    conv1 = keras.Model(m.input, [m.get_layer("stem_relu").output, m.get_layer("stage1_out").output])
    x = np.random.default_rng(2).standard_normal((1, 67, 67, 3)).astype("float32")
    a, b = (np.asarray(t, dtype="float64") for t in conv1(x))
    n_ch = a.shape[-1]
    expected = np.empty_like(a)
    for c in range(n_ch):  # b = a / (k + alpha * sum_{|j-c|<=2} a_j^2)^beta, paper constants
        lo, hi = max(0, c - 2), min(n_ch, c + 3)
        expected[..., c] = a[..., c] / (2.0 + 1e-4 * (a[..., lo:hi] ** 2).sum(-1)) ** 0.75
    np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-6)


def test_alexnet_3d_both_variants():
    # seeded: with fc_units=8, some random initialisations leave every ReLU of the head dead
    # (all-zero gradients) and the gradient check below would fail for no fault of the layers
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(3).standard_normal((1, 67, 67, 67, 1)).astype("float32")
    for variant in ("torchvision", "paper"):
        m = alexnet(variant=variant, spatial_dims=3, in_channels=1, input_shape=(67, 67, 67, 1),
                    num_classes=3, fc_units=8)
        assert m(x).shape == (1, 3)
        assert isinstance(m.get_layer("stage3_conv2"), keras.layers.Conv3D)
        assert m.get_layer("stage3_conv2").groups == (2 if variant == "paper" else 1)
    assert m.get_layer("stage4_out").output_shape == (None, 1, 1, 1, 256)
    # grouped Conv3D trains on CPU: gradients reach the grouped kernels. conv1/conv2 run outside
    # the tape (a tape watches every trainable variable, and without oneDNN the backprop of the
    # 11^3 stem takes minutes on CPU, see the registry notes); the net is a chain of layers.
    names = [l.name for l in m.layers]
    h = keras.Model(m.input, m.get_layer("stage3_pool").output)(x)
    grouped = [m.get_layer(n).kernel for n in ("stage3_conv2", "stage3_conv3")]
    with tf.GradientTape() as tape:
        for layer in m.layers[names.index("stage3_pool") + 1:]:
            h = layer(h, training=False)
        loss = tf.reduce_sum(h * tf.constant([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(h, m(x, training=False), rtol=1e-5, atol=1e-6)
    grads = tape.gradient(loss, grouped)
    assert all(g is not None and np.any(np.asarray(g) != 0) for g in grads)


def test_alexnet_headless_and_registry_entries():
    m = alexnet(num_classes=0)
    assert m.layers[-1].name == "stage4_out"
    assert m.output_shape == (None, None, None, 256)
    reg = get_registry()
    assert reg.get("alexnet").params == 61_100_840
    assert reg.get("alexnet_2012").params == 60_965_224
    assert (min_input_size("torchvision"), min_input_size("paper")) == (63, 67)
    assert reg.get("alexnet").input["min_size"] == 63 and reg.get("alexnet_2012").input["min_size"] == 67
    assert zoo.load("alexnet_2012", num_classes=5, fc_units=8).output_shape == (None, 5)


def test_alexnet_errors_name_the_argument():
    with pytest.raises(zoo.InvalidArgumentError, match=r"input_shape.*62.*at least 63"):
        alexnet(input_shape=(62, 62, 3))
    with pytest.raises(zoo.InvalidArgumentError, match=r"input_shape.*66.*at least 67"):
        alexnet(variant="paper", input_shape=(66, 66, 3))
    with pytest.raises(zoo.InvalidArgumentError, match=r"variant='paper'.*fixed input size"):
        alexnet(variant="paper", input_shape=(None, None, 3))
    with pytest.raises(zoo.InvalidArgumentError, match=r"variant='caffe'.*torchvision.*paper"):
        alexnet(variant="caffe")
    with pytest.raises(zoo.InvalidArgumentError, match=r"dropout=1.5"):
        alexnet(dropout=1.5)
    with pytest.raises(zoo.InvalidArgumentError, match=r"spatial_dims=4"):
        alexnet(spatial_dims=4)
    with pytest.raises(zoo.InvalidArgumentError, match=r"classifier_activation='relu'"):
        alexnet(classifier_activation="relu")


# ----------------------------------------------------------------------------- VGG
VGG_PARAMS = {11: 132_863_336, 13: 133_047_848, 16: 138_357_544, 19: 143_667_240}
VGG_BN_TRAINABLE = {11: 132_868_840, 13: 133_053_736, 16: 138_365_992, 19: 143_678_248}
VGG_BN_TOTAL = {11: 132_874_344, 13: 133_059_624, 16: 138_374_440, 19: 143_689_256}
CONVS = {11: 8, 13: 10, 16: 13, 19: 16}


def test_vgg_registry_counts_are_torchvision_numbers():
    """The registry's counts (which test_registry.test_reference_param_count builds and checks)
    are torchvision's num_params (= keras.applications' count for VGG16/19); no build here."""
    reg = get_registry()
    for depth in (11, 13, 16, 19):
        assert reg.get(f"vgg{depth}").params == reg.get(f"vgg{depth}").trainable_params == VGG_PARAMS[depth]
        assert reg.get(f"vgg{depth}_bn").trainable_params == VGG_BN_TRAINABLE[depth]
        assert reg.get(f"vgg{depth}_bn").params == VGG_BN_TOTAL[depth]  # + BN moving mean/variance


def test_vgg_structure_of_each_depth():
    """Conv count per configuration, 224 input by default, 7x7 map at block5_pool, the flatten
    size; narrow (width 8) since none of these depends on the width but the channel count."""
    for depth in (11, 13, 16, 19):
        for batch_norm in (False, True):
            m = vgg(depth=depth, batch_norm=batch_norm, width=8, fc_units=8)
            assert m.input_shape == (None, 224, 224, 3)
            assert sum(isinstance(l, keras.layers.Conv2D) for l in m.layers) == CONVS[depth]
            assert sum(isinstance(l, keras.layers.BatchNormalization) for l in m.layers) == \
                (CONVS[depth] if batch_norm else 0)
            assert m.get_layer("block5_pool").output_shape == (None, 7, 7, 64)  # 8 * 8 filters
            assert m.get_layer("flatten").output_shape == (None, 7 * 7 * 64)
            keras.backend.clear_session()


def test_vgg_layer_names_and_order():
    m = vgg(depth=19, dropout=0.5, width=8, fc_units=8)  # names do not depend on the widths
    names = [l.name for l in m.layers[1:]]
    blocks = []
    for b, n in enumerate((2, 2, 4, 4, 4), start=1):
        blocks += [f"block{b}_conv{i}" for i in range(1, n + 1)] + [f"block{b}_pool"]
    assert names == blocks + ["flatten", "fc1", "fc1_dropout", "fc2", "fc2_dropout", "predictions"]
    assert m.get_layer("block1_conv1").activation.__name__ == "relu"
    assert m.get_layer("block1_conv1").use_bias
    assert [m.get_layer(f"fc{j}_dropout").rate for j in (1, 2)] == [0.5, 0.5]
    assert m.get_layer("predictions").activation.__name__ == "linear"  # logits by default
    keras.backend.clear_session()
    bn = vgg(depth=11, batch_norm=True, num_classes=0, input_shape=(32, 32, 3))
    assert [l.name for l in bn.layers[1:5]] == ["block1_conv1", "block1_conv1_bn", "block1_conv1_relu",
                                                "block1_pool"]
    assert bn.get_layer("block1_conv1").use_bias and bn.get_layer("block1_conv1").activation.__name__ == "linear"
    parts = zoo.contract(bn)  # built outside zoo.load: the keras_vgg_bn spec is found by its names
    assert parts.first_conv == "block1_conv1" and parts.classifiers == ()  # headless
    assert parts.stage_outputs == tuple(f"block{b}_conv{n}_relu" for b, n in enumerate((1, 1, 2, 2, 2), 1))


def test_vgg_headless_dynamic_and_3d():
    m = vgg(depth=11, num_classes=0, width=8)
    assert m.input_shape == (None, None, None, 3)
    assert m.layers[-1].name == "block5_pool"
    x = np.zeros((1, 64, 96, 3), "float32")
    assert m(x).shape == (1, 2, 3, 64)
    keras.backend.clear_session()
    m3 = vgg(depth=13, spatial_dims=3, in_channels=1, input_shape=(32, 32, 64, 1), num_classes=2,
             width=4, fc_units=8)
    assert isinstance(m3.get_layer("block1_conv1"), keras.layers.Conv3D)
    assert m3.get_layer("block5_pool").output_shape == (None, 1, 1, 2, 32)
    assert m3(np.zeros((1, 32, 32, 64, 1), "float32")).shape == (1, 2)


def test_vgg_errors_name_the_argument():
    with pytest.raises(zoo.InvalidArgumentError, match=r"depth=15.*11, 13, 16, 19"):
        vgg(depth=15)
    with pytest.raises(zoo.InvalidArgumentError, match=r"input_shape.*spatial size 100.*multiple of 32.*96 or 128"):
        vgg(depth=16, input_shape=(100, 100, 3))
    with pytest.raises(zoo.InvalidArgumentError, match=r"spatial size 16.*at least 32.*Use 32"):
        vgg(depth=11, input_shape=(16, 16, 3), num_classes=0)
    with pytest.raises(
        zoo.InvalidArgumentError, match=r"fixed input size.*input_shape=\(None, None, 3\).*num_classes=0"
    ):
        vgg(depth=11, input_shape=(None, None, 3))
    with pytest.raises(zoo.InvalidArgumentError, match=r"width=0"):
        vgg(depth=11, width=0)
    with pytest.raises(zoo.InvalidArgumentError, match=r"batch_norm='yes'"):
        vgg(depth=11, batch_norm="yes")
    with pytest.raises(zoo.UnknownArgumentError, match=r"depht"):
        zoo.load("vgg11", depht=11)


def _assert_same_weighted_layers(ref, model):
    ref_names = [l.name for l in ref.layers if l.weights]
    assert ref_names == [l.name for l in model.layers if l.weights]
    for name in ref_names:
        assert [w.shape for w in ref.get_layer(name).weights] == \
               [w.shape for w in model.get_layer(name).weights], name


# 4 x 140M-parameter models
@pytest.mark.slow  # 2 cases, up to 13.6 s in the quick tier
@pytest.mark.parametrize("depth", [16, 19])
def test_vgg_matches_keras_applications(depth):
    """Official-layout keras.applications model -> zoo model, weights copied by layer name."""
    ref = getattr(keras.applications, f"VGG{depth}")(weights=None)
    model = vgg(depth=depth, classifier_activation="softmax")
    assert ref.count_params() == model.count_params() == VGG_PARAMS[depth]
    _assert_same_weighted_layers(ref, model)
    for layer in ref.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(depth).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    feats = [keras.Model(m.input, m.get_layer("fc2").output) for m in (ref, model)]
    fa, fb = (np.asarray(f(x, training=False)) for f in feats)
    assert np.abs(fa).max() > 0
    assert np.abs(fa - fb).max() <= 1e-5 * max(1.0, np.abs(fa).max())
    a, b = np.asarray(ref(x, training=False)), np.asarray(model(x, training=False))
    assert a.shape == b.shape == (1, 1000)
    assert np.abs(a - b).max() <= 1e-5


@pytest.mark.parametrize("depth", [16, 19])
def test_vgg_loads_keras_applications_notop_h5_by_name(depth, tmp_path):
    """keras.applications' include_top=False weight file layout loads into a headless zoo model."""
    ref = getattr(keras.applications, f"VGG{depth}")(weights=None, include_top=False,
                                                     input_shape=(64, 64, 3))
    path = tmp_path / "notop.h5"
    ref.save_weights(path)
    model = vgg(depth=depth, num_classes=0, input_shape=(64, 64, 3))
    _assert_same_weighted_layers(ref, model)
    model.load_weights(path, by_name=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    a, b = np.asarray(ref(x)), np.asarray(model(x))
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
