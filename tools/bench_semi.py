#!/usr/bin/env python
"""Semi-supervised fine-tuning against labelled-only training where labels are the limit,
measured side by side in one run (``zoo.train.semi``).

On the built-in phantoms (``--classes`` classes, ``--size`` pixels), a reduced-width 2D U-Net
is fine-tuned with ``zoo.finetune`` for the same budget (``--epochs`` x ``--steps`` steps,
batch 2, augmentation on) four ways, for each seed of ``--seeds``:

1. ``labelled``: on ``--labelled`` labelled phantoms only;
2. ``mean_teacher`` and 3. ``pseudo_label``: on the same labelled phantoms plus the other
   ``--pool`` - ``--labelled`` phantoms of the pool without their labels;
4. ``all_labelled``: on the whole pool with its labels (what the labels would give).

Each model keeps its best checkpoint (validation on ``--val`` other phantoms) and is scored by
the mean foreground Dice per case on ``--test`` held-out phantoms (seed 104729, used by no
training). The results are written with the command, commit, date, machine and wall time to
``docs/models/measured.json`` (``benchmarks.bench_semi``); ``tools/gen_cards.py`` renders them in
the README. ``--quick`` is a smoke test at a tiny scale (its record goes to ``--out`` only).

    python tools/bench_semi.py                     # the README's table (~10 min on 2 CPU cores)
    python tools/bench_semi.py --quick --out /tmp/semi.json
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _provenance import Clock, record  # noqa: E402

HELD_OUT_SEED = 104729
MODES = ("labelled", "mean_teacher", "pseudo_label", "all_labelled")


def run_one(mode, seed, data, args, tmp):
    import zoo
    from zoo._keras import keras
    from zoo.data.hard_phantoms import mean_dice
    (x, y), (xv, yv), (xt, yt) = data
    n = args.labelled
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)  # the initial weights too: a row repeats whatever ran before it
    model = zoo.load("unet", filters=args.filters, depth=args.depth, input_shape=(args.size, args.size, 1),
                     num_classes=args.classes)
    train = (x, y) if mode == "all_labelled" else (x[:n], y[:n])
    semi = dict(unlabeled=x[n:], semi=mode) if mode in ("mean_teacher", "pseudo_label") else {}
    t = time.time()
    h = zoo.finetune(model, train, (xv, yv), epochs=args.epochs, steps_per_epoch=args.steps, batch_size=2,
                     augment=True, seed=seed, out_dir=Path(tmp) / f"{mode}_{seed}", verbose=0, tensorboard=False,
                     **semi)
    seconds = time.time() - t
    pred = np.argmax(model.predict(xt, batch_size=8, verbose=0), -1)
    return {"mode": mode, "seed": seed, "dice": round(mean_dice(pred, yt[..., 0], args.classes), 4),
            "best_val_dice": round(max(h.history["val_dice"]), 4), "train_s": round(seconds, 1)}


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="phantom size in pixels (2D)")
    p.add_argument("--classes", type=int, default=3, help="segmentation classes, background included")
    p.add_argument("--filters", type=int, default=8, help="U-Net width (the registry's is 64)")
    p.add_argument("--depth", type=int, default=3, help="U-Net depth")
    p.add_argument("--pool", type=int, default=64, help="training phantoms in all (labelled + unlabelled)")
    p.add_argument("--labelled", type=int, default=2, help="of which labelled")
    p.add_argument("--val", type=int, default=32, help="validation phantoms")
    p.add_argument("--test", type=int, default=64, help="held-out test phantoms")
    p.add_argument("--epochs", type=int, default=40, help="epochs of every run")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--seeds", default="0,1", help="training seeds, comma-separated")
    p.add_argument("--quick", action="store_true", help="tiny smoke run; never written to measured.json")
    p.add_argument("--out", help="also write the record to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.pool, args.val, args.test, args.epochs, args.steps, args.seeds = 32, 6, 4, 4, 1, 2, "0"
        args.filters, args.depth = 4, 2
    from zoo.data import phantom_arrays
    data = [phantom_arrays(n, spatial_dims=2, size=args.size, num_classes=args.classes, seed=s)
            for n, s in ((args.pool, 1), (args.val, 2), (args.test, HELD_OUT_SEED))]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for mode in MODES:
                rows.append(run_one(mode, seed, data, args, tmp))
                print(json.dumps(rows[-1]), flush=True)
    settings = {k: getattr(args, k) for k in ("size", "classes", "filters", "depth", "pool", "labelled", "val",
                                              "test", "epochs", "steps")}
    data = {"settings": {**settings, "batch": 2, "augment": True, "seeds": seeds}, "held_out_seed": HELD_OUT_SEED,
            "rows": rows}
    path = Path(tempfile.mkdtemp()) / "measured.json" if args.quick else None
    rec = record(None, "bench_semi", data, clock, **({"path": path} if path else {}))
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
