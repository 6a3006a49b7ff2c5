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
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--recipes", help="comma-separated (default: all that apply: 5 in 2D, 3 in 3D)")
    p.add_argument("--steps", type=int, default=6, help="training steps per epoch (reference and each step)")
    p.add_argument("--val-steps", type=int, default=4)
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    import zoo
    from zoo._keras import keras
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            overrides, patch = MODELS[name]
            model = zoo.load(name, **overrides)
            dims = len(model.input_shape) - 2
            common = dict(batch_size=2, patch_size=patch, steps_per_epoch=args.steps, validation_steps=args.val_steps,
                          data_options={"n": 2 * args.steps}, verbose=0, tensorboard=False)
            t0 = time.time()
            zoo.finetune(model, "phantoms", "phantoms", epochs=1, learning_rate=1e-4,
                         out_dir=Path(tmp) / f"{name}_float", **common)
            print(f"{name}: {model.count_params():,} parameters, {dims}D {patch} px, float reference fine-tuned in "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            recipes = args.recipes.split(",") if args.recipes else (RECIPES_2D if dims == 2 else RECIPES_3D)
            for recipe in recipes:
                t0 = time.time()
                _, report = zoo.compress(model, recipe, "phantoms", "phantoms", epochs=1, learning_rate=1e-4,
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
            print(f"target deep_compression on AlexNet >= 35x smaller than the float32 file: {r['x_file']:.1f}x as a "
                  f"zipped weights payload -> {'met' if r['x_file'] >= 35 else 'NOT met'} (the TFLite file: zoo.export)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
