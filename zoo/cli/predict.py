"""``zoo predict RUN INPUT``: segment or classify files with a trained run (or its .tflite export)."""
from zoo.cli._common import model_kwargs, parse_shape
from zoo.errors import ZooError


def _cmd_predict(args):
    import numpy as np

    from zoo.inference import predict
    model = args.run
    from pathlib import Path
    run = Path(args.run)
    if run.suffix.lower() == ".tflite":  # a zoo.export file: LiteRT, with its sidecar's preprocessing
        pass
    elif args.model or (run.is_file() and not (run.parent / "model.json").exists()):
        if not args.model:
            raise ZooError(f"{args.run} is a bare weights file (no model.json beside it); name the "
                           "architecture: zoo predict WEIGHTS INPUT --model NAME [--set key=value ...].")
        from zoo.hub import load
        model = load(args.model, **model_kwargs(args))
        model.load_weights(str(run))
    elif run.is_dir() and args.last:
        from zoo.train import load_run
        model = load_run(run, which="last")
    window = tuple(float(v) for v in args.window.split(",")) if args.window else None
    spacing = tuple(float(v) for v in args.spacing.split(",")) if args.spacing else None
    patch = parse_shape(args.patch_size)
    labels = predict(model, args.input, out=args.out, patch_size=patch, overlap=args.overlap,
                     batch_size=args.batch_size, window=window, normalize=args.normalize,
                     spacing=spacing)
    labels = np.asarray(labels)
    if labels.ndim == 0:
        print(f"{args.input}: class {int(labels)}")
        return 0
    values, counts = np.unique(labels, return_counts=True)
    from zoo.inference import default_output
    out = args.out or default_output(args.input)
    print(f"{args.input} -> {out}: label map {labels.shape} {labels.dtype}; voxels per class: "
          + ", ".join(f"{int(v)}: {int(c)}" for v, c in zip(values, counts)))
    return 0


def add_parsers(sub):
    s = sub.add_parser("predict", help="segment a NIfTI volume, DICOM series or 2D image with a trained run",
                       description="Sliding-window segmentation of INPUT with a finetune run folder "
                       "(its best checkpoint) or a weights file; writes the label map.")
    s.add_argument("run", help="finetune out_dir, a checkpoint inside it, a .tflite file from zoo export, "
                              "or a weights file with --model")
    s.add_argument("input", help="a .nii/.nii.gz volume, a DICOM series folder or a 2D image file")
    s.add_argument("--out", help="output file (default: <input stem>_seg.nii.gz / .png beside the input; "
                                 "NIfTI for a DICOM folder)")
    s.add_argument("--last", action="store_true", help="use last.h5 of the run instead of best")
    s.add_argument("--model", help="registry name, for a weights file without model.json")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="model keyword override (with --model)")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--spatial-dims", type=int, choices=(2, 3))
    s.add_argument("--patch-size", help="e.g. 96,96,96 (default: the run's training patch)")
    s.add_argument("--overlap", type=float, default=0.5)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--window", help="CT window lo,hi (default: the run's)")
    s.add_argument("--normalize", choices=("auto", "zscore", "none"), help="default: the run's / 'auto' for NIfTI")
    s.add_argument("--spacing", help="resample to this voxel spacing first, e.g. 1.5,1.5,2")
    s.set_defaults(func=_cmd_predict)
