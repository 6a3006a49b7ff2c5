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
import sys
from pathlib import Path

from zoo._keras import keras, tf
from zoo import _io
from zoo.train._runs import (SNAPSHOT, RunState, _check_resume, load_run, read_snapshot,
                       read_state, restore_snapshot)
from zoo.train._data import (_spec, _steps, as_batched_dataset, check_data, main_output_shape, resolve_data,
                              with_aux_targets)
from zoo.data import fit_patch
from zoo.errors import InvalidArgumentError, ZooError, check_choice, check_positive_int
from zoo.train.strategy import (STRATEGIES, _LOST_PEER_ERRORS, _broadcast_weights, _is_chief, _lost_worker,
                                _multi_process, _strategy_name, get_strategy)

__all__ = ["finetune", "get_strategy", "load_run", "read_state", "encoder_layers", "STRATEGIES"]


# --------------------------------------------------------------------------- model helpers
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


def _mixed_precision_clone(model):
    config = model.get_config()
    out_names = {o[0] for o in config.get("output_layers", [])}
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":  # logits stay float32 for a stable loss
            layer["config"]["dtype"] = "float32" if layer["config"].get("name") in out_names \
                else "mixed_float16"
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _clone(model, mixed_precision):
    if mixed_precision:
        return _mixed_precision_clone(model)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _optimizer(spec, learning_rate, weight_decay):
    """A fresh optimizer (an instance is copied from its config: every phase and strategy
    scope needs its own, built for the current trainable variables)."""
    if isinstance(spec, keras.optimizers.Optimizer):
        config = spec.get_config()
        config["learning_rate"] = learning_rate
        return spec.__class__.from_config(config)
    check_choice("optimizer", spec, ("adam", "adamw", "sgd"), "finetune")
    if spec == "adam":
        return keras.optimizers.Adam(learning_rate)
    if spec == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 1e-4)
    return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)


def _learning_rate(lr, schedule, total_steps):
    check_choice("lr_schedule", schedule, (None, "constant", "cosine"), "finetune")
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return lr.__class__.from_config(lr.get_config())
    if schedule == "cosine" and total_steps:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps, alpha=0.01)
    return lr


def _metric_names(metrics, val, output_names=None):
    """The keys finetune's history will have (None when a metric has no known name). With
    several outputs, also each output's own loss (``<output>_loss``)."""
    names = ["loss"] + [f"{o}_loss" for o in output_names or []]
    for m in metrics:
        names.append(m if isinstance(m, str) else getattr(m, "name", None))
    if None in names:
        return None
    return names + [f"val_{n}" for n in names] if val else names


AUX_LOSS_WEIGHTS = {"classification": 0.3, "segmentation": 0.5}


def _aux_loss_weight(weight, task):
    """The weight of each auxiliary output's loss: GoogLeNet's paper uses 0.3, torchvision's
    DeepLab/FCN recipe 0.5 - the defaults for classification and segmentation models."""
    if weight is None:
        return AUX_LOSS_WEIGHTS.get(task, 0.5)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise InvalidArgumentError(f"finetune: aux_loss_weight={weight!r} must be a number >= 0 (the "
                                   "weight of each auxiliary output's loss, e.g. 0.3; 0 ignores them).")
    return float(weight)


def finetune(model, train="phantoms", val=None, *, epochs=10, batch_size=2, patch_size=None,
             loss=None, metrics=None, optimizer="adam", learning_rate=None, lr_schedule="cosine",
             weight_decay=0.0, out_dir="runs/zoo", strategy="auto", devices=None,
             mixed_precision=False, jit_compile=False, freeze_encoder_epochs=0, early_stopping=None,
             monitor="val_loss", tensorboard=True, steps_per_epoch=None, validation_steps=None,
             augment=False, seed=0, resume=True, restore_best=True, callbacks=None, verbose="auto",
             data_options=None, aux_loss_weight=None):
    """Fine-tune ``model`` (a keras.Model or a registry name) and return a Keras History of
    every epoch of the run (including epochs done before a resume).

    train/val: a tf.data.Dataset (batched or not), an (x, y) tuple of arrays, a path (image
    folder, paired image/mask folders, NIfTI or DICOM folder, .npz), ``"tfds:NAME"``, or
    ``"phantoms"`` (synthetic data, the default); ``data_options`` go to the data source
    (e.g. ``window``, ``normalize``, ``samples_per_volume``, ``n``). ``optimizer``: "adam",
    "adamw", "sgd" or an instance; ``learning_rate`` (default 1e-3, or the instance's own; a
    float gets ``lr_schedule``, a LearningRateSchedule is used as is). ``batch_size`` is per
    replica; the global batch is ``batch_size * replicas``. ``patch_size`` defaults to a
    fixed-size model's input size; segmentation elements of another size are cropped (random
    for training, centre for validation; padded where smaller) to it, image folders for
    classification are resized to it, and NIfTI/DICOM volumes give patches of it.
    ``early_stopping=N`` stops after N epochs without improvement of ``monitor``. ``freeze_encoder_epochs=K`` trains with the encoder
    (every layer the deepest stage output of the layer-name contract depends on, see
    ``zoo.contract``) frozen for K epochs, then all layers.
    Checkpoints and logs go to ``out_dir``; rerunning the same call after a crash resumes where
    it stopped (``resume=True``). At the end the model holds the best checkpoint's weights
    (``restore_best=True``) or the last epoch's (False), and ``model.zoo_run`` (the run's
    folder, patch size and preprocessing, which ``zoo.predict(model, ...)`` uses as its
    defaults). ``callbacks``: extra Keras callbacks,
    run after the zoo's checkpointing of each epoch.

    Models with auxiliary outputs (DeepLab ``aux_head=True``, GoogLeNet ``aux_heads=True``)
    train every output on the same labels, the auxiliary losses weighted by
    ``aux_loss_weight`` (default 0.3 for classification as in the GoogLeNet paper, 0.5 for
    segmentation as in torchvision's DeepLab recipe); metrics and predictions use the first
    output. The history then also has ``<output>_loss`` per output (e.g. ``out_loss``, ``aux_loss``).
    """
    from zoo import losses as _losses
    from zoo import metrics as _metrics
    from zoo.data._common import check_size

    out_dir = Path(out_dir)
    state = read_state(out_dir)
    _check_resume(out_dir, state, resume)  # before any work: nothing is touched on refusal
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"finetune: epochs={epochs!r} must be a positive integer.")
    check_positive_int("batch_size", batch_size, "finetune")
    if isinstance(freeze_encoder_epochs, bool) or not isinstance(freeze_encoder_epochs, int) \
            or not 0 <= freeze_encoder_epochs < epochs:
        raise InvalidArgumentError(
            f"finetune: freeze_encoder_epochs={freeze_encoder_epochs!r} must be an integer in "
            f"[0, epochs={epochs}).")
    lr0 = 1e-3 if learning_rate is None else learning_rate
    if learning_rate is None and isinstance(optimizer, keras.optimizers.Optimizer):
        lr0 = optimizer.get_config()["learning_rate"]  # an optimizer instance keeps its own rate
        lr0 = keras.optimizers.schedules.deserialize(lr0) if isinstance(lr0, dict) else lr0
    strat = get_strategy(strategy, devices)  # first: a multi-worker strategy must precede all ops
    if isinstance(model, str):
        from zoo.hub import load
        model = load(model)
    elif not isinstance(model, keras.Model):
        raise InvalidArgumentError(f"finetune: model must be a keras.Model or a registry name; got "
                                   f"{type(model).__name__}.")
    replicas = strat.num_replicas_in_sync
    out_shape = main_output_shape(model)
    n_outputs = len(model.outputs)
    task = getattr(model, "zoo_task", None) or ("classification" if len(out_shape) == 2 else "segmentation")
    dims = len(model.input_shape) - 2
    num_classes = out_shape[-1]
    aux_w = _aux_loss_weight(aux_loss_weight, task)
    if patch_size is None and all(s is not None for s in model.input_shape[1:-1]):
        patch_size = tuple(model.input_shape[1:-1])
    patch = check_size(patch_size, dims)
    options = dict(data_options or {})
    kw = dict(task=task, spatial_dims=dims, num_classes=num_classes, in_channels=model.input_shape[-1],
              patch_size=patch, seed=seed, augment=augment)
    global_batch = batch_size * replicas
    datasets = {}
    for what, source in (("training", train), ("validation", val)):
        if source is None:
            continue
        training = what == "training"
        ds, unbatched = resolve_data(source, training=training, what=what, **kw, **options)
        batched = check_data(ds, model, what, source, unbatched)
        shape = _spec(ds)[0].shape[:-1] if not batched else None
        if patch and task == "segmentation" and shape is not None and tuple(shape) != patch:
            ds = fit_patch(ds, patch, random=training, seed=seed)
        ds = with_aux_targets(as_batched_dataset(ds, global_batch=global_batch, training=training,
                                                 batched=batched, seed=seed), n_outputs)
        n = _steps(ds, steps_per_epoch if training else validation_steps, what)
        finite = int(tf.data.experimental.cardinality(ds)) >= 0
        if training and steps_per_epoch and finite:
            ds = ds.repeat()  # a fixed number of steps per epoch draws across the epoch boundary
        datasets[what] = (ds, n)
    train_ds, steps = datasets["training"]
    val_ds, vsteps = datasets.get("validation", (None, None))
    image_shape = _spec(train_ds)[0].shape[1:-1]
    if image_shape.is_fully_defined():  # a size the model cannot take fails here, not mid-trace
        try:
            model(tf.zeros((1, *image_shape, model.input_shape[-1])), training=False)
        except Exception as e:  # noqa: BLE001 - Keras raises many kinds here
            raise InvalidArgumentError(
                f"finetune: model {model.name!r} cannot take {tuple(image_shape)} inputs ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}). Pass a patch_size it accepts (e.g. sizes divisible"
                f" by 2**depth for a U-Net) or data_options that resize the images.") from None
    if val_ds is None and monitor.startswith("val_"):
        monitor = monitor[4:]
    config = dict(model=getattr(model, "zoo_name", None) or model.name, task=task, spatial_dims=dims,
                  in_channels=model.input_shape[-1], num_classes=num_classes,
                  patch_size=[int(v) for v in image_shape] if image_shape.is_fully_defined()
                  else (list(patch) if patch else None), batch_size=batch_size,
                  global_batch_size=global_batch, replicas=replicas, strategy=_strategy_name(strat),
                  steps_per_epoch=steps, epochs=epochs, params=int(model.count_params()),
                  input_shape=list(model.input_shape), output_shape=list(out_shape),
                  train=train if isinstance(train, str) else type(train).__name__,
                  preprocessing={k: options[k] for k in ("window", "normalize", "spacing") if k in options},
                  freeze_encoder_epochs=freeze_encoder_epochs, mixed_precision=bool(mixed_precision))
    _check_resume(out_dir, state, resume, config)
    chief = _is_chief(strat)
    verbose = (1 if sys.stderr.isatty() else 2) if verbose == "auto" else verbose

    cloned = mixed_precision or strat is not tf.distribute.get_strategy()  # (outside the scope!)
    with strat.scope():
        net = _clone(model, mixed_precision) if cloned else model
        loss_fn = _losses.get_loss(loss or ("dice_ce" if task == "segmentation" else "ce"))
        metric_objs = ([m if isinstance(m, str) else m.__class__.from_config(m.get_config())
                        for m in metrics] if metrics is not None
                       else _metrics.get_metrics(task, num_classes))
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        _broadcast_weights(strat, net)
    names = _metric_names(metric_objs, val_ds is not None, model.output_names if n_outputs > 1 else None)
    if names is not None and monitor not in names:
        raise InvalidArgumentError(f"finetune: monitor={monitor!r} is not a logged value; choose one of "
                                   f"{', '.join(names)}.")
    encoder = [(layer, layer.trainable) for layer in encoder_layers(net, model)] if freeze_encoder_epochs else []
    if chief:  # every check passed: from here on the run folder is written
        out_dir.mkdir(parents=True, exist_ok=True)
        _io.atomic_write_bytes(out_dir / "model.json", lambda t: Path(t).write_text(model.to_json()))
        if state and verbose:
            print(f"finetune: resuming {out_dir} after epoch {state.get('epochs_completed')} (best "
                  f"{state.get('monitor')} {state.get('best')} at epoch {state.get('best_epoch')})",
                  file=sys.stderr)
    # Keras logs the first output's metrics of a multi-output model as "<output>_<metric>": drop the prefix
    main, metric_keys = model.output_names[0], (_metric_names(metric_objs, False) or ["loss"])[1:]
    rename = {f"{v}{main}_{m}": f"{v}{m}" for m in metric_keys for v in ("", "val_")} if n_outputs > 1 else {}
    run_state = RunState(out_dir, monitor=monitor, chief=chief, verbose=bool(verbose),
                         patience=early_stopping, config=config, rename=rename)
    extra = [keras.callbacks.TensorBoard(str(out_dir / "logs"))] if chief and tensorboard else []
    phases = [(freeze_encoder_epochs, False), (epochs, True)] if freeze_encoder_epochs else [(epochs, True)]
    snapshot = read_snapshot(out_dir / SNAPSHOT) if state else None
    done = snapshot["epochs_done"] if snapshot else 0
    start = 0
    for phase, (end, trainable) in enumerate(phases):
        if snapshot is not None and done >= end:  # this phase was completed before the restart
            start = end
            continue
        with strat.scope():
            for layer, flag in encoder:
                layer.trainable = flag and trainable
            lr = _learning_rate(lr0, lr_schedule if trainable else "constant",  # frozen phase: constant
                                steps and steps * (end - start))
            opt = _optimizer(optimizer, lr, weight_decay)
            if mixed_precision:
                opt = keras.mixed_precision.LossScaleOptimizer(opt)
            if n_outputs > 1:  # auxiliary heads: the same loss, weighted; metrics on the prediction only
                net.compile(optimizer=opt, loss=[loss_fn] * n_outputs, jit_compile=jit_compile,
                            loss_weights=[1.0] + [aux_w] * (n_outputs - 1),
                            metrics=[list(metric_objs)] + [[] for _ in range(n_outputs - 1)])
            else:
                net.compile(optimizer=opt, loss=loss_fn, metrics=list(metric_objs), jit_compile=jit_compile)
            if snapshot is not None:  # resume: weights (and this phase's optimizer state)
                restore_snapshot(net, snapshot, phase)
                start, snapshot = max(start, done), None
        run_state.phase = phase
        try:
            net.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=start, steps_per_epoch=steps,
                    validation_steps=vsteps, callbacks=[run_state, *extra, *(callbacks or [])],
                    verbose=verbose)
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
        if run_state.stopped_early:
            break
        start = end
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
    history = keras.callbacks.History()
    history.set_model(model)
    history.epoch = [r["epoch"] - 1 for r in run_state.rows]
    history.history = {k: [r.get(k) for r in run_state.rows] for k in run_state.rows[0] if k != "epoch"} \
        if run_state.rows else {}
    history.params = {"epochs": epochs, "steps": steps, "verbose": verbose}
    history.zoo_state = read_state(out_dir) if chief else None
    return history
