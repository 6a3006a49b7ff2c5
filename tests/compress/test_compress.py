"""zoo.compress: recipes, the pre-training check, pruning / clustering / QAT / chains / distillation
and their guarantees (sparsity per layer, values per kernel, int8 TFLite), the report, out_dir."""
import json

import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.compress import _prune
from zoo.compress.recipes import RecipeNotApplicableError, resolve
from zoo.data import phantom_arrays
from zoo.errors import InvalidArgumentError, ZooError
from zoo.hub.contract import kernel_of
from zoo.hub.registry import get_registry

QUIET = dict(verbose=0, tensorboard=False)
REG = get_registry()


def tiny_unet(**kw):
    return zoo.load("unet", **{"filters": 8, "depth": 2, "dropout": 0.0, "input_shape": (32, 32, 1), **kw})


def data2d(n=16, seed=0):
    return phantom_arrays(n, size=32, seed=seed)


def kernel(model, name):
    return model.get_layer(name).kernel.numpy()


def run(model, recipe, tmp_path, epochs=2, **kw):
    x, y = data2d()
    args = dict(epochs=epochs, out_dir=tmp_path / "c", batch_size=4, learning_rate=1e-3, **QUIET)
    args.update(kw)
    return zoo.compress(model, recipe, (x, y), (x[:4], y[:4]), **args)


# --------------------------------------------------------------------------- recipes
def test_every_registry_recipe_validates_and_chains_know_what_to_preserve():
    for name in REG.recipes:
        label, steps = resolve(name)
        assert steps and label == name
    assert [(s.kind, s.preserve) for s in resolve("prune_80+qat_int8")[1]] == [("prune", ()), ("qat", ("prune",))]
    assert [(s.kind, s.preserve) for s in resolve("cluster_16+qat_int8")[1]] == [("cluster", ()), ("qat", ("cluster",))]
    deep = resolve("deep_compression")[1]
    assert [s.name for s in deep] == ["prune_90", "cluster_16", "qat_int8"]
    assert deep[2].preserve == ("prune", "cluster") and deep[1].preserve == ("prune",)
    # a "+" chain of any defined recipes, and a dict recipe
    assert [s.kind for s in resolve("prune_50+cluster_32")[1]] == ["prune", "cluster"]
    assert resolve({"kind": "prune", "final_sparsity": 0.6})[1][0].get("final_sparsity") == 0.6


@pytest.mark.parametrize("recipe,match", [
    ("qat_int8+prune_80", "at most once, in the order distill -> prune -> cluster -> qat"),
    ("prune_50+prune_80", "at most once"),
    ("prune_77", "no recipe named 'prune_77'.*Did you mean"),
    ({"kind": "prune", "final_sparsity": 1.5}, "final_sparsity=1.5 must be a number with 0 < final_sparsity < 1"),
    ({"kind": "prune", "final_sparsity": 0.5, "frequncy": 3}, "unknown option.*'frequncy'"),
    ({"kind": "cluster", "clusters": 1}, "clusters=1 must be an integer with 2 <= clusters"),
    ({"kind": "cluster"}, "needs clusters"),
    ({"kind": "qat", "scheme": "4bit"}, "only default_8bit"),
    ({"kind": "ptq"}, "post-training quantization.*zoo.export"),
    ({"kind": "shrink"}, "kind 'shrink' is not one of"),
])
def test_bad_recipes_name_the_fix(recipe, match):
    with pytest.raises(InvalidArgumentError, match=match):
        resolve(recipe)


def test_every_entry_names_its_recipes_and_the_first_is_the_default():
    listed = [n for n in REG.names() if REG.models[n].recipes]
    assert len(listed) >= len(REG.names()) - 2  # all but the two GANs
    assert all(not REG.models[n].recipes for n in REG.names() if REG.models[n].task == "generation")
    assert REG.models["unet3d"].recipes[0] == "prune_80"  # no QAT in 3D: its default prunes
    assert REG.models["unet"].recipes[0] == "prune_80+qat_int8"
    assert zoo.info("unet")["recipes"] == list(REG.models["unet"].recipes)


# --------------------------------------------------------------------------- schedule
def test_schedule_reaches_the_target_on_short_runs_and_matches_tfmot_polynomial_decay():
    from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity
    sched = _prune.StepsSchedule(0.8, end_fraction=0.75, updates=16)
    for total in (1, 2, 7, 16, 100, 1001):
        begin, end, freq = sched.plan(total)
        assert 1 <= begin <= end <= total and (end - begin) % freq == 0  # the last update lands on end
        sched.set_total_steps(total)
        peer = tfmot_sparsity.PolynomialDecay(0.0, 0.8, begin, end, power=3, frequency=freq)
        updates = 0
        for step in range(1, total + 1):
            mine, theirs = sched(tf.constant(step, tf.int64)), peer(tf.constant(step, tf.int64))
            assert bool(mine[0]) == bool(theirs[0])
            if end > begin:  # tfmot divides by end - begin (NaN for a one-update run; ours: the target)
                np.testing.assert_allclose(float(mine[1]), float(theirs[1]), atol=1e-6)
            updates += bool(mine[0])
        assert float(sched(tf.constant(end, tf.int64))[1]) == pytest.approx(0.8) and updates >= 1
    # tfmot's defaults on a 16-step run: frequency 100 never prunes (the measurement)
    default = tfmot_sparsity.PolynomialDecay(0.0, 0.8, 0, 16)
    assert not any(bool(default(tf.constant(s, tf.int64))[0]) for s in range(1, 17))


# --------------------------------------------------------------------------- the pre-training check
def test_qat_on_3d_is_refused_before_training_listing_every_layer_and_the_export_path(tmp_path):
    model = zoo.load("unet3d", filters=4, depth=2, input_shape=(16, 16, 16, 1))
    with pytest.raises(RecipeNotApplicableError) as e:
        zoo.compress(model, "prune_80+qat_int8", out_dir=tmp_path / "c", **QUIET)
    msg = str(e.value)
    conv3d = [layer.name for layer in model.layers if type(layer).__name__ == "Conv3D"]
    assert all(f"{n} (Conv3D)" in msg for n in conv3d[:8]) and "MaxPooling3D" in msg
    assert "zoo.export(model, ..., quantization='int8')" in msg and "before any training" in msg
    assert not (tmp_path / "c").exists()  # nothing written


def test_mixed_precision_refuses_qat_and_clustering_before_training(tmp_path):
    for recipe in ("qat_int8", "cluster_16", "prune_80+qat_int8"):
        with pytest.raises(RecipeNotApplicableError, match="mixed precision.*mixed_precision=False"):
            zoo.compress(tiny_unet(), recipe, out_dir=tmp_path / recipe, mixed_precision=True, **QUIET)
        assert not (tmp_path / recipe).exists()


def test_every_problem_of_every_step_is_listed_at_once():
    from zoo.compress._check import plan
    inp = keras.Input((16, 16, 16, 3))
    x = keras.layers.Conv3D(6, 3, name="a")(inp)
    x = keras.layers.Conv3D(6, 3, name="b")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling3D()(x))
    with pytest.raises(RecipeNotApplicableError) as e:
        plan(model, resolve("prune_2of4+qat_int8")[1], mixed_precision=True)
    msg = str(e.value)
    assert "3 problem(s)" in msg  # 2:4 on 3D kernels, mixed precision, Conv3D
    assert "b: 3D kernel" in msg and "a (Conv3D), b (Conv3D)" in msg and "mixed precision" in msg
    with pytest.raises(InvalidArgumentError, match="exclude 'decoder_\\*' matches no layer"):
        plan(tiny_unet(), resolve({"kind": "prune", "final_sparsity": 0.5, "exclude": ["decoder_*"]})[1])


def test_nested_models_are_refused_with_the_reason():
    from zoo.compress._check import plan
    gan = zoo.load("wgan", filters=8, input_shape=(16, 16, 3))
    with pytest.raises(RecipeNotApplicableError, match="nested models.*generator"):
        plan(gan, resolve("prune_50")[1])


def test_list_recipes_says_what_applies_and_why_not():
    rows = {r["recipe"]: r for r in zoo.list_recipes("unet3d")}
    assert set(rows) == set(REG.recipes)
    assert rows["prune_80"]["default"] and rows["prune_80"]["applies"] and rows["prune_80"]["listed"]
    assert not rows["qat_int8"]["applies"] and "Conv3D" in rows["qat_int8"]["reason"]
    assert not rows["prune_2of4"]["applies"] and "3D kernel" in rows["prune_2of4"]["reason"]
    assert not rows["distill_resnet18"]["applies"] and "classification" in rows["distill_resnet18"]["reason"]
    assert rows["deep_compression"]["steps"] == ["prune_90", "cluster_16", "qat_int8"]


# --------------------------------------------------------------------------- guarantees, 2D and 3D
@pytest.mark.slow  # measured 15.8 s in the quick tier
def test_prune_reaches_the_target_in_every_pruned_layer_and_returns_a_plain_model(tmp_path):
    model = tiny_unet()
    before = [w.copy() for w in model.get_weights()]
    small, report = run(model, "prune_80", tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the input is untouched
    pruned = [n for n, row in report["layers"].items() if n not in ("stem_conv", "classifier")]
    assert len(pruned) == 11
    for name in pruned:
        assert abs(float(np.mean(kernel(small, name) == 0)) - 0.8) <= 0.01, name
    for name in ("stem_conv", "classifier"):  # excluded by contract role: dense
        assert np.mean(kernel(small, name) == 0) < 0.05
    assert [type(layer) for layer in small.layers] == [type(layer) for layer in model.layers]
    path = tmp_path / "plain.keras"
    small.save(path)  # a plain model: loads with Keras alone
    loaded = keras.models.load_model(path, compile=False)
    x = data2d(2)[0]
    np.testing.assert_allclose(loaded(x), small(x), rtol=1e-6, atol=1e-6)
    d = report.to_dict()
    # 8 training steps: the target is reached at half of them (the default end=0.5), step 4
    assert d["steps"][0]["schedule"][1] == 4 and d["size"]["compressed_zipped"] < d["size"]["float32_zipped"]
    text = str(report)
    assert "prune_80" in text and "sparsity" in text and "zipped" in text and "validation: loss" in text
    assert json.loads((tmp_path / "c" / "report.json").read_text())["recipe"] == "prune_80"
    # a finished out_dir is never trained over
    with pytest.raises(ZooError, match="already holds a finished compression"):
        run(tiny_unet(), "prune_80", tmp_path)


def test_a_score_that_falls_by_more_than_the_margin_is_a_warning_naming_the_fix():
    from zoo.compress.run import QUALITY_MARGIN, _warn_if_worse

    with pytest.warns(
        UserWarning,
        match=r"compress: unet with prune_80: dice fell from 0\.951 to 0\.014 on the validation "
        r"data after 3 epoch\(s\) per step; train each step longer .*zoo recipes unet",
    ):
        _warn_if_worse("unet", "prune_80", 3, {"loss": 0.1, "dice": 0.951, "iou": 0.9},
                       {"loss": 0.9, "dice": 0.014, "iou": 0.85})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the margin, or only the loss rose: silent
        _warn_if_worse("unet", "prune_80", 3, {"loss": 0.1, "dice": 0.95}, {"loss": 5.0, "dice": 0.95 - QUALITY_MARGIN})
        _warn_if_worse("unet", "qat_int8", 3, {}, {"dice": 0.1})  # no validation data: nothing to compare


@pytest.mark.slow  # over 20 s on the 2-core CI machine
def test_prune_and_cluster_in_3d(tmp_path):
    x, y = phantom_arrays(8, spatial_dims=3, size=16)
    model = zoo.load("unet3d", filters=4, depth=2, input_shape=(16, 16, 16, 1))
    small, report = zoo.compress(model, "prune_50", (x, y), epochs=2, out_dir=tmp_path / "p", batch_size=2, **QUIET)
    pruned = [layer.name for layer in model.layers if type(layer).__name__ in ("Conv3D", "Conv3DTranspose")
              and layer.name not in ("stem_conv", "classifier")]
    assert pruned
    for name in pruned:
        assert abs(float(np.mean(kernel(small, name) == 0)) - 0.5) <= 0.01, name
    clustered, _ = zoo.compress(model, "cluster_16", (x, y), epochs=1, out_dir=tmp_path / "k", batch_size=2, **QUIET)
    for name in pruned:
        assert len(np.unique(kernel(clustered, name))) <= 16, name


@pytest.mark.slow  # measured 11.8 s in the quick tier
def test_two_of_four_is_tfmots_structure(tmp_path):
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_utils import is_pruned_m_by_n
    small, report = run(tiny_unet(), "prune_2of4", tmp_path, epochs=1)
    checked = 0
    for name, row in report["layers"].items():
        layer = small.get_layer(name)
        if name in ("stem_conv", "classifier") or type(layer).__name__ != "Conv2D":
            continue
        assert is_pruned_m_by_n(tf.constant(kernel(small, name)), (2, 4)), name
        assert abs(row["sparsity"] - 0.5) <= 0.01
        checked += 1
    assert checked >= 8


@pytest.mark.slow  # measured 9.5 s in the quick tier
def test_clustering_keeps_at_most_k_values_per_kernel(tmp_path):
    small, report = run(tiny_unet(), "cluster_16", tmp_path, epochs=1)
    clustered = [n for n in report["layers"] if n not in ("stem_conv", "classifier")]
    for name in clustered:
        assert len(np.unique(kernel(small, name))) <= 16, name
    assert len(np.unique(kernel(small, "stem_conv"))) > 16  # excluded


def tflite_float_ops(qat_model):
    """TFLite op names (not QUANTIZE/DEQUANTIZE) that read or write a float32 tensor."""
    from ai_edge_litert.interpreter import Interpreter
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = Interpreter(model_content=converter.convert())
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    floats, ops = set(), []
    for op in interpreter._get_ops_details():  # before allocate_tensors: no delegate has taken ops yet
        ops.append(op["op_name"])
        kinds = {tensors[i]["dtype"] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0}
        if np.float32 in kinds and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            floats.add(op["op_name"])
    interpreter.allocate_tensors()
    return floats, ops, interpreter


@pytest.mark.slow  # measured 19.5 s in the quick tier
def test_qat_converts_to_int8_tflite_and_loads_through_zoo_load_model(tmp_path):
    small, report = run(tiny_unet(), "qat_int8", tmp_path, epochs=1)
    assert all(r["int8"] == "yes" for r in report["layers"].values())
    floats, ops, interpreter = tflite_float_ops(small)
    assert floats == set() and ops.count("DEQUANTIZE") == 1 and "CONV_2D" in ops  # int8 but the float I/O
    # the interpreter computes what the QAT model computes (up to int8 rounding)
    x = data2d(1)[0]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    lite = interpreter.get_tensor(out["index"])
    ref = np.asarray(small(x))
    scale = next(t["quantization"][0] for t in interpreter.get_tensor_details()
                 if t["dtype"] == np.int8 and tuple(t["shape"]) == ref.shape and t["quantization"][0] > 0)
    assert np.abs(lite - ref).max() <= 8 * scale  # a few int8 rounding steps of the output
    assert report["model_file"] == "model.h5"
    loaded = zoo.load_model(str(tmp_path / "c" / "model.h5"))
    np.testing.assert_allclose(loaded(x), ref, atol=1e-5)
    assert type(loaded.layers[2]).__name__ == "QuantizeWrapperV2"
    run_model = zoo.load_run(tmp_path / "c")  # the out_dir is a run folder too
    np.testing.assert_allclose(run_model(x), ref, atol=1e-5)


@pytest.mark.slow  # over 20 s on the 2-core CI machine
def test_deep_compression_keeps_zeros_and_clusters_through_qat(tmp_path):
    small, report = run(tiny_unet(), "deep_compression", tmp_path, epochs=1)
    inner = {layer.layer.name: layer for layer in small.layers if hasattr(layer, "layer")}
    compressed = [n for n in report["layers"] if n not in ("stem_conv", "classifier")]
    assert len(compressed) == 11
    for name in compressed:
        values = kernel_of(inner[name]).numpy()
        assert abs(float(np.mean(values == 0)) - 0.9) <= 0.01, name
        assert len(np.unique(values)) <= 16, name
    assert report.ratio_zipped > report["size"]["float32_bytes"] / report["size"]["float32_zipped"]
    floats, _, _ = tflite_float_ops(small)
    assert floats == set()


@pytest.mark.slow  # over 20 s on the 2-core CI machine
def test_cluster_preserving_qat_keeps_k_values_per_output_channel(tmp_path):
    small, report = run(tiny_unet(), "cluster_16+qat_int8", tmp_path, epochs=1)
    inner = {layer.layer.name: layer for layer in small.layers if hasattr(layer, "layer")}
    for name in [n for n in report["layers"] if n not in ("stem_conv", "classifier")]:
        values = kernel_of(inner[name]).numpy()
        per_channel = max(len(np.unique(values[..., c])) for c in range(values.shape[-1]))
        # tfmot's CQAT clusters Conv2D per output channel (as int8 quantizes it); others per kernel
        limit_axis = values if type(inner[name].layer).__name__ == "Conv2DTranspose" else None
        assert per_channel <= 16 and (limit_axis is None or len(np.unique(limit_axis)) <= 16), name


@pytest.mark.slow  # measured 11.9 s in the quick tier
def test_a_run_folder_is_an_input_and_rerunning_a_finished_step_is_not_training(tmp_path):
    x, y = data2d()
    zoo.finetune(tiny_unet(), (x, y), epochs=1, batch_size=4, out_dir=tmp_path / "run", **QUIET)
    small, report = zoo.compress(str(tmp_path / "run"), "prune_50", (x, y), epochs=1, batch_size=4,
                                 out_dir=tmp_path / "c", **QUIET)
    assert report["model"] == "unet" and report["input"] == str(tmp_path / "run")  # the entry, and where it came from
    assert abs(report["layers"]["stage2_conv1"]["sparsity"] - 0.5) <= 0.01
