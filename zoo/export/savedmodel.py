"""TF SavedModel export for serving (TF Serving, Vertex AI, ``tf.saved_model.load``).

The folder holds one ``serving_default`` signature: ``input`` (float32, batch and, where the
model allows, spatial sizes dynamic) -> ``output`` (the model's main output). It is written to a
temporary folder beside the target, loaded back and verified there, and only then renamed into
place, so a failed export leaves nothing behind. 3D layers need no rewrite: TensorFlow runs them.
"""
import os
import shutil
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from zoo._keras import tf
from zoo.export.errors import VerificationError
from zoo.export.result import ExportResult
from zoo.export.sidecar import write_sidecar
from zoo.export.verify import run_verification


def _serving_module(model):
    module = tf.Module()
    module.model_variables = list(model.variables)  # tracked, so the function's captures are saved
    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input")

    @tf.function(input_signature=[spec])
    def serve(x):
        y = model(x, training=False)
        return {"output": y[0] if isinstance(y, (list, tuple)) else y}

    module.serve = serve
    return module, serve.get_concrete_function()


def write_temporary(model, path):
    """Save into a fresh temporary folder beside ``path``; returns that folder."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        module, fn = _serving_module(model)
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": fn})
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def load_runner(folder):
    """A callable ``xs -> outputs`` on the SavedModel in ``folder`` (what a server would run)."""
    loaded = tf.saved_model.load(str(folder))
    fn = loaded.signatures["serving_default"]

    def run(xs):
        outs = [fn(input=tf.constant(xs[i:i + 1]))["output"].numpy() for i in range(len(xs))]
        return np.concatenate(outs)
    run.loaded = loaded
    return run


def folder_bytes(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def move_into_place(tmp, path, overwrite):
    """Rename the finished folder to ``path`` (replacing an old export only with ``overwrite``)."""
    path = Path(path)
    old = None
    if path.exists():
        if not overwrite:  # checked before the export too; a race leaves the old folder intact
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(path)
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def export_savedmodel(model, target, shape, ver, verify, overwrite, meta, info, prep, held_out):
    """Write, verify and move into place a SavedModel folder; returns the ExportResult."""
    tmp = write_temporary(model, target)
    try:
        runner = load_runner(tmp)
        verification = None
        if verify:
            verification = run_verification(model, runner, ver, "savedmodel", meta["task"])
            verification["held_out"] = held_out
        data = b"".join(f.read_bytes() for f in sorted(Path(tmp).rglob("*")) if f.is_file())
        result = ExportResult(
            path=str(target), mode="savedmodel", entry=meta["entry"], task=meta["task"],
            input_shape=list(model.input_shape), output_shape=list(model.output_shape), bytes=len(data),
            zipped_bytes=len(zlib.compress(data, 6)), params=meta["params"], verification=verification,
            notes=meta["notes"] + ["signature serving_default: input -> output (batch and, where the "
                                   "model allows, spatial sizes dynamic)"])
        if verification and not verification["passed"]:
            text = f"export: the SavedModel disagrees with the Keras model: {verification['summary']}."
            if verify is True:
                raise VerificationError(f"{text} Nothing was written.", result)
            result.warnings.append(text)
        side = Path(tmp) / "zoo_export.json"
        write_sidecar(side, {"file": Path(target).name, "mode": "savedmodel", "entry": meta["entry"],
                             "task": meta["task"], "input": {"shape": result.input_shape, "dtype": "float32"},
                             "output": {"shape": result.output_shape},
                             "num_classes": int(model.output_shape[-1] or 0),
                             "class_names": None if info.class_names is None else list(info.class_names),
                             "patch_size": list(shape[:-1]),
                             "preprocessing": prep, "verification": verification})
        move_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.sidecar = str(Path(target) / "zoo_export.json")
    for text in result.warnings:
        warnings.warn(text, stacklevel=3)
    return result


__all__ = ["write_temporary", "load_runner", "folder_bytes", "move_into_place", "export_savedmodel"]
