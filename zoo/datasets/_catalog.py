"""Finding the catalogue's builders (``datasets/<name>/<name>_dataset_builder.py``), registering
them with TFDS and describing them without preparing anything."""
import contextlib
import fnmatch
import importlib
import logging
from pathlib import Path

import zoo.datasets.builders as builders
from zoo.errors import InvalidArgumentError, ZooError, did_you_mean

SUFFIX = "_dataset_builder"
FIELDS = ("task", "spatial_dims", "channels", "classes", "license", "files", "source", "download",
          "homepage")


class UnknownDatasetError(ZooError, KeyError):
    """No catalogue data set (or configuration) has this name."""


class DatasetFilesError(ZooError, FileNotFoundError):
    """A catalogue data set's source files are missing, incomplete or corrupt (the message
    lists the expected files, where they were looked for and where to get them)."""


class _TFDSNoise(logging.Filter):
    """Two TFDS 4.9 warnings a zoo user can do nothing about: 'Variant folder ... has no
    dataset_info.json', logged whenever a data set is looked up before it is prepared (the normal
    state before prepare()), and '`FeatureConnector.dtype` is deprecated ... change your code',
    logged by TFDS's own Tensor decoder when reading any zlib-encoded feature."""

    def filter(self, record):
        msg = str(record.msg)
        return not (msg.startswith("Variant folder %s has no") or "FeatureConnector.dtype` is deprecated" in msg)


@contextlib.contextmanager
def quiet_tfds():
    logger, noise = logging.getLogger("absl"), _TFDSNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def folders():
    """``{builder name: folder}`` for every builder folder (wheel or checkout), sorted."""
    found = {}
    for root in builders.__path__:
        root = Path(root)
        for d in sorted(root.iterdir()) if root.is_dir() else ():
            if (d / f"{d.name}{SUFFIX}.py").is_file():
                found.setdefault(d.name, d)
    return dict(sorted(found.items()))


def builder_class(name):
    """The TFDS builder class of catalogue builder ``name`` (imported, hence registered)."""
    known = folders()
    if name not in known:
        raise UnknownDatasetError(f"{name!r} is not a data set of the catalogue; it has "
                                  f"{', '.join(known)}.{did_you_mean(name, known)} "
                                  "`zoo datasets list` shows every name.")
    return importlib.import_module(f"zoo.datasets.builders.{name}.{name}{SUFFIX}").Builder


def register():
    """Import every catalogue builder, so ``tfds.builder``/``tfds.load`` know their names.
    Returns the builder names."""
    return [builder_class(n).name for n in folders()]


def parse(name):
    """``"decathlon/task04_hippocampus:1.0.0"`` -> ``("decathlon", "task04_hippocampus", "1.0.0")``."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"data set name {name!r} must be a non-empty string such as "
                                   "'isbi2012_em' or 'decathlon/task04_hippocampus'.")
    rest, _, version = name.strip().partition(":")
    base, _, config = rest.partition("/")
    return base, config or None, version or None


def resolve(name):
    """``(builder class, config)`` for a catalogue name. A builder with several configurations
    and no default needs one named: ``decathlon`` alone is an error listing them."""
    base, config, _ = parse(name)
    cls = builder_class(base)
    configs = {c.name: c for c in cls.BUILDER_CONFIGS}
    if config is None:
        default = getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None) or (
            next(iter(configs)) if len(configs) == 1 else None)
        if default is None:
            raise UnknownDatasetError(
                f"data set {base!r} has {len(configs)} configurations; name one, e.g. "
                f"'{base}/{next(iter(configs))}'. They are: {', '.join(configs)}.")
        config = default
    if config not in configs:
        shown = ", ".join(list(configs)[:12]) + (f", ... ({len(configs)} in all: zoo datasets list "
                                                 f"'{base}/*')" if len(configs) > 12 else "")
        raise UnknownDatasetError(f"data set {base!r} has no configuration {config!r}; it has "
                                  f"{shown}.{did_you_mean(config, configs)}")
    return cls, configs[config]


def full_name(cls, config):
    return cls.name if len(cls.BUILDER_CONFIGS) == 1 else f"{cls.name}/{config.name}"


def entry(cls, config):
    """The catalogue's facts about one configuration, as a dict."""
    data = {"name": full_name(cls, config), "description": config.description or ""}
    for key in FIELDS:
        value = getattr(config, key)
        data[key] = list(value) if isinstance(value, tuple) else value
    data["default"] = config.name == getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None)
    data["version"] = str(cls.VERSION)
    return data


def list_datasets(pattern=None, *, task=None, spatial_dims=None):
    """One dict per catalogue data set (configuration): ``name`` (what ``load``/``tfds:NAME``
    take), ``task``, ``spatial_dims``, ``channels``, ``classes``, ``license``, ``files`` (what
    ``manual_dir`` must hold), ``source`` (where to get them), ``download`` (the URL fetched
    when the files are absent, or None), ``homepage``. ``pattern``: a shell wildcard on the
    name (``"medmnist/*3d*"``)."""
    rows = []
    for base in folders():
        cls = builder_class(base)
        for config in cls.BUILDER_CONFIGS:
            row = entry(cls, config)
            if pattern and not fnmatch.fnmatchcase(row["name"], pattern):
                continue
            if task and row["task"] != task or spatial_dims and row["spatial_dims"] != spatial_dims:
                continue
            rows.append(row)
    return rows


def info(name):
    """The catalogue entry of one data set (see :func:`list_datasets`)."""
    return entry(*resolve(name))


def builder(name, data_dir=None):
    """The TFDS builder of a catalogue data set (not prepared; ``data_dir`` None: TFDS's
    default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)."""
    cls, config = resolve(name)
    version = parse(name)[2]
    return cls(config=config, data_dir=None if data_dir is None else str(Path(data_dir).expanduser()),
               version=version)
