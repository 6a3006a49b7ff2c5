"""The errors of ``zoo.export``: all are :class:`zoo.ZooError` subclasses."""
from zoo.errors import ZooError


class ExportError(ZooError, RuntimeError):
    """The model could not be exported (conversion failed, the file does not run, ...)."""


class VerificationError(ExportError):
    """The exported file disagrees with the Keras model beyond the mode's threshold.

    ``result`` holds the :class:`zoo.export.ExportResult` with the measured numbers; no file
    was written."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class UncoveredLayerError(ExportError, ValueError):
    """A layer has no TFLite builtin form in the requested mode (and no rewrite covers it)."""


__all__ = ["ExportError", "VerificationError", "UncoveredLayerError"]
