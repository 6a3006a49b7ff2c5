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
