"""``zoo export MODEL``: a verified TFLite file (or SavedModel folder) from a run or a registry model."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import json
import warnings
from pathlib import Path

from zoo.cli._common import key_values, model_kwargs, parse_shape
from zoo.errors import ZooError
from zoo.hub import load


def _default_out(model, mode):
    stem = Path(model).name if Path(model).exists() else model
    return f"{stem}_{mode}" + ("" if mode == "savedmodel" else ".tflite")


def _cmd_export(args):
    from zoo.api import export
    model = args.model
    kwargs = model_kwargs(args)
    if not Path(model).exists():  # a registry name: build it with the overrides
        model = load(args.model, **kwargs)
    elif kwargs:
        raise ZooError(f"zoo export: --set/--num-classes/--in-channels/--spatial-dims build a registry "
                       f"model; {args.model} is a run folder, whose model is already defined. Drop them.")
    verify = {"yes": True, "warn": "warn", "no": False}[args.verify]
    shape = parse_shape(args.input_shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _export(export, model, args, verify, shape)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    for w in caught:  # the result's own warnings are in its text (and JSON) already
        if args.json or str(w.message) not in result.warnings:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not args.json:
        example = "VOLUME.nii.gz" if len(result.input_shape) == 5 else "IMAGE.png"
        if result.mode != "savedmodel" and result.task != "generation":
            print(f"  predict: zoo predict {result.path} {example}")
    return 0


def _export(export, model, args, verify, shape):
    return export(
        model, args.out or _default_out(args.model, args.quantization), quantization=args.quantization,
        representative_data=args.data, input_shape=shape, data_options=key_values(args.data_option, "--data-option"),
        calibration_samples=args.calibration_samples, verify_samples=args.verify_samples, verify=verify,
        strict=args.strict, overwrite=args.overwrite, int8_io=args.int8_io,
        sparse={"auto": None, "yes": True, "no": False}[args.sparse], latency_runs=args.latency_runs,
        seed=args.seed)


def add_parsers(sub):
    s = sub.add_parser("export", help="export a run or registry model to TFLite (verified) or SavedModel",
                       description="Convert MODEL (a finetune run folder or a registry name) to a .tflite "
                       "file that the LiteRT interpreter runs, verify it against the Keras model on held-out "
                       "inputs, and write it with a JSON sidecar (entry, input spec, preprocessing, numbers).",
                       epilog="example: zoo export runs/liver --quantization int8 --data data/train --out liver.tflite")
    s.add_argument("model", help="finetune run folder (its best checkpoint) or registry name, e.g. unet3d")
    s.add_argument("--quantization", default="float32",
                   choices=("float32", "float16", "dynamic", "int8", "int16x8", "qat", "savedmodel"),
                   help="float32 (default), float16, dynamic (int8 weights), int8 (calibrated on --data), "
                        "int16x8, qat (a zoo compress QAT run) or savedmodel (TF Serving)")
    s.add_argument("--out", help="output .tflite file (a folder for savedmodel); its folder must exist "
                                 "(default: <model>_<quantization>.tflite here)")
    s.add_argument("--data", help="representative/verification data: folder, .npz, "
                                                      "tfds:NAME or phantoms (default: the model's training "
                                                      "data, else phantoms)")
    s.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="data source option, e.g. --data-option window=[-100,400] (default: the run's)")
    s.add_argument("--input-shape", help="spatial size to export at for dynamic-size models, e.g. 64,64,64")
    s.add_argument("--calibration-samples", type=int, default=32, help="int8/int16x8 calibration inputs")
    s.add_argument("--verify-samples", type=int, default=8, help="held-out inputs to verify on")
    s.add_argument("--verify", choices=("yes", "warn", "no"), default="yes",
                   help="yes: a failed verification is an error and writes nothing; warn: write anyway")
    s.add_argument("--strict", action="store_true", help="float ops left in an int8 file are an error")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    s.add_argument("--int8-io", action="store_true", help="int8 input/output tensors (int8, qat)")
    s.add_argument("--sparse", choices=("auto", "yes", "no"), default="auto",
                   help="sparse flatbuffer (auto: for pruned kernels when smaller)")
    s.add_argument("--latency-runs", type=int, default=10, help="timed runs per runtime (0: skip)")
    s.add_argument("--seed", type=int, default=0, help="seed of the phantoms and sample choice (default 0)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="registry model keyword override")
    s.add_argument("--num-classes", type=int, help="registry name only: classes of the head")
    s.add_argument("--in-channels", type=int, help="registry name only: input channels (1 for CT/MR)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="registry name only: the 2D or 3D variant")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=_cmd_export)
