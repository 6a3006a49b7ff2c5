"""Recipes x the registry: every entry x every recipe it lists passes the pre-training check at the
sweep's small size (no training; a new entry is covered with no new test code), and, for one entry
per family, the guarantees after a short real run: sparsity per pruned layer, values per clustered
kernel, and an int8 TFLite conversion with only the entry's documented float islands."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.compress._quantize import float_ops
from zoo.compress.listing import check_entry, sweep_kwargs
from zoo.compress.recipes import RecipeNotApplicableError
from zoo.hub.contract import kernel_of
from zoo.hub.registry import get_registry

REG = get_registry()
ENTRIES = [n for n in REG.names() if REG.models[n].recipes]


# the deepest ResNets take 12-21 s each on the 2-core CI machine: the slow tier (their families stay
# quick); the ResNet-50s measured 4.9-7.1 s each in the quick tier (two workers on the 2-core machine)
SLOW = {"resnet101", "resnet101_tv", "resnet101v2", "resnet152", "resnet152_tv", "resnet152v2",
        "resnet50", "resnet50_tv", "resnet50v2"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in ENTRIES])
def test_every_listed_recipe_passes_the_check_at_the_sweep_size(name):
    entry = REG.get(name)
    for dims in entry.spatial_dims:
        model = zoo.load(name, **sweep_kwargs(entry, dims))
        for recipe in entry.recipes:
            reason = check_entry(name, recipe, dims, model)
            if dims == entry.spatial_dims[0]:  # the entry's own dims: every listed recipe applies
                assert reason is None, f"{name} {dims}D {recipe}: {reason}"
            elif reason is not None:  # the other dims may refuse only what tfmot cannot do there
                assert "before any training" in reason and ("3D" in reason or "Conv3D" in reason), reason
        keras.backend.clear_session()


def test_the_check_raises_the_recipe_error_for_an_unlisted_recipe():
    model = zoo.load("unet3d", **sweep_kwargs(REG.get("unet3d"), 3))
    from zoo.compress._check import plan
    from zoo.compress.recipes import resolve
    with pytest.raises(RecipeNotApplicableError):
        plan(model, resolve("qat_int8")[1])


def _int8_float_ops(qat_model):
    from ai_edge_litert.interpreter import Interpreter
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = Interpreter(model_content=converter.convert())
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    out = set()
    for op in interpreter._get_ops_details():
        kinds = {tensors[i]["dtype"] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0}
        if np.float32 in kinds and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            out.add(op["op_name"])
    return out


FAMILIES = [("alexnet", 2), ("alexnet_2012", 2), ("vgg11_bn", 2), ("googlenet", 2), ("resnet18", 2),
            ("resnet50v2", 2), ("fcdensenet56", 2), ("deeplabv2", 2), ("deeplabv3plus", 2), ("unet", 2),
            ("resnet18", 3), ("unet3d", 3)]


@pytest.mark.slow
@pytest.mark.parametrize("name,dims", FAMILIES, ids=[f"{n}-{d}d" for n, d in FAMILIES])
def test_family_guarantees_after_a_short_run(name, dims, tmp_path):
    entry = REG.get(name)
    kwargs = sweep_kwargs(entry, dims)
    if entry.task == "classification":
        kwargs["num_classes"] = 4  # the lesion-count phantoms have 2..6 classes
    if name == "deeplabv2":  # the atrous heads on basic blocks; deeplabv3plus keeps the bottleneck backbone
        kwargs["backbone_depth"] = 18  # (2.3x faster: 76 layers instead of 182)
    model = zoo.load(name, **kwargs)
    run = dict(epochs=1, steps_per_epoch=3, batch_size=2, verbose=0, tensorboard=False, learning_rate=1e-4,
               data_options={"n": 6}, patch_size=tuple(kwargs["input_shape"][:-1]))
    pruned, report = zoo.compress(model, "prune_80", "phantoms", out_dir=tmp_path / "p", **run)
    targets = [n for n in report["layers"] if n not in report["steps"][0]["excluded"]]
    assert targets
    for n in targets:
        assert abs(float(np.mean(kernel_of(pruned.get_layer(n)).numpy() == 0)) - 0.8) <= 0.01, (name, n)
    keras.backend.clear_session()
    clustered, report = zoo.compress(model, "cluster_16", "phantoms", out_dir=tmp_path / "k", **run)
    from zoo.compress._cluster import clusterable
    kernels = [n for n in report["layers"] if n not in report["steps"][0]["excluded"]
               and clusterable(model.get_layer(n), 16)]
    assert kernels
    for n in kernels:
        assert len(np.unique(kernel_of(clustered.get_layer(n)).numpy())) <= 16, (name, n)
    keras.backend.clear_session()
    if dims == 3:
        with pytest.raises(RecipeNotApplicableError, match="zoo.export"):
            zoo.compress(model, "qat_int8", "phantoms", out_dir=tmp_path / "q", **run)
        return
    if "qat_int8" not in entry.recipes:  # the registry does not claim QAT for it (DeepLabv2: see its entry)
        return
    qat, report = zoo.compress(model, "qat_int8", "phantoms", out_dir=tmp_path / "q", **run)
    allowed = set(float_ops(qat))
    assert set(report["float_ops"]) == allowed
    assert _int8_float_ops(qat) <= allowed, name
    if name in ("alexnet_2012", "googlenet"):  # LRN: the documented float island
        assert "POW" in allowed
    else:
        assert not allowed
