"""Supervised training on the run loop: classification and segmentation with labels.

:func:`finetune` trains a model and its record on any data source (prepared by
:func:`zoo.datapath.prepare.prepare`), on one device, several GPUs or several machines, with the
run folder of :mod:`zoo.train.loop`. What it adds to the loop:

* the data: training and validation sources fitted to the model's patch, classes checked
  against the head (classification folders), the training patch checked against the model
  before any step (the builder's own size check names the sizes it takes);
* the network: the model itself, or a copy in the strategy's scope (mixed precision casts
  every layer but the logits to float16), with the task's loss and metrics;
* the phases: a frozen-encoder phase (``freeze_encoder_epochs``: every layer the deepest stage
  output of the layer-name contract depends on), then all layers; each compiled afresh (a new
  optimizer and its learning-rate schedule over the phase's steps);
* auxiliary heads (DeepLab ``aux``, GoogLeNet ``aux1/aux2``) learn the same labels, their losses
  weighted by ``aux_loss_weight``; metrics and the history's keys follow the main output.
"""
import dataclasses

from zoo._keras import tf
from zoo.datapath.prepare import Target, prepare, say
from zoo.errors import InvalidArgumentError, ZooError
from zoo.hub.contract import contract
from zoo.hub.registry import get_registry
from zoo.record import PREPROCESSING
from zoo.train import loop
from zoo.train._compile import Recipe, aux_weight, build_in_scope, initial_learning_rate, metric_names
from zoo.train.runfolder import RunState, options_record
from zoo.train.strategy import strategy_name


def encoder_layers(model, names_from=None):
    """The encoder's layers with weights (the layer-name contract: every layer the deepest stage
    output depends on).

    Args:
        model: the model whose layers are returned.
        names_from: the model whose contract names them (``model`` is then a clone of it, e.g.
            the copy built inside a strategy's scope); default ``model``.

    Returns:
        A list of ``model``'s layers.

    Raises:
        InvalidArgumentError: the contract names no encoder (no stage outputs).
    """
    parts = contract(names_from if names_from is not None else model)
    if not parts.encoder:
        raise InvalidArgumentError(
            f"finetune: freeze_encoder_epochs needs an encoder (stage outputs in the layer-name contract); "
            f"model {model.name!r} has none. Set freeze_encoder_epochs=0, or build the model with zoo.load.")
    return [model.get_layer(n) for n in parts.encoder]


def _builder_size_check(info, model, shape):
    """The builder's own size check (it names the nearest valid sizes) for a registry model that
    cannot take ``shape``: the builder is called again at that input shape."""
    if not info.build or info.source != "registry":
        return
    builder = get_registry().get(info.name).resolve_builder()
    try:
        builder(**{**info.build, "input_shape": (*shape, model.input_shape[-1])})
    except ZooError as e:
        size = ",".join(str(s) for s in shape)
        raise InvalidArgumentError(f"finetune: patch size {size} does not fit {info.name}: {e} Pass a size "
                                   f"it takes as --patch-size (patch_size= in Python).") from None


def _check_input_size(model, info, train_ds):
    """The training images' spatial shape; a size the model cannot take fails here, not mid-trace."""
    spec = train_ds.element_spec
    image_shape = (spec[0] if isinstance(spec, tuple) else spec).shape[1:-1]
    if image_shape.is_fully_defined():
        try:
            model(tf.zeros((1, *image_shape, model.input_shape[-1])), training=False)
        except Exception as e:  # noqa: BLE001 - Keras raises many kinds here
            _builder_size_check(info, model, tuple(image_shape))
            raise InvalidArgumentError(
                f"finetune: model {info.name!r} cannot take {tuple(image_shape)} inputs ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}). Pass a patch_size it accepts (e.g. sizes divisible"
                f" by 2**depth for a U-Net) or data_options that resize the images.") from None
    return image_shape


def _history_renames(model, metrics):
    """Keras logs the first output's metrics of a multi-output model as ``<output>_<metric>``: the
    renames that drop the prefix (none for one output)."""
    if len(model.outputs) == 1:
        return {}
    main, keys = model.output_names[0], (metric_names(metrics, False) or ["loss"])[1:]
    return {f"{v}{main}_{m}": f"{v}{m}" for m in keys for v in ("", "val_")}


class Supervised(loop.Adapter):
    """The loop's adapter for labelled data (see the module doc)."""

    run_state_class = RunState

    def __init__(self, model, info, train, val, options):
        self.model, self.info, self.train, self.val, self.options = model, info, train, val, options
        self.batch_size = 2 if options.batch_size is None else options.batch_size

    def prepare(self, strategy):
        o, model = self.options, self.model
        self.target = target = dataclasses.replace(Target.of(model, self.info, o.patch_size),
                                                   ignore_label=o.ignore_label)
        self.aux_weight = aux_weight(o.aux_loss_weight, target.task)
        self.lr0 = initial_learning_rate(o.learning_rate, o.optimizer)
        global_batch = self.batch_size * strategy.num_replicas_in_sync
        common = dict(batch_size=global_batch, seed=o.seed, options=o.data_options,
                      preprocessing=self.info.preprocessing)
        train = prepare(self.train, target, "train", steps=o.steps_per_epoch, augment=o.augment, **common)
        self.train_ds, self.steps = train.dataset, train.steps
        self.val_ds = self.vsteps = None
        notes = list(train.notes)
        if self.val is not None:
            val = prepare(self.val, target, "validate", steps=o.validation_steps, class_names=train.class_names,
                          **common)
            self.val_ds, self.vsteps = val.dataset, val.steps
            notes += val.notes
        say(notes, o.verbosity)
        image_shape = _check_input_size(model, self.info, self.train_ds)
        self.monitor = o.monitor[4:] if self.val_ds is None and o.monitor.startswith("val_") else o.monitor
        self.class_names = train.class_names
        patch = [int(v) for v in image_shape] if image_shape.is_fully_defined() \
            else (list(target.patch) if target.patch else None)
        preprocessing = {k: o.data_options[k] for k in PREPROCESSING if k in (o.data_options or {})}
        return dict(
            model=self.info.name, task=target.task, spatial_dims=target.spatial_dims,
            in_channels=target.in_channels, num_classes=target.num_classes, patch_size=patch,
            batch_size=self.batch_size, global_batch_size=global_batch, replicas=strategy.num_replicas_in_sync,
            strategy=strategy_name(strategy), steps_per_epoch=self.steps, epochs=o.epochs,
            params=int(model.count_params()), input_shape=list(model.input_shape),
            output_shape=list(model.outputs[0].shape), train=loop.data_record(self.train),
            preprocessing=preprocessing or dict(self.info.preprocessing),
            freeze_encoder_epochs=o.freeze_encoder_epochs, mixed_precision=bool(o.mixed_precision),
            class_names=self.class_names,
            options=options_record(o.data_options, val=None if self.val is None else loop.data_record(self.val),
                                   learning_rate=self.lr0 if o.learning_rate is None else o.learning_rate,
                                   optimizer=o.optimizer, loss=o.loss, lr_schedule=o.lr_schedule,
                                   weight_decay=o.weight_decay, augment=o.augment, seed=o.seed,
                                   deterministic=o.deterministic, steps_per_epoch=o.steps_per_epoch,
                                   ignore_label=o.ignore_label),
            build=self.info.build)

    def build(self, strategy):
        o, t = self.options, self.target
        net, loss_fn, metrics = build_in_scope(strategy, self.model, task=t.task, num_classes=t.num_classes,
                                               loss=o.loss, metrics=o.metrics, mixed_precision=o.mixed_precision,
                                               ignore_label=o.ignore_label)
        names = metric_names(metrics, self.val_ds is not None,
                             self.model.output_names if len(self.model.outputs) > 1 else None)
        if names is not None and self.monitor not in names:
            raise InvalidArgumentError(f"finetune: monitor={self.monitor!r} is not a logged value; choose one of "
                                       f"{', '.join(names)}.")
        self.encoder = [(layer, layer.trainable) for layer in encoder_layers(net, self.model)] \
            if o.freeze_encoder_epochs else []
        self.metrics = metrics
        self.recipe = Recipe(o.optimizer, self.lr0, o.lr_schedule, o.weight_decay, loss_fn, metrics,
                             n_outputs=t.n_outputs, aux_weight=self.aux_weight, mixed_precision=o.mixed_precision,
                             jit_compile=o.jit_compile)
        return net

    def phases(self):
        o = self.options
        return [(o.freeze_encoder_epochs, False), (o.epochs, True)] if o.freeze_encoder_epochs \
            else [(o.epochs, True)]

    def enter_phase(self, strategy, net, phase, trainable, steps, snapshot):
        with strategy.scope():
            for layer, flag in self.encoder:
                layer.trainable = flag and trainable
            self.recipe.compile(net, steps, trainable)  # a frozen phase keeps its rate constant
            if snapshot is not None:  # resume: weights (and this phase's optimizer state)
                self.restore(net, snapshot, phase)

    def run_state(self, out_dir, chief, verbose, config):
        return self.run_state_class(out_dir, monitor=self.monitor, chief=chief, verbose=verbose,
                        patience=self.options.early_stopping, config=config,
                        rename=_history_renames(self.model, self.metrics))

    def fit_arguments(self):
        return dict(x=self.train_ds, steps_per_epoch=self.steps, validation_data=self.val_ds,
                    validation_steps=self.vsteps)

    def record(self, config):
        return self.info.replace(patch_size=config.get("patch_size"), preprocessing=config.get("preprocessing"),
                                 class_names=config.get("class_names") or self.info.class_names,
                                 train=config.get("train"), run=config)


def finetune(model, info, train, val, options, strategy):
    """Train a classifier or segmenter.

    Args:
        model: the ``keras.Model``.
        info: its :class:`zoo.record.ModelInfo`.
        train: the training data (any data source).
        val: the validation data, or None.
        options: a :class:`zoo.train.FitOptions`.
        strategy: the ``tf.distribute`` strategy.

    Returns:
        The run's Keras ``History``. The model ends with the best (or last) weights and an
        updated record (``zoo.record.info_of``).

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    return loop.fit(Supervised(model, info, train, val, options), strategy)


__all__ = ["finetune", "encoder_layers", "Supervised"]
