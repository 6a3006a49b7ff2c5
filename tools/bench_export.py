"""Benchmark of zoo.export: sizes, verification and latency per mode, measured side by side in one run.

For AlexNet, ResNet50, U-Net, the 3D U-Net and FC-DenseNet56 at their full parameter counts,
each model is first trained briefly on the phantoms of its task (an untrained model's decisions
are near ties, which would make any int8 comparison meaningless; the training size is 128 px in
2D and 32 voxels in 3D, the models being fully convolutional or globally pooled), then exported
at the benchmark input size in every mode with ``zoo.export``. Printed per mode: the file size and
its ratio to the float32 file (and the zipped ratio), the verification number that decides (float
modes: max abs diff relative to the output range; int8/dynamic: top-1 agreement or the lowest per-
class Dice against Keras, on held-out phantoms) with PASS/FAIL, and the median latency at batch 1 of
Keras ``predict_on_batch`` and of the LiteRT interpreter, the two calls alternating (so a slow phase
of a shared machine slows both alike). Targets (the issue): float16 ~0.5x and int8 <= 0.3x of
float32; 3D U-Net int8 <= 0.3x with Dice >= 0.95 vs Keras on phantoms.

A second table checks the int8 3D convolution design on the issue's 16^3 x 4 -> 8 layer: the
mean relative int8 error of the rewrite (depth taps stacked on channels, one Conv2D), of the
alternative (one Conv2D per depth tap, outputs added: every partial sum requantized) and of a
plain Conv2D with the same fan-in.

    python tools/bench_export.py [--only unet3d,unet] [--modes float32,float16,dynamic,int8]
                                 [--train-steps 150] [--runs 10] [--quick] [--json out.json] [--no-record]

The rows and the Conv3D errors are written, with the command, commit, date, machine and wall time
(tools/_provenance.py), to ``docs/models/measured.json`` (``benchmarks.bench_export``; a card shows
its entry's rows) unless ``--no-record``; ``--json`` also writes them to a file.
"""
import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _provenance import Clock, record  # noqa: E402

import zoo  # noqa: E402
from zoo._keras import keras  # noqa: E402
from zoo.data import phantom_arrays  # noqa: E402

L = keras.layers
# name: (registry entry, builder overrides, input shape, task); full widths, the standard inputs
MODELS = {
    "alexnet": ("alexnet", {"num_classes": 2}, (224, 224, 3), "classification"),
    "resnet50": ("resnet50", {"num_classes": 2}, (224, 224, 3), "classification"),
    "unet": ("unet", {"num_classes": 2}, (256, 256, 1), "segmentation"),
    "unet3d": ("unet3d", {"num_classes": 3}, (64, 64, 64, 1), "segmentation"),
    "fcdensenet56": ("fcdensenet56", {"num_classes": 3}, (224, 224, 3), "segmentation"),
}
QUICK = {"alexnet": (128, 128, 3), "resnet50": (128, 128, 3), "unet": (128, 128, 1),
         "unet3d": (32, 32, 32, 1), "fcdensenet56": (128, 128, 3)}


def train(name, shape, task, steps, batch):
    """The model (any input size), trained on phantoms at the training size (2D 128 px, 3D 32
    voxels: training at 224 px or 64^3 would take most of an hour on a CPU)."""
    entry, overrides, _, _ = MODELS[name]
    dims = len(shape) - 1
    model = zoo.load(entry, input_shape=(None,) * dims + shape[-1:], in_channels=shape[-1], **overrides)
    if steps:
        n = max(batch * 8, 16)
        x, y = phantom_arrays(n, spatial_dims=dims, size=QUICK[name][:-1],
                              num_classes=overrides["num_classes"], task=task, in_channels=shape[-1], seed=1)
        model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        epochs = max(1, steps // (n // batch))
        t = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
        print(f"  trained {name} {epochs * (n // batch)} steps in {time.perf_counter() - t:.0f} s", flush=True)
    return model


def bench_model(name, shape, task, modes, args, folder, records):
    model = train(name, shape, task, args.train_steps, 4 if len(shape) == 4 else 2)
    rows, base = [], None
    for mode in modes:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = zoo.export(model, folder / f"{name}_{mode}.tflite", quantization=mode, verify="warn",
                                input_shape=shape[:-1],
                                calibration_samples=args.calibration, verify_samples=args.verify,
                                latency_runs=args.runs, seed=2)
        base = result.bytes if mode == "float32" else base
        v = result.verification
        records.append({"model": name, "entry": MODELS[name][0], "input": "x".join(map(str, shape[:-1])),
                        "mode": mode, "bytes": int(result.bytes), "zipped_bytes": int(result.zipped_bytes),
                        "x_float32": round(result.bytes / base, 4), "decides": v["decides"],
                        "value": float(v["metrics"][v["decides"]]), "passed": bool(v["passed"]),
                        "keras_ms": round(float(result.latency["keras_ms"]), 2),
                        "litert_ms": round(float(result.latency["litert_ms"]), 2),
                        "float_ops": ", ".join(sorted({o["op"] for o in result.float_ops}))})
        rows.append([name, mode, f"{result.bytes / 2 ** 20:.1f}",
                     f"{result.bytes / base:.2f}x" if base else "-",
                     f"{result.zipped_bytes / base:.2f}x" if base else "-",
                     f"{v['decides']} {v['metrics'][v['decides']]:.3g}", "PASS" if v["passed"] else "FAIL",
                     f"{result.latency['keras_ms']:.1f}", f"{result.latency['litert_ms']:.1f}",
                     f"{result.latency['speedup']:.2f}x",
                     "none" if not result.float_ops else str(len(result.float_ops))])
        print(f"  {name} {mode}: {time.perf_counter() - t:.0f} s", flush=True)
    keras.backend.clear_session()
    return rows


def conv3d_int8_errors():
    """The issue's 16^3 x 4 -> 8 measurement: stacked taps vs per-tap partial sums vs Conv2D."""
    from zoo.export.convert import convert
    from zoo.export.layers3d import DepthTaps, UnfoldDepth
    from zoo.export.rewrite3d import rewrite_3d
    from zoo.export.runtime import TFLiteModel
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((16, 16, 16, 16, 4)).astype("float32")
    x = rng.standard_normal((4, 16, 16, 16, 4)).astype("float32")

    def err(model, xs, cal):
        run = TFLiteModel(content=convert(model, (1,) + model.input_shape[1:], "int8", cal))
        got, want = run.predict_on_batch(xs), model.predict_on_batch(xs)
        return float(np.abs(got - want).mean() / np.abs(want).mean())
    inp = keras.Input((16, 16, 16, 4))
    conv3d = keras.Model(inp, L.Conv3D(8, 3, padding="same")(inp))
    kernel, bias = conv3d.layers[1].get_weights()
    conv3d.layers[1].set_weights([kernel, rng.standard_normal(8).astype("float32") * 0.1])
    kernel, bias = conv3d.layers[1].get_weights()
    stacked = rewrite_3d(conv3d, batch_size=1)
    i2 = keras.Input((16, 16, 16, 4), batch_size=1)
    parts = []
    for j in range(3):
        conv = L.Conv2D(8, 3, padding="same", use_bias=j == 0)
        parts.append(conv(DepthTaps([j], 1, 16, pad=(1, 1))(i2)))
        conv.set_weights([kernel[j]] + ([bias] if j == 0 else []))
    summed = keras.Model(i2, UnfoldDepth(16)(L.Add()(parts)))
    assert np.abs(summed.predict_on_batch(x[:1]) - conv3d.predict_on_batch(x[:1])).max() < 1e-4
    i3 = keras.Input((16, 16, 12))
    plain = keras.Model(i3, L.Conv2D(8, 3, padding="same")(i3))
    flat = x[:, 0].repeat(3, -1)
    return [("rewrite: depth taps on channels, one Conv2D", err(stacked, x, calib)),
            ("alternative: one Conv2D per tap, outputs added", err(summed, x, calib)),
            ("plain Conv2D, same fan-in (3 x 4 channels)", err(plain, flat, calib[:, 0].repeat(3, -1)))]


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"
    out = [line, "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--modes", default="float32,float16,dynamic,int8")
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--calibration", type=int, default=16)
    p.add_argument("--verify", type=int, default=8)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="smaller inputs (2D 128 px, 3D 32 voxels)")
    p.add_argument("--json", help="also write the rows (with their provenance) to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not write docs/models/measured.json")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(MODELS)
    modes = args.modes.split(",")
    if modes[0] != "float32":
        modes = ["float32"] + [m for m in modes if m != "float32"]
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            shape = QUICK[name] if args.quick else MODELS[name][2]
            print(f"{name} at {'x'.join(map(str, shape))}", flush=True)
            rows += bench_model(name, shape, MODELS[name][3], modes, args, Path(tmp), records)
    header = ["model", "mode", "MB", "size vs float32", "zipped vs float32", "verification (vs Keras)",
              "", "Keras ms", "LiteRT ms", "LiteRT speedup", "float ops"]
    print("\n" + table(header, rows))
    print("\nint8 error of a 16^3 x 4 -> 8 Conv3D (mean |int8 - float| / mean |float|):\n")
    errors = conv3d_int8_errors()
    print(table(["int8 form", "error"], [[form, f"{e:.2%}"] for form, e in errors]))
    data = {"settings": {k: v for k, v in vars(args).items() if k not in ("json", "no_record")}, "rows": records,
            "conv3d": [{"form": form, "error": round(e, 6)} for form, e in errors]}
    if args.json:
        Path(args.json).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not args.no_record:
        record(None, "bench_export", data, clock)


if __name__ == "__main__":
    main()
