"""``zoo.load``, ``zoo.list_models`` and ``zoo.info``: the registry as a model hub."""
import inspect

from zoo.errors import check_choice
from zoo.hub import weights as _weights
from zoo.hub.build import build_kwargs, builder_keywords  # noqa: F401 - public here as before
from zoo.hub.contract import entry_spec
from zoo.hub.registry import TASKS, get_registry
from zoo.record import attach, describe, info_of

_NORMALIZE = ("zscore", "auto", "none")  # the values zoo.predict and the readers take (zoo.data.volumes)


def applied_preprocessing(spec):
    """The steps of a weight file's ``preprocessing`` (registry data) that the zoo applies, in the
    record's words (:data:`zoo.record.PREPROCESSING`), plus its sliding-window size.

    ``orientation`` and ``spacing`` (3 numbers) carry over; ``intensity_window: [lo, hi]`` with
    ``clip: true`` and ``scale_to`` [0, 1] (or absent) is the zoo's ``window`` (clip, then scale to
    [0, 1]: MONAI's ``ScaleIntensityRanged(a_min=lo, a_max=hi, b_min=0, b_max=1, clip=True)``);
    ``normalize`` only where it names one of the zoo's own (``zscore``). Anything else (a
    description such as "NormalizeIntensityd nonzero=True ...") stays in the registry for
    ``zoo info`` and is not applied.

    Args:
        spec: a weight file's registry spec (its ``preprocessing`` and ``roi_size`` are read), or None.

    Returns:
        ``(preprocessing dict, roi size tuple or None)``.
    """
    prep = dict(getattr(spec, "preprocessing", None) or {})
    out = {}
    if isinstance(prep.get("orientation"), str):
        out["orientation"] = prep["orientation"]
    if prep.get("spacing") is not None and len(prep["spacing"]) == 3:
        out["spacing"] = tuple(float(v) for v in prep["spacing"])
    window, scale = prep.get("intensity_window"), tuple(prep.get("scale_to") or (0, 1))
    if window is not None and prep.get("clip", False) and tuple(float(v) for v in scale) == (0.0, 1.0):
        out["window"] = tuple(float(v) for v in window)
    if prep.get("normalize") in _NORMALIZE:
        out["normalize"] = prep["normalize"]
    roi = prep.get("roi_size")
    return out, (tuple(int(v) for v in roi) if roi is not None else None)


def list_models(pattern=None, *, task=None, spatial_dims=None, pretrained=None):
    """Sorted registry names, optionally filtered.

    Args:
        pattern: shell-style wildcard on the name (``"resnet*"``); None for every name.
        task: ``"classification"``, ``"segmentation"`` or ``"generation"``.
        spatial_dims: 1, 2 or 3: entries that support it.
        pretrained: True for entries with registered weights, False for entries without, None for both.

    Returns:
        A sorted list of entry names.

    Raises:
        InvalidArgumentError: ``task`` or ``spatial_dims`` is not one of the values above.
    """
    if task is not None:
        check_choice("task", task, TASKS, "list_models")
    if spatial_dims is not None:
        check_choice("spatial_dims", spatial_dims, (1, 2, 3), "list_models")
    return get_registry().filter(pattern, task=task, spatial_dims=spatial_dims, pretrained=pretrained)


def info(name):
    """The registry entry ``name`` as plain data.

    Args:
        name: a registry name (``zoo.list_models()`` lists them).

    Returns:
        A dict of the entry's fields (builder, task, config, paper, weights ...); ``contract`` is
        its full layer-name contract spec (first conv, classifier names, stage-output patterns,
        auxiliary heads).

    Raises:
        UnknownModelError: no entry has this name (the nearest names are suggested).
    """
    entry = get_registry().get(name)
    data = entry.as_dict()
    data["contract"] = {k: list(v) if isinstance(v, tuple) else v for k, v in entry_spec(entry).items()}
    return data


def load(name, /, *, weights=None, allow_non_finite=False, **overrides):
    """Build registry model ``name``; optionally load ``weights``.

    Args:
        name: a registry name (``zoo.list_models()``).
        weights: a tag from the entry's ``weights:`` (e.g. ``"imagenet"``), a local file path or
            a URL; None builds with random initialisation. A local file written by
            ``zoo.save_weights`` also supplies the builder keywords it was saved with.
        allow_non_finite: accept weights holding NaN/Inf values (refused by default).
        **overrides: any builder keyword (``num_classes=2, in_channels=1, spatial_dims=3,
            input_shape=(64, 64, 64, 1)``, ``dropout=0.0`` ...).

    Returns:
        The ``keras.Model`` with its record attached (``zoo.record.info_of``); with ``weights``,
        the report of what was loaded, adapted and re-initialised is at ``model.zoo_load_report``.

    Raises:
        UnknownModelError: no entry has this name.
        UnknownArgumentError: an override the builder does not take.
        InvalidArgumentError: an override the builder refuses (e.g. an unsupported ``spatial_dims``).
        WeightsError: the weights cannot be found, fetched, verified or matched to the model.
    """
    entry = get_registry().get(name)
    spec, file_config = None, {}
    if weights is not None:
        spec, _, local, _, _ = _weights.resolve(weights, entry)
        if spec is None and local is not None:  # a local file: build as it was saved (aux heads ...)
            file_config = _weights.file_build_defaults(local, entry)
    builder, kwargs = build_kwargs(entry, overrides, spec, file_config)
    model = builder(**kwargs)
    dims = kwargs.get("spatial_dims", entry.spatial_dims[0])
    preprocessing, roi = applied_preprocessing(spec)
    dynamic = all(s is None for s in model.input_shape[1:-1])
    labels = getattr(spec, "labels", None)
    names = list(labels) if isinstance(labels, (list, tuple)) else None
    attach(model, describe(model, name=entry.name, task=entry.task, source="registry", build=kwargs,
                           spatial_dims=dims, preprocessing=preprocessing,
                           patch_size=roi if roi is not None and dynamic and len(roi) == dims else None))
    if names is not None and len(names) == info_of(model).num_classes:  # the file's classes, by name
        attach(model, info_of(model).replace(class_names=names))
    if weights is not None:
        report = _weights.load_weights_into(model, entry=entry, weights=weights, build_kwargs=kwargs,
                                            allow_non_finite=allow_non_finite)
        signature = inspect.signature(builder).parameters.items()
        defaults = {**{k: p.default for k, p in signature if p.default is not p.empty},
                    **build_kwargs(entry, {}, spec)[1]}  # what the entry alone builds
        report.file_config = {k: kwargs[k] for k in file_config
                              if k in kwargs and k not in overrides
                              and _weights._plain(defaults.get(k)) != _weights._plain(kwargs[k])}
        try:
            model.zoo_load_report = report
        except AttributeError:  # pragma: no cover - models that refuse attributes
            pass
    return model
