"""The builder keywords of a registry build: the entry's config, the weights' build config and
the caller's overrides, merged and checked (``zoo.load`` and the weights' converters use it)."""
import inspect

from zoo.errors import InvalidArgumentError, UnknownArgumentError, did_you_mean
from zoo.hub.registry import thaw


def builder_keywords(builder):
    """The keyword arguments a builder accepts, in signature order.

    Args:
        builder: a builder function.

    Returns:
        The names of its keyword-capable parameters (a list).

    Raises:
        Nothing of its own (``inspect.signature`` may raise for a non-callable).
    """
    return [p.name for p in inspect.signature(builder).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def build_kwargs(entry, overrides, weight_spec=None, file_config=None):
    """Merge an entry's config, the weights' build config and the user's overrides (in that order).

    Args:
        entry: a registry ``ModelEntry``.
        overrides: builder keywords from the user; they win.
        weight_spec: a registered weight spec whose build config (``num_classes``, ``in_channels``,
            ``config``) applies, or None.
        file_config: builder keywords recorded in a local weights file, or None.

    Returns:
        ``(builder, kwargs)``: the entry's registered builder function and the merged keywords
        (``spatial_dims`` set where the builder takes it; ``in_channels`` from an ``input_shape``
        override when not given).

    Raises:
        UnknownArgumentError: an override the builder does not take (the nearest is named).
        InvalidArgumentError: ``spatial_dims`` the entry does not support.
        RegistryError: the entry names a builder that is not registered.
    """
    builder = entry.resolve_builder()
    valid = builder_keywords(builder)
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise UnknownArgumentError(
            f"{entry.name}: unknown keyword {unknown[0]!r} for builder {entry.builder}."
            f"{did_you_mean(unknown[0], valid)}"
            f" Valid keywords: {', '.join(valid)}.")
    from_file = {k: v for k, v in (file_config or {}).items() if k in valid and k not in ("input_shape", "name")}
    kwargs = {**thaw(entry.config), **_weight_defaults(weight_spec, valid), **from_file, **overrides}
    dims = kwargs.get("spatial_dims", entry.spatial_dims[0])
    if dims not in entry.spatial_dims:
        raise InvalidArgumentError(
            f"{entry.name}: spatial_dims={dims!r} is not supported by this entry; it supports "
            f"{', '.join(str(d) for d in entry.spatial_dims)}. Pass spatial_dims={entry.spatial_dims[0]}"
            + (" or pick a 3D-capable entry (zoo.list_models(spatial_dims=3))." if dims == 3 else "."))
    if "spatial_dims" in valid:
        kwargs["spatial_dims"] = dims
    shape = overrides.get("input_shape")
    if isinstance(shape, (list, tuple)) and "in_channels" not in overrides and "in_channels" in valid \
            and len(shape) == dims + 1 and isinstance(shape[-1], int):
        kwargs["in_channels"] = int(shape[-1])
    return builder, kwargs


def _weight_defaults(spec, valid):
    """Builder kwargs a registered weight file was saved from (num_classes, in_channels, config)."""
    if spec is None:
        return {}
    defaults = {k: v for k, v in thaw(spec.config).items()
                if k not in ("spatial_dims", "input_shape", "name")}
    if spec.num_classes is not None:
        defaults.setdefault("num_classes", spec.num_classes)
    if spec.in_channels is not None:
        defaults.setdefault("in_channels", spec.in_channels)
    return {k: v for k, v in defaults.items() if k in valid}
