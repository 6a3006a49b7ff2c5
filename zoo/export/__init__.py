"""Export to TFLite (LiteRT) and TF SavedModel, verified against the Keras model.

``zoo.export(model, "m.tflite", quantization="int8")`` converts (3D layers rewritten to 2D
builtins first: :mod:`zoo.export.rewrite3d`), runs the file in the ``ai_edge_litert``
interpreter on held-out inputs, compares it with Keras (:mod:`zoo.export.verify`), lists its
ops with their dtypes (:mod:`zoo.export.ops`) and writes it with a JSON sidecar
(:mod:`zoo.export.sidecar`) that ``zoo.predict`` reads (:mod:`zoo.export.runtime`).
"""
from zoo.export.api import ALL_MODES as MODES
from zoo.export.api import export
from zoo.export.errors import ExportError, UncoveredLayerError, VerificationError
from zoo.export.result import ExportResult
from zoo.export.rewrite3d import rewrite_3d
from zoo.export.runtime import TFLiteModel, load_tflite
from zoo.export.verify import THRESHOLDS

__all__ = ["export", "MODES", "ExportResult", "rewrite_3d", "TFLiteModel", "load_tflite", "THRESHOLDS",
           "ExportError", "UncoveredLayerError", "VerificationError"]


class _CallableModule(__import__("types").ModuleType):
    """``zoo.export`` is this package and the function at once: once a submodule is imported,
    Python binds ``zoo.export`` to the package, so the package calls :func:`export`."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
