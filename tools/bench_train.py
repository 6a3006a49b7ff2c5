"""Benchmarks of the training side, measured side by side in one run (ratios, not absolutes).

1. Overhead of ``zoo.finetune`` (checkpoints, state.json, history, TensorBoard, NaN guard,
   resume point) over a plain ``model.fit`` of the same model on the same in-memory data,
   same loss, metrics and optimizer. Per epoch (epoch start to next epoch start, so each
   epoch's checkpoint writing counts; the first epoch, which traces, is dropped) both the wall
   time and the process CPU time (all threads) are recorded; step time = one batch end to the
   next. Repeats are paired and alternate their order (fit first, finetune first, ...).
   On a shared virtual machine other processes and the hypervisor (CPU "steal" time) stretch
   wall times at random, by 10-30% between consecutive epochs, so three estimates are printed:
   the median of the per-repeat wall ratios, the ratio of the fastest epochs, and the ratio of
   process CPU time per epoch - the work each side does, which steal and other processes do
   not count. The verdict uses the CPU-time ratio (median of the paired repeats); the zoo's
   own callback time is also measured directly, as a share of a plain epoch.
   Target: finetune / fit <= 1.05.
2. The NIfTI patch pipeline (``zoo.data.nifti`` over generated volumes, batched as
   finetune batches it) against the 3D U-Net's consumption in training steps, in patches/s.
   Target: pipeline / consumption >= 2, for the cached (default) and the uncached pipeline.

    python tools/bench_train.py [--repeats 5] [--quick] [--only overhead|pipeline]

A full run (neither ``--quick`` nor ``--only``) writes its results, with the command, commit,
date, machine and wall time (tools/_provenance.py), to ``docs/models/measured.json``
(``benchmarks.bench_train``), which ``tools/gen_cards.py`` renders in the README.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _provenance  # noqa: E402

import zoo  # noqa: E402
from zoo import losses, metrics  # noqa: E402
from zoo._keras import keras, tf  # noqa: E402
from zoo.data import phantom_arrays  # noqa: E402


class Clock(keras.callbacks.Callback):
    """Step times (one batch end to the next, inside an epoch) and per-epoch wall and process
    CPU times (one epoch's start to the next one's, or to the end of training); the first
    epoch (tracing) is dropped from all three."""

    def __init__(self):
        super().__init__()
        self.epoch_marks, self.cpu_marks, self.steps, self._last = [], [], [], None

    def _mark(self):
        self.epoch_marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())

    def on_epoch_begin(self, epoch, logs=None):
        self._mark()
        self._last, self._epoch = None, epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None and self._epoch > 0:
            self.steps.append(now - self._last)
        self._last = now

    def on_train_end(self, logs=None):
        self._mark()

    def epochs(self):
        return list(np.diff(self.epoch_marks)[1:])

    def cpu_epochs(self):
        return list(np.diff(self.cpu_marks)[1:])


def _run_fit(init, x, y, batch, epochs, filters):
    keras.backend.clear_session()
    model = zoo.load("unet", filters=filters, depth=3, dropout=0.0)
    model.set_weights(init)
    steps = len(x) // batch
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps * epochs,
                                                                                alpha=0.01)),
                  loss=losses.get_loss("dice_ce"), metrics=metrics.get_metrics("segmentation", 2))
    clock = Clock()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[clock])
    return clock


HOOK_TIME = {"epoch": [], "batch": []}


def _timed(cls, name, kind):
    """Wrap ``cls.name`` so each call's duration is added to HOOK_TIME[kind] (this run only)."""
    real = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            HOOK_TIME[kind].append(time.perf_counter() - t0)
    setattr(cls, name, wrapper)


def instrument():
    """Time the zoo's own callback work inside finetune: RunState (checkpoints, state.json,
    history.csv, resume point, NaN guard) and TensorBoard."""
    from zoo.train.runfolder import RunState
    for cls in (RunState, keras.callbacks.TensorBoard):
        _timed(cls, "on_epoch_end", "epoch")
        for hook in ("on_train_batch_begin", "on_train_batch_end"):
            if hook in vars(cls):
                _timed(cls, hook, "batch")


def _run_finetune(init, x, y, batch, epochs, filters):
    keras.backend.clear_session()
    model = zoo.load("unet", filters=filters, depth=3, dropout=0.0)
    model.set_weights(init)
    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        zoo.finetune(model, (x, y), epochs=epochs, batch_size=batch, out_dir=out, verbose=0,
                     callbacks=[clock])
    return clock


def bench_overhead(repeats, epochs, n, size, batch, filters):
    """Each repeat runs plain fit twice ("fit", "fit again": an A/A control that shows how much
    two identical runs differ on this machine) and finetune once, in an order rotated from
    repeat to repeat so a load trend hits all three alike."""
    x, y = phantom_arrays(n, size=size, num_classes=2)
    init = zoo.load("unet", filters=filters, depth=3, dropout=0.0).get_weights()
    runs = [("fit", _run_fit), ("finetune", _run_finetune), ("fit again", _run_fit)]
    rows = []
    for r in range(repeats):
        order = runs[r % 3:] + runs[:r % 3]
        got = {name: run(init, x, y, batch, epochs, filters) for name, run in order}
        row = {k: {"step": statistics.median(c.steps), "epoch": statistics.median(c.epochs()),
                   "cpu": statistics.median(c.cpu_epochs())} for k, c in got.items()}
        rows.append(row)
        print(f"  repeat {r + 1} ({' -> '.join(k for k, _ in order)}): step / epoch / CPU per epoch: "
              + "; ".join(f"{k} {v['step'] * 1e3:.1f} ms / {v['epoch']:.2f} s / {v['cpu']:.2f} s"
                          for k, v in row.items()), flush=True)
    return rows, n // batch


def write_volumes(folder, count, shape, seed=0):
    import nibabel as nib
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"), -1)
    for i in range(count):
        c = rng.uniform(-0.4, 0.4, 3)
        r = rng.uniform(0.2, 0.4, 3)
        inside = (((grid - c) / r) ** 2).sum(-1) <= 1
        core = (((grid - c) / (r / 2)) ** 2).sum(-1) <= 1
        label = inside.astype(np.uint8) + core.astype(np.uint8)  # classes 0, 1, 2
        image = rng.normal(0, 40, shape) + 300.0 * label - 100
        affine = np.diag([0.8, 0.8, 2.0, 1.0])
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), str(folder / "images" / f"c{i:03d}.nii.gz"))
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), str(folder / "labels" / f"c{i:03d}.nii.gz"))


def pipeline_rate(folder, patch, batch, cache, epochs=2, samples_per_volume=4):
    """Patches/s of the finetune input pipeline over NIfTI volumes (last epoch timed)."""
    from zoo.data import nifti
    from zoo.datapath.prepare import batched
    t0 = time.perf_counter()
    ds = nifti(folder / "images", folder / "labels", patch_size=patch, samples_per_volume=samples_per_volume,
               window=(-200, 400), num_classes=3, cache=cache)
    setup = time.perf_counter() - t0
    ds = batched(ds, global_batch=batch, training=True)
    rate = None
    for _ in range(epochs):
        count, t0 = 0, time.perf_counter()
        for images, _labels in ds:
            count += int(images.shape[0])
        rate = count / (time.perf_counter() - t0)
    return rate, setup


def consumption_rate(patch, batch, filters, steps=3):
    """Patches/s that a 3D U-Net (unet3d, 3 classes) trains on, warm steps only."""
    keras.backend.clear_session()
    model = zoo.load("unet3d", num_classes=3, filters=filters)
    model.compile(keras.optimizers.Adam(1e-3), loss=losses.get_loss("dice_ce"))
    x = np.random.default_rng(0).normal(size=(batch, *patch, 1)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, (batch, *patch, 1)).astype(np.int32)
    model.train_on_batch(x, y)  # trace
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - t0)


def main(argv=None):
    clock = _provenance.Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke test of the script)")
    p.add_argument("--only", choices=("overhead", "pipeline"), help="run one of the two benchmarks")
    p.add_argument("--json", help="also write the results (with their provenance) to this JSON file")
    args = p.parse_args(argv)
    q = args.quick
    print(f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('CPU'))} CPU device(s), "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")

    data = {"settings": {"repeats": args.repeats, "quick": q, "only": args.only}}
    if args.only != "pipeline":
        data["overhead"] = overhead(args.repeats, q)
    if args.only != "overhead":
        data["pipeline"] = pipeline(q)
    if args.json:
        import json
        Path(args.json).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not q and not args.only:
        _provenance.record(None, "bench_train", data, clock)
        print("\nwritten to docs/models/measured.json (benchmarks.bench_train); run python tools/gen_cards.py")
    return 0


def _ratios(rows, key):
    """(finetune / mean of the two fits, fit again / fit) per repeat, for one measure."""
    return ([r["finetune"][key] / ((r["fit"][key] + r["fit again"][key]) / 2) for r in rows],
            [r["fit again"][key] / r["fit"][key] for r in rows])


def overhead(repeats, q):
    print("\n1. finetune vs plain model.fit (unet depth 3, in-memory phantoms, same loss/metrics/optimizer)")
    size, n, batch, filters, epochs = (32, 64, 8, 4, 3) if q else (64, 256, 8, 8, 4)
    instrument()
    rows, steps = bench_overhead(repeats, epochs, n, size, batch, filters)
    med = statistics.median
    print(f"  medians of {len(rows)} repeats; in brackets the A/A control (fit again / fit: the same "
          "run twice), whose spread is this machine's noise:")
    result = {}
    for key, what in (("step", "per step (wall)"), ("epoch", f"per epoch of {steps} steps (wall)"),
                      ("cpu", "CPU time per epoch")):
        ft, aa = _ratios(rows, key)
        result[key] = med(ft)
        print(f"    {what}: finetune/fit = {med(ft):.3f} (range {min(ft):.3f}-{max(ft):.3f})  "
              f"[fit again/fit = {med(aa):.3f}, range {min(aa):.3f}-{max(aa):.3f}]")
    print(f"  -> overhead {100 * (result['cpu'] - 1):+.1f}% in CPU time, {100 * (result['epoch'] - 1):+.1f}% in "
          f"wall time per epoch (target <= +5%; verdict on CPU time, which CPU steal and other "
          f"processes do not inflate) {'OK' if result['cpu'] <= 1.05 else 'MISSED'}")
    fit_step = med(r["fit"]["step"] for r in rows)
    fit_epoch = med(r["fit"]["epoch"] for r in rows)
    epoch_hooks = med(HOOK_TIME["epoch"][i] + HOOK_TIME["epoch"][i + 1]
                      for i in range(0, len(HOOK_TIME["epoch"]) - 1, 2))  # RunState + TensorBoard
    batch_hooks = med(HOOK_TIME["batch"]) * (len(HOOK_TIME["batch"]) / max(1, repeats * epochs * steps))
    own = epoch_hooks + steps * batch_hooks
    print(f"  timed directly: the zoo's callbacks take {epoch_hooks * 1e3:.1f} ms per epoch (checkpoints, "
          f"state.json, history.csv, resume point, TensorBoard) + {batch_hooks * 1e3:.3f} ms per step "
          f"(NaN guard) = {100 * own / fit_epoch:.1f}% of a plain-fit epoch of {steps} steps "
          f"(target <= 5%) {'OK' if own / fit_epoch <= 0.05 else 'MISSED'}; "
          + ", ".join(f"{100 * (epoch_hooks + k * batch_hooks) / (k * fit_step):.1f}% at {k} steps"
                      for k in (100, 1000)))
    aa = {key: med(_ratios(rows, key)[1]) for key in ("step", "epoch", "cpu")}
    return {"cpu": result["cpu"], "epoch": result["epoch"], "step": result["step"], "cpu_aa": aa["cpu"],
            "epoch_aa": aa["epoch"], "step_aa": aa["step"], "hooks_epoch_ms": epoch_hooks * 1e3,
            "hooks_step_ms": batch_hooks * 1e3, "hooks_share": own / fit_epoch, "steps": steps,
            "repeats": len(rows), "epochs": epochs, "size": size, "n": n, "batch": batch, "filters": filters}


def pipeline(q):
    print("\n2. NIfTI patch pipeline vs 3D U-Net consumption (patches/s)")
    patch, vol, count, batch = ((32,) * 3, (48, 48, 32), 4, 2) if q else ((64,) * 3, (128, 128, 80), 8, 2)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        write_volumes(folder, count, vol)
        cached, setup_c = pipeline_rate(folder, patch, batch, cache=True)
        uncached, _ = pipeline_rate(folder, patch, batch, cache=False)
    print(f"  pipeline: {cached:.1f} patches/s cached (setup {setup_c:.1f} s for {count} volumes "
          f"{vol}), {uncached:.1f} patches/s uncached (re-read + normalise every epoch)")
    out = []
    for f, steps in (((4, 3),) if q else ((32, 1), (8, 3))):  # filters=32 is the paper's width
        rate = consumption_rate(patch, batch, f, steps)
        out.append({"filters": f, "patch": list(patch), "volume": list(vol), "volumes": count, "batch": batch,
                    "pipeline_cached": cached, "pipeline_uncached": uncached, "consumption": rate})
        print(f"  unet3d filters={f}: trains {rate:.2f} patches/s ({patch} patches, batch {batch}) -> "
              f"pipeline/consumption {cached / rate:.1f}x cached, {uncached / rate:.1f}x uncached "
              f"(target >= 2x) {'OK' if min(cached, uncached) / rate >= 2 else 'MISSED'}")
    return out


if __name__ == "__main__":
    sys.exit(main())
