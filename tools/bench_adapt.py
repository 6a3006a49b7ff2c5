#!/usr/bin/env python
"""Domain-adversarial training (DANN) against source-only training on a scanner shift, measured
side by side in one run (``zoo.train.adapt``).

The source domain is the built-in phantoms (``--classes`` classes, ``--size`` pixels), all
``--train`` of them labelled; the target domain is other phantoms as another scanner shows them
(``zoo.data.other_scanner``: contrast inverted, a smooth bias field), ``--target`` of them,
without labels. A reduced-width 2D U-Net is fine-tuned with ``zoo.finetune`` for the same budget
(``--epochs`` x ``--steps`` steps, batch 2, augmentation on) two ways per seed of ``--seeds``:
``source_only``, and ``dann`` (``adapt="dann"``, ``--adapt-weight``). Each keeps its best
checkpoint (validation on ``--val`` source phantoms) and is scored by the mean foreground Dice
per case on ``--test`` held-out phantoms (seed 104729), as the source scanner and as the target
scanner shows them. The results go, with the command, commit, date, machine and wall time, to
``docs/models/measured.json`` (``benchmarks.bench_adapt``); ``tools/gen_cards.py`` renders them
in the README. ``--quick`` is a smoke test at a tiny scale (its record goes to ``--out`` only).

    python tools/bench_adapt.py                    # the README's table (~2 min on 2 CPU cores)
    python tools/bench_adapt.py --quick --out /tmp/adapt.json
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
MODES = ("source_only", "dann")


def run_one(mode, seed, data, args, tmp):
    import zoo
    from zoo._keras import keras
    from zoo.data.hard_phantoms import mean_dice
    (x, y), (xv, yv), xu, (xt, yt), xts = data
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)  # the initial weights too: a row repeats whatever ran before it
    model = zoo.load("unet", filters=args.filters, depth=args.depth, input_shape=(args.size, args.size, 1),
                     num_classes=args.classes)
    adapt = dict(unlabeled=xu, adapt="dann", adapt_weight=args.adapt_weight) if mode == "dann" else {}
    t = time.time()
    zoo.finetune(model, (x, y), (xv, yv), epochs=args.epochs, steps_per_epoch=args.steps, batch_size=2, augment=True,
                 seed=seed, out_dir=Path(tmp) / f"{mode}_{seed}", verbose=0, tensorboard=False, **adapt)
    seconds = time.time() - t
    scores = {where: round(mean_dice(np.argmax(model.predict(images, batch_size=8, verbose=0), -1), yt[..., 0],
                                     args.classes), 4) for where, images in (("source", xt), ("target", xts))}
    return {"mode": mode, "seed": seed, "source_dice": scores["source"], "target_dice": scores["target"],
            "train_s": round(seconds, 1)}


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="phantom size in pixels (2D)")
    p.add_argument("--classes", type=int, default=3, help="segmentation classes, background included")
    p.add_argument("--filters", type=int, default=8, help="U-Net width (the registry's is 64)")
    p.add_argument("--depth", type=int, default=3, help="U-Net depth")
    p.add_argument("--train", type=int, default=64, help="labelled source phantoms")
    p.add_argument("--target", type=int, default=64, help="unlabelled target phantoms")
    p.add_argument("--val", type=int, default=32, help="validation (source) phantoms")
    p.add_argument("--test", type=int, default=64, help="held-out test phantoms (scored in both domains)")
    p.add_argument("--epochs", type=int, default=20, help="epochs of every run")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--adapt-weight", type=float, default=1.0, help="the domain loss weight of the dann runs")
    p.add_argument("--seeds", default="0,1", help="training seeds, comma-separated")
    p.add_argument("--quick", action="store_true", help="tiny smoke run; never written to measured.json")
    p.add_argument("--out", help="also write the record to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.train, args.target, args.val, args.test, args.epochs, args.steps = 32, 4, 4, 4, 4, 1, 2
        args.filters, args.depth, args.seeds = 4, 2, "0"
    from zoo.data import other_scanner, phantom_arrays
    make = dict(spatial_dims=2, size=args.size, num_classes=args.classes)
    test = phantom_arrays(args.test, seed=HELD_OUT_SEED, **make)
    data = [phantom_arrays(args.train, seed=1, **make), phantom_arrays(args.val, seed=2, **make),
            other_scanner(phantom_arrays(args.target, seed=5, **make)[0], seed=5), test,
            other_scanner(test[0], seed=6)]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for mode in MODES:
                rows.append(run_one(mode, seed, data, args, tmp))
                print(json.dumps(rows[-1]), flush=True)
    settings = {k: getattr(args, k) for k in ("size", "classes", "filters", "depth", "train", "target", "val", "test",
                                              "epochs", "steps", "adapt_weight")}
    result = {"settings": {**settings, "batch": 2, "augment": True, "seeds": seeds, "shift": "zoo.data.other_scanner"},
              "held_out_seed": HELD_OUT_SEED, "rows": rows}
    path = Path(tempfile.mkdtemp()) / "measured.json" if args.quick else None
    rec = record(None, "bench_adapt", result, clock, **({"path": path} if path else {}))
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
