"""``zoo bench NAME``: parameters, MACs/FLOPs and latency of an entry (Keras, and LiteRT with --tflite)."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import argparse
import json
import tempfile
from pathlib import Path

from zoo.cli._common import key_values
from zoo.hub import load


def _cmd_bench(args):
    from zoo.bench import bench
    overrides = key_values(args.set, "--set")
    row = bench(args.name, size=args.size, spatial_dims=args.spatial_dims, runs=args.runs, **overrides)
    if args.tflite:
        from zoo.api import export
        model = load(args.name, spatial_dims=row["spatial_dims"], input_shape=tuple(row["input_shape"]), **overrides)
        with tempfile.TemporaryDirectory() as tmp:
            result = export(model, Path(tmp) / "bench.tflite", quantization=args.tflite,
                            latency_runs=args.runs or 1, verify=False)
        lat = result.to_dict().get("latency") or {}
        row.update(tflite_mode=args.tflite, tflite_bytes=result.bytes, tflite_ms=lat.get("litert_ms"),
                   keras_ms_export=lat.get("keras_ms"))
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    shape = "x".join(map(str, row["input_shape"]))
    part = " (the generator)" if row["part"] == "generator" else ""
    print(f"{row['model']}{part} at {shape}: {row['params']:,} parameters, {row['macs'] / 1e9:.3f} GMACs "
          f"({row['flops'] / 1e9:.3f} GFLOPs, convolutions and dense layers, batch 1)")
    if row.get("keras_ms") is not None:
        print(f"  Keras: {row['keras_ms']:.1f} ms per input (median of {args.runs})")
    if args.tflite:
        print(f"  LiteRT {args.tflite}: {row['tflite_bytes'] / 1e6:.2f} MB, {row['tflite_ms']:.1f} ms per input"
              if row.get("tflite_ms") is not None else f"  LiteRT {args.tflite}: {row['tflite_bytes'] / 1e6:.2f} MB")
    return 0


def add_parsers(sub):
    s = sub.add_parser(
        "bench", help="parameters, MACs/FLOPs and latency of a registry entry",
        description="Build NAME at its reference input (or --size per axis), count its multiply-accumulates "
        "layer by layer and time a batch-1 forward pass in Keras; --tflite MODE also exports it and times "
        "the file in LiteRT.",
        epilog="example: zoo bench resnet50\nmore:    zoo bench unet3d --size 64 --set num_classes=2\n"
               "         zoo bench unet --size 128 --tflite int8 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("name", help="registry entry, e.g. resnet50")
    s.add_argument("--size", type=int, help="input size per axis (default: the entry's reference input)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="for entries with 2D and 3D variants")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder keyword, e.g. --set filters=16")
    s.add_argument("--runs", type=int, default=10, help="timed forward passes (default 10; 0: count only)")
    s.add_argument("--tflite", choices=("float32", "float16", "dynamic", "int8"),
                   help="also export to TFLite in this mode and time it in LiteRT")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON")
    s.set_defaults(func=_cmd_bench)
