"""The export sweep: every registry entry x its spatial dims exports and verifies in LiteRT
(deeper copies of a kept entry's builder once, through it: ``DEEPER_COPIES``).

At the registry sweep's small size (tests/_sweep.py ``sweep_kwargs``): 2D entries in
float32 and float16, 3D entries in float16 (the 3D rewrite is the same graph in every mode; the
float32 3D path is covered by export/test_export_rewrite3d.py), each verified against Keras on
phantoms by the export itself (it raises when the thresholds fail), with builtin ops only and,
in 3D, no 3D op left in the file. int8: every entry whose registry ``recipes`` list a QAT
recipe; until the compression recipes exist, one entry per family (``INT8_FALLBACK``). A new
entry is covered with no new test code.
"""
import numpy as np
import pytest
from _sweep import CASES, REG, sweep_kwargs

import zoo

# one entry (and dimension) per family, until registry recipes name the QAT entries
INT8_FALLBACK = [("alexnet", 2), ("vgg11_bn", 2), ("googlenet_bn", 2), ("resnet18", 2), ("resnet50v2", 2),
                 ("unet", 2), ("unet3d", 3), ("fcdensenet56", 2), ("deeplabv3", 2), ("wgan", 2)]


def _is_qat(recipe):
    spec = REG.recipes.get(recipe)
    return "qat" in recipe or (
        spec is not None and "qat" in str(spec.kind) or "quant" in str(getattr(spec, "kind", ""))
    )


# Deeper copies: entries with the builder, layout and block type of a shallower entry that stays in
# both sweeps; only the number of blocks differs, so their files hold the same op types, and
# converting them would only repeat that entry's graph with more blocks (as issue 9 asks of the
# .h5 round trips: once per family). hub/test_registry_sweep.py still builds, runs and counts every one.
DEEPER_COPIES = {"resnet34", "resnet101", "resnet152", "resnet101_tv", "resnet152_tv", "resnet101v2", "resnet152v2",
                 "vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn", "fcdensenet67", "fcdensenet103",
                 "deeplabv3_resnet101"}


def _qat_cases():
    cases = [(n, d) for n, d in CASES if any(_is_qat(r) for r in REG.models[n].recipes) and n not in DEEPER_COPIES]
    return cases or [c for c in INT8_FALLBACK if c in CASES]


def _network(name, dims):
    entry = REG.get(name)
    model = zoo.load(name, **sweep_kwargs(entry, dims))
    return (model.generator if entry.task == "generation" else model), entry


def _check_file(result, dims):
    """The written file runs in a fresh interpreter, holds builtin ops only (no 3D op in 3D)."""
    from zoo.export import ops as export_ops
    content = open(result.path, "rb").read()
    ops = export_ops.read_ops(content)
    assert not export_ops.unsupported_ops(ops), "Flex/custom ops in the file"
    if dims == 3:
        assert not [o["op"] for o in ops if o["op"].endswith("_3D")], "3D ops left after the rewrite"
    runner = zoo.load_tflite(result.path)  # a fresh interpreter on the written file, its sidecar
    assert runner.sidecar["sha256"] and runner.sidecar["mode"] == result.mode
    x = np.zeros(runner.input_shape[1:], "float32")
    assert np.all(np.isfinite(runner.run_one(x)))


FLOAT = [(n, d) for n, d in CASES if n not in DEEPER_COPIES]


@pytest.mark.slow
@pytest.mark.parametrize("name,dims", FLOAT, ids=[f"{n}-{d}d" for n, d in FLOAT])
def test_export_every_entry(name, dims, tmp_path):
    net, entry = _network(name, dims)
    modes = ("float16",) if dims == 3 else ("float32", "float16")
    sizes = {}
    for mode in modes:
        result = zoo.export(net, tmp_path / f"{name}_{mode}.tflite", quantization=mode, verify_samples=2,
                            latency_runs=0)
        assert result.verification["decides"] == "rel_max_abs_diff" and result.passed is True
        _check_file(result, dims)
        sizes[mode] = result.bytes
    if len(sizes) == 2:  # float16 weights: about half the file
        assert sizes["float16"] < 0.6 * sizes["float32"]


def _trained_output_range(generator):
    """An untrained generator's tanh outputs stay within about +-0.01, under two steps of int8
    TANH's fixed 1/128 grid (the export warns about it: export/test_export.py); a trained one's
    span [-1, 1]. Scale the last kernel so the outputs reach +-0.5 as a trained generator's do."""
    z = np.random.default_rng(0).standard_normal((4,) + tuple(generator.input_shape[1:])).astype("float32")
    spread = float(np.abs(generator(z, training=False).numpy()).max())
    last = next(layer for layer in reversed(generator.layers) if getattr(layer, "kernel", None) is not None)
    last.kernel.assign(last.kernel * (0.5 / spread))


INT8 = _qat_cases()


def test_every_deeper_copy_has_a_kept_sibling_of_its_builder():
    kept = {REG.get(n).builder for n, _ in INT8}
    for name in DEEPER_COPIES:
        assert name in REG.names() and REG.get(name).builder in kept, name


@pytest.mark.slow
@pytest.mark.parametrize("name,dims", INT8, ids=[f"{n}-{d}d" for n, d in INT8])
def test_export_int8_per_family(name, dims, tmp_path):
    """Full-integer files: integer ops only (besides the float boundary) whose outputs follow
    the Keras model's. An untrained model's decisions are near ties and its unnormalised
    activations grow layer by layer, so the task thresholds (top-1 / Dice) and the size ratio
    are checked on trained, wider models (export/test_export.py, tools/bench_export.py); here the
    int8 outputs must correlate with the float ones (a wrong weight or layout gives ~0)."""
    net, entry = _network(name, dims)
    if entry.task == "generation":
        _trained_output_range(net)
    result = zoo.export(net, tmp_path / f"{name}.tflite", quantization="int8", calibration_samples=4,
                        verify_samples=2, verify="warn", latency_runs=0)
    # the only float ops allowed: the documented float islands of the model's layers (LRN has no
    # integer kernel in LiteRT: SQUARE, POW, ... stay float; zoo.compress computes the same list)
    from zoo.compress._quantize import float_ops
    allowed = set(float_ops(net))
    assert {o["op"] for o in result.float_ops} <= allowed, result.float_ops
    assert result.verification["metrics"]["correlation"] > 0.95, result.verification
    _check_file(result, dims)
