"""The JSON sidecar beside an exported file: ``model.tflite`` -> ``model.tflite.json``.

It records what the file alone does not: the registry entry, task, input spec (shape, dtype,
quantization), the preprocessing the model was trained with, the class count and names, the
export mode and the verification numbers. ``zoo.predict("model.tflite", ...)`` reads it to
preprocess inputs as training did. ``sha256`` ties it to one file: a sidecar whose hash does not
match the file beside it (the file was replaced) is ignored with a warning.
"""
import hashlib
import json
import warnings
from pathlib import Path

from zoo import _io

FORMAT = "zoo-export"
VERSION = 1


def sidecar_path(path):
    """``x.tflite`` -> ``x.tflite.json``; a SavedModel folder keeps it inside (``zoo_export.json``)."""
    path = Path(path)
    return path / "zoo_export.json" if path.is_dir() else path.with_name(path.name + ".json")


def sha256_bytes(content):
    return hashlib.sha256(content).hexdigest()


def write_sidecar(target, data):
    """Write the sidecar of ``target`` (a file path, or the json path itself) atomically."""
    _io.write_json(target, {"format": FORMAT, "version": VERSION, **data})


def read_sidecar(path, content=None):
    """The sidecar of the exported file at ``path`` as a dict ({} when there is none, or when it
    belongs to another file: then a warning says so)."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"{side} is unreadable ({e}); zoo.predict uses no recorded preprocessing. "
                      "Re-export the model to recreate it.", stacklevel=3)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        warnings.warn(f"{side} is not a zoo export sidecar; ignored.", stacklevel=3)
        return {}
    if content is not None and data.get("sha256") not in (None, sha256_bytes(content)):
        warnings.warn(f"{side} records another file (sha256 {str(data.get('sha256'))[:12]}..., the file "
                      f"beside it differs): its preprocessing and class count are ignored. Re-export "
                      "to get a matching sidecar.", stacklevel=3)
        return {}
    return data


__all__ = ["sidecar_path", "write_sidecar", "read_sidecar", "sha256_bytes"]
