"""The verbs of the public API: ``zoo.finetune``, ``zoo.compress``, ``zoo.export``, ``zoo.predict``.

Each verb does two things: it turns what the user passed as a model into a model and its
record, through the one front door (:func:`zoo.resolve.resolve`), and hands the pair to its
package (:mod:`zoo.train`, :mod:`zoo.compress`, :mod:`zoo.export`, :mod:`zoo.inference`). The data
arguments are spelled alike everywhere: ``train`` and ``val`` (any data source: a folder, a
``.npz`` file, ``"phantoms"``, ``"tfds:NAME"``, ``(x, y)`` arrays, a ``tf.data.Dataset``), and
``representative_data`` for the export's calibration. Training options are one object,
:class:`zoo.train.FitOptions`, given as keywords or as ``options=``.
"""
import inspect
from pathlib import Path

from zoo.compress.recipes import resolve as resolve_recipe
from zoo.compress.recipes import slug
from zoo.compress.run import compress as compress_model
from zoo.export.api import export as export_model
from zoo.inference import predict as predict_model
from zoo.record import training_data
from zoo.resolve import resolve
from zoo.train import FitOptions, fit, get_strategy

TRAINABLE = ("model", "name", "run", "compress", "zoo_run", "file")


def finetune(model, train="phantoms", val=None, *, unlabeled=None, options=None, **option_keywords):
    """Fine-tune ``model`` on ``train`` (validated on ``val``) and return a Keras History of every
    epoch of the run (including epochs done before a resume).

    Args:
        model: a keras.Model, a registry name (a classifier gets one output per class folder of
            ``train``), a run folder or a saved model file (training continues from its weights).
        train, val: data sources (see the module doc); default the built-in phantoms.
        unlabeled: unlabelled data for semi-supervised training (``semi="mean_teacher"`` or
            ``"pseudo_label"``, :mod:`zoo.train.semi`): any data source (its labels are not
            used) or a folder of images, NIfTI volumes or DICOM series without labels.
        options: a :class:`zoo.train.FitOptions`; ``option_keywords`` are its fields
            (``epochs=5, out_dir="runs/liver", learning_rate=1e-4`` ...) and win over it.

    Returns:
        A Keras ``History``; ``history.model`` is the trained model (the best checkpoint's
        weights unless ``restore_best=False``), whose record (``zoo.record.info_of``) now holds
        the run's folder, patch size, preprocessing, classes and data. ``history.zoo_state`` is
        the run's ``state.json``.

    Raises:
        UnknownArgumentError: an option that does not exist (the nearest is named).
        InvalidArgumentError: options, data or model that cannot work together; nothing is
            written then. ZooError: the run folder holds another run, or the loss became NaN.
    """
    opts = FitOptions.build(options, **option_keywords)
    strategy = get_strategy(opts.strategy, opts.devices)  # first: a multi-worker strategy precedes all ops
    net, info = resolve(model, verb="finetune", allow=TRAINABLE, train=train)
    return fit(net, info, train, val, opts, strategy, unlabeled=unlabeled)


def compress(model, recipe, train=None, val=None, *, student=None, options=None, **option_keywords):
    """Compress ``model`` with ``recipe`` and return ``(compressed model, report)``.

    Args:
        model: a keras.Model, a registry name, a run folder, a ``zoo run`` folder or a saved model.
        recipe: a registry recipe (``"prune_80"``, ``"qat_int8"``, ``"cluster_16"``,
            ``"deep_compression"``, ``"distill_resnet18"`` ...), a chain ``"prune_80+qat_int8"`` or a
            dict ``{"kind": "prune", "final_sparsity": 0.6}`` (``zoo recipes NAME`` lists them).
        train, val: data sources (``val`` gives the before/after scores in the report); ``train``
            defaults to the model's own training data (:func:`zoo.record.training_data`).
        student: the distillation student (a registry name or a model).
        options, option_keywords: :class:`zoo.train.FitOptions` for every step; here ``epochs``
            (default 2) is per step, ``out_dir`` defaults to ``runs/<model>_<recipe>`` and
            ``learning_rate`` to the recipe's, else 1e-4. ``freeze_encoder_epochs``,
            ``early_stopping`` and ``restore_best=False`` are refused (a step runs all its epochs).

    Returns:
        ``(model, report)``: the compressed model (pruned/clustered: the original layers; QAT:
        tfmot's quantize wrappers) and a report (``print(report)``, ``report.to_dict()``).
        ``out_dir`` keeps one training run per step, the model and ``compress.json``.

    Raises:
        RecipeNotApplicableError: every layer the recipe cannot handle, before any training.
        UnknownArgumentError: an option that does not exist (the nearest is named).
        InvalidArgumentError: a model of a kind compress does not take, an unknown recipe, or
            options a step cannot honour (``freeze_encoder_epochs`` ...).
        ZooError: ``out_dir`` holds a finished compression or another recipe's run.
    """
    keywords = {"epochs": 2, **option_keywords}
    opts = FitOptions.build(options, verb="compress", **keywords)
    strategy = get_strategy(opts.strategy, opts.devices)
    net, info = resolve(model, verb="compress", allow=TRAINABLE, train=train)
    train = training_data(info, "compress") if train is None else train
    if options is None and "out_dir" not in option_keywords:
        opts = opts.replace(out_dir=Path("runs") / f"{slug(info.name)}_{slug(resolve_recipe(recipe)[0])}")
    return compress_model(net, info, recipe, train, val, opts, strategy, student=student)


def export(model, path, **options):
    """Export ``model`` to ``path`` and verify the file against the Keras model in LiteRT.

    Args:
        model: a keras.Model, a registry name, a run folder (its best checkpoint, training patch
            size, preprocessing and data), a ``zoo.compress`` or ``zoo run`` folder, or a saved model.
        path: a ``.tflite`` file, or a folder for ``quantization="savedmodel"``.
        **options: ``quantization``, ``representative_data``, ``input_shape``, ``data_options``,
            ``verify`` ...: those of :func:`zoo.export.api.export`, documented there.

    Returns:
        An ``ExportResult`` (``print(result)``, ``result.to_dict()``).

    Raises:
        InvalidArgumentError: ``model`` is none of the kinds above (or a ``.tflite`` file), or a
            bad option.
        VerificationError: the file disagrees with the Keras model (``verify=True``); nothing is written.
        UncoveredLayerError, ExportError: the model does not convert or run in LiteRT.
    """
    net, info = resolve(model, verb="export", allow=TRAINABLE)
    return export_model(net, info, path, **options)


def predict(model, source, **options):
    """Segment (or classify) ``source`` with ``model`` by sliding window; for a file source the
    label map is also written beside the input.

    Args:
        model: a keras.Model, a run folder (or a checkpoint in one), a ``zoo.compress`` or
            ``zoo run`` folder, a saved model, or a ``.tflite`` file from ``zoo.export`` (run in
            LiteRT with its sidecar's preprocessing).
        source: a NIfTI file, a DICOM series folder or file, a 2D image file or an array.
        **options: ``out``, ``patch_size``, ``overlap``, ``window``, ``normalize``, ``spacing``,
            ``orientation``, ``return_probabilities`` ...: those of :func:`zoo.inference.predict`, documented there.

    Returns:
        The label map (or the class index, or probabilities), as :func:`zoo.inference.predict`.

    Raises:
        InvalidArgumentError: ``model`` is none of the kinds above, or the source or an option
            is refused (see :func:`zoo.inference.predict`).
        DataError, MissingDependencyError: the file cannot be read.
    """
    net, info = resolve(model, verb="predict", allow=("model", "run", "compress", "zoo_run", "file", "tflite"))
    return predict_model(net, info, source, **options)


def _signature(verb, inner, skip):
    """``verb``'s signature for help(): its own leading parameters, then ``inner``'s options."""
    own = [p for p in inspect.signature(verb).parameters.values() if p.kind != p.VAR_KEYWORD]
    rest = [p for p in inspect.signature(inner).parameters.values() if p.name not in skip]
    return inspect.Signature(own + rest)


export.__signature__ = _signature(export, export_model, ("model", "info", "path"))
predict.__signature__ = _signature(predict, predict_model, ("model", "info", "source"))

__all__ = ["finetune", "compress", "export", "predict"]
