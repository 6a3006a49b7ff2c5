"""zoo.models.genesis against a channels-first Keras re-creation of Models Genesis' network (written here
from keras/unet3d.py's facts, at reduced width), whose .h5 loads by layer name into the channels-last zoo
model through zoo.load (a test registry entry: no hash, a hand-fetched copy)."""
import numpy as np
import pytest
from _medical_ref import sha256

import zoo
from zoo._keras import keras
from zoo.errors import WeightsError
from zoo.hub.convert import genesis as convert_genesis
from zoo.hub.registry import get_registry
from zoo.models.genesis import genesis_unet3d

L = keras.layers


def genesis_reference(filters=4, depth=4, n_labels=1, shape=(1, 16, 16, 8)):
    """Models Genesis' unet_model_3d(batch_normalization=True) in channels_first, as the authors build it:
    depth_<n>_conv (3x3x3, bias) -> depth_<n>_bn (axis 1, Keras defaults) -> depth_<n>_relu, two per level
    (filters * 2**d, then twice that), 2x2x2 max pooling, nearest up-sampling concatenated before the
    skip, an unnamed 1x1x1 conv and a sigmoid."""
    cf = "channels_first"
    inputs = keras.Input(shape)
    x, n, levels = inputs, 0, []

    def block(x, width):
        nonlocal n
        x = L.Conv3D(width, (3, 3, 3), padding="same", data_format=cf, name=f"depth_{n}_conv")(x)
        x = L.BatchNormalization(axis=1, name=f"depth_{n}_bn")(x)
        x = L.Activation("relu", name=f"depth_{n}_relu")(x)
        n += 1
        return x

    for d in range(depth):
        a = block(x, filters * 2 ** d)
        b = block(a, filters * 2 ** d * 2)
        levels.append(b)
        x = L.MaxPooling3D((2, 2, 2), data_format=cf)(b) if d < depth - 1 else b
    for d in range(depth - 2, -1, -1):
        up = L.UpSampling3D(size=(2, 2, 2), data_format=cf)(x)
        x = L.concatenate([up, levels[d]], axis=1)
        x = block(x, levels[d].shape[1])
        x = block(x, levels[d].shape[1])
    logits = L.Conv3D(n_labels, (1, 1, 1), data_format=cf)(x)
    model = keras.Model(inputs, L.Activation("sigmoid")(logits))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # trained-looking BN statistics and non-zero biases
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([1 + 0.2 * rng.standard_normal(c), 0.1 * rng.standard_normal(c),
                               0.1 * rng.standard_normal(c), rng.uniform(0.5, 1.5, c)])
        elif isinstance(layer, L.Conv3D):
            layer.bias.assign(0.1 * rng.standard_normal(layer.bias.shape))
    return model, keras.Model(inputs, logits)


REGISTRY = """
models:
  test_genesis:
    builder: zoo.models.genesis:genesis_unet3d
    config: {filters: 4, depth: 4, batch_norm: true, num_classes: 1}
    task: segmentation
    spatial_dims: [3]
    weights:
      genesis_chest_ct:
        url: https://weights.invalid/genesis/Genesis_Chest_CT.h5
        manual_download: Fetch it by hand from the authors.
        format: genesis
        num_classes: 1
        in_channels: 1
        spatial_dims: 3
"""


@pytest.fixture
def genesis_file(isolated_home, tmp_path, monkeypatch):
    (tmp_path / "reg.yaml").write_text(REGISTRY)
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "reg.yaml"))
    get_registry(reload=True)
    ref, logits = genesis_reference()
    path = tmp_path / "Genesis_Chest_CT.h5"
    ref.save_weights(path)  # Keras 2 HDF5, layers by name (the final conv keeps Keras' automatic name)
    yield ref, logits, path
    monkeypatch.delenv("ZOO_REGISTRY")
    get_registry(reload=True)


def _cf(x):
    return np.moveaxis(x, -1, 1)


def test_genesis_file_gives_the_genesis_output(genesis_file, capsys):
    ref, logits, path = genesis_file
    x = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 8, 1)).astype("float32")
    model = zoo.load("test_genesis", weights=str(path), classifier_activation="sigmoid")
    want = np.moveaxis(ref(_cf(x)).numpy(), 1, -1)
    diff = np.abs(model(x, training=False).numpy() - want).max()
    raw = zoo.load("test_genesis", weights=str(path))  # logits by default
    diff_logits = np.abs(raw(x, training=False).numpy() - np.moveaxis(logits(_cf(x)).numpy(), 1, -1)).max()
    assert f"sha256 {sha256(path)}" in capsys.readouterr().out
    print(f"genesis (filters 4): max abs diff {diff:.2e} (sigmoid), {diff_logits:.2e} (logits)")
    assert diff <= 1e-4 and diff_logits <= 1e-4 and np.std(want) > 1e-3
    report = raw.zoo_load_report
    assert report.conversion.startswith("cached") and not report.reinitialised
    assert len(report.loaded) == sum(1 for layer in raw.layers if layer.weights)


def test_other_class_count_reinitialises_only_the_head(genesis_file):
    ref, _, path = genesis_file
    model = zoo.load("test_genesis", weights=str(path), num_classes=3)
    report = model.zoo_load_report
    assert report.reinitialised == {"classifier": "1 outputs in the file, 3 in the model"}
    for name in ("depth_0_conv", "depth_7_bn", "depth_13_conv"):
        for a, b in zip(ref.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_classification_head_on_the_encoder(genesis_file):
    """The Genesis README's classifier: depth_7_relu (stage4_out) -> pooling -> dense 1024 -> classes."""
    ref, _, path = genesis_file
    model = genesis_unet3d(filters=4, head="classification", num_classes=2, head_units=16)
    report = convert_genesis.load_file(model, path)
    assert set(report["reinitialised"]) == {"head_fc", "classifier"}
    assert report["skipped"][:2] == ["conv3d", "depth_10_bn"] and "depth_13_conv" in report["skipped"]
    x = np.random.default_rng(2).uniform(0, 1, (1, 16, 16, 8, 1)).astype("float32")
    want = keras.Model(ref.input, ref.get_layer("depth_7_relu").output)(_cf(x)).numpy()
    got = keras.Model(model.input, model.get_layer("stage4_out").output)(x).numpy()
    assert np.abs(got - np.moveaxis(want, 1, -1)).max() <= 1e-4


def test_parameter_count_and_layout_errors(tmp_path):
    full, _ = genesis_reference(filters=32, shape=(1, 64, 64, 32))
    model = genesis_unet3d(input_shape=(64, 64, 32, 1))
    assert model.count_params() == full.count_params() == get_registry().get("unet3d_genesis").params
    small, _ = genesis_reference(filters=4)
    small.save_weights(tmp_path / "g.h5")
    with pytest.raises(WeightsError, match=r"tensor 'depth_0_conv/kernel' has shape \(3, 3, 3, 1, 4\) in the file "
                                           r"but the model's layer 'depth_0_conv' needs \(3, 3, 3, 1, 8\)"):
        convert_genesis.load_file(genesis_unet3d(filters=8), tmp_path / "g.h5")
    with pytest.raises(WeightsError, match=r"tensor 'depth_6_conv/kernel' has shape \(3, 3, 3, 32, 32\) in the file"):
        convert_genesis.load_file(genesis_unet3d(filters=4, depth=3), tmp_path / "g.h5")  # decoder numbering shifts
    with pytest.raises(WeightsError, match=r"encoder layers \['depth_6_bn', 'depth_6_conv', 'depth_7_bn', "
                                           r"'depth_7_conv'\] .* deeper network"):
        convert_genesis.load_file(genesis_unet3d(filters=4, depth=3, head="classification"), tmp_path / "g.h5")
    keras.Sequential([keras.Input((4,)), L.Dense(2, name="dense")]).save_weights(tmp_path / "other.h5")
    with pytest.raises(WeightsError, match=r"no depth_<n>_conv"):
        convert_genesis.load_file(model, tmp_path / "other.h5")


def test_registry_entry_never_downloads_the_unhashed_file(isolated_home):
    with pytest.raises(WeightsError, match=r"knows no hash for https://huggingface.co/MrGiovanni/ModelsGenesis/"
                                           r"resolve/main/Genesis_Chest_CT.h5, so the zoo does not download it"):
        zoo.load("unet3d_genesis", weights="genesis_chest_ct")
    spec = get_registry().get("unet3d_genesis").weights["genesis_chest_ct"]
    assert spec.commercial_use is False and "non-commercial" in spec.license.lower()
