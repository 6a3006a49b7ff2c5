"""A ``.tflite`` file as a model ``zoo.predict`` can slide over: the LiteRT interpreter behind the
few attributes the sliding window uses (``input_shape``, ``output_shape``, ``predict_on_batch``).

``ai_edge_litert.interpreter.Interpreter`` runs every file (``tf.lite.Interpreter`` is
deprecated). The exported files take batch 1, so a batch is run one sample at a time. int8
input/output files (``int8_io=True``) are fed quantized values and their outputs dequantized,
so callers always see float32.
"""
import os
import warnings
from pathlib import Path

import numpy as np

from zoo.errors import InvalidArgumentError
from zoo.export.convert import quiet_native_output
from zoo.export.errors import ExportError
from zoo.export.sidecar import read_sidecar
from zoo.record import ModelInfo, attach


def _interpreter(path=None, content=None, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter  # heavy: LiteRT's native runtime; only running a file needs it

    threads = num_threads or os.cpu_count() or 1
    with quiet_native_output() as log:  # "Created TensorFlow Lite XNNPACK delegate" etc.
        try:
            it = Interpreter(model_path=None if path is None else str(path), model_content=content,
                             num_threads=threads)
            it.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            detail = " ".join(f"{e} {log()}".split())[:400]
            raise ExportError(f"LiteRT cannot run {'the exported model' if path is None else path}: "
                              f"{detail}") from None
    return it, threads


class TFLiteModel:
    """A ``.tflite`` model with a Keras-like face (one input, first output)."""

    zoo_tflite = True

    def __init__(self, path=None, *, content=None, sidecar=None, num_threads=None):
        self.path = None if path is None else str(path)
        self.interpreter, self.num_threads = _interpreter(path, content, num_threads)
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.sidecar = dict(sidecar or {})
        self.input_shape = (None,) + tuple(int(s) for s in self._in["shape"][1:])
        self.output_shape = (None,) + tuple(int(s) for s in self._out["shape"][1:])
        self.outputs = [self.output_shape]  # one output: zoo.inference keeps the model as is
        stem = Path(self.path).name if self.path else "model.tflite"
        self.name = self.sidecar.get("entry") or stem
        side = self.sidecar
        dims = len(self.input_shape) - 2
        task = side.get("task") or ("generation" if dims < 1 else "classification" if len(self.output_shape) == 2
                                    else "segmentation")
        attach(self, ModelInfo(name=self.name, task=task, spatial_dims=side.get("spatial_dims", max(dims, 0)),
                               in_channels=None if dims < 1 else self.input_shape[-1],
                               num_classes=side.get("num_classes", self.output_shape[-1]),
                               patch_size=side.get("patch_size"), preprocessing=side.get("preprocessing") or {},
                               class_names=side.get("class_names"), source="tflite", path=self.path))
        self._range = self.sidecar.get("calibration_range")

    def _check_range(self, x):
        """Warn once when a real share of the inputs leaves the range an int8 file was calibrated
        on (quantized inputs clip to it, and the outputs stop following the Keras model): more than
        1 % of an input's values beyond the range by more than a tenth of its width. A few extreme
        voxels of an ordinary volume clip harmlessly, and a constant patch (padding) says nothing."""
        lo, hi = self._range
        margin = 0.1 * max(hi - lo, 1e-6)
        if float(x.max() - x.min()) < 1e-6:
            return
        outside = float(np.mean((x < lo - margin) | (x > hi + margin)))
        if outside <= 0.01:
            return
        self._range = None
        prep = self.sidecar.get("preprocessing") or {}
        how = (f"the sidecar's preprocessing {prep} (zoo predict applies it to files)" if prep else
               "the calibration data was (no intensity preprocessing was recorded: raw values)")
        warnings.warn(
            f"{self.name}: {outside:.0%} of an input's values lie outside the range the file was calibrated on "
            f"[{lo:.3g}, {hi:.3g}] (this input spans [{x.min():.3g}, {x.max():.3g}]); quantized inputs clip "
            f"to that range, so the outputs can differ from the Keras model's. Preprocess inputs as {how}, or "
            "re-export with representative data like these inputs.", stacklevel=4)

    def _quant(self, detail):
        scale, zero = detail.get("quantization", (0.0, 0))
        return (float(scale), int(zero)) if scale else None

    def run_one(self, x):
        """Output for one sample ``x`` of shape ``input_shape[1:]`` (or with the batch axis of 1)."""
        x = np.asarray(x, dtype="float32")
        if x.shape == self.input_shape[1:]:
            x = x[None]
        if x.shape[1:] != self.input_shape[1:] or x.shape[0] != 1:
            raise InvalidArgumentError(
                f"{self.name}: the exported model takes one sample of shape {self.input_shape[1:]}; got "
                f"{x.shape}. Re-export with input_shape= for another size, or use zoo.predict (it slides "
                "over larger inputs).")
        if self._range:
            self._check_range(x)
        q = self._quant(self._in) if self._in["dtype"] != np.float32 else None
        if q is not None:
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(x / q[0] + q[1]), info.min, info.max).astype(self._in["dtype"])
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        q = self._quant(self._out) if self._out["dtype"] != np.float32 else None
        if q is not None:
            y = (y.astype("float32") - q[1]) * q[0]
        return np.asarray(y, dtype="float32")[0]

    def predict_on_batch(self, batch):
        return np.stack([self.run_one(x) for x in np.asarray(batch, dtype="float32")])

    __call__ = predict_on_batch

    def predict(self, x, batch_size=None, verbose=0):  # noqa: ARG002 - Keras' signature
        return self.predict_on_batch(x)

    def __repr__(self):
        return f"TFLiteModel({self.path or '<bytes>'}, input {self.input_shape}, output {self.output_shape})"


def load_tflite(path, num_threads=None):
    """A ``.tflite`` file as a model ``zoo.predict`` can slide over.

    Args:
        path: a ``.tflite`` file (written by ``zoo.export``; its sidecar ``path + ".json"`` gives
            the record: task, patch size, preprocessing, classes).
        num_threads: LiteRT interpreter threads (default: the CPU count).

    Returns:
        A :class:`TFLiteModel` with its record attached.

    Raises:
        InvalidArgumentError: ``path`` is not a file.
        ExportError: LiteRT cannot run the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidArgumentError(f"load_tflite: {str(path)!r} is not a file; pass the path of a .tflite "
                                   "file written by zoo.export.")
    content = p.read_bytes()
    return TFLiteModel(p, content=None, sidecar=read_sidecar(p, content), num_threads=num_threads)


__all__ = ["TFLiteModel", "load_tflite"]
