"""``zoo predict RUN INPUT``: segment or classify files with a trained run (or its .tflite export)."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
from pathlib import Path

import numpy as np

from zoo.cli._common import model_kwargs, parse_shape
from zoo.cli._outputs import json_default, output_path, report_classes, top_classes
from zoo.errors import ZooError
from zoo.hub import load


def _model(args):
    """(model, record): a .tflite file from zoo export (LiteRT, its sidecar's preprocessing), a run,
    compress or zoo run folder, a checkpoint in a run folder, a saved model, or --model NAME with a
    weights file, loaded by the zoo's strict loader (which names any mismatch)."""
    from zoo.resolve import resolve
    run = Path(args.run).expanduser()
    if args.model or (run.is_file() and run.suffix.lower() != ".tflite" and not (run.parent / "model.json").exists()
                      and not run.name.lower().endswith(".keras")):
        if not args.model:
            raise ZooError(f"{args.run} is a bare weights file (no model.json beside it); name the "
                           "architecture: zoo predict WEIGHTS INPUT --model NAME [--set key=value ...].")
        if not run.is_file():
            raise ZooError(f"predict: weights file {args.run} does not exist (with --model, RUN is a weights "
                           "file: .h5, .weights.h5, .npz or .safetensors).")
        return resolve(load(args.model, weights=str(run), **model_kwargs(args)), verb="zoo predict")
    return resolve(args.run, verb="zoo predict", allow=("run", "compress", "zoo_run", "file", "tflite"),
                   which="last" if args.last else "best")


def _cmd_predict(args):
    from zoo.inference import check_dicom_slice, default_output, predict
    model, info = _model(args)
    check_dicom_slice(model, args.input)  # before the output checks: the input cannot go to this model
    classifier = info.task == "classification"
    default = json_default(args.input) if classifier else default_output(args.input)
    out = output_path(args.out, args.input, default, overwrite=args.overwrite,
                      suffixes=(".json",) if classifier else None)
    if classifier and args.out is None:
        out = None  # a classifier prints; it writes JSON only when asked
    window = tuple(float(v) for v in args.window.split(",")) if args.window else None
    spacing = tuple(float(v) for v in args.spacing.split(",")) if args.spacing else None
    patch = parse_shape(args.patch_size)
    if patch is not None and len(patch) == 1:  # --patch-size 96: the same on every spatial axis
        patch = patch * (len(model.input_shape) - 2)
    result = predict(model, info, args.input, out=False if classifier else out, patch_size=patch,
                     overlap=args.overlap, batch_size=args.batch_size, window=window,
                     normalize=args.normalize, spacing=spacing, orientation=args.orientation,
                     return_probabilities=classifier,
                     dicom_gaps=args.dicom_gaps)
    if classifier:
        report_classes(args.input, top_classes(result, info.class_names, args.top_k), out,
                       model=info.path or info.name)
        return 0
    labels = np.asarray(result)
    values, counts = np.unique(labels, return_counts=True)
    print(f"{args.input} -> {out}: label map {labels.shape} {labels.dtype}; voxels per class: "
          + ", ".join(f"{int(v)}: {int(c)}" for v, c in zip(values, counts)))
    return 0


def add_parsers(sub):
    s = sub.add_parser("predict", help="segment a NIfTI volume, DICOM series or 2D image with a trained run",
                       description="Sliding-window segmentation of INPUT with a finetune run folder "
                       "(its best checkpoint) or a weights file; writes the label map. A classifier prints "
                       "its most probable classes by name.",
                       epilog="example: zoo predict runs/u3d scan.nii.gz --out segs/   (a classifier: zoo "
                       "predict runs/r18 image.png --top-k 3 --out pred.json)")
    s.add_argument("run", help="finetune out_dir, a checkpoint inside it, a .tflite file from zoo export, "
                              "or a weights file with --model")
    s.add_argument("input", help="a .nii/.nii.gz volume, a DICOM series folder or a 2D image file")
    s.add_argument("--out", help="output file or folder (default: <input stem>_seg.nii.gz / .png beside the "
                                 "input, NIfTI for a DICOM folder; a classifier prints its top classes and "
                                 "writes JSON only to --out x.json)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    s.add_argument("--top-k", type=int, default=5, metavar="K",
                   help="classifiers: print the K most probable classes (default 5)")
    s.add_argument("--last", action="store_true", help="use last.h5 of the run instead of best")
    s.add_argument("--model", help="registry name, for a weights file without model.json")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="model keyword override (with --model)")
    s.add_argument("--num-classes", type=int, help="with --model: classes of the head the weights have")
    s.add_argument("--in-channels", type=int, help="with --model: input channels the weights have")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="with --model: 2D or 3D variant")
    s.add_argument("--patch-size", help="e.g. 96,96,96 (default: the run's training patch)")
    s.add_argument("--overlap", type=float, default=0.5, help="share of a window its neighbour overlaps, "
                   "in [0, 1) (default 0.5)")
    s.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default 4)")
    s.add_argument("--window", help="CT window lo,hi (default: the run's)")
    s.add_argument("--normalize", choices=("auto", "zscore", "none"), help="default: the run's / 'auto' for NIfTI")
    s.add_argument("--dicom-gaps", choices=("error", "split", "median"), default="error",
                   help="a DICOM series with unevenly spaced slices: refuse it (default), keep its longest evenly "
                        "spaced run (split), or stack every slice at the median spacing (median: the geometry is "
                        "then wrong at the gap)")
    s.add_argument("--spacing", help="resample to this voxel spacing first, e.g. 1.5,1.5,2")
    s.add_argument("--orientation", help="reorient a volume to these axis codes first, e.g. RAS (default: the run's)")
    s.set_defaults(func=_cmd_predict)
