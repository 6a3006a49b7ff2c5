"""Compression recipes with tensorflow-model-optimization: pruning, quantization-aware training,
clustering, their chains (tfmot's collaborative optimisation) and distillation.

``zoo.compress(model, "prune_80", train_data=..., val_data=..., epochs=2)`` checks the recipe
against the architecture (every layer it cannot handle, at once, before any training), fine-tunes
with the recipe's wrappers and callbacks on ``zoo.finetune`` (data sources, strategies,
checkpoints, resume, NaN guard), strips the wrappers and returns ``(model, report)``.
``zoo.list_recipes(name)`` says which recipes apply to a registry entry and why the others do not.

Modules: ``_recipes`` (registry data -> validated steps), ``_check`` (the pre-training check),
``_prune``, ``_cluster``, ``_quantize`` (+ ``_rewrite``: exact int8-friendly rewrites),
``_distill``, ``_run`` (the steps on finetune, the out_dir), ``_report``, ``_tfmot`` (the import).
"""
import sys
import types

from zoo.compress._check import RecipeNotApplicableError
from zoo.compress._recipes import resolve


def compress(model, recipe, train_data="phantoms", val_data=None, **kwargs):
    """Compress ``model`` with ``recipe`` and return ``(compressed model, report)``.

    model: a keras.Model, a registry name, a finetune run folder (``"runs/liver"``) or a saved
    model file. recipe: a registry recipe (``"prune_80"``, ``"qat_int8"``, ``"cluster_16"``,
    ``"deep_compression"``, ``"distill_resnet18"`` ...), a chain ``"prune_80+qat_int8"`` or a dict
    ``{"kind": "prune", "final_sparsity": 0.6}``. train_data/val_data: anything zoo.finetune takes
    (folders, NIfTI, DICOM, .npz, ``"phantoms"``, ``"tfds:NAME"``, arrays, datasets), with its
    preprocessing and the entry's loss and metrics.

    Keywords: ``epochs`` (per step, default 2), ``out_dir`` (default ``runs/<model>_<recipe>``),
    ``student`` (distill: a registry name or a model), ``learning_rate`` (default: the recipe's,
    else 1e-4), ``batch_size``, ``patch_size``, ``loss``, ``strategy``, ``devices``,
    ``mixed_precision`` (QAT and clustering refuse it), ``resume``, ``verbose``, ``callbacks``,
    ``data_options``, ``seed`` and finetune's other keywords (``optimizer``, ``steps_per_epoch``,
    ``validation_steps``, ``augment``, ``tensorboard`` ...).

    The model returned is plain Keras (pruned/clustered: the original layers; QAT: tfmot's
    quantize wrappers, loadable with ``zoo.load_model``); ``report`` prints a table and has
    ``to_dict()``; ``out_dir`` keeps one finetune run per step, ``model.keras`` and ``report.json``.
    """
    from zoo.compress._run import compress as _compress
    return _compress(model, recipe, train_data, val_data, **kwargs)


def list_recipes(name, spatial_dims=None):
    """For registry entry ``name``: every defined recipe with ``listed`` (the entry lists it; the
    first listed is the entry's default), ``applies`` and ``reason`` (why not), checked at the
    entry's small sweep size (no training). Returns a list of dicts."""
    from zoo.compress._listing import list_recipes as _list
    return _list(name, spatial_dims)


class _CallableModule(types.ModuleType):
    """``zoo.compress`` is this package and the function at once: importing the package sets
    ``zoo.compress`` to the module, so the module calls :func:`compress`."""

    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["compress", "list_recipes", "resolve", "RecipeNotApplicableError"]
