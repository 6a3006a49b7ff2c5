"""zoo.export: the modes, the verification and its thresholds, the sidecar, bad input."""
import json
import warnings

import numpy as np
import pytest

import zoo
from zoo._keras import keras
from zoo.data import phantom_arrays
from zoo.export import ops as export_ops
from zoo.export import verify as V
from zoo.export.errors import UncoveredLayerError, VerificationError

L = keras.layers


def _fit(model, x, y, epochs):
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    return model


@pytest.fixture(scope="module")
def unet2d():
    """A small 2D U-Net trained on 3-class phantoms: its decisions are not ties, so int8 can be
    judged by Dice as the issue asks."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # unseeded, 12 epochs leave some inits underfit (near ties)
    x, y = phantom_arrays(96, spatial_dims=2, size=32, num_classes=3, seed=3)
    model = zoo.load("unet", filters=8, num_classes=3, input_shape=(32, 32, 1))
    return _fit(model, x, y, 12)


@pytest.fixture(scope="module")
def classifier():
    """A small CNN trained on phantom lesion counting (classification phantoms, 2 classes).
    BN momentum 0.9 and a global max pool: with the default 0.99 its 240 steps leave the moving
    statistics so far off that inference predicts one class for every input (a top-1 agreement
    of 1.0 that proves nothing); this one classifies held-out phantoms correctly."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    x, y = phantom_arrays(128, spatial_dims=2, size=32, num_classes=2, task="classification", seed=4)
    inp = keras.Input((32, 32, 1))
    h = inp
    for i, f in enumerate((8, 16, 32)):
        h = L.Conv2D(f, 3, padding="same", use_bias=False, name=f"stage{i}_conv")(h)
        h = L.BatchNormalization(momentum=0.9, name=f"stage{i}_bn")(h)
        h = L.ReLU(name=f"stage{i}_relu")(h)
        h = L.MaxPooling2D(name=f"stage{i}_out")(h)
    out = L.Dense(2, name="classifier")(L.GlobalMaxPooling2D()(h))
    return _fit(keras.Model(inp, out, name="cnn"), x, y, 15)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- modes
@pytest.mark.slow  # measured 14.9 s in the quick tier
def test_float32_export_is_verified_and_described(unet2d, tmp_path):
    result = zoo.export(unet2d, tmp_path / "u.tflite", verify_samples=4, latency_runs=3)
    assert _files(tmp_path) == ["u.tflite", "u.tflite.json"]
    assert result.passed and result.verification["decides"] == "rel_max_abs_diff"
    assert result.verification["metrics"]["rel_max_abs_diff"] <= 1e-4
    assert result.verification["metrics"]["min_dice"] > 0.999
    assert result.input_shape == [1, 32, 32, 1] and result.output_shape == [1, 32, 32, 3]
    assert {"CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D"} <= {o["op"] for o in result.ops}
    assert result.latency["keras_ms"] > 0 and result.latency["litert_ms"] > 0
    d = result.to_dict()
    json.dumps(d)  # serialisable as is
    assert d["passed"] is True and d["bytes"] == (tmp_path / "u.tflite").stat().st_size
    text = str(result)
    assert "PASSED" in text and "float32" in text and "LiteRT" in text and "CONV_2D" in text
    side = json.loads((tmp_path / "u.tflite.json").read_text())
    assert side["sha256"] == __import__("hashlib").sha256((tmp_path / "u.tflite").read_bytes()).hexdigest()
    assert (side["task"], side["num_classes"], side["patch_size"]) == ("segmentation", 3, [32, 32])
    assert side["entry"] == "unet" and side["verification"]["passed"] is True


@pytest.mark.slow
def test_quantized_modes_sizes_dtypes_and_verification(unet2d, tmp_path):
    sizes, results = {}, {}
    for mode in ("float32", "float16", "dynamic", "int8", "int16x8"):
        results[mode] = zoo.export(unet2d, tmp_path / f"{mode}.tflite", quantization=mode,
                                   calibration_samples=16, verify_samples=8, latency_runs=0)
        sizes[mode] = results[mode].bytes / (tmp_path / f"{mode}.tflite").stat().st_size
        assert results[mode].passed, (mode, results[mode].verification)
    b = {m: r.bytes for m, r in results.items()}
    assert b["float16"] < 0.55 * b["float32"] and b["int8"] < 0.3 * b["float32"]
    assert b["dynamic"] < 0.3 * b["float32"]
    assert results["int8"].verification["decides"] == "min_dice"
    assert results["int8"].float_ops == []  # integer only between the input/output (de)quantize
    conv = [o for o in results["int8"].ops if o["op"] == "CONV_2D"]
    assert conv and all(o["dtypes"] == "int8,int32->int8" for o in conv)
    assert any("int16" in o["dtypes"] for o in results["int16x8"].ops)
    assert any(o["op"] == "DEQUANTIZE" and o["dtypes"].startswith("float16") for o in results["float16"].ops)


def test_int8_io_takes_and_gives_integers(classifier, tmp_path):
    result = zoo.export(classifier, tmp_path / "c.tflite", quantization="int8", int8_io=True,
                        representative_data="phantoms", calibration_samples=16, verify_samples=16,
                        latency_runs=0)
    assert result.input_dtype == "int8" and result.passed
    assert result.verification["metrics"]["top1_agreement"] >= 0.98
    side = json.loads((tmp_path / "c.tflite.json").read_text())
    scale, zero = side["input"]["quantization"]
    assert scale > 0 and -128 <= zero <= 127
    runner = zoo.load_tflite(tmp_path / "c.tflite")
    assert runner._in["dtype"] == np.int8 and runner._out["dtype"] == np.int8
    x, y = phantom_arrays(16, spatial_dims=2, size=32, task="classification", seed=99)
    want = classifier.predict_on_batch(x).argmax(-1)
    assert set(want) == {0, 1} and np.mean(want == y) >= 0.9  # a real classifier, not a constant
    np.testing.assert_array_equal(runner.predict_on_batch(x).argmax(-1), want)


def test_a_quantization_aware_model_exports_its_learnt_ranges(tmp_path):
    import tensorflow_model_optimization as tfmot
    x, y = phantom_arrays(64, spatial_dims=2, size=16, num_classes=2, task="classification", seed=5)
    inp = keras.Input((16, 16, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    qat = _fit(tfmot.quantization.keras.quantize_model(model), x, y, 2)
    with pytest.raises(zoo.InvalidArgumentError, match="quantization-aware.*'int8'"):
        zoo.export(qat, tmp_path / "f.tflite", quantization="float16")
    result = zoo.export(qat, tmp_path / "q.tflite", quantization="int8", verify_samples=8, latency_runs=0)
    assert result.mode == "qat" and any("fake-quant" in n for n in result.notes)
    assert result.float_ops == [] and result.passed
    # the file reproduces the simulated quantization: far closer than post-training int8 could be
    assert result.verification["metrics"]["rel_max_abs_diff"] < 1e-3
    with pytest.raises(zoo.InvalidArgumentError, match="zoo.compress"):
        zoo.export(model, tmp_path / "p.tflite", quantization="qat")


def test_float_ops_in_an_int8_file_warn_and_fail_strict(tmp_path):
    """LRN has no integer kernel (POW): the int8 file keeps it in float, says where, and
    strict=True refuses, naming the mode that works."""
    from zoo.models.layers import LocalResponseNormalization
    inp = keras.Input((16, 16, 1))
    h = LocalResponseNormalization(name="stem_lrn")(L.Conv2D(8, 3, padding="same", name="stem_conv")(inp))
    model = keras.Model(inp, L.Conv2D(2, 1, name="classifier")(h))
    with pytest.warns(UserWarning, match="stem_lrn"):
        result = zoo.export(model, tmp_path / "a.tflite", quantization="int8", calibration_samples=4,
                            verify="warn", verify_samples=2, latency_runs=0)
    assert result.float_ops and {o["layer"] for o in result.float_ops} == {"stem_lrn"}
    assert "float op" in str(result)
    with pytest.raises(UncoveredLayerError, match=r"stem_lrn.*quantization='float16'"):
        zoo.export(model, tmp_path / "b.tflite", quantization="int8", calibration_samples=4, strict=True,
                   latency_runs=0)
    assert not (tmp_path / "b.tflite").exists()


def test_an_output_finer_than_the_int8_grid_is_named(tmp_path):
    """int8 TANH has a fixed output step of 1/128: outputs within +-0.01 (an untrained
    generator's) cannot be resolved, and the export says so; the same model with outputs that
    span the range gets no such warning and follows Keras."""
    rng = np.random.default_rng(0)
    inp = keras.Input((16,))
    model = keras.Model(inp, L.Activation("tanh", name="head_tanh")(L.Dense(32, name="head_dense")(inp)))
    kernel = rng.standard_normal((16, 32)).astype("float32")
    data = rng.standard_normal((12, 16)).astype("float32")
    model.layers[1].set_weights([kernel * 0.0005, np.zeros(32, "float32")])
    with pytest.warns(UserWarning, match=r"output step is 0.0078.*reach only 0.00[0-9]+ \(\d\.\d steps\)"):
        small = zoo.export(model, tmp_path / "s.tflite", quantization="int8", representative_data=data,
                           calibration_samples=8, verify_samples=4, verify="warn", latency_runs=0)
    assert small.verification["metrics"]["correlation"] < 0.95  # what the warning explains
    model.layers[1].set_weights([kernel * 0.1, np.zeros(32, "float32")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide = zoo.export(model, tmp_path / "w.tflite", quantization="int8", representative_data=data,
                          calibration_samples=8, verify_samples=4, verify="warn", latency_runs=0)
    assert wide.verification["metrics"]["correlation"] > 0.99 and not wide.warnings


# --------------------------------------------------------------------------- verification
def test_compare_numbers_and_thresholds():
    ref = np.zeros((2, 4, 4, 3), "float32")
    ref[..., 0] = 1.0
    ref[0, :2, :2, 1] = 2.0   # 4 voxels of class 1 in sample 0
    got = ref.copy()
    got[0, 0, 0, 1] = 0.0     # one of them becomes class 0
    m = V.compare(ref, got, "segmentation")
    assert m["dice"][1] == pytest.approx(2 * 3 / (4 + 3))
    assert m["dice"][0] == pytest.approx(2 * 28 / (28 + 29)) and m["dice"][2] is None
    assert m["min_dice"] == pytest.approx(6 / 7) and m["max_abs_diff"] == 2.0
    assert V.judge(m, "int8", "segmentation") == (False, "min_dice 0.8571 (needs >= 0.95)")
    logits = np.array([[2.0, 1.0], [0.0, 1.0]] * 50)
    flipped = logits.copy()
    flipped[0] = [1.0, 2.0]
    c = V.compare(logits, flipped, "classification")
    assert c["top1_agreement"] == 0.99 and V.judge(c, "int8", "classification")[0]
    c = V.compare(logits, np.where(np.arange(100)[:, None] < 3, flipped[::-1], logits), "classification")
    assert not V.judge(c, "qat", "classification")[0]
    small = V.compare(np.ones((1, 3)) * 50, np.ones((1, 3)) * 50 + 0.004, "generation")
    assert small["rel_max_abs_diff"] == pytest.approx(0.004 / 50)
    assert V.judge(small, "float32", "generation")[0] and V.judge(small, "float16", "generation")[0]
    big = V.compare(np.ones((1, 3)), np.ones((1, 3)) + 2e-4, "generation")
    assert not V.judge(big, "float32", "generation")[0] and V.judge(big, "float16", "generation")[0]


def _broken_convert(monkeypatch, scale):
    """The export's converter, but converting a copy of the model whose last kernel is scaled:
    what a conversion bug (a wrong layout, a lost bias) would produce."""
    from zoo.export import api
    real = api.convert

    def broken(model, *args, **kwargs):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        last = copy.layers[-1]
        last.set_weights([w * scale for w in last.get_weights()])
        return real(copy, *args, **kwargs)
    monkeypatch.setattr(api, "convert", broken)


def test_a_broken_export_fails_verification_and_writes_nothing(unet2d, tmp_path, monkeypatch):
    _broken_convert(monkeypatch, 1.01)  # 1% off: far above float32's 1e-4
    with pytest.raises(VerificationError, match=r"rel_max_abs_diff .* \(needs <= 0.0001\).*Nothing was written") as e:
        zoo.export(unet2d, tmp_path / "u.tflite", verify_samples=2, latency_runs=0)
    assert _files(tmp_path) == []
    assert e.value.result.passed is False and e.value.result.verification["metrics"]["rel_max_abs_diff"] > 1e-3
    _broken_convert(monkeypatch, -1.0)  # flips every decision: int8-style thresholds fail too
    with pytest.warns(UserWarning, match="disagrees"):
        result = zoo.export(unet2d, tmp_path / "w.tflite", quantization="float16", verify="warn",
                            verify_samples=2, latency_runs=0)
    assert result.passed is False and "FAILED" in str(result) and (tmp_path / "w.tflite").exists()


# --------------------------------------------------------------------------- bad input
def _tiny():
    inp = keras.Input((16, 16, 1))
    return keras.Model(inp, L.Conv2D(2, 3, padding="same", name="classifier")(inp), name="tiny")


@pytest.mark.parametrize("case", ["missing_folder", "exists", "suffix", "shape", "channels", "mode",
                                  "not_a_model", "unknown_name", "generator_folder", "verify", "input_shape"])
def test_bad_input_is_a_clear_error_and_leaves_nothing(case, tmp_path):
    model, target, kwargs = _tiny(), tmp_path / "m.tflite", {}
    expect = {
        "missing_folder": r"does not exist; create it",
        "exists": r"exists; pass overwrite=True",
        "suffix": r"must end with \.tflite",
        "shape": r"shape \(20, 20, 1\) but the export input is "
        r"\(16, 16, 1\)",
        "channels": r"has 3 channel\(s\) but the model takes 1",
        "mode": r"quantization='int4' is not supported",
        "not_a_model": r"model object is not a keras.Model, a registry name",
        "unknown_name": r"'unet3dd' is not a keras.Model, .* Did you mean 'unet3d'",
        "generator_folder": r"latent vectors of length 8",
        "verify": r"verify='maybe'",
        "input_shape": r"input_shape=\(20, 20\) does not fit",
    }[case]
    if case == "missing_folder":
        target = tmp_path / "no" / "such" / "m.tflite"
    elif case == "exists":
        target.write_bytes(b"precious")
    elif case == "suffix":
        target = tmp_path / "m.tfl"
    elif case == "shape":
        kwargs["representative_data"] = np.zeros((4, 20, 20, 1), "float32")
    elif case == "channels":
        kwargs["representative_data"] = (np.zeros((4, 16, 16, 3), "float32"), np.zeros(4))
    elif case == "mode":
        kwargs["quantization"] = "int4"
    elif case == "not_a_model":
        model = object()
    elif case == "unknown_name":
        model = "unet3dd"
    elif case == "generator_folder":
        inp = keras.Input((8,))
        model = keras.Model(inp, L.Dense(4)(inp))
        kwargs["representative_data"] = str(tmp_path)
    elif case == "verify":
        kwargs["verify"] = "maybe"
    elif case == "input_shape":
        kwargs["input_shape"] = (20, 20)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(zoo.ZooError, match=expect):
        zoo.export(model, target, latency_runs=0, verify_samples=2, **kwargs)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing added or changed


def test_overwrite_replaces_an_existing_export(tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")
    result = zoo.export(_tiny(), target, overwrite=True, verify_samples=2, latency_runs=0)
    assert target.read_bytes()[4:8] == b"TFL3" and result.passed


def test_a_layer_without_a_builtin_names_the_mode_that_works(tmp_path):
    """A custom 3D max pool (raw tf.nn.max_pool3d) is outside the rewrite: TFLite cannot hold it,
    the error names the layer and quantization='savedmodel', and that mode does export it."""
    from zoo._keras import tf

    class RawPool3D(L.Layer):
        def call(self, x):
            return tf.nn.max_pool3d(x, 2, 2, "VALID")

    inp = keras.Input((8, 8, 8, 1))  # smaller than phantoms: they are cut to the size
    model = keras.Model(inp, L.Conv3D(2, 1, name="classifier")(RawPool3D(name="raw_pool")(inp)))
    with pytest.raises(UncoveredLayerError, match=r"MaxPool3D \(layer raw_pool\).*'savedmodel'"):
        zoo.export(model, tmp_path / "m.tflite", verify_samples=2, latency_runs=0)
    assert _files(tmp_path) == []
    result = zoo.export(model, tmp_path / "m_saved", quantization="savedmodel", verify_samples=2)
    assert result.passed and (tmp_path / "m_saved" / "saved_model.pb").exists()


def test_an_uncovered_3d_layer_exports_in_float_and_names_float16_for_int8(tmp_path):
    inp = keras.Input((6, 6, 6, 1))
    out = L.Conv3DTranspose(2, 3, strides=2, output_padding=1, name="up")(L.Conv3D(4, 3, padding="same")(inp))
    model = keras.Model(inp, out)
    result = zoo.export(model, tmp_path / "f.tflite", quantization="float16", verify_samples=2, latency_runs=0)
    assert result.passed and any("up (Conv3DTranspose)" in n for n in result.notes)
    assert "CONV_3D_TRANSPOSE" in {o["op"] for o in result.ops}
    with pytest.raises(UncoveredLayerError, match=r"up \(CONV_3D_TRANSPOSE\).*quantization='float16'"):
        zoo.export(model, tmp_path / "i.tflite", quantization="int8", strict=True, calibration_samples=4,
                   verify_samples=2, latency_runs=0)


def test_ops_reader_on_a_real_file(classifier, tmp_path):
    zoo.export(classifier, tmp_path / "c.tflite", verify_samples=2, latency_runs=0)
    ops = export_ops.read_ops((tmp_path / "c.tflite").read_bytes())
    names = [o["op"] for o in ops]
    assert names.count("CONV_2D") == 3 and "FULLY_CONNECTED" in names and "REDUCE_MAX" in names
    conv = next(o for o in ops if o["op"] == "CONV_2D")
    assert conv["inputs"] == ["FLOAT32", "FLOAT32", "FLOAT32"] and export_ops.layer_of(conv["name"]).startswith("stage")


def test_the_input_range_warning_of_int8_files(classifier, tmp_path):
    zoo.export(classifier, tmp_path / "c.tflite", quantization="int8", calibration_samples=8,
               verify_samples=8, latency_runs=0)
    runner = zoo.load_tflite(tmp_path / "c.tflite")
    x, _ = phantom_arrays(2, spatial_dims=2, size=32, task="classification", seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.run_one(x[0])  # in range: silent
        few = x[0].copy()
        few.flat[:5] = 50.0  # a few extreme voxels of an ordinary input clip harmlessly: silent
        runner.run_one(few)
        runner.run_one(np.full_like(x[0], -40.0))  # a constant (padding) patch says nothing: silent
    with pytest.warns(UserWarning, match=r"\d+% of an input's values lie outside the range the file was calibrated on"):
        runner.run_one(x[1] * 10)


def test_predict_on_the_tflite_file_equals_predict_on_keras(unet2d, tmp_path):
    """zoo.predict slides the exported patch over a larger image: float32 gives Keras'
    probabilities within its threshold, int8 its label map at Dice >= 0.95."""
    from zoo.export.verify import dice_per_class
    image = phantom_arrays(1, size=(48, 40), num_classes=3, seed=11)[0][0]
    zoo.export(unet2d, tmp_path / "f.tflite", verify_samples=2, latency_runs=0)
    zoo.export(unet2d, tmp_path / "i.tflite", quantization="int8", calibration_samples=16, verify_samples=8,
               latency_runs=0)
    p_keras = zoo.predict(unet2d, image, return_probabilities=True)
    p_tflite = zoo.predict(tmp_path / "f.tflite", image, return_probabilities=True)
    assert p_tflite.shape == p_keras.shape == (48, 40, 3)
    np.testing.assert_allclose(p_tflite, p_keras, atol=1e-4)
    labels, want = zoo.predict(str(tmp_path / "i.tflite"), image), p_keras.argmax(-1)
    dice = [d for c, d in enumerate(dice_per_class(want, labels, 3)) if d is not None and (want == c).any()]
    assert len(dice) >= 2 and min(dice) >= 0.95, dice


def test_a_quantized_file_verified_on_too_few_inputs_warns_instead_of_being_refused(unet2d, tmp_path, monkeypatch):
    """zoo run on a first try's two validation pictures verified its int8 file on one input and
    stopped at its last stage on one 0.90 Dice: a decision's agreement on so few inputs says
    little, so the file is written with a warning naming how to have it judged."""
    _broken_convert(monkeypatch, -1.0)  # flips every decision
    with pytest.warns(UserWarning, match=r"Only 2 verification inputs: too few to refuse the file on"):
        result = zoo.export(unet2d, tmp_path / "q.tflite", quantization="dynamic", verify_samples=2, latency_runs=0)
    assert result.passed is False and (tmp_path / "q.tflite").exists()
    with pytest.raises(VerificationError):  # with enough inputs the same file is refused
        zoo.export(unet2d, tmp_path / "r.tflite", quantization="dynamic", verify_samples=4, latency_runs=0)
    assert not (tmp_path / "r.tflite").exists()
