"""FC-DenseNet (Tiramisu), Jegou et al. 2017: counts, widths, wiring, 3D, errors."""
import numpy as np
import pytest

from zoo._keras import keras
from zoo.errors import InvalidArgumentError, ZooError
from zoo.models.densenet import fcdensenet

L = keras.layers
FC103_BLOCKS = [4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4]
TINY = dict(growth_rate=4, layers_per_block=2)


def inbound(model, layer_name):
    """Names of the layers feeding ``layer_name``."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    layers = node.inbound_layers
    return [l.name for l in (layers if isinstance(layers, list) else [layers])]


@pytest.fixture(scope="module")
def fc103():
    keras.backend.clear_session()
    return fcdensenet(growth_rate=16, layers_per_block=FC103_BLOCKS,
                      input_shape=(224, 224, 3), num_classes=11)


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_param_count_103(fc103):
    assert fc103.count_params() == 9_425_163     # paper: 9.4M
    assert trainable_count(fc103) == 9_322_091


def test_fc103_feature_map_counts(fc103):
    # paper Table 2 / Fig. 1: 48 -> 112 -> 192 -> 304 -> 464 -> 656 -> 896 on the way down
    assert fc103.get_layer("stem_conv").output.shape[-1] == 48
    assert [fc103.get_layer(f"stage{i}_out").output.shape[-1] for i in range(1, 6)] == \
        [112, 192, 304, 464, 656]
    assert fc103.get_layer("bottleneck_new").output.shape[-1] == 15 * 16      # 240 new maps
    assert fc103.get_layer("down5_td_pool").output.shape[-1] + 240 == 896
    # up path: TU (only new maps) + skip, then the block's new maps only
    assert [fc103.get_layer(f"up{i}_tu_conv").output.shape[-1] for i in range(1, 6)] == \
        [240, 192, 160, 112, 80]
    assert [fc103.get_layer(f"up{i}_tu_concat").output.shape[-1] for i in range(1, 6)] == \
        [896, 656, 464, 304, 192]
    assert [fc103.get_layer(f"up{i}_new").output.shape[-1] for i in range(1, 5)] == \
        [192, 160, 112, 80]
    # the last block keeps its input: 192 + 4 * 16 = 256 maps reach the classifier
    assert fc103.get_layer("up5_out").output.shape[-1] == 256
    assert fc103.get_layer("classifier").input.shape[-1] == 256
    assert fc103.output.shape == (None, 224, 224, 11)
    # spatial sizes: 224 -> 112 -> ... -> 7 at the bottleneck
    assert [fc103.get_layer(f"down{i}_td_pool").output.shape[1] for i in range(1, 6)] == \
        [112, 56, 28, 14, 7]


def test_transition_up_sees_only_new_maps(fc103):
    for i, src in enumerate(["bottleneck_new", "up1_new", "up2_new", "up3_new", "up4_new"], 1):
        assert inbound(fc103, f"up{i}_tu_conv") == [src]
        kernel = fc103.get_layer(f"up{i}_tu_conv").kernel
        new = fc103.get_layer(src).output.shape[-1]
        assert tuple(kernel.shape) == (3, 3, new, new)
        assert fc103.get_layer(f"up{i}_tu_conv").strides == (2, 2)
        skip = f"stage{6 - i}_out"
        assert inbound(fc103, f"up{i}_tu_concat") == [f"up{i}_tu_conv", skip]
        assert fc103.get_layer(f"up{i}_tu_concat").output.shape[-1] == \
            new + fc103.get_layer(skip).output.shape[-1]
    # the bottleneck's/up blocks' full stacks are never built (only the last block's)
    names = {l.name for l in fc103.layers}
    assert "bottleneck_concat15" not in names and "up1_concat12" not in names
    assert "bottleneck_concat14" in names and "up5_concat3" in names
    assert "up5_new" not in names    # the last block passes on its whole stack


def test_layer_order_and_biases(fc103):
    # dense layer: BN -> ReLU -> 3x3 conv (with bias) -> dropout 0.2
    assert inbound(fc103, "down1_layer1_relu") == ["down1_layer1_bn"]
    assert inbound(fc103, "down1_layer1_conv") == ["down1_layer1_relu"]
    assert inbound(fc103, "down1_layer1_drop") == ["down1_layer1_conv"]
    assert fc103.get_layer("down1_layer1_drop").rate == 0.2
    conv = fc103.get_layer("down1_layer1_conv")
    assert conv.kernel_size == (3, 3) and conv.use_bias and conv.filters == 16
    assert inbound(fc103, "down1_concat1") == ["stem_conv", "down1_layer1_drop"]
    # transition down: BN -> ReLU -> 1x1 conv (same width) -> dropout -> 2x2 max pool
    assert inbound(fc103, "down2_td_conv") == ["down2_td_relu"]
    td = fc103.get_layer("down2_td_conv")
    assert td.kernel_size == (1, 1) and td.filters == 192 and td.use_bias
    assert inbound(fc103, "down2_td_pool") == ["down2_td_drop"]
    assert isinstance(fc103.get_layer("down2_td_pool"), L.MaxPooling2D)
    assert fc103.get_layer("down2_td_pool").pool_size == (2, 2)
    stem = fc103.get_layer("stem_conv")
    assert stem.kernel_size == (3, 3) and stem.filters == 48
    assert fc103.layers[-1].name == "classifier"
    assert fc103.get_layer("classifier").kernel_size == (1, 1)
    bns = [l for l in fc103.layers if isinstance(l, L.BatchNormalization)]
    assert bns and all(b.epsilon == 1e-4 and b.momentum == 0.9 for b in bns)
    # no activation fused in any conv; logits by default
    convs = [l for l in fc103.layers if isinstance(l, (L.Conv2D, L.Conv2DTranspose))]
    assert all(c.activation is keras.activations.linear for c in convs)


@pytest.mark.parametrize("shape", [(64, 96, 1), (32, 32, 1)])
def test_output_keeps_input_size(shape):
    model = fcdensenet(**TINY, in_channels=1, num_classes=4, input_shape=shape)
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (2,) + shape[:2] + (4,)
    assert np.all(np.isfinite(y))


def test_dynamic_size_and_softmax():
    model = fcdensenet(**TINY, num_classes=5, classifier_activation="softmax")
    assert model.input_shape == (None, None, None, 3)
    for size in [(32, 64), (96, 32)]:
        y = model(np.ones((1,) + size + (3,), "float32"), training=False).numpy()
        assert y.shape == (1,) + size + (5,)
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_headless_and_no_dropout():
    model = fcdensenet(**TINY, num_classes=0, dropout=0.0, input_shape=(32, 32, 3))
    # last block: TU(8 new) + stage1 (48 + 2*4) = 64, + 2*4 new = 72
    assert model.output.shape == (None, 32, 32, 72)
    names = [l.name for l in model.layers]
    assert "classifier" not in names and names[-1] == "up5_out"
    assert not any(isinstance(l, L.Dropout) for l in model.layers)


def test_layers_list_sets_pool_count():
    model = fcdensenet(growth_rate=2, layers_per_block=[1, 2, 1], input_shape=(6, 10, 3),
                       num_classes=2)
    assert model.output.shape == (None, 6, 10, 2)
    names = {l.name for l in model.layers}
    assert {"stage1_out", "down1_td_pool", "bottleneck_new", "up1_tu_conv", "up1_out"} <= names
    assert "stage2_out" not in names


def test_3d_build():
    model = fcdensenet(**TINY, spatial_dims=3, in_channels=1, num_classes=3,
                       input_shape=(32, 32, 32, 1))
    assert model.output.shape == (None, 32, 32, 32, 3)
    assert model.get_layer("stem_conv").kernel_size == (3, 3, 3)
    assert isinstance(model.get_layer("down1_td_pool"), L.MaxPooling3D)
    assert model.get_layer("down1_td_pool").pool_size == (2, 2, 2)
    tu = model.get_layer("up1_tu_conv")
    assert isinstance(tu, L.Conv3DTranspose)
    assert tu.kernel_size == (3, 3, 3) and tu.strides == (2, 2, 2)
    assert model.get_layer("down1_layer1_conv").kernel_size == (3, 3, 3)
    assert model.get_layer("down5_td_pool").output.shape[1:4] == (1, 1, 1)
    x = np.random.default_rng(1).standard_normal((1, 32, 32, 32, 1)).astype("float32")
    assert model(x, training=False).shape == (1, 32, 32, 32, 3)


@pytest.mark.parametrize("kwargs,expect", [
    (dict(input_shape=(100, 224, 3)), ["100", "32", "96", "128"]),
    (dict(input_shape=(16, 16, 3)), ["16", "32"]),
    (dict(spatial_dims=3, input_shape=(32, 32, 40, 3)), ["40", "32", "64"]),
    (dict(layers_per_block=[1, 1, 1], input_shape=(7, 8, 3)), ["7", "2**1", "6 or 8"]),
])
def test_size_errors_name_nearest_valid(kwargs, expect):
    with pytest.raises(InvalidArgumentError) as err:
        fcdensenet(**{"growth_rate": 4, "layers_per_block": 2, **kwargs})
    msg = str(err.value)
    assert "input_shape" in msg
    for piece in expect:
        assert piece in msg
    if kwargs["input_shape"][0] == 16:
        assert "0 or" not in msg    # no "size 0" suggestion


@pytest.mark.parametrize("kwargs,arg", [
    (dict(layers_per_block=[4, 4]), "layers_per_block"),
    (dict(layers_per_block=0), "layers_per_block"),
    (dict(layers_per_block=True), "layers_per_block"),
    (dict(layers_per_block=[2, 0, 2]), "layers_per_block"),
    (dict(growth_rate=0), "growth_rate"),
    (dict(first_filters=2.5), "first_filters"),
    (dict(dropout=1.0), "dropout"),
    (dict(num_classes=-1), "num_classes"),
    (dict(classifier_activation="relu"), "classifier_activation"),
    (dict(spatial_dims=1), "spatial_dims"),
    (dict(in_channels=1, input_shape=(32, 32, 3)), "in_channels"),
])
def test_argument_errors(kwargs, arg):
    with pytest.raises(ZooError, match=arg):
        fcdensenet(**{"growth_rate": 4, "layers_per_block": 2, **kwargs})
