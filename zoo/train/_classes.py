"""Class names of classification data for ``zoo.finetune``: the head built from the folders,
checked against them, and the same classes in training and validation data."""
import sys

from zoo.errors import InvalidArgumentError


def _show(names, k=6):
    names = list(names)
    return ", ".join(names[:k]) + (f" ... ({len(names)} in all)" if len(names) > k else "")


def head_from_data(name, train, overrides, *, say=True):
    """Builder overrides for registry model ``name`` trained on ``train``: for a classification
    entry without an explicit ``num_classes``, the number of class folders of ``train``."""
    from zoo.data import class_names_of
    from zoo.hub.registry import get_registry
    if "num_classes" in overrides or get_registry().get(name).task != "classification":
        return dict(overrides)
    names = class_names_of(train)
    if not names:
        return dict(overrides)
    if say:
        print(f"finetune: {len(names)} classes from the folders of {train} ({_show(names)}): "
              f"building {name} with num_classes={len(names)}", file=sys.stderr)
    return {**overrides, "num_classes": len(names)}


def check_classes(model, num_classes, train, names, val=None, val_names=None):
    """A head that fits the training data's classes; validation data with the same classes."""
    if names is None:
        return None
    n = len(names)
    if num_classes != n and not (n == 2 and num_classes == 1):  # one logit: binary (sigmoid)
        label = getattr(model, "zoo_name", None) or model.name
        raise InvalidArgumentError(
            f"finetune: the training data {train} has {n} classes ({_show(names)}) but model {label!r} "
            f"has a {num_classes}-class head; build it with num_classes={n} (zoo.load({label!r}, "
            f"num_classes={n}); on the command line --num-classes {n}, or name the model and let "
            "zoo finetune read the classes from the folders).")
    if val_names is not None and list(val_names) != list(names):
        missing = [c for c in names if c not in val_names]
        extra = [c for c in val_names if c not in names]
        diff = "; ".join(part for part in (
            f"missing in validation: {_show(missing)}" if missing else "",
            f"only in validation: {_show(extra)}" if extra else "") if part) or "same names, other order"
        raise InvalidArgumentError(
            f"finetune: the validation data {val} has the classes {_show(val_names)} but the training "
            f"data {train} has {_show(names)} ({diff}). A class's index is its rank among the sorted "
            "folder names, so both need the same class folders; add or rename folders to match.")
    return list(names)
