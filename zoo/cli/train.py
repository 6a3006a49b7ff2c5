"""``zoo finetune NAME``: fine-tune a registry model from the shell."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
from pathlib import Path

from zoo.cli._common import add_semi_arguments, key_values, model_kwargs, parse_shape, semi_kwargs
from zoo.cli.sample import print_gan_summary
from zoo.hub import load
from zoo.record import info_of


def _default_run_dir(model):
    """runs/<model>, or runs/<model>-2, -3 ... when that already holds a finished run."""
    from zoo.train import read_state
    base = Path("runs") / model
    out, k = base, 1
    while read_state(out).get("finished"):
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def _resume_hint(out, epochs):
    from zoo.train import read_state
    try:
        done = read_state(out).get("epochs_completed", 0)
    except Exception:  # noqa: BLE001 - an unreadable state says nothing more
        done = 0
    if not done:
        return (f"in epoch 1 of {epochs}, before any epoch was saved; run the same command again to start "
                "the run over")
    return (f"after epoch {done} of {epochs}; run the same command again to resume (from {out}, "
            f"best.h5 and last.h5 kept)")


def _cmd_finetune(args):
    from zoo.api import finetune
    from zoo.resolve import head_from_data
    from zoo.train import get_strategy
    from zoo.train.loop import seed_everything
    strategy = get_strategy(args.strategy)  # before any model: multi-worker setups need it first
    seed_everything(args.seed, args.deterministic)  # before the model too: a seeded run repeats
    train = args.train or args.data
    # a classifier gets one output per class folder of the training data unless --num-classes says
    data_options = key_values(args.data_option, "--data-option")
    model = load(args.name, weights=args.weights, **head_from_data(
        args.name, train, model_kwargs(args), options=data_options, ignore_label=args.ignore_label))
    gan = info_of(model).task == "generation"
    val = args.val if args.val is not None or gan else ("phantoms" if train == "phantoms" else None)
    out = args.out or _default_run_dir(args.name)
    args.interrupt_hint = lambda: _resume_hint(out, args.epochs)  # Ctrl-C: what was kept, how to go on
    patch = parse_shape(args.patch_size)
    patch = patch[0] if patch is not None and len(patch) == 1 else patch
    history = finetune(
        model, train, val, unlabeled=args.unlabeled, epochs=args.epochs, batch_size=args.batch_size, patch_size=patch,
        loss=args.loss, optimizer=args.optimizer, learning_rate=args.lr, out_dir=out,
        strategy=strategy, mixed_precision=args.mixed_precision,
        freeze_encoder_epochs=args.freeze_encoder_epochs, early_stopping=args.early_stopping,
        monitor=args.monitor, steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps, augment=args.augment, seed=args.seed,
        deterministic=args.deterministic,
        tensorboard=not args.no_tensorboard, verbose=0 if args.quiet else "auto",
        data_options=data_options, force_resume=args.force_resume,
        ignore_label=args.ignore_label, **semi_kwargs(args))
    state = history.zoo_state or {}
    if gan:
        return print_gan_summary(state, args.name, train, out)
    cfg = state.get("config", {})
    patch_txt = "x".join(str(p) for p in cfg.get("patch_size") or []) or "full images"
    best = next((r for r in state.get("history", []) if r["epoch"] == state.get("best_epoch")), {})
    extras = ", ".join(f"{k} {v:.4g}" for k, v in best.items() if k.startswith("val_")
                       and k != state.get("monitor"))
    mode = args.semi or args.adapt
    semi = f" + unlabelled {args.unlabeled} ({mode})" if mode else ""
    print(f"\nfinetune done: {state.get('epochs_completed')} epoch(s) of {args.name} on {train}{semi} "
          f"({cfg.get('spatial_dims')}D, patch {patch_txt}, global batch {cfg.get('global_batch_size')}"
          f"{', stopped early' if state.get('stopped_early') else ''})")
    if state.get("best") is not None:
        print(f"  best {state['monitor']}: {state['best']:.4g} at epoch {state['best_epoch']}"
              + (f" ({extras})" if extras else ""))
    print(f"  checkpoints: {out}/best.h5 (best), {out}/last.h5 (last)")
    print(f"  history:     {out}/history.csv" + (f"  (tensorboard --logdir {out}/logs)"
                                                 if not args.no_tensorboard else ""))
    example = "VOLUME.nii.gz" if cfg.get("spatial_dims") == 3 else "IMAGE.png"
    if cfg.get("task") == "classification":  # prints the top classes by name; JSON on request
        names = cfg.get("class_names") or []
        shown = f": {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}" if names else ""
        print(f"  predict:     zoo predict {out} {example}   (the top classes of {len(names) or cfg.get('num_classes')}"
              f"{shown}; --out PRED.json saves them)\n"
              f"               (Python: zoo.predict('{out}', '{example}', return_probabilities=True))")
    else:
        print(f"  predict:     zoo predict {out} {example} --out SEG{example[example.index('.'):]}\n"
              f"               (Python: zoo.predict('{out}', '{example}'))")
    return 0


def add_parsers(sub):
    s = sub.add_parser("finetune", help="fine-tune a registry model (default data: built-in phantoms)",
                       description="Fine-tune NAME on your data (or the built-in synthetic phantoms), "
                       "with best/last checkpoints, resume on rerun and a summary at the end. A classifier "
                       "trained on class folders gets one output per folder.",
                       epilog="example: zoo finetune resnet18 --train data2d/train --val data2d/val --epochs 5 "
                       "--patch-size 64 --out runs/r18")
    s.add_argument("name", help="registry model, e.g. unet or unet3d")
    s.add_argument("--train", help="training data: folder, .npz, tfds:NAME or 'phantoms'")
    s.add_argument("--data", default="phantoms", help="training data when --train is omitted (default: phantoms)")
    s.add_argument("--val", help="validation data (default: phantoms when training on phantoms, else none)")
    s.add_argument("--out", help="run folder (default runs/NAME; runs/NAME-2 ... if that one is finished)")
    s.add_argument("--epochs", type=int, default=10, help="epochs in all (default 10; a resumed run may grow it)")
    s.add_argument("--batch-size", type=int, help="per replica (global = x replicas); default 2, 64 for GANs")
    s.add_argument("--patch-size", help="e.g. 96,96,96 or 64 (default: the model's fixed size, "
                   "else 64 px 2D / 32 voxels 3D phantoms)")
    s.add_argument("--loss", help="dice_ce (segmentation default), dice, ce, weighted_ce, focal")
    s.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"), help="default adam")
    s.add_argument("--lr", type=float, help="learning rate (default 1e-3 with cosine decay; GANs: the "
                   "paper's constant rate)")
    s.add_argument("--strategy", default="auto", help="auto, default, one_device, mirrored, multiworker, tpu")
    s.add_argument("--steps-per-epoch", type=int, help="training batches per epoch (default: the whole data)")
    s.add_argument("--validation-steps", type=int, help="validation batches per epoch (default: all)")
    s.add_argument("--weights", help="pretrained weights: a tag of the entry, a file or a URL")
    s.add_argument("--num-classes", type=int, help="classes of the head (default: one per class folder of "
                   "--train for a classifier, else the entry's)")
    s.add_argument("--in-channels", type=int, help="input channels (1 for CT/MR)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="2D or 3D variant of the entry")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="model keyword override, YAML value (repeatable), e.g. --set filters=8")
    s.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                   help="data source option (repeatable), e.g. --data-option window=[-100,400]")
    s.add_argument("--mixed-precision", action="store_true", help="train in float16 with loss scaling")
    s.add_argument("--freeze-encoder-epochs", type=int, default=0, help="train the first N epochs with the "
                   "encoder frozen (default 0)")
    s.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs "
                   "without improvement of --monitor")
    s.add_argument("--monitor", default="val_loss", help="the value that picks best.h5 (default val_loss)")
    s.add_argument("--ignore-label", type=int, metavar="VALUE", help="the label value of unannotated voxels "
                   "(sparse annotation, e.g. 255): left out of the loss and the metrics")
    add_semi_arguments(s)
    s.add_argument("--augment", action="store_true", help="random flips, rotations and intensity changes")
    s.add_argument("--seed", type=int, default=0, help="random seed of the initial weights, shuffling, patches "
                   "and augmentation (default 0)")
    s.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow kernels too (slower)")
    s.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs in <out>/logs")
    s.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    s.add_argument("--force-resume", action="store_true",
                   help="continue an unfinished run in --out even though options changed (listed otherwise)")
    s.set_defaults(func=_cmd_finetune)
