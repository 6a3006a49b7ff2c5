"""Export to TFLite (LiteRT) and TF SavedModel, verified against the Keras model.

The verb is ``zoo.export(model, "m.tflite", quantization="int8")`` (:mod:`zoo.api`); it resolves
the model, then :func:`zoo.export.api.export` converts (3D layers rewritten to 2D builtins first:
:mod:`zoo.export.rewrite3d`), runs the file in the ``ai_edge_litert`` interpreter on held-out
inputs, compares it with Keras (:mod:`zoo.export.verify`), lists its ops with their dtypes
(:mod:`zoo.export.ops`) and writes it with a JSON sidecar (:mod:`zoo.export.sidecar`) that
``zoo.predict`` reads (:mod:`zoo.export.runtime`: ``load_tflite``).

This package's ``__init__`` imports nothing heavy, so ``import zoo`` stays light; ``zoo.export``
is the verb, and the package is reached by its modules (``from zoo.export.rewrite3d import rewrite_3d``).
"""
