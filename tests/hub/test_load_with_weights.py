"""zoo.load(name, weights=...) end to end: user registries, mirror, loopback server, keras.applications."""
import hashlib

import numpy as np
import pytest
import yaml

import zoo
from zoo._keras import keras
from zoo.hub.registry import get_registry

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
SMALL = {"width": 16, "num_classes": 3, "input_shape": (32, 32, 3)}


@pytest.fixture
def hub_env(http_env, tmp_path):
    return tmp_path


def use_registry(monkeypatch, path, text):
    path.write_text(text)
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    get_registry(reload=True)


def free_tag(name, wanted):
    """``wanted`` unless the built-in registry already defines it for ``name``."""
    tags = get_registry().get(name).weights
    return wanted if wanted not in tags else f"{wanted}_loopback_test"


def test_team_publishes_finetuned_weights_and_loads_them_by_name_elsewhere(server, hub_env, monkeypatch):
    name = "resnet18"
    model = zoo.load(name, **SMALL)
    rng = np.random.default_rng(0)
    for w in model.weights:  # "fine-tuning"
        w.assign(w.numpy() + rng.normal(0, 0.01, w.shape).astype("float32"))
    saved = zoo.save_weights(model, hub_env / "team" / "ft.weights.h5", tag="ft",
                             config={"width": 16, "num_classes": 3}, verbose=False)
    spec = yaml.safe_load(saved.snippet)
    assert list(spec["weights"]) == [name]  # the entry zoo.load built it from
    # publish: the file on a web server, the registry snippet with its future URL
    server.add("team/ft.weights.h5", (hub_env / "team" / "ft.weights.h5").read_bytes())
    spec["weights"][name]["ft"]["url"] = "https://weights.invalid/team/ft.weights.h5"
    # another machine: empty cache, the user registry, a mirror pointing at the server
    monkeypatch.setenv("ZOO_HOME", str(hub_env / "other_machine"))
    monkeypatch.setenv("ZOO_MIRROR", server.url("team"))
    use_registry(monkeypatch, hub_env / "team.yaml", yaml.safe_dump(spec))
    assert "ft" in zoo.info(name)["weights"]
    again = zoo.load(name, weights="ft", **SMALL)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model(x), again(x))
    report = again.zoo_load_report
    assert len(report.loaded) == sum(1 for layer in again.layers if layer.weights)
    assert not report.adapted and not report.reinitialised
    assert report.source == "https://weights.invalid/team/ft.weights.h5"
    assert server.count("team/ft.weights.h5") == 1
    # the file:// url of the snippet works as-is too (shared drive), and a 1-channel 5-class
    # variant of the same weights adapts the stem and re-initialises the classifier
    use_registry(monkeypatch, hub_env / "team2.yaml", saved.snippet)
    grey = zoo.load(name, weights="ft", width=16, num_classes=5, input_shape=(32, 32, 1))
    assert grey.zoo_load_report.adapted == {"stem_conv": "in_channels 3 -> 1 (summed)"}
    assert grey.zoo_load_report.reinitialised == {"classifier": "3 outputs in the file, 5 in the model"}
    # without overrides the model is built the way the weights were saved (width 16, 3 classes)
    plain = zoo.load(name, weights="ft", input_shape=(32, 32, 3))
    assert plain.output_shape == (None, 3) and not plain.zoo_load_report.reinitialised
    np.testing.assert_array_equal(model(x), plain(x))
    with pytest.raises(zoo.WeightsError, match="saved from width=16 but the model is built with width=32"):
        zoo.load(name, weights="ft", width=32, num_classes=3, input_shape=(32, 32, 3))


def test_2d_weights_inflated_into_the_3d_variant_by_tag(hub_env, monkeypatch):
    net2d = zoo.load("resnet18", width=8, num_classes=3, input_shape=(32, 32, 3))
    saved = zoo.save_weights(net2d, hub_env / "r18_2d.npz", tag="ft2d", verbose=False)
    use_registry(monkeypatch, hub_env / "user.yaml", saved.snippet)
    with pytest.raises(zoo.WeightsError, match="Pass weights='ft2d-inflated' to inflate"):
        zoo.load("resnet18", weights="ft2d", spatial_dims=3, width=8, num_classes=3)
    net3d = zoo.load("resnet18", weights="ft2d-inflated", spatial_dims=3, width=8, num_classes=3,
                     input_shape=(16, 32, 32, 3))
    report = net3d.zoo_load_report
    assert report.inflated and len(report.loaded) == sum(1 for layer in net3d.layers if layer.weights)
    k2, k3 = (m.get_layer("stem_conv").get_weights()[0] for m in (net2d, net3d))
    assert k3.shape == (7,) + k2.shape
    np.testing.assert_allclose(k3.sum(axis=0), k2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net3d.get_layer("classifier").get_weights()[0],
                                  net2d.get_layer("classifier").get_weights()[0])


@pytest.mark.slow
def test_keras_applications_resnet50_file_loads_through_fetch_and_transfer(server, hub_env, monkeypatch):
    """An h5 file in the official keras.applications layout, served on loopback at the official
    file name and reached through ZOO_MIRROR, loads into zoo's resnet50 with identical outputs."""
    ref = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    for w in ref.weights:  # non-trivial BN statistics and biases (keras inits them to 0/1)
        if "moving_variance" in w.name or "gamma" in w.name:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif "moving_mean" in w.name or "beta" in w.name or "bias" in w.name:
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    ref.save_weights(str(hub_env / fname))  # the layout of the official files
    data = (hub_env / fname).read_bytes()
    server.add(fname, data)
    tag = free_tag("resnet50", "imagenet")
    use_registry(monkeypatch, hub_env / "user.yaml", yaml.safe_dump({"weights": {"resnet50": {tag: {
        "url": KERAS_URL + fname, "hash": "md5:" + hashlib.md5(data).hexdigest(), "size": len(data),
        "in_channels": 3, "num_classes": 1000, "spatial_dims": 2}}}}))
    monkeypatch.setenv("ZOO_MIRROR", server.url(""))
    model = zoo.load("resnet50", weights=tag, input_shape=(64, 64, 3))
    report = model.zoo_load_report
    assert server.count(fname) == 1
    assert len(report.loaded) == sum(1 for layer in ref.layers if layer.weights) == 107
    assert not report.adapted and not report.reinitialised and not report.skipped
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    want, got = ref(x).numpy(), model(x).numpy()
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())
    # the same cached file into a 1-channel, 2-class variant: stem adapted, head re-initialised
    keras.backend.clear_session()
    small = zoo.load("resnet50", weights=tag, input_shape=(64, 64, 1), num_classes=2)
    assert small.zoo_load_report.adapted == {"conv1_conv": "in_channels 3 -> 1 (summed)"}
    assert small.zoo_load_report.reinitialised == {"predictions": "1000 outputs in the file, 2 in the model"}
    assert server.count(fname) == 1
