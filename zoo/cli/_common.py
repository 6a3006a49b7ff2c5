"""Helpers shared by the ``zoo`` subcommands: ``key=value`` options, shapes, model keywords."""
import yaml

from zoo.errors import ZooError


def parse_shape(text):
    if text is None:
        return None
    return tuple(None if s in ("", "none", "None") else int(s) for s in text.replace("x", ",").split(","))


def key_values(items, what):
    """``key=value`` strings -> dict, values parsed as YAML (``filters=8``, ``window=[-100, 400]``)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ZooError(f"{what} {item!r} must look like key=value, e.g. {what} filters=8.")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def model_kwargs(args):
    kwargs = key_values(args.set, "--set")
    for key in ("num_classes", "in_channels", "spatial_dims"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    return kwargs


def add_semi_arguments(s):
    """The semi-supervised and domain-adaptation options of ``zoo finetune`` and ``zoo run``
    (zoo.train.semi, zoo.train.adapt)."""
    s.add_argument("--unlabeled", metavar="DATA", help="unlabelled data for --semi: a folder of images, NIfTI "
                   "volumes or DICOM series (no labels needed), any training layout (labels unused) or 'phantoms'")
    s.add_argument("--semi", choices=("mean_teacher", "pseudo_label"), help="semi-supervised training on "
                   "--unlabeled too: mean_teacher (an EMA teacher's consistency) or pseudo_label (confident "
                   "teacher predictions as labels)")
    s.add_argument("--semi-weight", type=float, help="weight of the unlabelled loss after its ramp-up (default 3 for "
                   "mean_teacher, 1 for pseudo_label)")
    s.add_argument("--ema-decay", type=float, help="mean_teacher: the teacher's moving-average decay (default 0.99)")
    s.add_argument("--confidence", type=float, help="pseudo_label: the teacher probability that makes a label "
                   "(default 0.9)")
    s.add_argument("--adapt", choices=("dann",), help="domain adaptation to --unlabeled (the target domain's "
                   "scans): dann (domain-adversarial training of the encoder)")
    s.add_argument("--adapt-weight", type=float, help="dann: weight of the domain loss (default 1.0)")


def semi_kwargs(args):
    """The training keywords of :func:`add_semi_arguments` that were given."""
    given = {"semi": args.semi, "semi_weight": args.semi_weight, "ema_decay": args.ema_decay,
             "confidence": args.confidence, "adapt": args.adapt, "adapt_weight": args.adapt_weight}
    return {k: v for k, v in given.items() if v is not None}
