#!/usr/bin/env python
"""The hard-phantom benchmark task's baseline: how far a well-trained model gets, and that a bad
recipe visibly loses, measured side by side in one run (``zoo.data.hard_phantoms``).

1. The task's difficulty without learning: the mean foreground Dice of random guessing at the
   training class frequencies ("chance") and of the best per-voxel intensity classifier
   (``zoo.data.hard_phantoms.intensity_dice``), on the hard phantoms and, for comparison, on the
   easy built-in phantoms of the same size and classes.
2. The baseline: a reduced-width 2D U-Net (``--filters``) fine-tuned with ``zoo.finetune`` on a
   fixed set of ``--train`` hard phantoms until the validation loss stops improving
   (``early_stopping=--patience``, at most ``--epochs``), the best checkpoint kept; its mean
   foreground Dice on ``--test`` held-out phantoms (seed 104729, which neither training nor
   validation uses).
3. A deliberately bad recipe on that model (default ``prune_90`` for 1 epoch, ``--bad``), scored
   on the same held-out phantoms.

The results are written, with the command, commit, date, machine and wall time, to
``docs/models/measured.json`` (``benchmarks.bench_task``); ``tools/gen_cards.py`` renders them in
the README. ``--quick`` is a smoke test of the script at a tiny scale (its record goes to
``--out`` only, never to measured.json).

    python tools/bench_task.py                    # the README's baseline (~5-10 min on 2 CPU cores)
    python tools/bench_task.py --quick --out /tmp/task.json
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


def chance_dice(train_labels, test_labels, num_classes, seed=0):
    """Mean foreground Dice of labels drawn at random per voxel with the training class frequencies."""
    from zoo.data.hard_phantoms import mean_dice
    freq = np.bincount(np.asarray(train_labels).ravel(), minlength=num_classes) / np.asarray(train_labels).size
    guess = np.random.default_rng(seed).choice(num_classes, size=np.asarray(test_labels).shape, p=freq)
    return mean_dice(guess[..., 0], np.asarray(test_labels)[..., 0], num_classes)


def difficulty(size, num_classes, n_train, n_test):
    from zoo.data import phantom_arrays
    from zoo.data.hard_phantoms import hard_phantom_arrays, intensity_dice
    out = {}
    for name, make in (("hard_phantoms", hard_phantom_arrays), ("phantoms", phantom_arrays)):
        train = make(n_train, size=size, num_classes=num_classes, seed=0)
        test = make(n_test, size=size, num_classes=num_classes, seed=HELD_OUT_SEED)
        out[name] = {"chance_dice": round(chance_dice(train[1], test[1], num_classes), 4),
                     "intensity_dice": round(intensity_dice(train, test, num_classes), 4)}
    return out


def evaluate(model, xs, ys, num_classes):
    from zoo.data.hard_phantoms import mean_dice
    out = model.predict(xs, batch_size=8, verbose=0)
    probs = out[0] if isinstance(out, list) else out
    return round(mean_dice(np.argmax(probs, -1), ys[..., 0], num_classes), 4)


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="phantom size in pixels (2D)")
    p.add_argument("--classes", type=int, default=4, help="segmentation classes, background included (2..4)")
    p.add_argument("--filters", type=int, default=16, help="U-Net width (the registry's is 64)")
    p.add_argument("--train", type=int, default=256, help="training phantoms (a fixed set)")
    p.add_argument("--val", type=int, default=32, help="validation phantoms")
    p.add_argument("--test", type=int, default=64, help="held-out test phantoms")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=40, help="at most this many epochs (one pass over --train each)")
    p.add_argument("--patience", type=int, default=5, help="stop after this many epochs without a better val_loss")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bad", default="prune_90", help="the deliberately bad recipe")
    p.add_argument("--bad-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny scale: a smoke test of the script")
    p.add_argument("--out", help="also write the record to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.filters, args.train, args.val, args.test, args.epochs, args.patience = 32, 4, 16, 8, 8, 2, 1
    import zoo
    from zoo._keras import keras
    from zoo.data.hard_phantoms import hard_phantom_arrays
    ncls, size = args.classes, args.size
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "quick")}
    print(f"bench_task: hard phantoms {size}x{size}, {ncls} classes", file=sys.stderr, flush=True)
    diff = difficulty(size, ncls, args.train, args.test)
    for name, d in diff.items():
        print(f"  {name}: chance Dice {d['chance_dice']:.3f}, intensity classifier Dice {d['intensity_dice']:.3f}",
              file=sys.stderr, flush=True)
    train = hard_phantom_arrays(args.train, size=size, num_classes=ncls, seed=args.seed)
    val = hard_phantom_arrays(args.val, size=size, num_classes=ncls, seed=args.seed + 7919)
    xs, ys = hard_phantom_arrays(args.test, size=size, num_classes=ncls, seed=HELD_OUT_SEED)
    steps = args.train // args.batch
    keras.utils.set_random_seed(args.seed)
    model = zoo.load("unet", num_classes=ncls, in_channels=1, input_shape=(size, size, 1), filters=args.filters)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        history = zoo.finetune(model, train, val, epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr,
                               early_stopping=args.patience, steps_per_epoch=steps, out_dir=Path(tmp) / "float",
                               tensorboard=False, verbose=0, seed=args.seed)
        train_s = time.time() - t0
        from zoo.train import read_state
        state = read_state(Path(tmp) / "float")
        epochs_run = len(history.history["loss"])
        float_dice = evaluate(model, xs, ys, ncls)
        print(f"  baseline: U-Net filters={args.filters} ({model.count_params():,} parameters), {epochs_run} epochs "
              f"(best {state.get('best_epoch')}) in {train_s:.0f} s: held-out Dice {float_dice:.3f}",
              file=sys.stderr, flush=True)
        t0 = time.time()
        bad_model, _ = zoo.compress(model, args.bad, train, val, epochs=args.bad_epochs, batch_size=args.batch,
                                    steps_per_epoch=steps, out_dir=Path(tmp) / "bad", tensorboard=False, verbose=0,
                                    seed=args.seed)
        bad_s = time.time() - t0
        bad_dice = evaluate(bad_model, xs, ys, ncls)
        print(f"  bad recipe {args.bad} ({args.bad_epochs} epoch of {steps} steps) in {bad_s:.0f} s: held-out Dice "
              f"{bad_dice:.3f} ({bad_dice - float_dice:+.3f})", file=sys.stderr, flush=True)
    data = {"settings": settings, "held_out_seed": HELD_OUT_SEED, "difficulty": diff,
            "baseline": {"model": "unet", "filters": args.filters, "params": int(model.count_params()),
                         "epochs_run": epochs_run, "best_epoch": state.get("best_epoch"),
                         "monitor": state.get("monitor"), "steps_per_epoch": steps, "train_s": round(train_s, 1),
                         "dice": float_dice},
            "bad": {"recipe": args.bad, "epochs": args.bad_epochs, "steps_per_epoch": steps, "time_s": round(bad_s, 1),
                    "dice": bad_dice}}
    if args.out:
        Path(args.out).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not args.quick:
        record(None, "bench_task", data, clock)
        print("written to docs/models/measured.json (benchmarks.bench_task); run python tools/gen_cards.py",
              file=sys.stderr)
    print(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
