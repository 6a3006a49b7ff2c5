"""The front door (zoo.resolve): every kind of model argument becomes (model, record) in one place,
and the record travels with the model through training, compression, export and prediction."""
import inspect
import json

import numpy as np
import pytest

import zoo
from zoo.errors import InvalidArgumentError
from zoo.record import ModelInfo, describe, info_of
from zoo.resolve import kind_of, resolve

TINY = dict(filters=4, depth=2, num_classes=2, in_channels=1)
FIT = dict(epochs=1, steps_per_epoch=2, validation_steps=1, patch_size=32, verbose=0, tensorboard=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finetune run, a compression of it and an int8 export of that, made once for the module."""
    root = tmp_path_factory.mktemp("front_door")
    model = zoo.load("unet", **TINY)
    zoo.finetune(model, "phantoms", "phantoms", out_dir=root / "run", **FIT)
    small, _ = zoo.compress(root / "run", "prune_50", val="phantoms", out_dir=root / "small", epochs=1,
                            steps_per_epoch=2, validation_steps=1, verbose=0, tensorboard=False)
    zoo.export(small, root / "small.tflite", quantization="float32", latency_runs=0)
    return root


def test_the_verbs_are_plain_functions_not_callable_modules():
    import zoo.compress.recipes  # noqa: F401 - importing a module of the package does not rebind the verb
    import zoo.export.rewrite3d  # noqa: F401
    for verb in (zoo.finetune, zoo.compress, zoo.export, zoo.predict, zoo.run):
        assert inspect.isfunction(verb), verb
    assert "quantization" in inspect.signature(zoo.export).parameters  # help(zoo.export) shows its options
    assert "return_probabilities" in inspect.signature(zoo.predict).parameters


def test_a_registry_model_carries_its_record():
    model = zoo.load("unet", **TINY)
    info = info_of(model)
    assert (info.name, info.task, info.spatial_dims, info.in_channels, info.num_classes, info.source) == \
        ("unet", "segmentation", 2, 1, 2, "registry")
    assert info.build["filters"] == 4 and info.path is None
    assert resolve(model, verb="test") == (model, info)


def test_a_model_built_outside_the_zoo_is_described_by_its_shapes():
    from zoo._keras import keras
    inputs = keras.Input((8, 8, 3))
    classifier = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(inputs)))
    assert (info_of(classifier).task, info_of(classifier).num_classes, info_of(classifier).source) == \
        ("classification", 5, "model")
    segmenter = keras.Model(inputs, keras.layers.Conv2D(4, 1)(inputs))
    assert describe(segmenter).task == "segmentation"
    with pytest.raises(ValueError, match="task='tumour'"):
        ModelInfo(name="x", task="tumour", spatial_dims=2)


def test_a_run_folder_gives_the_trained_weights_and_the_runs_record(trained):
    model, info = resolve(trained / "run", verb="test")
    assert info.source == "run" and info.path == str(trained / "run")
    assert info.patch_size == (32, 32) and info.train == "phantoms" and info.build["filters"] == 4
    best = zoo.load("unet", **TINY)
    best.load_weights(str(trained / "run" / "best.h5"))
    x = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    np.testing.assert_allclose(model.predict_on_batch(x), best.predict_on_batch(x), atol=1e-6)
    last, _ = resolve(trained / "run" / "last.h5", verb="test")  # a checkpoint inside the folder
    assert info_of(last).source == "run"


def test_a_compress_folder_is_an_honest_record_not_a_fake_finetune(trained):
    record = json.loads((trained / "small" / "compress.json").read_text())
    assert record["finished"] and record["recipe"] == "prune_50" and record["model_file"] == "model.keras"
    assert not (trained / "small" / "state.json").exists()  # no run folder pretending to be a fine-tune
    model, info = resolve(trained / "small", verb="test")
    assert info.source == "compress" and info.patch_size == (32, 32) and info.train == "phantoms"
    kernel = model.get_layer("stage2_conv1").kernel.numpy()
    assert np.mean(kernel == 0) >= 0.45  # the pruned weights


def test_a_tflite_file_is_for_predict_only(trained):
    runner, info = resolve(trained / "small.tflite", verb="predict")
    assert info.source == "tflite" and info.patch_size == (32, 32) and info.task == "segmentation"
    with pytest.raises(InvalidArgumentError, match=r"only zoo predict runs; export needs the Keras model"):
        zoo.export(trained / "small.tflite", trained / "again.tflite")
    labels = zoo.predict(trained / "small.tflite", np.zeros((40, 40, 1), np.float32))
    assert labels.shape == (40, 40)


def test_a_zoo_run_folder_means_its_last_keras_stage(trained, tmp_path, capsys):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "report.json").write_text("{}")
    import shutil
    shutil.copytree(trained / "run", folder / "1_finetune")
    shutil.copytree(trained / "small", folder / "2_prune_50")
    assert kind_of(folder) == "zoo_run"
    model, info = resolve(folder, verb="predict")
    assert info.source == "compress" and info.path == str(folder / "2_prune_50")
    assert "is a zoo run folder; using its last stage" in capsys.readouterr().err


def test_anything_else_is_refused_naming_what_is_taken(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"is not a keras.Model, a registry name or a finetune run folder\. "
                                                   r".* Did you mean 'unet'"):
        resolve("unte", verb="finetune", allow=("model", "name", "run"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidArgumentError, match="notes.txt' is not a keras.Model"):
        resolve(tmp_path / "notes.txt", verb="export")
    with pytest.raises(InvalidArgumentError,
                       match="is not a finetune run folder, a zoo.compress output folder or a zoo run folder"):
        zoo.load_run(tmp_path)


def test_the_record_reaches_the_export_sidecar_and_predict(trained):
    side = json.loads((trained / "small.tflite.json").read_text())
    assert side["entry"] == "unet" and side["patch_size"] == [32, 32] and side["task"] == "segmentation"


def test_a_models_default_data_is_its_own_never_a_silent_switch_to_phantoms(tmp_path):
    from zoo.record import training_data
    base = ModelInfo(name="unet", task="segmentation", spatial_dims=2)
    assert training_data(base, "compress") == "phantoms"  # unknown data: the built-in phantoms
    assert training_data(base.replace(train="hard_phantoms"), "compress") == "hard_phantoms"
    assert training_data(base.replace(train="tfds:isbi2012_em"), "export") == "tfds:isbi2012_em"
    (tmp_path / "scans").mkdir()
    assert training_data(base.replace(train=str(tmp_path / "scans")), "export") == str(tmp_path / "scans")
    with pytest.raises(InvalidArgumentError, match=r"trained on data in .*gone, which no longer exists; pass "
                                                   r"representative_data= \(zoo export --data DIR\)"):
        training_data(base.replace(train=str(tmp_path / "gone")), "export", arg="representative_data",
                      flag="zoo export --data DIR")
    with pytest.raises(InvalidArgumentError, match=r"trained on data in memory \(tuple\); pass train="):
        training_data(base.replace(train="tuple"), "compress")
