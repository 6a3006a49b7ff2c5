"""The conversion modes: a Keras model (static input) -> ``.tflite`` bytes with ``tf.lite.TFLiteConverter``.

Modes (``quantization=``):

* ``float32`` - the graph as is.
* ``float16`` - float16 weights (half the size), computed in float32 (or fp16 where a delegate
  supports it).
* ``dynamic`` - dynamic-range quantization: int8 weights, activations quantized on the fly.
* ``int8`` - full integer quantization calibrated on representative data; float input/output
  by default (QUANTIZE/DEQUANTIZE at the ends), int8 input/output with ``int8_io=True``.
* ``int16x8`` - int16 activations, int8 weights, where the ops have such kernels (the others
  stay float and are listed).
* ``qat`` - a quantization-aware-trained model (tfmot ``quantize_model``): the ranges its
  fake-quant layers learnt become the int8 parameters; no calibration.

The model is converted from a frozen concrete function: converting from the Keras object would
save it as a SavedModel first, which takes 10-40x longer for the same file.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

from zoo._keras import tf
from zoo.export.errors import ExportError, UncoveredLayerError
from zoo.export.ops import layer_of

MODES = ("float32", "float16", "dynamic", "int8", "int16x8", "qat")
CALIBRATED = ("int8", "int16x8")  # modes that need representative data
QUANTIZED = ("dynamic", "int8", "int16x8", "qat")


@contextlib.contextmanager
def quiet_native_output():
    """Send the converter's and the runtime's C++ logging (fd 1 and 2) to a temporary file;
    yields a function returning what was written, for error messages."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable file descriptors (embedded interpreters)
        yield lambda: ""
        return
    log = tempfile.TemporaryFile(mode="w+b")
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield lambda: (log.seek(0), log.read().decode("utf8", "replace"))[1]
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()


def concrete_function(model, input_shape):
    """``model`` as a concrete function of one float32 input of ``input_shape`` (batch included)."""
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec(tuple(input_shape), tf.float32, name="input")])
    return fn.get_concrete_function()


def _configure(converter, mode, calibration, int8_io, sparse):
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in CALIBRATED:
        samples = [x[None].astype("float32") for x in calibration]
        converter.representative_dataset = lambda: ([x] for x in samples)
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if sparse:
        converter.optimizations = list(converter.optimizations) + [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]


def convert(model, input_shape, mode, calibration=None, *, int8_io=False, sparse=False):
    """``.tflite`` bytes of ``model`` (builtin ops only; Flex ops are never enabled)."""
    if mode not in MODES:
        raise ValueError(mode)
    if mode in CALIBRATED and (calibration is None or len(calibration) == 0):
        raise ExportError(f"export: quantization={mode!r} needs representative data to calibrate on.")
    if int8_io and mode not in ("int8", "qat"):
        raise ExportError(f"export: int8_io=True needs quantization='int8' or 'qat'; got {mode!r}.")
    absl = logging.getLogger("absl")  # "consider providing the trackable_obj": the slow path
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        fn = concrete_function(model, input_shape)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
        _configure(converter, mode, calibration, int8_io, sparse)
        with quiet_native_output() as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter's "statistics for quantized inputs" etc.
            try:
                return converter.convert()
            except Exception as e:  # noqa: BLE001 - ConverterError and friends
                text = f"{e}\n{log()}"
    finally:
        absl.setLevel(level)
    raise conversion_error(text, mode, fn.graph)


_NOT_BUILTIN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def conversion_error(text, mode, graph=None):
    """A clear error from the converter's message: the TF ops without a builtin and the layers
    they come from (found in the traced graph), and the modes that can still export the model."""
    ops = sorted(set(_NOT_BUILTIN.findall(text)))
    layers = sorted({layer_of(op.name) for op in graph.get_operations() if op.type in ops}) \
        if graph is not None and ops else []
    if ops:
        where = f" (layer{'s' if len(layers) > 1 else ''} {', '.join(layers)})" if layers else ""
        return UncoveredLayerError(
            f"export: quantization={mode!r}: TFLite has no builtin op for {', '.join(ops)}{where}, and no "
            "zoo rewrite covers it. quantization='savedmodel' exports the model for TF Serving with every "
            "TensorFlow op; for TFLite, replace the layer with builtin-friendly ones (see "
            "zoo.export.rewrite_3d for the 3D layers it covers).")
    lines = [ln.strip() for ln in text.splitlines() if "error:" in ln.lower()]
    detail = " | ".join(dict.fromkeys(ln[:300] for ln in lines[:3])) or " ".join(text.split())[:600]
    other = "quantization='float32' or 'float16'" if mode in QUANTIZED else "quantization='savedmodel'"
    return ExportError(f"export: the TFLite converter failed in quantization={mode!r}: {detail}. "
                       f"Try {other}.")


__all__ = ["MODES", "CALIBRATED", "QUANTIZED", "convert", "concrete_function", "quiet_native_output"]
