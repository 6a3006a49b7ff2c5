"""Benchmarks of the training side, measured side by side in one run (ratios, not absolutes).

1. Overhead of ``zoo.finetune`` (checkpoints, state.json, history, TensorBoard, NaN guard,
   resume point) over a plain ``model.fit`` of the same model on the same in-memory data,
   same loss, metrics and optimizer. Step time = one batch end to the next inside an epoch;
   epoch time = epoch start to next epoch start (so each epoch's checkpoint writing counts);
   the first epoch (tracing) is dropped. Repeats are paired and alternate their order (fit first, finetune first, ...);
   the medians of the per-repeat ratios are reported, with the fixed per-epoch cost in ms.
   Target: finetune / fit <= 1.05.
2. The NIfTI patch pipeline (``zoo.datasets.nifti`` over generated volumes, batched as
   finetune batches it) against the 3D U-Net's consumption in training steps, in patches/s.
   Target: pipeline / consumption >= 2, for the cached (default) and the uncached pipeline.

    python tools/bench_train.py [--repeats 5] [--quick] [--only overhead|pipeline]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._keras import keras, tf  # noqa: E402
import zoo  # noqa: E402
from zoo import losses, metrics  # noqa: E402
from zoo.datasets import phantom_arrays  # noqa: E402


class Clock(keras.callbacks.Callback):
    """Step times (one batch end to the next, inside an epoch) and epoch wall times (one
    epoch's start to the next one's, or to the end of training); the first epoch (tracing)
    is dropped from both."""

    def __init__(self):
        super().__init__()
        self.epoch_marks, self.steps, self._last = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_marks.append(time.perf_counter())
        self._last, self._epoch = None, epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None and self._epoch > 0:
            self.steps.append(now - self._last)
        self._last = now

    def on_train_end(self, logs=None):
        self.epoch_marks.append(time.perf_counter())

    def epochs(self):
        return list(np.diff(self.epoch_marks)[1:])


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
    from zoo._runs import RunState
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
    """Paired repeats in alternating order (fit first, then finetune first, ...), so a load
    trend on a shared machine hits both alike; medians of the per-repeat ratios."""
    x, y = phantom_arrays(n, size=size, num_classes=2)
    init = zoo.load("unet", filters=filters, depth=3, dropout=0.0).get_weights()
    rows = []
    for r in range(repeats):
        order = [("fit", _run_fit), ("finetune", _run_finetune)]
        got = {name: run(init, x, y, batch, epochs, filters) for name, run in (order if r % 2 == 0
                                                                              else order[::-1])}
        row = {k: (statistics.median(c.steps), statistics.median(c.epochs())) for k, c in got.items()}
        rows.append(row)
        print(f"  repeat {r + 1}: step fit {row['fit'][0] * 1e3:.1f} ms / finetune "
              f"{row['finetune'][0] * 1e3:.1f} ms; epoch fit {row['fit'][1]:.2f} s / finetune "
              f"{row['finetune'][1]:.2f} s", flush=True)
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
    from zoo._train_data import as_batched_dataset
    from zoo.datasets import nifti
    t0 = time.perf_counter()
    ds = nifti(folder / "images", folder / "labels", patch_size=patch, samples_per_volume=samples_per_volume,
               window=(-200, 400), num_classes=3, cache=cache)
    setup = time.perf_counter() - t0
    ds = as_batched_dataset(ds, global_batch=batch, training=True, batched=False)
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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller sizes (smoke test of the script)")
    p.add_argument("--only", choices=("overhead", "pipeline"), help="run one of the two benchmarks")
    args = p.parse_args(argv)
    q = args.quick
    print(f"TensorFlow {tf.__version__}, {len(tf.config.list_physical_devices('CPU'))} CPU device(s), "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")

    if args.only != "pipeline":
        overhead(args.repeats, q)
    if args.only != "overhead":
        pipeline(q)
    return 0


def overhead(repeats, q):
    print("\n1. finetune vs plain model.fit (unet depth 3, in-memory phantoms, same loss/metrics/optimizer)")
    size, n, batch, filters, epochs = (32, 64, 8, 4, 3) if q else (64, 256, 8, 8, 4)
    instrument()
    rows, steps = bench_overhead(repeats, epochs, n, size, batch, filters)
    med = statistics.median
    step_ratio = med(r["finetune"][0] / r["fit"][0] for r in rows)
    ratio = med(r["finetune"][1] / r["fit"][1] for r in rows)
    fixed = med(r["finetune"][1] - r["fit"][1] - steps * (r["finetune"][0] - r["fit"][0]) for r in rows)
    fit_step = med(r["fit"][0] for r in rows)
    fit_epoch = med(r["fit"][1] for r in rows)
    print(f"  wall clock, median of {len(rows)} paired repeats: per step finetune/fit = {step_ratio:.3f}; "
          f"per epoch of {steps} steps finetune/fit = {ratio:.3f} ({100 * (ratio - 1):+.1f}%; fixed cost "
          f"estimate {fixed * 1e3:.0f} ms/epoch; noisy on a shared machine)")
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
    for f, steps in (((4, 3),) if q else ((32, 1), (8, 3))):  # filters=32 is the paper's width
        rate = consumption_rate(patch, batch, f, steps)
        print(f"  unet3d filters={f}: trains {rate:.2f} patches/s ({patch} patches, batch {batch}) -> "
              f"pipeline/consumption {cached / rate:.1f}x cached, {uncached / rate:.1f}x uncached "
              f"(target >= 2x) {'OK' if min(cached, uncached) / rate >= 2 else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
