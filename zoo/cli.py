"""The ``zoo`` command: ``zoo list``, ``zoo info NAME``, ``zoo build NAME``."""
import argparse
import json
import sys

from zoo.errors import ZooError


def _cmd_list(args):
    from zoo.hub import list_models
    from zoo.hub.registry import get_registry
    names = list_models(args.pattern, task=args.task, spatial_dims=args.spatial_dims,
                        pretrained=True if args.pretrained else None)
    reg = get_registry()
    if args.names_only:
        print("\n".join(names))
        return 0
    width = max([len(n) for n in names] + [4])
    print(f"{'name':<{width}}  {'task':<14} {'dims':<5} {'params':>12}  weights")
    for n in names:
        e = reg.models[n]
        dims = ",".join(str(d) for d in e.spatial_dims)
        print(f"{n:<{width}}  {e.task:<14} {dims:<5} {e.params:>12,}  {','.join(e.weights) or '-'}")
    print(f"{len(names)} model(s)", file=sys.stderr)
    return 0


def _cmd_info(args):
    from zoo.hub import info
    data = info(args.name)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    weights = data.pop("weights", {})
    for key, value in data.items():
        print(f"{key + ':':<18}{value}")
    print("weights:" + ("" if weights else "          none (random initialisation only)"))
    for tag, spec in weights.items():
        print(f"  {tag}:")
        for key in ("url", "hash", "size", "num_classes", "in_channels", "spatial_dims",
                    "license", "source", "notes"):
            if key in spec:
                print(f"    {key + ':':<14}{spec[key]}")
    return 0


def _parse_shape(text):
    if text is None:
        return None
    return tuple(None if s in ("", "none", "None") else int(s) for s in text.replace("x", ",").split(","))


def _cmd_build(args):
    import numpy as np

    from zoo.hub import load
    kwargs = {}
    for key in ("num_classes", "in_channels", "spatial_dims"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    shape = _parse_shape(args.input_shape)
    if shape is not None:
        kwargs["input_shape"] = shape
    model = load(args.name, **kwargs)
    if args.summary:
        model.summary()
    in_shape = tuple(model.input_shape[1:])
    if any(s is None for s in in_shape[:-1]):
        size = args.size
        in_shape = tuple(size if s is None else s for s in in_shape[:-1]) + in_shape[-1:]
    x = np.random.default_rng(0).standard_normal((1,) + in_shape).astype("float32")
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    print(f"{args.name}: {model.count_params():,} parameters; input {(1,) + in_shape} -> "
          f"output {', '.join(str(tuple(o.shape)) for o in outs)}")
    return 0


# --------------------------------------------------------------------------- finetune / predict
def _key_values(items, what):
    """``key=value`` strings -> dict, values parsed as YAML (``filters=8``, ``window=[-100, 400]``)."""
    import yaml
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ZooError(f"{what} {item!r} must look like key=value, e.g. {what} filters=8.")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def _model_kwargs(args):
    kwargs = _key_values(args.set, "--set")
    for key in ("num_classes", "in_channels", "spatial_dims"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    return kwargs


def _default_run_dir(model):
    """runs/<model>, or runs/<model>-2, -3 ... when that already holds a finished run."""
    from pathlib import Path

    from zoo.train import read_state
    base = Path("runs") / model
    out, k = base, 1
    while read_state(out).get("finished"):
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def _cmd_finetune(args):
    from zoo.hub import load
    from zoo.train import finetune, get_strategy
    strategy = get_strategy(args.strategy)  # before any model: multi-worker setups need it first
    model = load(args.name, weights=args.weights, **_model_kwargs(args))
    train = args.train or args.data
    val = args.val if args.val is not None else ("phantoms" if train == "phantoms" else None)
    out = args.out or _default_run_dir(args.name)
    patch = _parse_shape(args.patch_size)
    patch = patch[0] if patch is not None and len(patch) == 1 else patch
    history = finetune(
        model, train, val, epochs=args.epochs, batch_size=args.batch_size, patch_size=patch,
        loss=args.loss, optimizer=args.optimizer, learning_rate=args.lr, out_dir=out,
        strategy=strategy, mixed_precision=args.mixed_precision,
        freeze_encoder_epochs=args.freeze_encoder_epochs, early_stopping=args.early_stopping,
        monitor=args.monitor, steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps, augment=args.augment, seed=args.seed,
        tensorboard=not args.no_tensorboard, verbose=0 if args.quiet else "auto",
        data_options=_key_values(args.data_option, "--data-option"))
    state = history.zoo_state or {}
    cfg = state.get("config", {})
    patch_txt = "x".join(str(p) for p in cfg.get("patch_size") or []) or "full images"
    best = next((r for r in state.get("history", []) if r["epoch"] == state.get("best_epoch")), {})
    extras = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k.startswith("val_")
                       and k != state.get("monitor"))
    print(f"\nfinetune done: {state.get('epochs_completed')} epoch(s) of {args.name} on {train} "
          f"({cfg.get('spatial_dims')}D, patch {patch_txt}, global batch {cfg.get('global_batch_size')}"
          f"{', stopped early' if state.get('stopped_early') else ''})")
    if state.get("best") is not None:
        print(f"  best {state['monitor']}: {state['best']:.4g} at epoch {state['best_epoch']}"
              + (f" ({extras})" if extras else ""))
    print(f"  checkpoints: {out}/best.h5 (best), {out}/last.h5 (last)")
    print(f"  history:     {out}/history.csv" + (f"  (tensorboard --logdir {out}/logs)"
                                                 if not args.no_tensorboard else ""))
    example = "VOLUME.nii.gz" if cfg.get("spatial_dims") == 3 else "IMAGE.png"
    print(f"  predict:     zoo predict {out} {example} --out SEG{example[example.index('.'):]}\n"
          f"               (Python: zoo.predict('{out}', '{example}'))")
    return 0


def _cmd_predict(args):
    import numpy as np

    from zoo.inference import predict
    model = args.run
    from pathlib import Path
    run = Path(args.run)
    if args.model or (run.is_file() and not (run.parent / "model.json").exists()):
        if not args.model:
            raise ZooError(f"{args.run} is a bare weights file (no model.json beside it); name the "
                           "architecture: zoo predict WEIGHTS INPUT --model NAME [--set key=value ...].")
        from zoo.hub import load
        model = load(args.model, **_model_kwargs(args))
        model.load_weights(str(run))
    elif run.is_dir() and args.last:
        from zoo.train import load_run
        model = load_run(run, which="last")
    window = tuple(float(v) for v in args.window.split(",")) if args.window else None
    spacing = tuple(float(v) for v in args.spacing.split(",")) if args.spacing else None
    patch = _parse_shape(args.patch_size)
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


def _add_train_parsers(sub):
    s = sub.add_parser("finetune", help="fine-tune a registry model (default data: built-in phantoms)",
                       description="Fine-tune NAME on your data (or the built-in synthetic phantoms), "
                       "with best/last checkpoints, resume on rerun and a summary at the end.")
    s.add_argument("name", help="registry model, e.g. unet or unet3d")
    s.add_argument("--train", help="training data: folder, .npz, tfds:NAME or 'phantoms'")
    s.add_argument("--data", default="phantoms", help="training data when --train is omitted (default: phantoms)")
    s.add_argument("--val", help="validation data (default: phantoms when training on phantoms, else none)")
    s.add_argument("--out", help="run folder (default runs/NAME; runs/NAME-2 ... if that one is finished)")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=2, help="per replica (global = x replicas)")
    s.add_argument("--patch-size", help="e.g. 96,96,96 or 64 (default: the model's fixed size, "
                   "else 64 px 2D / 32 voxels 3D phantoms)")
    s.add_argument("--loss", help="dice_ce (segmentation default), dice, ce, weighted_ce, focal")
    s.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    s.add_argument("--lr", type=float, default=1e-3, help="learning rate (cosine decay)")
    s.add_argument("--strategy", default="auto", help="auto, default, one_device, mirrored, multiworker, tpu")
    s.add_argument("--steps-per-epoch", type=int)
    s.add_argument("--validation-steps", type=int)
    s.add_argument("--weights", help="pretrained weights: a tag of the entry, a file or a URL")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--spatial-dims", type=int, choices=(2, 3))
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="model keyword override, YAML value (repeatable), e.g. --set filters=8")
    s.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="data source option (repeatable), e.g. --data-option window=[-100,400]")
    s.add_argument("--mixed-precision", action="store_true")
    s.add_argument("--freeze-encoder-epochs", type=int, default=0)
    s.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    s.add_argument("--monitor", default="val_loss")
    s.add_argument("--augment", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-tensorboard", action="store_true")
    s.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("predict", help="segment a NIfTI volume, DICOM series or 2D image with a trained run",
                       description="Sliding-window segmentation of INPUT with a finetune run folder "
                       "(its best checkpoint) or a weights file; writes the label map.")
    s.add_argument("run", help="finetune out_dir, a checkpoint inside it, or a weights file with --model")
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


def build_parser():
    p = argparse.ArgumentParser(prog="zoo", description="Medical imaging model zoo (tf_keras).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registry models")
    s.add_argument("pattern", nargs="?", help="shell wildcard on the name, e.g. 'resnet*'")
    s.add_argument("--task", choices=("classification", "segmentation", "generation"))
    s.add_argument("--spatial-dims", type=int, choices=(2, 3))
    s.add_argument("--pretrained", action="store_true", help="only entries with weights")
    s.add_argument("--names-only", action="store_true", help="print names only")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("info", help="show one registry entry")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("build", help="build a model and run one forward pass on random input")
    s.add_argument("name")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--spatial-dims", type=int, choices=(2, 3))
    s.add_argument("--input-shape", help="e.g. 64,64,64,1 (spatial axes then channels)")
    s.add_argument("--size", type=int, default=64, help="spatial size for dynamic-size models")
    s.add_argument("--summary", action="store_true", help="print the Keras summary")
    s.set_defaults(func=_cmd_build)
    _add_train_parsers(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
