"""zoo.bench: MACs counted layer by layer agree with the published counts of the architectures
(torchvision's documented GFLOPS, which are MACs, and the papers), on the zoo's entries and on
keras.applications' real models."""
import pytest
from _proc import run_zoo

from zoo.bench import bench, flops

# torchvision's model docs ("GFLOPS" column, fvcore MACs) and the papers, in GMACs
PUBLISHED = {"resnet18": 1.81, "resnet50_tv": 4.09, "alexnet": 0.71}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_entries_match_published_macs(name):
    r = bench(name, runs=0)
    assert r["input_shape"] == [224, 224, 3]
    assert r["macs"] / 1e9 == pytest.approx(PUBLISHED[name], abs=0.006)
    assert r["flops"] == 2 * r["macs"]


def test_keras_applications_models_match_their_papers():
    from zoo._keras import keras
    # VGG16: 15.5 G multiply-adds (Simonyan & Zisserman); MobileNet: 569 M (Howard et al., table 8);
    # ResNet-50 v1: 3.8 G (He et al., table 1)
    for make, gmacs, tol in ((keras.applications.VGG16, 15.47, 0.01), (keras.applications.MobileNet, 0.569, 0.001),
                             (keras.applications.ResNet50, 3.86, 0.01)):
        assert flops(make(weights=None))["macs"] / 1e9 == pytest.approx(gmacs, abs=tol), make.__name__
        keras.backend.clear_session()


def test_layer_kinds_are_counted_by_hand():
    from zoo._keras import keras
    L = keras.layers
    x = keras.Input((8, 8, 4))
    a = L.Conv2D(6, 3, padding="same", name="conv")(x)             # 64 * 9 * 4 * 6
    b = L.DepthwiseConv2D(3, padding="same", name="dw")(a)          # 64 * 9 * 6
    c = L.SeparableConv2D(5, 3, padding="same", name="sep")(b)      # 64 * (9 * 6 + 6 * 5)
    d = L.Conv2DTranspose(2, 2, strides=2, name="up")(c)            # 64 * 4 * 5 * 2 (per input voxel)
    e = L.Conv2D(4, 3, groups=2, padding="same", name="grouped")(d)  # 256 * 9 * 1 * 4
    f = L.Dense(3, name="dense")(L.GlobalAveragePooling2D()(e))    # 4 * 3
    count = flops(keras.Model(x, f))
    assert count["by_layer"] == {"conv": 64 * 9 * 4 * 6, "dw": 64 * 9 * 6, "sep": 64 * (9 * 6 + 6 * 5),
                                 "up": 64 * 4 * 5 * 2, "grouped": 256 * 9 * 1 * 4, "dense": 4 * 3}


def test_dynamic_shapes_are_refused_with_the_fix():
    from zoo._keras import keras
    from zoo.errors import InvalidArgumentError
    x = keras.Input((None, None, 1))
    with pytest.raises(InvalidArgumentError, match="fixed input_shape"):
        flops(keras.Model(x, keras.layers.Conv2D(2, 3)(x)))


@pytest.mark.slow  # measured 7.7 s in the quick tier
def test_zoo_bench_command(tmp_path):
    import json
    res = run_zoo("bench", "unet3d", "--size", "16", "--set", "in_channels=1", "--set", "filters=4", "--runs", "2",
                  "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["input_shape"] == [16, 16, 16, 1] and row["flops"] == 2 * row["macs"] > 0 and row["keras_ms"] > 0
    res = run_zoo("bench", "unet4d", timeout=300)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "unet4d" in res.stderr
