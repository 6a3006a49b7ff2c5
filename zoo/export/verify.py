"""Verification of an export: the exported model against the Keras model on held-out inputs.

Numbers, for every task: ``max_abs_diff`` and ``mean_abs_diff`` of the outputs (logits),
``output_scale`` = the largest Keras output magnitude and ``rel_max_abs_diff`` = max abs diff /
max(1, output_scale) (a float32 rounding difference grows with the output's magnitude; for
outputs within [-1, 1] it is the plain max abs diff) and ``correlation`` (Pearson, all values).
Classifiers add ``top1_agreement``;
segmentation adds ``dice`` per class between the LiteRT and the Keras label maps (pooled over
the samples) and ``min_dice`` over the classes present in the Keras maps.

Thresholds, per mode (:data:`THRESHOLDS`): float32 ``rel_max_abs_diff <= 1e-4``, float16
``<= 1e-2``, SavedModel ``<= 1e-5``; quantized modes (dynamic, int8, int16x8, qat) judge the
task's decision: ``top1_agreement >= 0.98`` (classification), ``min_dice >= 0.95``
(segmentation), ``rel_max_abs_diff <= 0.1`` (generation). A quantized export of an untrained
model can fail these where the Keras model's decisions are near ties; verify trained models.
"""
import time

import numpy as np

from zoo.scoring import dice_per_class, labels

TASKS = ("classification", "segmentation", "generation")
FLOAT_TOL = {"float32": 1e-4, "float16": 1e-2, "savedmodel": 1e-5}
QUANTIZED_TASK = {"classification": ("top1_agreement", 0.98), "segmentation": ("min_dice", 0.95),
                  "generation": ("rel_max_abs_diff", 0.1)}
# mode -> task -> (the number that decides, its bound: a maximum for diffs, a minimum otherwise)
THRESHOLDS = {**{m: {t: ("rel_max_abs_diff", tol) for t in TASKS} for m, tol in FLOAT_TOL.items()},
              **{m: dict(QUANTIZED_TASK) for m in ("dynamic", "int8", "int16x8", "qat")}}


def threshold(mode, task):
    """``(metric, bound)`` of ``mode`` for ``task``."""
    return THRESHOLDS[mode].get(task, THRESHOLDS[mode]["generation"])


def _correlation(a, b):
    """Pearson correlation of all output values (1.0 for constant, equal outputs)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float(np.allclose(a, b))


def compare(ref, got, task):
    """The verification numbers of exported outputs ``got`` against Keras outputs ``ref``."""
    ref, got = np.asarray(ref, "float64"), np.asarray(got, "float64")
    diff = np.abs(ref - got)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    m = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "output_scale": scale,
         "rel_max_abs_diff": float(diff.max() / max(1.0, scale)), "correlation": _correlation(ref, got)}
    if task == "classification":
        m["top1_agreement"] = float(np.mean(labels(ref) == labels(got)))
    elif task == "segmentation":
        la, lb = labels(ref), labels(got)
        dice = dice_per_class(la, lb, ref.shape[-1])
        present = [d for c, d in enumerate(dice) if d is not None and np.any(la == c)]
        m["dice"] = dice
        m["min_dice"] = float(min(present)) if present else 1.0
        m["voxel_agreement"] = float(np.mean(la == lb))
    return m


def judge(metrics, mode, task):
    """``(passed, message)`` for ``metrics`` under the mode's threshold."""
    key, bound = threshold(mode, task)
    value = metrics[key]
    ok = value <= bound if key.endswith("diff") else value >= bound
    sign = "<=" if key.endswith("diff") else ">="
    return ok, f"{key} {value:.4g} (needs {sign} {bound:g})"


def keras_outputs(model, xs, batch=4):
    """The Keras model's main output for ``xs``, in small batches (eager calls: tracing a
    predict function would cost more than the few verification batches)."""
    outs = []
    for i in range(0, len(xs), batch):
        y = model(xs[i:i + batch], training=False)
        outs.append(np.asarray(y[0] if isinstance(y, (list, tuple)) else y, "float32"))
    return np.concatenate(outs)


def run_verification(model, exported_fn, xs, mode, task, reference=None):
    """Compare ``exported_fn(xs)`` with the Keras ``model`` (or precomputed ``reference``)."""
    ref = keras_outputs(model, xs) if reference is None else reference
    got = np.asarray(exported_fn(xs), "float32")
    metrics = compare(ref, got, task)
    passed, text = judge(metrics, mode, task)
    key, bound = threshold(mode, task)
    return {"samples": int(len(xs)), "metrics": metrics, "decides": key, "bound": bound,
            "passed": bool(passed), "summary": text}


def latency(model, runner, x, runs=10, warmup=2):
    """Median latency at batch 1 of Keras ``predict_on_batch`` and of the LiteRT interpreter,
    measured side by side: the two calls alternate, so a slow phase of a shared machine slows
    both alike."""
    x = np.asarray(x[None] if x.ndim == len(model.input_shape) - 1 else x, "float32")[:1]
    calls = {"keras": lambda: model.predict_on_batch(x), "litert": lambda: runner.run_one(x)}
    times = {k: [] for k in calls}
    for i in range(warmup + runs):
        for k in (("keras", "litert") if i % 2 else ("litert", "keras")):
            t = time.perf_counter()
            calls[k]()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    keras_ms, litert_ms = (float(np.median(times[k]) * 1e3) for k in ("keras", "litert"))
    return {"keras_ms": keras_ms, "litert_ms": litert_ms, "speedup": keras_ms / max(litert_ms, 1e-9),
            "runs": int(runs), "threads": int(runner.num_threads)}


__all__ = ["THRESHOLDS", "threshold", "compare", "judge", "run_verification", "latency", "keras_outputs"]
