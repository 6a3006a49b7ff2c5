"""What a model is: one frozen record, :class:`ModelInfo`, attached to every model the zoo hands out.

A ``keras.Model`` says what it computes, not what it is for. The verbs need more: the registry
entry it was built from, its task, the patch size and intensity preprocessing it was trained
with, its class names, the run folder and data it came from. The zoo records these once, where
the model is made (``zoo.load``, a run folder, a compressed model, a ``.tflite`` sidecar), in a
``ModelInfo``, and hands the pair on; inner packages take ``(model, info)`` and never guess.

``attach(model, info)`` stores the record on the model (untracked by Keras, so saving and
cloning ignore it); ``info_of(model)`` returns it, or, for a model built outside the zoo, the
record its shapes imply - the one place where a task is inferred from an output's rank.
"""
import dataclasses
from pathlib import Path
from typing import Mapping, Optional, Tuple

from zoo.errors import InvalidArgumentError

TASKS = ("classification", "segmentation", "generation")
SOURCES = ("model", "registry", "run", "compress", "file", "tflite")
# the steps a model's inputs went through, which training and prediction apply to files: ``orientation``
# (axis codes, e.g. "RAS"), ``spacing`` (mm per voxel), ``window`` (lo, hi: clip, scale to [0, 1]),
# ``normalize`` ("zscore", "auto", "none"); see zoo.data.volumes for their order and geometry
PREPROCESSING = ("window", "normalize", "spacing", "orientation")


def _plain(value):
    """JSON-like data with tuples for lists and read-only dicts kept as dicts (records compare equal)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a model is and where it came from.

    Attributes:
        name: the registry entry (``"unet3d"``), else the model's own name.
        task: ``"classification"``, ``"segmentation"`` or ``"generation"``.
        spatial_dims: 2 or 3 (a generator's: of the images it makes).
        in_channels: input channels (a generator's: of its images).
        num_classes: output channels of the main output (classes, or image channels of a generator).
        patch_size: the spatial input size the model was trained or exported at (None: the
            model's static input size, or any size).
        preprocessing: the steps its training data went through (``orientation``, ``spacing``,
            ``window``, ``normalize``), which training on files, prediction and export apply to
            new inputs.
        class_names: the classes of its head, from the training folders (None if unknown).
        train: the training data, as an absolute path where it was a path (None if unknown).
        source: how it was obtained: ``model`` (built by the caller), ``registry`` (``zoo.load``),
            ``run`` (a finetune run folder), ``compress`` (``zoo.compress``), ``file`` (a saved
            model file) or ``tflite`` (an exported file).
        path: the folder or file it was read from (None for an in-memory model).
        build: the builder keywords of a registry build (what rebuilds it at another size).
        run: the run's full record (``state.json``'s ``config``) for a model from a run folder.

    Raises:
        ValueError: ``task`` or ``source`` is not one of the values above.
    """
    name: str
    task: str
    spatial_dims: int
    in_channels: Optional[int] = None
    num_classes: Optional[int] = None
    patch_size: Optional[Tuple[int, ...]] = None
    preprocessing: Mapping = dataclasses.field(default_factory=dict)
    class_names: Optional[Tuple[str, ...]] = None
    train: Optional[str] = None
    source: str = "model"
    path: Optional[str] = None
    build: Optional[Mapping] = None
    run: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"ModelInfo: task={self.task!r} must be one of {', '.join(TASKS)}")
        if self.source not in SOURCES:
            raise ValueError(f"ModelInfo: source={self.source!r} must be one of {', '.join(SOURCES)}")
        set_ = object.__setattr__  # frozen: normalise the containers once, here
        set_(self, "patch_size", None if self.patch_size is None else tuple(int(s) for s in self.patch_size))
        set_(self, "preprocessing", {k: _plain(v) for k, v in dict(self.preprocessing or {}).items()
                                     if k in PREPROCESSING and v is not None})
        set_(self, "class_names", None if self.class_names is None else tuple(str(c) for c in self.class_names))
        set_(self, "build", None if self.build is None else dict(self.build))
        set_(self, "run", dict(self.run or {}))

    def replace(self, **changes):
        """A copy with ``changes`` (the record itself never changes)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain JSON data (tuples as lists)."""
        def plain(v):
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def training_data(info, verb, arg="train", flag="--train DIR"):
    """The data ``info``'s model was trained on, as the default data of ``verb``: the built-in
    phantoms for a model trained on them (or of unknown data), ``tfds:`` names and folders that
    still exist as recorded; an error when the data was in memory or is gone - a model trained on
    a user's scans is never silently calibrated or fine-tuned on phantoms."""
    train = info.train
    if train is None or train in ("phantoms", "hard_phantoms") or train.startswith("tfds:"):
        return train or "phantoms"
    if Path(train).exists():
        return train
    in_memory = "/" not in train and "\\" not in train  # a run records in-memory data by its type's name
    where = f"in memory ({train})" if in_memory else f"in {train}, which no longer exists"
    raise InvalidArgumentError(f"{verb}: {info.name} was trained on data {where}; pass {arg}= ({flag}) with "
                               "data like it (the built-in phantoms would give a model that fails on real data).")


def attach(model, info):
    """Store ``info`` on ``model`` (untracked: Keras neither saves nor clones it); returns the model."""
    if not isinstance(info, ModelInfo):
        raise TypeError(f"attach: info must be a ModelInfo, got {type(info).__name__}")
    object.__setattr__(model, "zoo_info", info)
    return model


def attached(model):
    """The record attached to ``model``, or None."""
    info = getattr(model, "zoo_info", None)
    return info if isinstance(info, ModelInfo) else None


def info_of(model):
    """What ``model`` is.

    Args:
        model: a ``keras.Model`` (or a model the zoo returned).

    Returns:
        The :class:`ModelInfo` attached to ``model``, or, for a model built outside the zoo, the
        one its input and output shapes imply (:func:`describe`).
    """
    return attached(model) or describe(model)


def _first_output_shape(model):
    out = model.outputs[0] if getattr(model, "outputs", None) else None
    shape = getattr(out, "shape", out)
    return tuple(shape) if shape is not None else tuple(model.output_shape)


def describe(model, **known):
    """The record of a model the zoo did not build: a latent-vector input is a generator, a
    rank-2 first output a classifier, anything else a segmenter (dense per-pixel output).
    ``known`` fields win over what the shapes imply."""
    name = model.name
    generator = getattr(model, "generator", None)
    if generator is not None and generator is not model and hasattr(generator, "input_shape"):
        model = generator  # a GAN (zoo's WGAN): described by what its generator makes
    in_shape = tuple(model.input_shape)
    out_shape = _first_output_shape(model)
    if len(in_shape) == 2 and len(out_shape) > 2:  # a latent vector in, images out
        base = dict(name=name, task="generation", spatial_dims=len(out_shape) - 2, in_channels=out_shape[-1],
                    num_classes=out_shape[-1])
        return ModelInfo(**{**base, **known})
    task = "classification" if len(out_shape) == 2 else "segmentation"
    base = dict(name=model.name, task=task, spatial_dims=max(len(in_shape) - 2, 0), in_channels=in_shape[-1],
                num_classes=None if out_shape[-1] is None else int(out_shape[-1]))
    return ModelInfo(**{**base, **known})


__all__ = ["ModelInfo", "attach", "attached", "info_of", "describe", "training_data", "TASKS", "PREPROCESSING"]
