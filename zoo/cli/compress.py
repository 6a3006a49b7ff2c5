"""``zoo compress MODEL --recipe R`` and ``zoo recipes NAME``: compression from the shell."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import json
import sys
from pathlib import Path

from zoo.cli._common import key_values, model_kwargs, parse_shape
from zoo.errors import ZooError
from zoo.hub import load
from zoo.hub.registry import get_registry


def _default_recipe(name, model):
    """The first recipe the model's registry entry lists (its default)."""
    entry = get_registry().models.get(name)
    if entry is None or not entry.recipes:
        raise ZooError(f"zoo compress: {model!r} names no registry entry with recipes; pass --recipe (see "
                       "`zoo recipes NAME`).")
    return entry.recipes[0]


def _cmd_compress(args):
    from zoo.api import TRAINABLE, compress
    from zoo.resolve import resolve
    from zoo.train import get_strategy
    strategy = get_strategy(args.strategy)  # before any model: multi-worker setups need it first
    overrides = model_kwargs(args)
    if args.model in get_registry().models and not _exists(args.model):
        model = load(args.model, weights=args.weights, **overrides)
        name = args.model
    elif overrides or args.weights:
        raise ZooError("zoo compress: --set/--num-classes/--in-channels/--spatial-dims/--weights apply to a registry "
                       f"name; {args.model!r} is a run folder or file, which already has its architecture.")
    else:
        model, info = resolve(args.model, verb="zoo compress", allow=TRAINABLE)
        name = info.name
    recipe = args.recipe or _default_recipe(name, args.model)
    train = args.train or args.data  # None: the model's own training data (zoo.api.training_data)
    val = args.val if args.val is not None else ("phantoms" if train == "phantoms" else None)
    patch = parse_shape(args.patch_size)
    patch = patch[0] if patch is not None and len(patch) == 1 else patch
    options = dict(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, patch_size=patch,
                   loss=args.loss, strategy=strategy, mixed_precision=args.mixed_precision,
                   verbose=0 if args.quiet else "auto", data_options=key_values(args.data_option, "--data-option"),
                   seed=args.seed, tensorboard=not args.no_tensorboard, steps_per_epoch=args.steps_per_epoch,
                   validation_steps=args.validation_steps)
    if args.out:
        options["out_dir"] = args.out
    small, report = compress(model, recipe, train, val, student=args.student, **options)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    out = report["out_dir"]
    print(f"\n{report}")
    print(f"  model:   {out}/{report['model_file']} (zoo.load_model); the folder: zoo predict {out} IMAGE, "
          f"zoo export {out}")
    print(f"  report:  {out}/report.json; steps: " + ", ".join(s["dir"] for s in report["steps"]))
    return 0


def _exists(path):
    return Path(path).expanduser().exists()


def _cmd_recipes(args):
    from zoo.compress.listing import list_recipes
    rows = list_recipes(args.name, spatial_dims=args.spatial_dims)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["recipe"]) for r in rows) if rows else 6
    for r in rows:
        mark = "default" if r["default"] else ("listed" if r["listed"] else "")
        state = "applies" if r["applies"] else "no"
        print(f"{r['recipe']:<{width}}  {r['kind']:<8} {state:<8} {mark:<8} "
              + (r["description"] or "" if r["applies"] else (r["reason"] or "").replace("\n", " ")))
    print(f"{sum(r['listed'] for r in rows)} recipe(s) listed for {args.name}; the first is its default "
          "(zoo compress NAME without --recipe)", file=sys.stderr)
    return 0


def add_parsers(sub):
    s = sub.add_parser("compress", help="compress a model with a tfmot recipe (prune, QAT, cluster, chains, distill)",
                       description="Check RECIPE against MODEL (a registry name, a finetune run folder or a saved "
                       "model file), fine-tune it with the recipe on your data (or the phantoms), strip the tfmot "
                       "wrappers and print what it achieved. Rerun the same command to resume after a crash.",
                       epilog="example: zoo compress runs/demo --recipe prune_80 --epochs 2")
    s.add_argument("model", help="registry name (e.g. unet), run folder (runs/liver) or model file (.keras/.h5)")
    s.add_argument("--recipe", help="e.g. prune_80, qat_int8, prune_80+qat_int8, deep_compression "
                   "(default: the entry's first listed recipe; see `zoo recipes NAME`)")
    s.add_argument("--train", help="training data: folder, .npz, tfds:NAME or 'phantoms'")
    s.add_argument("--data", help="training data when --train is omitted (default: the data the model was "
                   "trained on, as its run recorded it; the built-in phantoms for a registry name)")
    s.add_argument("--val", help="validation data (default: phantoms when training on phantoms, else none)")
    s.add_argument("--out", help="output folder (default runs/<model>_<recipe>)")
    s.add_argument("--epochs", type=int, default=2, help="epochs per recipe step (default 2)")
    s.add_argument("--student", help="distill: the student, a registry name")
    s.add_argument("--batch-size", type=int, default=2, help="per replica")
    s.add_argument("--patch-size", help="e.g. 96,96,96 or 64")
    s.add_argument("--loss", help="dice_ce (segmentation default), dice, ce, weighted_ce, focal")
    s.add_argument("--lr", type=float, help="learning rate (default: the recipe's, else 1e-4)")
    s.add_argument("--strategy", default="auto", help="auto, default, one_device, mirrored, multiworker, tpu")
    s.add_argument("--steps-per-epoch", type=int, help="training batches per epoch (default: the whole data)")
    s.add_argument("--validation-steps", type=int, help="validation batches per epoch (default: all)")
    s.add_argument("--weights", help="registry name only: pretrained weights (tag, file or URL)")
    s.add_argument("--num-classes", type=int, help="registry name only: classes of the head")
    s.add_argument("--in-channels", type=int, help="registry name only: input channels (1 for CT/MR)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="registry name only: 2D or 3D variant")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="model keyword override (registry name)")
    s.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="data source option (repeatable)")
    s.add_argument("--mixed-precision", action="store_true", help="train in float16 with loss scaling")
    s.add_argument("--seed", type=int, default=0, help="random seed of shuffling and patches (default 0)")
    s.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs in <out>/logs")
    s.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=_cmd_compress)

    s = sub.add_parser("recipes", help="which compression recipes apply to a registry entry, and why others do not",
                       epilog="example: zoo recipes unet3d --spatial-dims 3")
    s.add_argument("name", help="registry name (zoo list shows them)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="check the 2D or the 3D variant")
    s.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    s.set_defaults(func=_cmd_recipes)
