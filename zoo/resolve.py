"""The front door: whatever a user passes as a model becomes a model and its record here.

Every verb (``zoo.finetune``, ``zoo.compress``, ``zoo.export``, ``zoo.predict``, ``zoo.run``)
calls :func:`resolve` first and passes the pair ``(model, info)`` on; no inner package reads a
path or guesses what a model is for. A model argument may be:

- a ``keras.Model`` (its attached record, or the one its shapes imply: :func:`zoo.record.info_of`);
- a registry name (``"unet3d"``: built by ``zoo.load``; for training, a classifier gets one
  output per class folder of the training data);
- a finetune run folder (``runs/liver``: its best checkpoint, patch size, preprocessing,
  classes and data), or a checkpoint inside one (``runs/liver/last.h5``);
- a ``zoo.compress`` output folder (its compressed model);
- a ``zoo run`` folder (its last Keras stage: the compressed model, else the fine-tuned one);
- a saved model file (``.keras``, ``.h5``, a SavedModel folder: :func:`load_model`);
- a ``.tflite`` file written by ``zoo.export`` (prediction only: it runs in LiteRT with its
  sidecar's preprocessing).

:func:`custom_objects` is the one list of classes a saved zoo model may name (the zoo's
layers, models, losses and metrics, tfmot's wrappers and the zoo's quantize configs).
"""
import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

import zoo.models
from zoo._keras import keras
from zoo.compress import objects as compress_objects
from zoo.datapath import class_names_of, inspect_source
from zoo.errors import InvalidArgumentError, did_you_mean
from zoo.export.runtime import load_tflite
from zoo.hub import load as load_entry
from zoo.hub.registry import get_registry
from zoo.record import ModelInfo, attach, attached, describe, info_of
from zoo.train.runfolder import read_state

KINDS = ("model", "name", "run", "compress", "zoo_run", "file", "tflite")
_WHAT = {"model": "a keras.Model", "name": "a registry name", "run": "a finetune run folder",
         "compress": "a zoo.compress output folder", "zoo_run": "a zoo run folder",
         "file": "a saved model file (.keras/.h5)", "tflite": "a .tflite file from zoo.export"}


def register_custom_objects():
    """Make every class a saved zoo model may name known to Keras (see :func:`custom_objects`)."""
    keras.utils.get_custom_objects().update(custom_objects())


def custom_objects():
    """The zoo's registered layers, model classes, losses and metrics, and the tfmot wrappers
    and quantize configs of compressed models, by the names their configs use."""
    for module in ("zoo.models.layers", "zoo.losses", "zoo.metrics"):
        importlib.import_module(module)
    for found in pkgutil.iter_modules(zoo.models.__path__):  # every family registers its classes
        importlib.import_module(f"zoo.models.{found.name}")
    return compress_objects.custom_objects()


def _info_from(data, **known):
    """A ModelInfo from a recorded dict (``to_dict()`` output or a run's config), unknown keys ignored."""
    fields = {k: v for k, v in dict(data or {}).items() if k in ModelInfo.__dataclass_fields__}
    return ModelInfo(**{**fields, **known})


def load_model(path, *, compile=False):
    """Load a whole model saved with ``model.save`` (``.keras``, ``.h5`` or a SavedModel folder).

    Same as ``keras.models.load_model`` but with the zoo's classes known (so it works in a fresh
    process, QAT models included) and the model's record attached (``zoo.record.info_of``).

    Args:
        path: the file or folder ``model.save`` wrote.
        compile: restore the training configuration (zoo losses and metrics included).

    Returns:
        The ``keras.Model``.

    Raises:
        InvalidArgumentError: ``path`` does not exist.
    """
    if not os.path.exists(path):
        raise InvalidArgumentError(f"load_model: {str(path)!r} does not exist; pass the path given to "
                                   "model.save (.keras, .h5 or a SavedModel folder).")
    register_custom_objects()
    model = keras.models.load_model(path, compile=compile)
    return attach(model, describe(model, source="file", path=str(path)))


def load_run(path, which="best"):
    """The model of a finetune run folder, a ``zoo.compress`` folder or a ``zoo run`` folder.

    Args:
        path: the folder, or a checkpoint (``.h5``) inside a finetune run folder.
        which: ``"best"`` or ``"last"`` checkpoint of a finetune run folder.

    Returns:
        The ``keras.Model`` with its record (patch size, preprocessing, classes, data, folder).

    Raises:
        InvalidArgumentError: the path is none of these.
    """
    model, _ = resolve(path, verb="load_run", allow=("run", "compress", "zoo_run"), which=which)
    return model


def _load_run_folder(path, which):
    path = Path(path).expanduser()
    run = path if path.is_dir() else path.parent
    weights = run / f"{which}.h5" if path.is_dir() else path
    text = (run / "model.json").read_text()
    if "QuantizeWrapper" in text or "PruneLowMagnitude" in text or "ClusterWeights" in text:
        register_custom_objects()  # a wrapped model: tfmot's classes must be known
    else:
        custom_objects()  # the zoo's layers register on import
    with compress_objects.scope():
        model = keras.models.model_from_json(text)
    model.load_weights(str(weights))
    config = read_state(run).get("config", {})
    known = dict(source="run", path=str(run), run={"dir": str(run), "weights": str(weights), **config})
    if config.get("task"):
        info = _info_from(config, name=config.get("model") or model.name, **known)
    else:  # a folder written before runs recorded their task
        info = describe(model, **known)
    return attach(model, info)


def _load_compressed(folder):
    record = json.loads((folder / "compress.json").read_text())
    if not record.get("finished"):
        raise InvalidArgumentError(f"{folder} holds an unfinished compression ({record.get('recipe')}); run the "
                                   "same zoo compress call again to finish it, then use the folder.")
    register_custom_objects()
    with compress_objects.scope():
        model = keras.models.load_model(str(folder / record["model_file"]), compile=False)
    info = _info_from(record.get("info"), source="compress", path=str(folder)) if record.get("info") \
        else describe(model, source="compress", path=str(folder))
    return attach(model, info)


def _last_stage(folder, verb):
    """The last finished Keras stage of a ``zoo run`` folder (compressed, else fine-tuned)."""
    stages = sorted(p for p in folder.iterdir() if p.is_dir() and p.name[:2] in ("1_", "2_"))
    for stage in reversed(stages):
        kind = _kind_of_folder(stage)
        if kind == "compress" and json.loads((stage / "compress.json").read_text()).get("finished"):
            return stage, kind
        if kind == "run" and read_state(stage).get("finished"):
            return stage, kind
    raise InvalidArgumentError(f"{verb}: {folder} is a zoo run folder without a finished stage; run the same "
                               f"`zoo run` command again to finish it.")


def _kind_of_folder(path):
    if (path / "compress.json").exists():
        return "compress"
    if (path / "model.json").exists() and (path / "state.json").exists():
        return "run"
    if (path / "report.json").exists() and (path / "1_finetune").is_dir():
        return "zoo_run"
    if (path / "saved_model.pb").exists():
        return "file"
    return None


def kind_of(obj):
    """Which of :data:`KINDS` ``obj`` is, or None."""
    if isinstance(obj, keras.Model):
        return "model"
    if getattr(obj, "zoo_tflite", False):
        return "tflite"
    if not isinstance(obj, (str, os.PathLike)):
        return None
    path = Path(obj).expanduser()
    if path.is_dir():
        return _kind_of_folder(path)
    if path.is_file():
        lower = path.name.lower()
        if lower.endswith(".tflite"):
            return "tflite"
        if lower.endswith(".h5") and (path.parent / "model.json").exists() and (path.parent / "state.json").exists():
            return "run"  # a checkpoint inside a finetune run folder
        if lower.endswith((".keras", ".h5")):
            return "file"
        return None
    if isinstance(obj, str) and obj in get_registry().models:
        return "name"
    return None


def _refuse(obj, verb, allow):
    shown = repr(str(obj)) if isinstance(obj, (str, os.PathLike)) else type(obj).__name__
    names = [_WHAT[k] for k in allow]
    kinds = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    hint = ""
    if isinstance(obj, (str, os.PathLike)) and not Path(obj).expanduser().exists():
        near = did_you_mean(str(obj), get_registry().names())
        hint = (f" No such file or folder (relative to {os.getcwd()!r}) and no registry entry of that name."
                f"{near} `zoo list` shows the names.")
    raise InvalidArgumentError(f"{verb}: model {shown} is not {kinds}.{hint}")


def resolve(obj, *, verb, allow=KINDS, train=None, overrides=None, which="best", say=True):
    """``(model, info)`` for what a user passed as a model (see the module doc).

    Args:
        obj: the model argument.
        verb: the caller's name in messages (``"finetune"``, ``"export"`` ...).
        allow: the kinds of :data:`KINDS` the verb takes.
        train: the training data, for a registry classifier's class count (one output per class folder).
        overrides: builder keywords for a registry name (``num_classes``, ``in_channels`` ...).
        which: the checkpoint of a finetune run folder, ``"best"`` or ``"last"``.
        say: print what was chosen for the user (the class count, a run folder's stage) on stderr.

    Returns:
        ``(model, info)``: a ``keras.Model`` (or a LiteRT-backed model for ``.tflite``) and its
        :class:`zoo.record.ModelInfo`, also attached to the model.

    Raises:
        InvalidArgumentError: ``obj`` is not a kind the verb takes; names the kinds and the fix.
    """
    kind = kind_of(obj)
    if kind not in allow:
        if kind == "tflite":
            raise InvalidArgumentError(f"{verb}: {obj} is an exported .tflite file, which only zoo predict runs; "
                                       f"{verb} needs the Keras model: pass the run folder or saved model it was "
                                       "exported from.")
        _refuse(obj, verb, allow)
    if kind == "model":
        return obj, info_of(obj)
    if kind == "name":
        kwargs = dict(overrides or {})
        if train is not None:
            kwargs = head_from_data(obj, train, kwargs, say=say, verb=verb)
        model = load_entry(obj, **kwargs)
        return model, attached(model)
    if kind == "tflite":
        model = obj if getattr(obj, "zoo_tflite", False) else load_tflite(obj)
        return model, model.zoo_info
    path = Path(obj).expanduser()
    if kind == "zoo_run":
        stage, kind = _last_stage(path, verb)
        if say:
            print(f"{verb}: {path} is a zoo run folder; using its last stage {stage}", file=sys.stderr)
        path = stage
    if kind == "run":
        model = _load_run_folder(path, which)
    elif kind == "compress":
        model = _load_compressed(path)
    else:
        model = load_model(str(path))
    return model, attached(model)


def _label_classes(entry, train, overrides, options, ignore_label):
    """1 + the largest label in the first label maps of a segmentation data folder or file
    (None for generated, TFDS or in-memory data, whose labels are checked as they are read)."""
    if not isinstance(train, (str, Path)) or str(train) in ("phantoms", "hard_phantoms") \
            or str(train).startswith("tfds:") or not Path(train).expanduser().exists():
        return None
    dims = overrides.get("spatial_dims") or entry.spatial_dims[0]
    found = inspect_source(train, task="segmentation", spatial_dims=dims, options=options, ignore_label=ignore_label)
    return found.get("num_classes"), found.get("read")


def head_from_data(name, train, overrides, *, say=True, verb="finetune", options=None, ignore_label=None):
    """Builder overrides for registry model ``name`` trained on ``train`` without an explicit
    ``num_classes``: a classifier gets one output per class folder of ``train``, a segmenter
    1 + the largest label of the first 16 label maps of a data folder or file (as ``zoo run``
    reads them; ``ignore_label`` is not a class). What was chosen is said on stderr."""
    entry = get_registry().get(name)
    if "num_classes" in overrides or entry.task not in ("classification", "segmentation"):
        return dict(overrides)
    if entry.task == "segmentation":
        found = _label_classes(entry, train, overrides, options, ignore_label)
        if not found or found[0] is None:  # none read, or values that are no class count (0/255)
            return dict(overrides)
        classes, read = found
        if say:
            print(f"{verb}: labels 0..{classes - 1} in the {read} label map(s) read from {train}: building {name} "
                  f"with num_classes={classes} (--num-classes chooses otherwise)", file=sys.stderr)
        return {**overrides, "num_classes": classes}
    names = class_names_of(train)
    if not names:
        return dict(overrides)
    if say:
        shown = ", ".join(names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")
        print(f"{verb}: {len(names)} classes from the folders of {train} ({shown}): building {name} with "
              f"num_classes={len(names)}", file=sys.stderr)
    return {**overrides, "num_classes": len(names)}


__all__ = ["resolve", "load_model", "load_run", "custom_objects", "register_custom_objects", "head_from_data",
           "kind_of", "KINDS"]
