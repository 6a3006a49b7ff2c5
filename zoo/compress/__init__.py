"""Compression recipes with tensorflow-model-optimization: pruning, quantization-aware training,
clustering, their chains (tfmot's collaborative optimisation) and distillation.

The verb is ``zoo.compress(model, "prune_80", train=..., val=..., epochs=2)`` (:mod:`zoo.api`): it
resolves the model, then :func:`zoo.compress.run.compress` checks the recipe against the
architecture (every layer it cannot handle, at once, before any training), trains each step on
the run loop (:mod:`zoo.train`: data sources, strategies, checkpoints, resume, NaN guard) with the
recipe's wrappers and callbacks, strips the wrappers and returns ``(model, report)``.

Modules: :mod:`~zoo.compress.recipes` (registry data -> validated steps), :mod:`~zoo.compress.run`
(the steps, the out_dir, ``evaluate``), :mod:`~zoo.compress.report`, :mod:`~zoo.compress.tfmot`
(the one import of tfmot, the custom objects), and the private ``_check`` (the pre-training check),
``_prune``, ``_cluster``, ``_quantize`` (+ ``_rewrite``: exact int8-friendly rewrites), ``_distill``,
and :mod:`~zoo.compress.listing` (``zoo.list_recipes``).

This package's ``__init__`` imports nothing heavy, so ``import zoo`` stays light; ``zoo.compress``
is the verb, and the package is reached by its modules (``from zoo.compress.recipes import resolve``).
"""
