"""Compression: check the recipe, then train each step on the run loop and strip the wrappers.

``out_dir`` holds one training run folder per step (``1_prune_80/``, ``2_qat_int8/``: checkpoints,
``state.json``, resume point) and, once every step is done, the compressed model (``model.keras``;
``model.h5`` for a QAT model: tfmot's wrappers restore from HDF5 only), ``report.json`` and
``compress.json``: the step record (recipe, steps, finished, and the model's record:
:class:`zoo.record.ModelInfo`), which ``zoo.load_run``, ``zoo predict`` and ``zoo export`` read.
Rerunning the same call after a crash skips finished steps (their result is rebuilt from their
``last.h5``) and resumes the interrupted one at its last completed epoch, with the pruning step,
masks, cluster indices and quantizer ranges of that epoch.
"""
import json
import sys
import time
import warnings
from pathlib import Path

from zoo import _io
from zoo import losses as _losses
from zoo import metrics as _metrics
from zoo._keras import keras
from zoo.compress import _check, _cluster, _distill, _prune, _quantize, objects
from zoo.compress import report as _report
from zoo.compress.recipes import resolve, slug
from zoo.datapath.prepare import Target, prepare
from zoo.errors import InvalidArgumentError, ZooError
from zoo.hub.contract import kernel_of
from zoo.record import attach, attached
from zoo.train import fit, get_strategy, read_state
from zoo.train.strategy import is_chief

# options a compression step cannot honour: option -> (its default, why)
REFUSED = {"freeze_encoder_epochs": (0, "the wrappers rename the encoder's layers; fine-tune first, then compress"),
           "early_stopping": (None, "a step must run all its epochs (a pruning schedule reaches its target at "
                                    "the end)"),
           "restore_best": (True, "a step keeps its last epoch (the one that reached the recipe's target)")}


def evaluate(model, info, data, *, batch_size=2, patch_size=None, seed=0, data_options=None, loss=None,
             steps=None):
    """Loss and metrics of ``model``'s first output on ``data``, prepared as validation data is
    (:func:`zoo.datapath.prepare.prepare`).

    Args:
        model: the ``keras.Model``.
        info: its :class:`zoo.record.ModelInfo`.
        data: any data source.
        batch_size: the batch size.
        patch_size: the patch (default: the model's static input size, else its record's).
        seed: the data source's seed.
        data_options: keywords of the data source.
        loss: a loss name or Keras loss (default ``dice_ce`` for segmentation, ``ce`` otherwise).
        steps: at most this many batches.

    Returns:
        ``{"loss": float, metric: float ...}`` (the metrics of ``zoo.metrics.get_metrics``).

    Raises:
        InvalidArgumentError: data that does not fit the model, or a bad option.
        DataError: the data cannot be read.
    """
    target = Target.of(model, info, patch_size)
    prepared = prepare(data, target, "validate", batch_size=batch_size, steps=steps, seed=seed,
                       options=data_options, preprocessing=info.preprocessing, verb="compress")
    single = keras.Model(model.inputs, model.outputs[0])
    single.compile(loss=_losses.get_loss(loss or ("dice_ce" if target.task == "segmentation" else "ce")),
                   metrics=_metrics.get_metrics(target.task, target.num_classes))
    ds = prepared.dataset
    if target.n_outputs > 1:  # the single-output copy takes the main label only
        ds = ds.map(lambda x, y: (x, y[0]))
    values = single.evaluate(ds, steps=prepared.steps, verbose=0, return_dict=True)
    return {k: float(v) for k, v in values.items()}


def _check_out_dir(out_dir, name, resume):
    state = _read_json(out_dir / "compress.json")
    if state.get("finished"):
        raise ZooError(f"compress: {out_dir} already holds a finished compression ({state.get('recipe')}); its "
                       "model is kept. Choose a new out_dir to compress again.")
    if state and state.get("recipe") != name:
        raise ZooError(f"compress: {out_dir} holds an unfinished compression with recipe {state.get('recipe')!r}, "
                       f"not {name!r}; rerun that recipe to resume it or choose a new out_dir (nothing was changed).")
    if state and not resume:
        raise ZooError(f"compress: {out_dir} holds an unfinished compression; pass resume=True to continue it "
                       "or choose a new out_dir (nothing was changed).")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text()) if Path(path).exists() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{path} is unreadable ({e}); restore it or choose a new out_dir.") from None


def _wrap(step, plan, base, strat):
    """(training model, callbacks, finish(model) -> result model, loss override)."""
    ex = set(plan.excluded)
    if step.kind == "prune":
        opts = {"initial_sparsity": step.get("initial_sparsity", 0.0), "power": step.get("power", 3),
                "begin_fraction": step.get("begin", 0.0), "end_fraction": step.get("end", 0.5),
                "updates": step.get("updates", 16)}
        wrapped = _prune.wrap(base, final_sparsity=step.get("final_sparsity", 0.5), exclude=ex,
                              m_by_n=step.get("m_by_n"), **opts)
        return wrapped, lambda epochs: _prune.callbacks(epochs), _prune.strip, None
    if step.kind == "cluster":
        preserve = step.get("preserve_sparsity", "prune" in step.preserve)
        wrapped = _cluster.wrap(base, clusters=step.get("clusters"), exclude=ex, init=step.get("init", "kmeans++"),
                                preserve_sparsity=preserve)
        return wrapped, lambda epochs: [], _cluster.strip, None
    if step.kind == "qat":
        wrapped = _quantize.quantize(base, exclude=ex, preserve=step.preserve)
        return wrapped, lambda epochs: [], lambda m: _quantize.finalize(m, base, ex, step.preserve), None
    student = _quantize.copy_model(plan.model)
    wrapped = _distill.wrap(base, student, temperature=step.get("temperature", 4.0), alpha=step.get("alpha", 0.5))
    return wrapped, lambda epochs: [], _distill.unwrap, step.get("alpha", 0.5)


def _summary(step, plan, result, extra):
    if step.kind == "prune":
        mn = step.get("m_by_n")
        target = f"{mn[0]}:{mn[1]}" if mn else f"{step.get('final_sparsity'):.2f}"
        sched = extra.get("schedule")
        txt = f"{len(plan.layers)} layers pruned to {target}"
        if sched and not mn:
            txt += f" (mask updates at steps {sched[0]}..{sched[1]} every {sched[2]})"
    elif step.kind == "cluster":
        txt = f"{len(plan.layers)} kernels clustered to <= {step.get('clusters')} values" + (
            " keeping the zeros" if step.get("preserve_sparsity", "prune" in step.preserve) else "")
    elif step.kind == "qat":
        scheme = {(): "default 8-bit", ("prune",): "prune-preserving (PQAT)", ("cluster",): "cluster-preserving (CQAT)",
                  ("prune", "cluster"): "prune- and cluster-preserving (PCQAT)"}[tuple(step.preserve)]
        islands = _quantize.float_ops(result)
        txt = f"int8 quantization-aware, {scheme}" + (f"; float islands: {', '.join(islands)}" if islands else "")
    else:
        txt = f"student {result.name} ({result.count_params():,} parameters)"
    if plan.excluded:
        txt += f"; excluded {', '.join(plan.excluded)}"
    return txt


def _layer_table(result, steps, plans):
    kinds = {s.kind for s in steps}
    out = {}
    for layer in result.layers:
        inner = getattr(layer, "layer", layer)
        kernel = kernel_of(layer)
        if kernel is None:
            continue
        values = kernel.numpy()
        row = {"params": int(values.size)}
        if "prune" in kinds:
            row["sparsity"] = round(_prune.sparsity_of(values), 4)
        if "cluster" in kinds:
            row["unique"] = _cluster.unique_values(values)
        if "qat" in kinds:
            row["int8"] = "yes" if layer is not inner else "no"
        out[inner.name] = row
    return out


def compress(model, info, recipe, train="phantoms", val=None, options=None, strategy=None, student=None):
    """Compress ``model`` (described by ``info``) with ``recipe``; returns ``(compressed model, Report)``.

    Args:
        model, info: the model and its :class:`zoo.record.ModelInfo` (``zoo.resolve.resolve``).
        recipe: a registry recipe name, a chain ``"a+b"`` or a dict (``zoo.compress.recipes.resolve``).
        train, val: any data source (``val`` gives the before/after scores).
        options: a :class:`zoo.train.FitOptions` for every step (``epochs`` per step; its
            ``out_dir`` is the compression's folder); ``learning_rate`` None means the recipe's, else 1e-4.
        strategy: the ``tf.distribute`` strategy (default: ``options.strategy``).
        student: the distillation student (a registry name or a model).

    Returns:
        ``(model, report)``: the compressed ``keras.Model`` (with its record) and a
        :class:`zoo.compress.report.Report`; ``options.out_dir`` keeps one training run per step,
        the model file, ``report.json`` and ``compress.json``.

    Raises:
        RecipeNotApplicableError: the recipe cannot apply (every problem, before any training).
        InvalidArgumentError: options a step cannot honour, or an unknown recipe.
        ZooError: the folder holds a finished compression or another recipe's run.
    """
    for key, (default, why) in REFUSED.items():
        if getattr(options, key) != default:
            raise InvalidArgumentError(f"compress: {key}={getattr(options, key)!r} is not supported: {why}.")
    t0 = time.time()
    strat = strategy or get_strategy(options.strategy, options.devices)
    name, steps = resolve(recipe)
    out_dir = Path(options.out_dir)
    _check_out_dir(out_dir, name, options.resume)
    label = info.name
    plans = _check.plan(model, steps, mixed_precision=options.mixed_precision, student=student, entry=label)
    data_kw = dict(batch_size=options.batch_size or 2, patch_size=options.patch_size, seed=options.seed,
                   data_options=options.data_options, loss=options.loss, steps=options.validation_steps)
    before = evaluate(model, info, val, **data_kw) if val is not None else {}
    chief = is_chief(strat)  # only the chief writes (a multi-worker run shares the folder)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        _io.write_json(out_dir / "compress.json", {"recipe": name, "steps": [s.name for s in steps],
                                                  "finished": False})
    epochs, current, infos = options.epochs, model, []
    for i, (step, pl) in enumerate(zip(steps, plans), 1):
        stage = out_dir / f"{i}_{slug(step.name)}"
        t_step = time.time()
        with strat.scope():
            base = attach(_quantize.copy_model(current), info)  # variables made in the strategy's scope
            wrapped, make_callbacks, finish, alpha = _wrap(step, pl, base, strat)
        state = read_state(stage)
        extra = {}
        if state.get("finished"):  # done before a restart: its last epoch is the result
            wrapped.load_weights(str(stage / "last.h5"))
            total = (state.get("config", {}).get("steps_per_epoch") or 1) * epochs
            if step.kind == "prune":
                extra["schedule"] = _prune.StepsSchedule(0.5, end_fraction=step.get("end", 0.5),
                                                         begin_fraction=step.get("begin", 0.0),
                                                         updates=step.get("updates", 16)).plan(total)
        else:
            cbs = make_callbacks(epochs)
            step_loss = options.loss if alpha is None else _distill.task_loss(options.loss, info.task, alpha)
            if options.verbosity:
                print(f"compress: step {i}/{len(steps)} {step.name} ({step.kind}) -> {stage}", file=sys.stderr)
            step_options = options.replace(
                out_dir=stage, restore_best=False, resume=True, callbacks=cbs + list(options.callbacks or []),
                learning_rate=options.learning_rate or step.get("learning_rate") or 1e-4, loss=step_loss)
            with objects.scope(), strat.scope():
                fit(wrapped, info, train, val, step_options, strat)
            plan_cb = next((c for c in cbs if isinstance(c, _prune.ScheduleSteps)), None)
            if plan_cb is not None and plan_cb.plan is not None:
                extra["schedule"] = plan_cb.plan
        result = finish(wrapped)
        student_info = attached(result)  # distillation: the student's own entry and build
        if student_info is not None and student_info.name != info.name:
            info = info.replace(name=student_info.name, build=student_info.build)
        result = attach(result, info)
        infos.append({"name": step.name, "kind": step.kind, "epochs": epochs, "dir": str(stage),
                      "time_s": round(time.time() - t_step, 2), "layers": len(pl.layers), "excluded": pl.excluded,
                      "summary": _summary(step, pl, result, extra),
                      **({"schedule": list(extra["schedule"])} if "schedule" in extra else {})})
        current = result
    quantized = any(s.kind == "qat" for s in steps)
    after = evaluate(current, info, val, **data_kw) if val is not None else {}
    src, dst = _report.model_sizes(model), _report.model_sizes(current, quantized=quantized)
    report = _report.Report({
        "model": label, "input": info.path, "recipe": name, "spatial_dims": len(model.input_shape) - 2,
        "out_dir": str(out_dir),
        "params": int(model.count_params()), "steps": infos, "layers": _layer_table(current, steps, plans),
        "size": {"float32_bytes": src["bytes"], "float32_zipped": src["zipped"], "compressed_bytes": dst["bytes"],
                 "compressed_zipped": dst["zipped"],
                 "stored_as": "int8 weights (.npz)" if quantized else "float32 weights (.h5)"},
        "metrics_before": before, "metrics_after": after, "time_s": round(time.time() - t0, 2),
        "float_ops": _quantize.float_ops(current) if quantized else [],
        # tfmot's quantize wrappers restore from HDF5, not from the .keras format
        "model_file": "model.h5" if quantized else "model.keras"})
    record = info.replace(source="compress", path=str(out_dir))
    if chief:
        _save(out_dir, current, report, record)
    attach(current, record)
    _warn_if_worse(label, name, epochs, before, after)
    return current, report


QUALITY_MARGIN = 0.1  # an absolute drop of a [0, 1] metric (Dice, IoU, accuracy, AUC) worth a warning


def _warn_if_worse(entry, recipe, epochs, before, after):
    """Warn when a score the validation data measured fell by more than QUALITY_MARGIN: the
    compressed model was still written, but a user should not ship it without knowing."""
    fell = {k: (before[k], after[k]) for k in before if k in after and "loss" not in k
            and before[k] - after[k] > QUALITY_MARGIN}
    if fell:
        what = ", ".join(f"{k} fell from {b:.3f} to {a:.3f}" for k, (b, a) in fell.items())
        warnings.warn(f"compress: {entry} with {recipe}: {what} on the validation data after {epochs} epoch(s) "
                      f"per step; train each step longer (zoo compress --epochs, zoo run --compress-epochs, "
                      f"epochs= in Python), or choose a milder recipe "
                      f"(zoo recipes {entry} lists them)", UserWarning, stacklevel=4)


def _save(out_dir, model, report, record):
    """The compressed model (``model.keras`` / ``model.h5``), the report, then the step record
    ``compress.json``, finished last: the folder counts as done once it says so."""
    with warnings.catch_warnings():  # Keras calls HDF5 "legacy"; it is the format tfmot's wrappers load from
        warnings.simplefilter("ignore")
        _io.atomic_write_bytes(out_dir / report["model_file"], lambda tmp: model.save(tmp))
    _io.write_json(out_dir / "report.json", report.to_dict())
    _io.write_json(out_dir / "compress.json", {"recipe": report["recipe"], "finished": True,
                                              "steps": [s["name"] for s in report["steps"]],
                                              "model_file": report["model_file"], "info": record.to_dict()})
