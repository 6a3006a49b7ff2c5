"""Converters from other libraries' checkpoints to zoo models (channels-last Keras).

* :mod:`~zoo.hub.convert.monai`: a MONAI ``state_dict`` (``UNet``, ``SegResNet``), e.g. a bundle's
  ``models/model.pt``; public entry point :func:`from_monai` (``zoo.from_monai``).
* :mod:`~zoo.hub.convert.medicalnet`: MedicalNet's ``.pth`` files (``{"state_dict": ...}`` with
  ``module.`` prefixes) onto ``zoo.models.medicalnet``.
* :mod:`~zoo.hub.convert.genesis`: Models Genesis' channels-first Keras ``.h5`` onto
  ``zoo.models.genesis``, by layer name.

A registry weight spec with ``format: monai | medicalnet | genesis`` goes through
:func:`converted_file`: the fetched (hash-verified) file is converted once into a zoo ``.npz``
weights file, cached under ``$ZOO_HOME/converted/<hash of the source file>/``, and loaded from
there by the usual strict transfer by layer name. Importing this package does not import
TensorFlow or torch; converting does (torch only for PyTorch files, from the ``torch`` extra).
"""
import os
from pathlib import Path

from zoo.errors import InvalidArgumentError, WeightsError
from zoo.hub import _fetch, _weightfile
from zoo.hub.convert import _torch, genesis, medicalnet, monai  # light: TensorFlow and torch load when used
from zoo.models import registered_builders
from zoo.record import attach, describe

FORMATS = ("monai", "medicalnet", "genesis")
VERSION = 1  # of the conversions: a change of a converter's output bumps it (old cache entries are not reused)


def from_monai(network_def, state_dict_or_path, *, input_shape=None, name=None):
    """A zoo model (channels-last Keras) equal to the MONAI network ``network_def`` holding the
    weights ``state_dict_or_path``.

    network_def: a bundle's ``network_def`` mapping (``configs/inference.json``), ``_target_`` =
        ``"UNet"``/``"SegResNet"`` or their dotted path, plain values (resolve ``$``/``@``
        expressions first).
    state_dict_or_path: the state dict (tensors or numpy arrays), or the path of a ``model.pt``
        holding it (read with ``torch.load(weights_only=True)``; needs ``pip install "medzoo[torch]"``).
    input_shape: spatial axes (+ channels) of the Keras input; None = any size.
    The returned model's record (``zoo.record.info_of``) holds the builder keywords it was built with.
    """
    builder_name, kwargs = monai.builder_kwargs(network_def)
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    if name is not None:
        kwargs["name"] = name
    builder = registered_builders()[builder_name]
    model = builder(**kwargs)
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = str(state_dict_or_path)
        state = _torch.load(source, "zoo.from_monai")
    else:
        source, state = "the state dict", state_dict_or_path
    monai.load_state_dict(model, _unwrap(state), kwargs, monai.class_name(network_def), source)
    return attach(model, describe(model, name=builder_name, source="model", build=dict(kwargs)))


def _unwrap(state):
    """A checkpoint's state dict: a bundle's model.pt is one; a training checkpoint keeps it under
    'state_dict', 'model' or 'network' (a plain state dict never has these keys: its keys hold dots)."""
    if isinstance(state, dict):
        for key in ("state_dict", "model", "network"):
            if isinstance(state.get(key), dict):
                return state[key]
    return state


def convert(fmt, source, model, kwargs, builder):
    """Fill ``model`` (built by the registered ``builder`` string with ``kwargs``) from the file
    ``source`` of format ``fmt``."""
    if fmt == "monai":
        cls = {v: k for k, v in monai.CLASSES.items()}.get(builder)
        if cls is None:
            raise WeightsError(f"format 'monai' weights need a MONAI network entry (builders: "
                               f"{', '.join(monai.CLASSES.values())}); got {builder}.")
        return monai.load_state_dict(model, _unwrap(_torch.load(source, "monai weights")), kwargs, cls, source)
    if fmt == "medicalnet":
        return medicalnet.load_file(model, source)
    if fmt == "genesis":
        return genesis.load_file(model, source)
    raise InvalidArgumentError(f"weights format {fmt!r} has no converter; converters: {', '.join(FORMATS)}.")


def cache_dir(digest):
    """Where conversions of the source file with hash ``digest`` ('<algo>:<hex>') are kept."""
    algo, value = _fetch.parse_hash(digest)
    return _fetch.settings()["home"] / "converted" / f"{algo}-{value}"


def converted_file(source, spec, entry, digest, build):
    """The zoo weights file converted from ``source`` (format ``spec.format``), made on first use.

    ``digest``: the verified hash of ``source`` ('<algo>:<hex>'), the cache key; ``build``: a
    callable returning ``(model, kwargs)`` for the file's own configuration (built by the entry's
    builder). Returns ``(path,
    converted_now)``. The file is written atomically under a cross-process lock.
    """
    target = cache_dir(digest) / f"{entry.name}.{spec.tag}.{spec.format}-v{VERSION}.npz"
    with _fetch._locked(target):
        if target.is_file():
            return target, False
        model, kwargs = build()
        convert(spec.format, source, model, kwargs, entry.builder)
        meta = _weightfile.meta_text(entry.name, entry.builder, kwargs)
        target.parent.mkdir(parents=True, exist_ok=True)
        _weightfile.write(model, target, "npz", meta)
        return Path(target), True
