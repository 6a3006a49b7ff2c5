"""zoo.hub.weights: formats, strict transfer by name, adaptation, inflation, save_weights, reports."""
import hashlib

import h5py
import numpy as np
import pytest
import yaml

import zoo
from zoo._keras import keras
from zoo.errors import WeightsError
from zoo.hub import weights as W
from zoo.hub.registry import ModelEntry, WeightSpec, _freeze

L = keras.layers
FORMATS = ("h5", "weights.h5", "npz", "safetensors")


def tiny(dims=2, in_channels=3, num_classes=5, width=4, size=16, depth=12, names=None, bias=False):
    """conv-BN-relu-pool-conv-BN-relu-GAP-dense, identical names in 2D and 3D."""
    n = {"stem": "stem_conv", "mid": "stage1_conv", **(names or {})}
    conv = {2: L.Conv2D, 3: L.Conv3D}[dims]
    shape = ((depth,) if dims == 3 else ()) + (size, size, in_channels)
    inputs = keras.Input(shape)
    x = conv(width, 3, padding="same", use_bias=bias, name=n["stem"])(inputs)
    x = L.Activation("relu", name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    x = {2: L.MaxPooling2D, 3: L.MaxPooling3D}[dims](2, name="stem_pool")(x)
    x = conv(width * 2, 3, padding="same", use_bias=False, name=n["mid"])(x)
    x = L.Activation("relu", name="features")(L.BatchNormalization(name="stage1_bn")(x))
    x = {2: L.GlobalAveragePooling2D, 3: L.GlobalAveragePooling3D}[dims](name="head_pool")(x)
    if num_classes:
        x = L.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, x, name="tiny")


def randomize(model, seed=0):
    """Non-trivial weights everywhere, including BN statistics."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in w.name else rng.normal(0, 0.3, shape)
        w.assign(value.astype("float32"))
    return model


def x_like(model, seed=1):
    return np.random.default_rng(seed).normal(size=(2,) + model.input_shape[1:]).astype("float32")


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("fmt", FORMATS)
def test_save_weights_round_trip_and_snippet(fmt, tmp_path, capsys):
    src = randomize(tiny())
    saved = zoo.save_weights(src, tmp_path / f"m.{fmt}", model_name="tiny_entry", tag="ft",
                             config={"width": 4})
    assert capsys.readouterr().out.strip() == saved.snippet.strip()  # printed, too
    data = (tmp_path / f"m.{fmt}").read_bytes()
    assert saved.sha256 == hashlib.sha256(data).hexdigest() and saved.size == len(data)
    assert [p.name for p in tmp_path.iterdir()] == [f"m.{fmt}"]  # no temp file left behind
    spec = yaml.safe_load(saved.snippet)["weights"]["tiny_entry"]["ft"]
    assert spec == {"url": (tmp_path / f"m.{fmt}").as_uri(), "hash": f"sha256:{saved.sha256}",
                    "size": len(data), "format": fmt, "in_channels": 3, "num_classes": 5,
                    "spatial_dims": 2, "config": {"width": 4}, "source": "zoo.save_weights of model 'tiny'"}
    assert "first conv: stem_conv kernel (3, 3, 3, 4)" in saved.snippet
    assert "classifier: classifier kernel (8, 5)" in saved.snippet
    dst = tiny()
    report = W.load_weights_into(dst, weights=tmp_path / f"m.{fmt}")
    assert report.loaded == ["stem_conv", "stem_bn", "stage1_conv", "stage1_bn", "classifier"]
    assert not report.adapted and not report.reinitialised and not report.skipped
    x = x_like(src)
    np.testing.assert_array_equal(src(x), dst(x))


@pytest.mark.parametrize("fmt", ["h5", "weights.h5"])
def test_zoo_files_load_in_keras_and_keras_files_load_in_zoo(fmt, tmp_path):
    src = randomize(tiny())
    x = x_like(src)
    zoo.save_weights(src, tmp_path / f"zoo.{fmt}", verbose=False)
    plain = tiny()
    plain.load_weights(str(tmp_path / f"zoo.{fmt}"))  # tf_keras reads the zoo's files
    np.testing.assert_array_equal(src(x), plain(x))
    src.save_weights(str(tmp_path / f"keras.{fmt}"))  # and the zoo reads Keras' own
    dst = tiny()
    W.load_weights_into(dst, weights=str(tmp_path / f"keras.{fmt}"))
    np.testing.assert_array_equal(src(x), dst(x))


def test_full_model_h5_file(tmp_path):
    src = randomize(tiny())
    src.save(tmp_path / "full.h5")
    dst = tiny()
    W.load_weights_into(dst, weights=str(tmp_path / "full.h5"))
    x = x_like(src)
    np.testing.assert_array_equal(src(x), dst(x))


def test_classifier_reinitialised_when_num_classes_differs(tmp_path):
    src = randomize(tiny(num_classes=10))
    zoo.save_weights(src, tmp_path / "m.npz", verbose=False)
    dst = tiny(num_classes=3)
    head_before = snapshot(dst.get_layer("classifier"))
    report = W.load_weights_into(dst, weights=tmp_path / "m.npz")
    assert report.reinitialised == {"classifier": "10 outputs in the file, 3 in the model"}
    assert report.loaded == ["stem_conv", "stem_bn", "stage1_conv", "stage1_bn"]
    for a, b in zip(head_before, dst.get_layer("classifier").get_weights()):
        np.testing.assert_array_equal(a, b)  # left as the builder initialised it
    feats = lambda m: keras.Model(m.input, m.get_layer("head_pool").output)  # noqa: E731
    x = x_like(src)
    np.testing.assert_array_equal(feats(src)(x), feats(dst)(x))


def test_headless_file_into_model_with_head_and_back(tmp_path):
    zoo.save_weights(randomize(tiny(num_classes=0)), tmp_path / "notop.h5", verbose=False)
    with_head = tiny(num_classes=4)
    report = W.load_weights_into(with_head, weights=tmp_path / "notop.h5")
    assert report.reinitialised == {"classifier": "not in the file (headless weights)"}
    zoo.save_weights(randomize(tiny(num_classes=7)), tmp_path / "top.h5", verbose=False)
    report = W.load_weights_into(tiny(num_classes=0), weights=tmp_path / "top.h5")
    assert list(report.skipped) == ["classifier"] and len(report.loaded) == 4


@pytest.mark.parametrize("channels", [1, 4, 6])
@pytest.mark.parametrize("stem", ["stem_conv", "enc_first"])  # by name, or the first kernel layer
def test_first_conv_adapted_to_in_channels(channels, stem, tmp_path):
    names = {"stem": stem}
    src = randomize(tiny(names=names))
    zoo.save_weights(src, tmp_path / "m.npz", verbose=False)
    dst = tiny(in_channels=channels, names=names)
    report = W.load_weights_into(dst, weights=tmp_path / "m.npz")
    how = "(summed)" if channels == 1 else "(tiled and rescaled)"
    assert report.adapted == {stem: f"in_channels 3 -> {channels} {how}"}
    k3, kn = src.get_layer(stem).get_weights()[0], dst.get_layer(stem).get_weights()[0]
    expected = (
        k3.sum(-2, keepdims=True) if channels == 1 else np.concatenate([k3, k3], -2)[..., :channels, :] * 3 / channels
    )
    np.testing.assert_allclose(kn, expected, rtol=1e-6)
    if channels % 3 and channels != 1:
        return
    grey = x_like(tiny(in_channels=1))
    # exact when channels is 1 or a multiple of 3: a grey image repeated on every channel gives
    # the same output in both models
    np.testing.assert_allclose(src(np.repeat(grey, 3, -1)), dst(np.repeat(grey, channels, -1)),
                               rtol=1e-5, atol=1e-5)


def test_other_architecture_is_refused_before_anything_is_assigned(tmp_path):
    zoo.save_weights(randomize(tiny(width=4)), tmp_path / "m.h5", verbose=False)
    # same stem (would load), different later layer: nothing may be assigned
    dst = tiny(width=4, names={"mid": "stage1_conv_b"})
    before = snapshot(dst)
    with pytest.raises(WeightsError, match="has no layer stage1_conv_b"):
        W.load_weights_into(dst, weights=tmp_path / "m.h5")
    for a, b in zip(before, dst.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsError, match=r"layer stem_conv has shapes \[\(3, 3, 3, 4\)\] in the file but "
                                           r"\[\(3, 3, 3, 6\)\] in the model"):
        W.load_weights_into(tiny(width=6, in_channels=3), weights=tmp_path / "m.h5")


def test_extra_file_layer_and_array_count_mismatch(tmp_path):
    src = randomize(tiny())
    zoo.save_weights(src, tmp_path / "m.npz", verbose=False)
    data = dict(np.load(tmp_path / "m.npz"))
    np.savez(tmp_path / "extra.npz", **data, **{"extra_conv/0": np.zeros((1, 1, 4, 4), "float32")})
    with pytest.raises(WeightsError, match="has layer 'extra_conv' which the model lacks"):
        W.load_weights_into(tiny(), weights=tmp_path / "extra.npz")
    with pytest.raises(WeightsError, match="layer 'stem_conv': the file has 1 arrays, the model's layer has 2"):
        W.load_weights_into(tiny(bias=True), weights=tmp_path / "m.npz")


def test_damaged_safetensors_is_refused(tmp_path):
    zoo.save_weights(tiny(), tmp_path / "m.safetensors", verbose=False)
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    (tmp_path / "cut.safetensors").write_bytes(bytes(data[:-8]))  # last tensor runs past the end
    with pytest.raises(WeightsError, match="cut.safetensors is not a valid safetensors file .*not fully covered"):
        W.load_weights_into(tiny(), weights=tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="junk.safetensors is not a valid safetensors file .*header too large"):
        W.load_weights_into(tiny(), weights=tmp_path / "junk.safetensors")


def test_unsafe_files_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", **{"stem_conv/0": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(WeightsError, match="unpickle"):
        W.load_weights_into(tiny(), weights=tmp_path / "obj.npz")
    (tmp_path / "other.h5").write_bytes(b"")
    for kind in ("external_link", "soft_link", "virtual", "external_storage"):
        path = tmp_path / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = np.array([b"stem_conv"])
            g = f.create_group("stem_conv")
            g.attrs["weight_names"] = np.array([b"stem_conv/kernel:0"])
            if kind == "external_link":
                g["stem_conv/kernel:0"] = h5py.ExternalLink("/etc/passwd", "/x")
            elif kind == "soft_link":
                f.create_dataset("elsewhere", data=np.zeros(3))
                g["stem_conv/kernel:0"] = h5py.SoftLink("/elsewhere")
            elif kind == "virtual":
                layout = h5py.VirtualLayout(shape=(3,), dtype="f4")
                layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(3,))
                g.create_virtual_dataset("stem_conv/kernel:0", layout)
            else:
                g.create_dataset("stem_conv/kernel:0", shape=(3,), dtype="f4",
                                 external=[(str(tmp_path / "raw.bin"), 0, 12)])
        with pytest.raises(WeightsError, match="refusing weights file"):
            W.load_weights_into(tiny(), weights=path)


def _entry(tmp_path, spec_path, **spec_fields):
    digest = hashlib.sha256(spec_path.read_bytes()).hexdigest()
    spec = WeightSpec(tag="imagenet", url=spec_path.name, hash=f"sha256:{digest}",
                      origin=str(tmp_path / "reg.yaml"), **spec_fields)
    return ModelEntry(name="tiny", builder="zoo.models.resnet:resnet", task="classification",
                      spatial_dims=(2, 3), params=0, weights=_freeze({"imagenet": spec}))


def _features(model):
    return keras.Model(model.input, model.get_layer("features").output)


def test_inflation_3d_on_identical_slices_equals_2d(tmp_path):
    net2 = randomize(tiny(dims=2, size=16))
    zoo.save_weights(net2, tmp_path / "w2d.npz", verbose=False)
    entry = _entry(tmp_path, tmp_path / "w2d.npz", spatial_dims=2)
    net3 = tiny(dims=3, size=16, depth=12)
    report = W.load_weights_into(net3, entry=entry, weights="imagenet-inflated")
    assert report.inflated and report.tag == "imagenet-inflated" and len(report.loaded) == 5
    k2 = net2.get_layer("stem_conv").get_weights()[0]
    k3 = net3.get_layer("stem_conv").get_weights()[0]
    assert k3.shape == (3,) + k2.shape
    np.testing.assert_allclose(k3.sum(axis=0), k2, rtol=1e-6, atol=1e-7)
    image = x_like(net2)[:1]                              # (1, 16, 16, 3)
    volume = np.repeat(image[:, None], 12, axis=1)        # 12 identical slices
    f2 = _features(net2)(image).numpy()[0]                # (8, 8, 8) before pooling
    f3 = _features(net3)(volume).numpy()[0]               # (6, 8, 8, 8)
    # exact away from the depth borders, which see the zero padding (slices 2 and 3 of 6 here)
    for d in (2, 3):
        np.testing.assert_allclose(f3[d], f2, rtol=1e-4, atol=1e-5)
    assert np.abs(f3[0] - f2).max() > 1e-3  # the border effect is real (and documented)


def test_inflation_tag_rules(tmp_path):
    zoo.save_weights(randomize(tiny(dims=2)), tmp_path / "w2d.npz", verbose=False)
    entry = _entry(tmp_path, tmp_path / "w2d.npz", spatial_dims=2)
    with pytest.raises(WeightsError, match="imagenet-inflated"):
        W.load_weights_into(tiny(dims=3), entry=entry, weights="imagenet")
    with pytest.raises(WeightsError, match="the model is 2D"):
        W.load_weights_into(tiny(dims=2), entry=entry, weights="imagenet-inflated")
    with pytest.raises(WeightsError, match="use a '-inflated' tag"):  # a path into 3D, no tag
        W.load_weights_into(tiny(dims=3), weights=tmp_path / "w2d.npz")
    report = W.load_weights_into(tiny(dims=3), weights=tmp_path / "w2d.npz", inflate=True)
    assert report.inflated


def test_registry_tag_relative_url_hash_and_config_checks(tmp_path):
    zoo.save_weights(randomize(tiny()), tmp_path / "w.h5", verbose=False)
    entry = _entry(tmp_path, tmp_path / "w.h5", config=_freeze({"width": 4}))
    report = W.load_weights_into(tiny(), entry=entry, weights="imagenet", build_kwargs={"width": 4})
    assert report.tag == "imagenet" and report.path == str(tmp_path / "w.h5")
    text = str(report)
    assert "tiny weights 'imagenet'" in text and "loaded: 5 layers" in text and report.hash in text
    with pytest.raises(WeightsError, match="saved from width=4 but the model is built with width=8"):
        W.load_weights_into(tiny(), entry=entry, weights="imagenet", build_kwargs={"width": 8})
    with pytest.raises(WeightsError, match="Did you mean 'imagenet'"):
        W.load_weights_into(tiny(), entry=entry, weights="imagenett")
    (tmp_path / "w.h5").write_bytes((tmp_path / "w.h5").read_bytes() + b"tampered")
    with pytest.raises(WeightsError, match="hash mismatch"):
        W.load_weights_into(tiny(), entry=entry, weights="imagenet")


def test_report_str_lists_every_category():
    report = W.LoadReport(source="https://x/w.h5", path="/c/w.h5", format="h5", hash="md5:" + "a" * 32,
                          tag="imagenet", model="resnet50", loaded=["a", "b"],
                          adapted={"conv1_conv": "in_channels 3 -> 1 (summed)"},
                          reinitialised={"predictions": "1000 outputs in the file, 2 in the model"},
                          skipped={"fc9": "classifier of the file; the model has no such layer"})
    assert str(report).splitlines() == [
        "resnet50 weights 'imagenet' from https://x/w.h5",
        f"  file: /c/w.h5 (h5, md5:{'a' * 32})",
        "  loaded: 2 layers",
        "  adapted: conv1_conv: in_channels 3 -> 1 (summed)",
        "  re-initialised: predictions: 1000 outputs in the file, 2 in the model",
        "  skipped (in the file, not in the model): fc9: classifier of the file; the model has no such layer"]


@pytest.mark.slow  # 4 cases, up to 13.5 s in the quick tier
@pytest.mark.parametrize("fmt", FORMATS)
def test_files_embed_the_build_config_and_zoo_load_rebuilds_from_it(fmt, tmp_path, isolated_home):
    # a GoogLeNet with aux heads and torchvision's input transform, saved with nothing but the path
    src = zoo.load("googlenet_bn", width=0.125, num_classes=4, aux_heads=True, transform_input=True,
                   input_shape=(64, 64, 3))
    randomize(src)
    path = zoo.save_weights(src, tmp_path / f"g.{fmt}", verbose=False).path
    with W._weightread.read(path) as wf:
        assert wf.meta["model"] == "googlenet_bn" and wf.meta["builder"] == "zoo.models.googlenet:googlenet"
        assert wf.meta["config"]["aux_heads"] is True and "input_shape" not in wf.meta["config"]
    keras.backend.clear_session()
    dst = zoo.load("googlenet_bn", weights=path, input_shape=(64, 64, 3))  # no keywords repeated
    assert len(dst.outputs) == 3 and dst.get_layer("transform_input")
    report = dst.zoo_load_report
    assert report.file_config == {"width": 0.125, "num_classes": 4, "aux_heads": True, "transform_input": True}
    assert not report.skipped and not report.reinitialised and not report.config_differs
    assert "built with the file's config: aux_heads=True" in str(report)
    x = x_like(src)
    for a, b in zip(src(x), dst(x)):
        np.testing.assert_array_equal(a, b)
    # an explicit keyword wins, and the report says what differs from the file
    keras.backend.clear_session()
    lean = zoo.load("googlenet_bn", weights=path, aux_heads=False, input_shape=(64, 64, 3))
    assert len(lean.outputs) == 1 and lean.zoo_load_report.config_differs == {"aux_heads": (True, False)}
    assert set(lean.zoo_load_report.skipped) >= {"aux1", "aux2"}
    # a file saved from another builder lends nothing
    keras.backend.clear_session()
    assert W.file_build_defaults(path, zoo.hub.registry.get_registry().get("resnet18")) == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_embedded_metadata_is_refused_naming_the_file(fmt, tmp_path):
    from zoo.hub import _weightfile
    src = tiny()
    for bad, why in (('{"config": [1, 2]}', "expected a JSON object"), ("not json", "not valid JSON"),
                     ('["a"]', "not a JSON object"), ('{"config": {"k": {"nested": 1}}}', "is not a JSON scalar"),
                     ('{"model": "' + "x" * 70000 + '"}', "at most 65536")):
        path = _weightfile.write(src, tmp_path / f"bad.{fmt}", meta=bad)
        with pytest.raises(WeightsError, match=why) as err:
            W.load_weights_into(tiny(), weights=path)
        assert str(path) in str(err.value) and "save the weights again" in str(err.value).lower()
    if fmt in ("h5", "weights.h5"):  # an attribute of the wrong type
        with h5py.File(path, "a") as f:
            f.attrs["zoo_meta"] = np.arange(3)
        with pytest.raises(WeightsError, match="not the metadata's JSON text"):
            W.load_weights_into(tiny(), weights=path)
