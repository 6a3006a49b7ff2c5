"""zoo.load / list_models / info and the `zoo` command: the user-facing API."""
import numpy as np
import pytest
from _proc import run_python, run_zoo

import zoo
from zoo.errors import InvalidArgumentError, UnknownArgumentError, UnknownModelError, ZooError


def test_list_models_sorted_and_filtered():
    names = zoo.list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    res = zoo.list_models("resnet*")
    assert res and all(n.startswith("resnet") for n in res)
    seg = zoo.list_models(task="segmentation")
    assert "unet3d" in seg and "resnet50" not in seg
    three_d = zoo.list_models(spatial_dims=3)
    assert "unet3d" in three_d
    assert all(3 in zoo.info(n)["spatial_dims"] for n in three_d)
    assert set(three_d) <= set(names)
    assert set(zoo.list_models(task="classification")) | set(seg) | set(
        zoo.list_models(task="generation")) == set(names)
    with pytest.raises(InvalidArgumentError, match="task='segmentaton'.*Did you mean 'segmentation'"):
        zoo.list_models(task="segmentaton")


def test_info_is_plain_data():
    data = zoo.info("resnet50")
    assert data["builder"] == "zoo.models.resnet:resnet"
    assert data["params"] == 25_636_712
    assert data["task"] == "classification" and 2 in data["spatial_dims"]
    assert "He" in data["paper"]
    data["config"]["depth"] = 0  # a copy: the registry is not affected
    assert zoo.info("resnet50")["config"]["depth"] == 50


def test_unknown_name_suggests():
    with pytest.raises(UnknownModelError, match=r"'resnet05'.*Did you mean 'resnet50'"):
        zoo.load("resnet05")
    with pytest.raises(ZooError):
        zoo.info("no_such_model_at_all")


def test_unknown_keyword_lists_valid_keywords():
    with pytest.raises(UnknownArgumentError) as info:
        zoo.load("resnet18", num_class=2)
    msg = str(info.value)
    assert "num_class" in msg and "num_classes" in msg and "Valid keywords" in msg
    assert "Did you mean 'num_classes'" in msg


def test_bad_values_name_argument_and_allowed():
    with pytest.raises(InvalidArgumentError, match=r"spatial_dims=4.*supports 2, 3"):
        zoo.load("resnet18", spatial_dims=4)
    with pytest.raises(InvalidArgumentError, match=r"input_shape=\(64, 64\) has 2 axes.*spatial_dims=3 needs 4"):
        zoo.load("resnet18", spatial_dims=3, input_shape=(64, 64))
    with pytest.raises(InvalidArgumentError, match=r"ends with 1 channels but in_channels=3"):
        zoo.load("resnet18", input_shape=(64, 64, 1), in_channels=3)
    with pytest.raises(InvalidArgumentError, match="in_channels=0"):
        zoo.load("resnet18", in_channels=0)


def test_load_overrides_and_3d():
    from zoo._keras import keras
    m = zoo.load("resnet18", num_classes=2, in_channels=1, spatial_dims=3, input_shape=(64, 64, 64, 1))
    assert isinstance(m, keras.Model)
    assert m.input_shape == (None, 64, 64, 64, 1) and m.output_shape == (None, 2)
    keras.backend.clear_session()
    m = zoo.load("resnet18", input_shape=(32, 32, 1))  # in_channels follows input_shape
    assert m.input_shape == (None, 32, 32, 1)
    out = m(np.zeros((1, 32, 32, 1), "float32"))
    assert out.shape == (1, 1000)


def test_builder_keyword_name_reaches_the_builder():
    """``name`` is a builder keyword (the Keras model's name), not load's own entry name."""
    from zoo._keras import keras
    m = zoo.load("googlenet_bn", name="my_net", num_classes=2, input_shape=(64, 64, 3))
    assert m.name == "my_net"
    keras.backend.clear_session()


def test_vgg_dropout_override():
    from zoo._keras import keras
    m = zoo.load("vgg16", dropout=0.0, num_classes=3, input_shape=(32, 32, 3))
    assert all(l.rate == 0.0 for l in m.layers if isinstance(l, keras.layers.Dropout))
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(m(x, training=True), m(x, training=False))  # no dropout at all
    keras.backend.clear_session()
    m = zoo.load("vgg16", num_classes=3, input_shape=(32, 32, 3))
    assert [l.rate for l in m.layers if isinstance(l, keras.layers.Dropout)] == [0.5, 0.5]


def run_cli(*args):
    return run_zoo(*args, timeout=300)


@pytest.mark.slow  # measured 11.9 s in the quick tier
def test_cli_list_info_build():
    res = run_cli("list", "resnet*", "--names-only")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == zoo.list_models("resnet*")
    res = run_cli("list", "--task", "segmentation")
    listed = [line.split()[0] for line in res.stdout.splitlines()[1:]]
    assert res.returncode == 0 and listed == zoo.list_models(task="segmentation")
    assert "unet3d" in listed and "resnet50" not in listed
    res = run_cli("info", "resnet50")
    assert res.returncode == 0 and "25636712" in res.stdout and "zoo.models.resnet:resnet" in res.stdout
    res = run_cli("info", "resnet05")
    assert res.returncode == 2 and "Did you mean 'resnet50'" in res.stderr
    res = run_cli("build", "resnet18", "--num-classes", "2", "--input-shape", "32,32,1")
    assert res.returncode == 0, res.stderr
    assert "(1, 32, 32, 1) -> output (1, 2)" in res.stdout


@pytest.mark.slow  # measured 11.3 s in the quick tier
def test_load_model_in_a_fresh_process(tmp_path):
    """Whole-model files with zoo layers/classes load in a new interpreter via zoo.load_model."""
    from zoo._keras import keras
    x = np.random.default_rng(0).standard_normal((1, 44, 44, 1)).astype("float32")
    unet = zoo.load("unet", padding="valid", depth=2, filters=2, input_shape=(44, 44, 1))  # CenterCropLike inside
    gan = zoo.load("wgan", filters=4, image_size=16)
    z = np.random.default_rng(1).standard_normal((2, 100)).astype("float32")
    unet.save(tmp_path / "unet.h5")
    gan.save(tmp_path / "gan.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "unet_out.npy", unet(x).numpy())
    np.save(tmp_path / "gan_out.npy", gan(z).numpy())
    keras.backend.clear_session()
    code = f"""
import numpy as np, zoo
d = {str(tmp_path)!r}
u = zoo.load_model(d + '/unet.h5')
g = zoo.load_model(d + '/gan.keras')
np.testing.assert_allclose(u(np.load(d + '/x.npy')).numpy(), np.load(d + '/unet_out.npy'), atol=1e-6)
np.testing.assert_allclose(g(np.load(d + '/z.npy')).numpy(), np.load(d + '/gan_out.npy'), atol=1e-6)
assert type(g).__name__ == 'WGAN' and g.generator is not None
print('ok')
"""
    res = run_python(code, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        zoo.load_model(tmp_path / "missing.keras")
