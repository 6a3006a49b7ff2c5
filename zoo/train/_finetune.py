"""Fine-tuning with tf.distribute: strategy choice, checkpoints, resume, NaN guard.

``finetune(model, train, val, ...)`` is the one entry point. It picks a strategy (one
device, MirroredStrategy over several GPUs, MultiWorkerMirroredStrategy when TF_CONFIG
names a cluster, TPUStrategy on request), builds the model, optimizer and metrics in its
scope, and trains with:

* ``out_dir/best.h5`` and ``out_dir/last.h5`` (Keras 2 HDF5 weights: ``model.load_weights``
  or ``zoo.load(name, weights=...)``), written to a temporary file and renamed, so a crash
  never leaves a half-written checkpoint; ``out_dir/model.json`` (the architecture) so
  ``zoo.predict(out_dir, ...)`` can rebuild the model;
* ``out_dir/state.json`` (epochs completed, best monitored value and epoch, the run's
  configuration, the per-epoch history) and ``out_dir/history.csv`` rewritten from it;
* resume after a crash or preemption (``out_dir/resume.npz``: weights and optimizer state of
  the last completed epoch, written after everything else of that epoch): rerunning the same
  call continues after the last completed epoch, with the best-so-far value kept;
* a NaN/Inf loss stops the run with a ZooError; the last good checkpoints stay untouched.

Only the chief (worker 0) writes files; other workers take part in the collective reads.
"""
import dataclasses
import sys
from pathlib import Path

from zoo._keras import keras, tf
from zoo import _io
from zoo.train._classes import check_classes, head_from_data
from zoo.train._compile import Recipe, aux_weight, build_in_scope, initial_learning_rate, metric_names
from zoo.train._runs import (SNAPSHOT, RunState, _check_resume, load_run, options_record, read_snapshot,
                             read_state, restore_snapshot)
from zoo.train._data import _spec, _steps, as_batched_dataset, main_output_shape, with_aux_targets
from zoo.data import fit_patch, from_source
from zoo.errors import InvalidArgumentError, ZooError, check_positive_int
from zoo.train.strategy import (STRATEGIES, _LOST_PEER_ERRORS, _is_chief, _lost_worker, _multi_process,
                                _strategy_name, get_strategy)

__all__ = ["finetune", "get_strategy", "load_run", "read_state", "encoder_layers", "STRATEGIES"]


def encoder_layers(model, names_from=None):
    """The encoder's layers with weights (the layer-name contract: every layer the deepest stage
    output depends on). ``names_from``: the model whose contract names them (``model`` is then a
    clone of it, e.g. the copy built inside a strategy's scope)."""
    from zoo.hub.contract import contract
    parts = contract(names_from if names_from is not None else model)
    if not parts.encoder:
        raise InvalidArgumentError(
            f"finetune: freeze_encoder_epochs needs an encoder (stage outputs in the layer-name contract); "
            f"model {model.name!r} has none. Set freeze_encoder_epochs=0, or build the model with zoo.load.")
    return [model.get_layer(n) for n in parts.encoder]


# --------------------------------------------------------------------------- the steps of a run
def _check_options(epochs, batch_size, freeze_encoder_epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"finetune: epochs={epochs!r} must be a positive integer.")
    check_positive_int("batch_size", batch_size, "finetune")
    if isinstance(freeze_encoder_epochs, bool) or not isinstance(freeze_encoder_epochs, int) \
            or not 0 <= freeze_encoder_epochs < epochs:
        raise InvalidArgumentError(
            f"finetune: freeze_encoder_epochs={freeze_encoder_epochs!r} must be an integer in "
            f"[0, epochs={epochs}).")


def _resolve_model(model, train):
    if isinstance(model, str):  # a classifier's head gets the class count of the training folders
        from zoo.hub import load
        return load(model, **head_from_data(model, train, {}))
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(f"finetune: model must be a keras.Model or a registry name; got "
                                   f"{type(model).__name__}.")
    return model


@dataclasses.dataclass(frozen=True)
class Target:
    """What the model takes and predicts, read once from it: the data must fit this."""
    task: str
    spatial_dims: int
    in_channels: int
    num_classes: int
    n_outputs: int
    output_shape: tuple
    patch: tuple  # the training patch size (None: the data's own size)

    @classmethod
    def of(cls, model, patch_size=None):
        from zoo.data._common import check_size
        out_shape = main_output_shape(model)
        dims = len(model.input_shape) - 2
        task = getattr(model, "zoo_task", None) or ("classification" if len(out_shape) == 2 else "segmentation")
        if patch_size is None and all(s is not None for s in model.input_shape[1:-1]):
            patch_size = tuple(model.input_shape[1:-1])
        return cls(task, dims, model.input_shape[-1], out_shape[-1], len(model.outputs), out_shape,
                   check_size(patch_size, dims))


def _prepare_data(model, target, train, val, *, global_batch, seed, augment, options, steps_per_epoch,
                  validation_steps):
    """``{"training": (dataset, steps), "validation": ...}``: each source resolved and checked
    (zoo.data.from_source), fitted to the patch, shuffled, batched and sharded for the strategy;
    ``"class_names"``: the training data's classes (checked against the head and the validation
    data's), or None."""
    datasets, names = {}, {}
    for what, source in (("training", train), ("validation", val)):
        if source is None:
            continue
        training = what == "training"
        ds = from_source(source, training=training, task=target.task, spatial_dims=target.spatial_dims,
                         num_classes=target.num_classes, in_channels=target.in_channels,
                         patch_size=target.patch, seed=seed, augment=augment, model_name=model.name,
                         **options)
        names[what] = getattr(ds, "class_names", None) if target.task == "classification" else None
        check_classes(model, target.num_classes, train, names["training"], val, names.get("validation"))
        batched = _spec(ds)[0].shape.rank == target.spatial_dims + 2
        shape = _spec(ds)[0].shape[:-1] if not batched else None
        if target.patch and target.task == "segmentation" and shape is not None and tuple(shape) != target.patch:
            ds = fit_patch(ds, target.patch, random=training, seed=seed)
        ds = with_aux_targets(as_batched_dataset(ds, global_batch=global_batch, training=training,
                                                 batched=batched, seed=seed), target.n_outputs)
        n = _steps(ds, steps_per_epoch if training else validation_steps, what)
        finite = int(tf.data.experimental.cardinality(ds)) >= 0
        if training and steps_per_epoch and finite:
            ds = ds.repeat()  # a fixed number of steps per epoch draws across the epoch boundary
        datasets[what] = (ds, n)
    datasets["class_names"] = check_classes(model, target.num_classes, train, names.get("training"))
    return datasets


def _builder_size_check(model, shape):
    """The builder's own size check (it names the nearest valid sizes) for a registry model that
    cannot take ``shape``: the builder is called again at that input shape."""
    kwargs = getattr(model, "zoo_build_kwargs", None)
    if kwargs is None:
        return
    from zoo.hub.registry import get_registry
    builder = get_registry().get(model.zoo_name).resolve_builder()
    try:
        builder(**{**kwargs, "input_shape": (*shape, model.input_shape[-1])})
    except ZooError as e:
        size = ",".join(str(s) for s in shape)
        raise InvalidArgumentError(f"finetune: patch size {size} does not fit {model.zoo_name}: {e} Pass a size "
                                   f"it takes as --patch-size (patch_size= in Python).") from None


def _check_input_size(model, train_ds):
    """The training images' spatial shape; a size the model cannot take fails here, not mid-trace."""
    image_shape = _spec(train_ds)[0].shape[1:-1]
    if image_shape.is_fully_defined():
        try:
            model(tf.zeros((1, *image_shape, model.input_shape[-1])), training=False)
        except Exception as e:  # noqa: BLE001 - Keras raises many kinds here
            _builder_size_check(model, tuple(image_shape))
            raise InvalidArgumentError(
                f"finetune: model {model.name!r} cannot take {tuple(image_shape)} inputs ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}). Pass a patch_size it accepts (e.g. sizes divisible"
                f" by 2**depth for a U-Net) or data_options that resize the images.") from None
    return image_shape


def _preprocessing(train, options):
    """The intensity preprocessing options of the training data, which ``zoo.predict`` (and an
    export's sidecar) apply to new inputs."""
    return {k: options[k] for k in ("window", "normalize", "spacing") if k in options}


def _run_config(model, target, strat, image_shape, *, train, options, batch_size, steps, epochs,
                freeze_encoder_epochs, mixed_precision, class_names=None, recorded=None):
    """The run's record in state.json (and ``model.zoo_run``): what a resume must match and what
    ``zoo.predict`` takes as its defaults (patch size, intensity preprocessing)."""
    return dict(model=getattr(model, "zoo_name", None) or model.name, task=target.task,
                spatial_dims=target.spatial_dims, in_channels=target.in_channels,
                num_classes=target.num_classes,
                patch_size=[int(v) for v in image_shape] if image_shape.is_fully_defined()
                else (list(target.patch) if target.patch else None), batch_size=batch_size,
                global_batch_size=batch_size * strat.num_replicas_in_sync,
                replicas=strat.num_replicas_in_sync, strategy=_strategy_name(strat),
                steps_per_epoch=steps, epochs=epochs, params=int(model.count_params()),
                input_shape=list(model.input_shape), output_shape=list(target.output_shape),
                train=train if isinstance(train, str) else type(train).__name__,
                preprocessing=_preprocessing(train, options),
                freeze_encoder_epochs=freeze_encoder_epochs, mixed_precision=bool(mixed_precision),
                class_names=class_names, options=options_record(options, **(recorded or {})))


def _check_monitor(monitor, metrics, has_val, model):
    names = metric_names(metrics, has_val, model.output_names if len(model.outputs) > 1 else None)
    if names is not None and monitor not in names:
        raise InvalidArgumentError(f"finetune: monitor={monitor!r} is not a logged value; choose one of "
                                   f"{', '.join(names)}.")


def _history_renames(model, metrics):
    """Keras logs the first output's metrics of a multi-output model as ``<output>_<metric>``: the
    renames that drop the prefix (none for one output)."""
    if len(model.outputs) == 1:
        return {}
    main, keys = model.output_names[0], (metric_names(metrics, False) or ["loss"])[1:]
    return {f"{v}{main}_{m}": f"{v}{m}" for m in keys for v in ("", "val_")}


def _open_run_folder(out_dir, model, state, verbose):
    """Every check passed: from here on the run folder is written (by the chief only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _io.atomic_write_bytes(out_dir / "model.json", lambda t: Path(t).write_text(model.to_json()))
    if state and verbose:
        print(f"finetune: resuming {out_dir} after epoch {state.get('epochs_completed')} (best "
              f"{state.get('monitor')} {state.get('best')} at epoch {state.get('best_epoch')})",
              file=sys.stderr)


def _fit(net, strat, run_state, out_dir, **fit_kwargs):
    """One ``net.fit`` call; a lost peer or a NaN/Inf loss becomes a ZooError naming the way on."""
    try:
        net.fit(**fit_kwargs)
    except _LOST_PEER_ERRORS as e:
        if _multi_process(strat):
            raise _lost_worker(e, out_dir, run_state) from e
        raise
    if run_state.nan is not None:
        epoch, batch, value = run_state.nan
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        raise ZooError(
            f"finetune: the loss became {value} at {where}; training stopped. The last good "
            f"checkpoints in {out_dir} were kept (best.h5, last.h5). Lower the "
            "learning rate, check the data for NaN/Inf, or disable mixed precision.")


def _fit_phases(net, strat, recipe, run_state, *, phases, encoder, snapshot, steps, out_dir, **fit_kwargs):
    """Train phase by phase (``phases``: ``[(last epoch, encoder trainable)]``), each compiled
    afresh by ``recipe``; a phase a resumed run completed before is skipped, the phase it stopped
    in restarts from ``snapshot``. Returns the snapshot if every epoch was done before the restart."""
    done = snapshot["epochs_done"] if snapshot else 0
    start = 0
    for phase, (end, trainable) in enumerate(phases):
        if snapshot is not None and done >= end:  # this phase was completed before the restart
            start = end
            continue
        with strat.scope():
            for layer, flag in encoder:
                layer.trainable = flag and trainable
            recipe.compile(net, steps and steps * (end - start), trainable)  # frozen phase: constant lr
            if snapshot is not None:  # resume: weights (and this phase's optimizer state)
                restore_snapshot(net, snapshot, phase)
                start, snapshot = max(start, done), None
        run_state.phase = phase
        _fit(net, strat, run_state, out_dir, epochs=end, initial_epoch=start, steps_per_epoch=steps,
             **fit_kwargs)
        if run_state.stopped_early:
            break
        start = end
    return snapshot


def _finish(model, net, run_state, snapshot, *, out_dir, restore_best, chief, config):
    """The model gets the best (or last) weights and ``model.zoo_run``; the run is marked finished."""
    if snapshot is not None:  # every epoch was done before the restart
        restore_snapshot(net, snapshot)
    if net is not model:
        model.set_weights(net.get_weights())
    best = out_dir / "best.h5"
    if restore_best and best.exists():
        model.load_weights(str(best))
    if chief:
        run_state.write_state(finished=True)
        (out_dir / SNAPSHOT).unlink(missing_ok=True)
    # zoo.predict(model, ...) then uses the training patch size and intensity preprocessing
    object.__setattr__(model, "zoo_run", {"dir": str(out_dir), **config})  # untracked by Keras


def _history(model, run_state, *, out_dir, chief, epochs, steps, verbose):
    """A Keras History of every epoch of the run, including those before a resume."""
    history = keras.callbacks.History()
    history.set_model(model)
    history.epoch = [r["epoch"] - 1 for r in run_state.rows]
    history.history = {k: [r.get(k) for r in run_state.rows] for k in run_state.rows[0] if k != "epoch"} \
        if run_state.rows else {}
    history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
    history.zoo_state = read_state(out_dir) if chief else None
    return history


def finetune(model, train="phantoms", val=None, *, epochs=10, batch_size=None, patch_size=None,
             loss=None, metrics=None, optimizer="adam", learning_rate=None, lr_schedule="cosine",
             weight_decay=0.0, out_dir="runs/zoo", strategy="auto", devices=None,
             mixed_precision=False, jit_compile=False, freeze_encoder_epochs=0, early_stopping=None,
             monitor="val_loss", tensorboard=True, steps_per_epoch=None, validation_steps=None,
             augment=False, seed=0, resume=True, restore_best=True, callbacks=None, verbose="auto",
             data_options=None, aux_loss_weight=None, force_resume=False):
    """Fine-tune ``model`` (a keras.Model or a registry name) and return a Keras History of
    every epoch of the run (including epochs done before a resume).

    train/val: a tf.data.Dataset (batched or not), an (x, y) tuple of arrays, a path (image
    folder, paired image/mask folders, NIfTI or DICOM folder, .npz), ``"tfds:NAME"``, or
    ``"phantoms"`` (synthetic data, the default); ``data_options`` go to the data source
    (e.g. ``window``, ``normalize``, ``samples_per_volume``, ``n``). ``optimizer``: "adam",
    "adamw", "sgd" or an instance; ``learning_rate`` (default 1e-3, or the instance's own; a
    float gets ``lr_schedule``, a LearningRateSchedule is used as is). ``batch_size`` is per
    replica (default 2; 64 for a GAN); the global batch is ``batch_size * replicas``. ``patch_size`` defaults to a
    fixed-size model's input size; segmentation elements of another size are cropped (random
    for training, centre for validation; padded where smaller) to it, image folders for
    classification are resized to it, and NIfTI/DICOM volumes give patches of it.
    ``early_stopping=N`` stops after N epochs without improvement of ``monitor``. ``freeze_encoder_epochs=K`` trains with the encoder
    (every layer the deepest stage output of the layer-name contract depends on, see
    ``zoo.contract``) frozen for K epochs, then all layers.
    Checkpoints and logs go to ``out_dir``; rerunning the same call after a crash resumes where
    it stopped (``resume=True``), with the same options only: a different patch size, learning
    rate, loss, optimizer, data or data options is an error listing what changed, unless
    ``force_resume=True`` (then the run continues with the new ones; ``epochs`` may always grow). At the end the model holds the best checkpoint's weights
    (``restore_best=True``) or the last epoch's (False), and ``model.zoo_run`` (the run's
    folder, patch size and preprocessing, which ``zoo.predict(model, ...)`` uses as its
    defaults). ``callbacks``: extra Keras callbacks,
    run after the zoo's checkpointing of each epoch.

    Models with auxiliary outputs (DeepLab ``aux_head=True``, GoogLeNet ``aux_heads=True``)
    train every output on the same labels, the auxiliary losses weighted by
    ``aux_loss_weight`` (default 0.3 for classification as in the GoogLeNet paper, 0.5 for
    segmentation as in torchvision's DeepLab recipe); metrics and predictions use the first
    output. The history then also has ``<output>_loss`` per output (e.g. ``out_loss``, ``aux_loss``).

    A GAN (``zoo.load("wgan_gp")``, task ``generation``) trains by ``zoo.train._gan.finetune_gan``:
    unlabelled images, the paper's optimizers, ``fd``/``swd`` quality measures each epoch.
    """
    arguments = dict(locals())  # first statement: exactly the call's arguments
    from zoo.train._gan import finetune_gan, is_gan
    if is_gan(model):  # WGAN / WGAN-GP: zoo/train/_gan.py (same run folder, resume, strategies)
        return finetune_gan(**arguments)
    batch_size = 2 if batch_size is None else batch_size
    # 1. options, before any work: a refused run touches nothing
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"finetune: out_dir {out_dir} is an existing file, not a run folder; name a "
                                   "new or existing run folder (zoo finetune --out runs/NAME). Nothing was written.")
    state = read_state(out_dir)
    _check_resume(out_dir, state, resume)
    _check_options(epochs, batch_size, freeze_encoder_epochs)
    lr0 = initial_learning_rate(learning_rate, optimizer)
    strat = get_strategy(strategy, devices)  # first: a multi-worker strategy must precede all ops
    # 2. the model and what it predicts
    model = _resolve_model(model, train)
    target = Target.of(model, patch_size)
    aux_w = aux_weight(aux_loss_weight, target.task)
    # 3. the data, checked against the model and batched for the strategy
    options = dict(data_options or {})
    data = _prepare_data(model, target, train, val, global_batch=batch_size * strat.num_replicas_in_sync,
                         seed=seed, augment=augment, options=options, steps_per_epoch=steps_per_epoch,
                         validation_steps=validation_steps)
    train_ds, steps = data["training"]
    val_ds, vsteps = data.get("validation", (None, None))
    image_shape = _check_input_size(model, train_ds)
    if val_ds is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    # 4. the run's configuration; a resumed run must be the same model
    config = _run_config(model, target, strat, image_shape, train=train, options=options,
                         batch_size=batch_size, steps=steps, epochs=epochs,
                         freeze_encoder_epochs=freeze_encoder_epochs, mixed_precision=mixed_precision,
                         class_names=data["class_names"],
                         recorded=dict(val=val, learning_rate=lr0 if learning_rate is None else learning_rate,
                                       optimizer=optimizer, loss=loss,
                                       lr_schedule=lr_schedule, weight_decay=weight_decay, augment=augment,
                                       seed=seed, steps_per_epoch=steps_per_epoch))
    _check_resume(out_dir, state, resume, config, force=force_resume)
    chief = _is_chief(strat)
    verbose = (1 if sys.stderr.isatty() else 2) if verbose == "auto" else verbose
    # 5. the network, loss and metrics in the strategy's scope
    net, loss_fn, metric_objs = build_in_scope(strat, model, task=target.task, num_classes=target.num_classes,
                                               loss=loss, metrics=metrics, mixed_precision=mixed_precision)
    _check_monitor(monitor, metric_objs, val_ds is not None, model)
    encoder = [(layer, layer.trainable) for layer in encoder_layers(net, model)] if freeze_encoder_epochs else []
    recipe = Recipe(optimizer, lr0, lr_schedule, weight_decay, loss_fn, metric_objs, n_outputs=target.n_outputs,
                    aux_weight=aux_w, mixed_precision=mixed_precision, jit_compile=jit_compile)
    # 6. fit the phases (frozen encoder, then all layers), writing the run folder each epoch
    if chief:
        _open_run_folder(out_dir, model, state, verbose)
    run_state = RunState(out_dir, monitor=monitor, chief=chief, verbose=bool(verbose), patience=early_stopping,
                         config=config, rename=_history_renames(model, metric_objs))
    extra = [keras.callbacks.TensorBoard(str(out_dir / "logs"))] if chief and tensorboard else []
    phases = [(freeze_encoder_epochs, False), (epochs, True)] if freeze_encoder_epochs else [(epochs, True)]
    snapshot = _fit_phases(net, strat, recipe, run_state, phases=phases, encoder=encoder,
                           snapshot=read_snapshot(out_dir / SNAPSHOT) if state else None, steps=steps,
                           out_dir=out_dir, x=train_ds, validation_data=val_ds, validation_steps=vsteps,
                           callbacks=[run_state, *extra, *(callbacks or [])], verbose=verbose)
    # 7. finish: best weights into the model, the run marked finished, the history
    _finish(model, net, run_state, snapshot, out_dir=out_dir, restore_best=restore_best, chief=chief,
            config=config)
    return _history(model, run_state, out_dir=out_dir, chief=chief, epochs=epochs, steps=steps, verbose=verbose)
