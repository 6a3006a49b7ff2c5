"""``zoo run NAME``: the main job (fine-tune, compress, export, verify) from the shell."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import contextlib
import json
import sys

from zoo.cli._common import add_semi_arguments, key_values, model_kwargs, parse_shape, semi_kwargs
from zoo.errors import InvalidArgumentError


def _interrupt_hint(out):
    """Where a Ctrl-C left the run in ``out``, and how to go on (the same command resumes it)."""
    from pathlib import Path

    from zoo.train import read_state
    out = Path(out)
    stages = sorted(p for p in out.glob("[123]_*") if p.is_dir()) if out.is_dir() else []
    if not stages:
        return f"before any stage was saved; run the same command again to start the run in {out}"
    stage = stages[-1]
    steps = sorted(p for p in stage.glob("[0-9]_*") if p.is_dir()) or [stage]  # a compression's steps
    try:
        state = read_state(steps[-1])
    except Exception:  # noqa: BLE001 - an unreadable state says nothing more
        state = {}
    where = f"in {stage.name}" + (f", after epoch {state['epochs_completed']}" if state.get("epochs_completed") else "")
    return (f"{where}; finished stages are kept: run the same command again to resume "
            f"(--restart starts over)")


def _cmd_run(args):
    import shlex
    from pathlib import Path

    from zoo.pipeline import run
    out = args.out or str(Path("runs") / f"run_{args.name}")
    args.interrupt_hint = lambda: _interrupt_hint(out)  # Ctrl-C: where the run stopped, how to go on
    patch = parse_shape(args.patch_size)
    if patch is not None:
        if len(set(patch)) != 1 or patch[0] is None:
            raise InvalidArgumentError(f"zoo run: --patch-size {args.patch_size} must be one size for every axis, "
                                       "e.g. --patch-size 32.")
        patch = patch[0]
    # --json: the report is the only thing on stdout (Keras' epoch lines go to stderr with the rest)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        report = run(args.name, data=args.data, train=args.train, val=args.val, unlabeled=args.unlabeled,
                     recipe=args.recipe,
                     quantization=args.quantization, epochs=args.epochs, compress_epochs=args.compress_epochs,
                     out_dir=out, patch_size=patch, spatial_dims=args.spatial_dims,
                     model_options=model_kwargs(args), weights=args.weights,
                     verify="warn" if args.verify == "warn" else True,
                     restart=args.restart, deterministic=args.deterministic,
                     verbose=not args.quiet, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
                     validation_steps=args.validation_steps, learning_rate=args.lr, strategy=args.strategy,
                     data_options=key_values(args.data_option, "--data-option"), seed=args.seed,
                     ignore_label=args.ignore_label, **semi_kwargs(args))
    if report is None:  # a worker of a multi-worker run: the chief reports
        return 0
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(report)
    print(f"next: zoo predict {shlex.quote(report['artefacts']['tflite'])} IMAGE --out OUT   (the exported file, "
          "with its preprocessing)")
    return 0


MODES = ("float32", "float16", "dynamic", "int8", "int16x8", "qat")  # zoo.export's TFLite modes


def add_parsers(sub):
    s = sub.add_parser(
        "run", help="the main job: fine-tune, compress, export to TFLite and verify one entry",
        description="Fine-tune registry entry NAME on the built-in phantoms of its task and dimension (or "
        "--data / --train and --val), apply its default compression recipe, export the result to TFLite, "
        "verify the file in LiteRT and print the metric after each stage, the sizes and the latency. "
        "Each stage has a folder under --out; run the same command again to continue an interrupted run "
        "(finished stages are skipped).",
        epilog="example: zoo run unet3d\nmore:    zoo run unet --data data/liver --recipe prune_80 --epochs 10\n"
               "         zoo run monai_spleen_ct --weights monai --data my_spleens/\n"
               "         zoo run resnet18 --quantization float16 --json > report.json",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    s.add_argument("name", help="registry entry, e.g. unet3d (zoo list shows them)")
    s.add_argument("--data", help="a folder with train/ and val/ inside (or the training data itself)")
    s.add_argument("--train", help="training data: folder, .npz, tfds:NAME or 'phantoms' (default)")
    s.add_argument("--val", help="validation data (default: other phantoms, or the training data)")
    s.add_argument("--recipe", help="compression recipe (default: the entry's first; 'none' skips; "
                   "`zoo recipes NAME` lists them)")
    s.add_argument("--quantization", default="int8", choices=MODES,
                   help="TFLite export mode (default int8)")
    s.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    s.add_argument("--compress-epochs", type=int, default=2, help="epochs per compression step (default 2)")
    s.add_argument("--steps-per-epoch", type=int, default=16, help="training steps per epoch (default 16)")
    s.add_argument("--validation-steps", type=int, default=4, help="validation batches per epoch (default 4)")
    s.add_argument("--batch-size", type=int, default=2, help="batch size (default 2)")
    s.add_argument("--patch-size", help="input size per axis (default 64 in 2D, 32 in 3D)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="for entries with 2D and 3D variants")
    s.add_argument("--lr", type=float, help="learning rate (default: finetune's 1e-3, compress's recipe rate)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder keyword, e.g. --set filters=16")
    s.add_argument("--weights", help="fine-tune from these weights instead of random ones: a tag of the entry "
                   "(zoo info NAME lists them, e.g. monai), a file or a URL")
    s.add_argument("--num-classes", type=int, help="classes of the head (default: from the data: its class folders, "
                   "or 1 + the largest label of its label maps; 2 for the phantoms)")
    s.add_argument("--in-channels", type=int, help="input channels (default: the data's images'; 1 for the phantoms)")
    s.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="data source option, e.g. --data-option window=[-100,400]")
    s.add_argument("--verify", choices=("error", "warn"), default="error",
                   help="a TFLite file that disagrees with Keras beyond the mode's thresholds: error (default, "
                        "nothing written) or warn (written, with a warning)")
    s.add_argument("--strategy", default="auto", help="auto, default, one_device, mirrored, multiworker (with "
                   "TF_CONFIG: the chief writes the export and the report), tpu")
    s.add_argument("--out", help="run folder (default runs/run_NAME)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the weights, data order, patches and "
                   "augmentation (default 0): the same command repeats on one machine")
    s.add_argument("--ignore-label", type=int, metavar="VALUE", help="the label value of unannotated voxels "
                   "(sparse annotation, e.g. 255): left out of the loss and the metrics")
    add_semi_arguments(s)
    s.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow kernels too (slower)")
    s.add_argument("--restart", action="store_true", help="delete the stages in --out and start the run over "
                   "(otherwise a rerun continues it, and stops if its inputs differ)")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_cmd_run)
