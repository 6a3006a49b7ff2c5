"""Benchmark: what each compression recipe achieves on AlexNet, VGG16, ResNet50, U-Net and 3D U-Net
at their full parameter counts, measured side by side in one run.

For each model (small inputs where the head allows: AlexNet's adaptive pooling and ResNet50's
global pooling take 64 px, VGG16's flattened head needs 224 px), one short float fine-tune on the
synthetic phantoms (the reference), then each recipe on that model with ``zoo.compress``. Printed
per recipe: the compressed size (zipped, as ``zoo.compress``'s report stores it: a pruned or
clustered model as its float32 weights file, a QAT model as int8 kernels + float32 rest) relative
to the zipped float32 weights and to the float32 weights file, and the validation metric before
-> after (the delta). The TFLite column is the export's (zoo.export) and is left to it.

    python tools/bench_compress.py                         # all models, all recipes
    python tools/bench_compress.py --models alexnet --recipes deep_compression --steps 4
    python tools/bench_compress.py --models unet --data hard_phantoms --float-epochs 20 --epochs 4 --steps 32

Each model's rows are written, with the command, commit, date, machine and wall time
(tools/_provenance.py), to ``docs/models/measured.json`` (``NAME.compress``) as soon as its
recipes are done; ``tools/gen_cards.py`` renders them in the cards and the README. ``--data
hard_phantoms`` runs on the benchmark task (``zoo.data.hard_phantoms``: 4 classes for the
segmenters), where a weak recipe shows; ``--no-record`` writes only ``--json``.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _provenance import Clock, record  # noqa: E402

MODELS = {  # name: (builder overrides, patch size)
    "alexnet": ({"num_classes": 4, "input_shape": (64, 64, 3)}, 64),
    "vgg16": ({"num_classes": 4, "input_shape": (224, 224, 3)}, 224),
    "resnet50": ({"num_classes": 4, "input_shape": (64, 64, 3)}, 64),
    "unet": ({"input_shape": (64, 64, 1)}, 64),
    "unet3d": ({"input_shape": (32, 32, 32, 1)}, 32),
}
RECIPES_2D = ["prune_80", "cluster_16", "qat_int8", "prune_80+qat_int8", "deep_compression"]
RECIPES_3D = ["prune_80", "prune_90", "cluster_16"]


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--recipes", help="comma-separated (default: all that apply: 5 in 2D, 3 in 3D)")
    p.add_argument("--steps", type=int, default=6, help="training steps per epoch (reference and each step)")
    p.add_argument("--val-steps", type=int, default=4)
    p.add_argument("--data", default="phantoms", choices=("phantoms", "hard_phantoms"),
                   help="the training and validation data (default: the easy phantoms)")
    p.add_argument("--float-epochs", type=int, default=1, help="epochs of the float reference's fine-tune")
    p.add_argument("--epochs", type=int, default=1, help="epochs per recipe step")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (float reference and recipes)")
    p.add_argument("--json", help="also write the rows (with their provenance) to this JSON file")
    p.add_argument("--no-record", action="store_true", help="do not write docs/models/measured.json")
    args = p.parse_args(argv)
    import zoo
    from zoo._keras import keras
    rows, by_model = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            overrides, patch = MODELS[name]
            if args.data == "hard_phantoms" and name in ("unet", "unet3d"):
                overrides = dict(overrides, num_classes=4)  # background, organ, lesion, vessel
            model = zoo.load(name, **overrides)
            dims = len(model.input_shape) - 2
            common = dict(batch_size=2, patch_size=patch, steps_per_epoch=args.steps, validation_steps=args.val_steps,
                          data_options={"n": 2 * args.steps}, verbose=0, tensorboard=False)
            t0 = time.time()
            zoo.finetune(model, args.data, args.data, epochs=args.float_epochs, learning_rate=args.lr,
                         out_dir=Path(tmp) / f"{name}_float", **common)
            print(f"{name}: {model.count_params():,} parameters, {dims}D {patch} px, float reference fine-tuned in "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            recipes = args.recipes.split(",") if args.recipes else (RECIPES_2D if dims == 2 else RECIPES_3D)
            for recipe in recipes:
                t0 = time.time()
                _, report = zoo.compress(model, recipe, args.data, args.data, epochs=args.epochs, learning_rate=args.lr,
                                         out_dir=Path(tmp) / f"{name}_{recipe}", **common)
                d = report.to_dict()
                metric = "dice" if "dice" in d["metrics_after"] else "accuracy"
                rows.append({"model": name, "params": d["params"], "recipe": recipe, **d["size"],
                             "x_zipped": round(report.ratio_zipped, 2), "x_file": round(report.ratio_file, 2),
                             "metric": metric, "before": d["metrics_before"].get(metric),
                             "after": d["metrics_after"].get(metric), "time_s": round(time.time() - t0, 1)})
                r = rows[-1]
                print(f"  {recipe:<18} {r['x_zipped']:>6.2f}x zipped  {r['x_file']:>6.2f}x file  {metric} "
                      f"{r['before']:.3f} -> {r['after']:.3f}  ({r['time_s']:.0f} s)", file=sys.stderr, flush=True)
            settings = {"data": args.data, "float_epochs": args.float_epochs, "epochs": args.epochs,
                        "steps": args.steps, "val_steps": args.val_steps, "learning_rate": args.lr, "batch_size": 2,
                        "patch": patch, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in overrides.items()}}
            mine = [{k: v for k, v in r.items() if k != "model"} for r in rows if r["model"] == name]
            if not args.no_record and mine:
                record(name, "compress", {"settings": settings, "rows": mine}, clock)
            by_model[name] = settings
            del model
            keras.backend.clear_session()
    print("| model | params | recipe | float32 file | float32 zipped | compressed zipped | vs zipped float32 | "
          "vs float32 file | metric before -> after (delta) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        delta = r["after"] - r["before"]
        print(f"| {r['model']} | {r['params']:,} | `{r['recipe']}` | {r['float32_bytes'] / 1e6:.1f} MB | "
              f"{r['float32_zipped'] / 1e6:.1f} MB | {r['compressed_zipped'] / 1e6:.2f} MB | {r['x_zipped']:.1f}x | "
              f"{r['x_file']:.1f}x | {r['metric']} {r['before']:.3f} -> {r['after']:.3f} ({delta:+.3f}) |")
    targets = [r for r in rows if r["recipe"] == "prune_80+qat_int8"]
    for r in targets:
        print(f"target prune_80+qat_int8 >= 10x smaller than the zipped float32 ({r['model']}): "
              f"{r['x_zipped']:.1f}x -> {'met' if r['x_zipped'] >= 10 else 'NOT met'}")
    for r in rows:
        if r["model"] == "alexnet" and r["recipe"] == "deep_compression":
            print(
                f"target deep_compression on AlexNet >= 35x smaller than the float32 file: {r['x_file']:.1f}x as a "
                f"zipped weights payload -> {'met' if r['x_file'] >= 35 else 'NOT met'} (the TFLite file: zoo.export)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": by_model, "rows": rows,
                                               "provenance": clock.provenance()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
