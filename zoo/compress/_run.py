"""``zoo.compress``: check the recipe, then run each step on ``zoo.finetune`` and strip the wrappers.

``out_dir`` holds one finetune run folder per step (``1_prune_80/``, ``2_qat_int8/``: checkpoints,
``state.json``, resume point) and, once every step is done, the compressed model: ``model.keras``
(``model.h5`` for a QAT model: tfmot's wrappers restore from HDF5 only; ``zoo.load_model``), ``model.json`` + ``best.h5`` + ``state.json`` (a run folder:
``zoo.train.load_run``, ``zoo predict``) and ``report.json``. Rerunning the same call after a
crash skips finished steps (their result is rebuilt from their ``last.h5``) and resumes the
interrupted one at its last completed epoch, with the pruning step, masks, cluster indices and
quantizer ranges of that epoch.
"""
import json
import sys
import time
from pathlib import Path

from zoo._keras import keras
from zoo import _io
from zoo.compress import _check, _cluster, _prune, _quantize, _report, _tfmot
from zoo.compress._recipes import resolve, slug
from zoo.errors import InvalidArgumentError, ZooError

_REFUSED = {"freeze_encoder_epochs": "the wrappers rename the encoder's layers; fine-tune first, then compress",
            "early_stopping": "a step must run all its epochs (a pruning schedule reaches its target at the end)",
            "restore_best": "a step keeps its last epoch (the one that reached the recipe's target)",
            "resume": None}


def _input_model(model):
    """(description, keras.Model) for a model, a registry name, a run folder or a model file."""
    if isinstance(model, keras.Model):
        return getattr(model, "zoo_name", None) or model.name, model
    if isinstance(model, (str, Path)):
        path = Path(model).expanduser()
        if path.is_dir():
            from zoo.train import load_run
            with _tfmot.scope():
                return path.name, load_run(path)
        if path.is_file():
            from zoo.hub import load_model
            return path.stem, load_model(str(path))
        from zoo.hub.registry import get_registry
        if str(model) in get_registry().models:
            from zoo.hub import load
            return str(model), load(str(model))
        raise InvalidArgumentError(
            f"compress: model {str(model)!r} is neither a keras.Model, a registry name, a run folder (zoo.finetune's "
            "out_dir) nor a saved model file (.keras/.h5); pass one of these.")
    raise InvalidArgumentError(f"compress: model must be a keras.Model, a registry name or a run folder; got "
                               f"{type(model).__name__}.")


def evaluate(model, data, *, batch_size=2, patch_size=None, seed=0, data_options=None, loss=None, steps=None):
    """``{"loss", metric...}`` of ``model``'s first output on ``data`` (any finetune data source),
    prepared as finetune prepares validation data."""
    from zoo import losses as _losses, metrics as _metrics
    from zoo.data import fit_patch, from_source
    from zoo.data._common import check_size
    from zoo.train._data import _spec, as_batched_dataset, main_output_shape
    out_shape = main_output_shape(model)
    task = getattr(model, "zoo_task", None) or ("classification" if len(out_shape) == 2 else "segmentation")
    dims = len(model.input_shape) - 2
    if patch_size is None and all(s is not None for s in model.input_shape[1:-1]):
        patch_size = tuple(model.input_shape[1:-1])
    patch = check_size(patch_size, dims)
    ds = from_source(data, training=False, task=task, spatial_dims=dims, num_classes=out_shape[-1],
                     in_channels=model.input_shape[-1], patch_size=patch, seed=seed, augment=False,
                     model_name=getattr(model, "zoo_name", None) or model.name, **dict(data_options or {}))
    batched = _spec(ds)[0].shape.rank == dims + 2
    shape = _spec(ds)[0].shape[:-1] if not batched else None
    if patch and task == "segmentation" and shape is not None and tuple(shape) != patch:
        ds = fit_patch(ds, patch, random=False, seed=seed)
    ds = as_batched_dataset(ds, global_batch=batch_size, training=False, batched=batched, seed=seed)
    single = keras.Model(model.inputs, model.outputs[0])
    single.compile(loss=_losses.get_loss(loss or ("dice_ce" if task == "segmentation" else "ce")),
                   metrics=_metrics.get_metrics(task, out_shape[-1]))
    values = single.evaluate(ds, steps=steps, verbose=0, return_dict=True)
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
    from zoo.compress import _distill
    student = _quantize.copy_model(plan.model)
    student.zoo_name = getattr(plan.model, "zoo_name", None)
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
    from zoo.hub.contract import kernel_of
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


def compress(model, recipe, train_data="phantoms", val_data=None, *, epochs=2, out_dir=None, student=None,
             learning_rate=None, batch_size=2, patch_size=None, loss=None, strategy="auto", devices=None,
             mixed_precision=False, resume=True, verbose="auto", callbacks=None, data_options=None, seed=0,
             **finetune_kwargs):
    """Compress ``model`` with ``recipe``; returns ``(compressed model, Report)``. See zoo.compress."""
    from zoo.train import finetune, get_strategy, read_state
    for key in finetune_kwargs:
        if key in _REFUSED:
            raise InvalidArgumentError(f"compress: {key} is not supported: {_REFUSED[key]}.")
    t0 = time.time()
    strat = get_strategy(strategy, devices)  # first: a multi-worker strategy must precede all ops
    label, model = _input_model(model)
    name, steps = resolve(recipe)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"compress: epochs={epochs!r} must be a positive integer (epochs per step).")
    out_dir = Path(out_dir if out_dir is not None else Path("runs") / f"{slug(label)}_{slug(name)}")
    _check_out_dir(out_dir, name, resume)
    plans = _check.plan(model, steps, mixed_precision=mixed_precision, student=student,
                        entry=getattr(model, "zoo_name", None))
    data_kw = dict(batch_size=batch_size, patch_size=patch_size, seed=seed, data_options=data_options)
    before = evaluate(model, val_data, loss=loss, steps=finetune_kwargs.get("validation_steps"), **data_kw) \
        if val_data is not None else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    _io.write_json(out_dir / "compress.json", {"recipe": name, "steps": [s.name for s in steps], "finished": False})
    verbose_ = (1 if sys.stderr.isatty() else 2) if verbose == "auto" else verbose
    current, infos = model, []
    for i, (step, pl) in enumerate(zip(steps, plans), 1):
        stage = out_dir / f"{i}_{slug(step.name)}"
        t_step = time.time()
        with strat.scope():
            base = _quantize.copy_model(current)  # variables made in the strategy's scope
            for attr in ("zoo_name", "zoo_task"):
                setattr(base, attr, getattr(current, attr, None) or getattr(model, attr, None))
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
            step_loss = loss
            if alpha is not None:
                from zoo.compress._distill import task_loss
                step_loss = task_loss(loss, getattr(wrapped, "zoo_task", None), alpha)
            if verbose_:
                print(f"compress: step {i}/{len(steps)} {step.name} ({step.kind}) -> {stage}", file=sys.stderr)
            with _tfmot.scope(), strat.scope():
                finetune(wrapped, train_data, val_data, epochs=epochs, out_dir=stage, strategy=strat,
                         restore_best=False, resume=True, callbacks=cbs + list(callbacks or []),
                         learning_rate=learning_rate or step.get("learning_rate") or 1e-4, loss=step_loss,
                         mixed_precision=mixed_precision, verbose=verbose, seed=seed, batch_size=batch_size,
                         patch_size=patch_size, data_options=data_options, **finetune_kwargs)
            plan_cb = next((c for c in cbs if isinstance(c, _prune.ScheduleSteps)), None)
            if plan_cb is not None and plan_cb.plan is not None:
                extra["schedule"] = plan_cb.plan
        result = finish(wrapped)
        for attr in ("zoo_name", "zoo_task"):
            if getattr(result, attr, None) is None:
                setattr(result, attr, getattr(base, attr, None))
        infos.append({"name": step.name, "kind": step.kind, "epochs": epochs, "dir": str(stage),
                      "time_s": round(time.time() - t_step, 2), "layers": len(pl.layers), "excluded": pl.excluded,
                      "summary": _summary(step, pl, result, extra),
                      **({"schedule": list(extra["schedule"])} if "schedule" in extra else {})})
        current = result
    quantized = any(s.kind == "qat" for s in steps)
    after = evaluate(current, val_data, loss=loss, steps=finetune_kwargs.get("validation_steps"), **data_kw) \
        if val_data is not None else {}
    src, dst = _report.model_sizes(model), _report.model_sizes(current, quantized=quantized)
    report = _report.Report({
        "model": label, "recipe": name, "spatial_dims": len(model.input_shape) - 2, "out_dir": str(out_dir),
        "params": int(model.count_params()), "steps": infos, "layers": _layer_table(current, steps, plans),
        "size": {"float32_bytes": src["bytes"], "float32_zipped": src["zipped"], "compressed_bytes": dst["bytes"],
                 "compressed_zipped": dst["zipped"],
                 "stored_as": "int8 weights (.npz)" if quantized else "float32 weights (.h5)"},
        "metrics_before": before, "metrics_after": after, "time_s": round(time.time() - t0, 2),
        "float_ops": _quantize.float_ops(current) if quantized else [],
        # tfmot's quantize wrappers restore from HDF5, not from the .keras format
        "model_file": "model.h5" if quantized else "model.keras"})
    _save(out_dir, current, report, read_state(out_dir / f"{len(steps)}_{slug(steps[-1].name)}"))
    object.__setattr__(current, "zoo_compress", report.to_dict())
    _warn_if_worse(label, getattr(model, "zoo_name", None), name, epochs, before, after)
    return current, report


QUALITY_MARGIN = 0.1  # an absolute drop of a [0, 1] metric (Dice, IoU, accuracy, AUC) worth a warning


def _warn_if_worse(label, entry, recipe, epochs, before, after):
    """Warn when a score the validation data measured fell by more than QUALITY_MARGIN: the
    compressed model was still written, but a user should not ship it without knowing."""
    import warnings
    fell = {k: (before[k], after[k]) for k in before if k in after and "loss" not in k
            and before[k] - after[k] > QUALITY_MARGIN}
    if fell:
        what = ", ".join(f"{k} fell from {b:.3f} to {a:.3f}" for k, (b, a) in fell.items())
        warnings.warn(f"compress: {label} with {recipe}: {what} on the validation data after {epochs} epoch(s) "
                      f"per step; fine-tune longer (epochs=, --epochs), or choose a milder recipe "
                      f"(zoo recipes {entry or 'MODEL'} lists them)", UserWarning, stacklevel=4)


def _save(out_dir, model, report, last_state):
    """The compressed model as ``model.keras`` and as a run folder, then the report (finished last)."""
    import warnings

    from zoo._h5 import write_model_weights
    with warnings.catch_warnings():  # Keras calls HDF5 "legacy"; it is the format tfmot's wrappers load from
        warnings.simplefilter("ignore")
        _io.atomic_write_bytes(out_dir / report["model_file"], lambda tmp: model.save(tmp))
    _io.atomic_write_bytes(out_dir / "model.json", lambda tmp: Path(tmp).write_text(model.to_json()))
    _io.atomic_write_bytes(out_dir / "best.h5", lambda tmp: write_model_weights(tmp, model))
    config = dict(last_state.get("config", {}), params=int(model.count_params()),
                  model=getattr(model, "zoo_name", None) or model.name)
    _io.write_json(out_dir / "state.json", {"finished": True, "epochs_completed": 0, "config": config,
                                            "history": [], "compress": report.to_dict()})
    _io.write_json(out_dir / "report.json", report.to_dict())
    _io.write_json(out_dir / "compress.json", {"recipe": report["recipe"], "steps": [s["name"] for s in
                                                                                    report["steps"]],
                                              "finished": True})
