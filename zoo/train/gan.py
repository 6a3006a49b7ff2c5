"""GAN training on the run loop (WGAN, WGAN-GP): the same run folder, resume, NaN guard and
strategies as supervised training (:mod:`zoo.train.loop`), with the GAN's own data and quality
measures.

``zoo.finetune(gan, train, ...)`` trains here when the model's task is ``generation`` (a
:class:`zoo.models.wgan.WGAN`). What differs from the supervised run:

* data: unlabelled images (:func:`zoo.data.unlabelled.unlabelled`: phantoms by default, image
  folders, NIfTI slices or volumes, .npz, arrays; ``data_options`` go there, e.g. ``window``,
  ``n``, ``slice_range``) resized to the GAN's size, or a ``tf.data.Dataset`` of images in the
  model's ``value_range``; the data's value range becomes the model's ``value_range``;
* training: ``gan.compile()`` with the paper's settings (``optimizer="adam"``, the default,
  means "the paper's optimizers"; a ``learning_rate`` changes their rate; an optimizer
  instance is copied for each network); the rates are constant, as in the papers
  (``lr_schedule`` does not apply); one batch is one critic update;
* quality: ``metrics=None`` reports ``fd`` and ``swd`` (:mod:`zoo.quality`) every epoch,
  between 256 real images (``val`` if given; held-out phantoms for phantoms; else the first
  training images) and samples of 256 fixed latent vectors, and records their values before
  training in ``state.json`` (``config.quality_init``); ``metrics=[]`` turns them off. The best
  checkpoint is the epoch with the lowest ``monitor`` (default ``swd``; the last epoch when no
  measure is computed);
* the resume point holds both optimizers' state.
"""

import numpy as np

from zoo._h5 import weight_layout
from zoo._keras import keras, tf
from zoo.callbacks import GanQuality
from zoo.data.unlabelled import unlabelled
from zoo.datapath.prepare import batched, count_steps
from zoo.errors import InvalidArgumentError, ZooError
from zoo.models.wgan import WGAN, infer_variant, paper_optimizer
from zoo.train import loop
from zoo.train.runfolder import RunState, read_state
from zoo.train.strategy import broadcast_weights, strategy_name

QUALITY_SAMPLES = 256
MEASURES = ("fd", "swd")


def is_gan(model):
    """Whether ``model`` is trained by this module.

    Args:
        model: any model.

    Returns:
        True for a :class:`zoo.models.wgan.WGAN`.
    """
    return isinstance(model, WGAN)


class GanRunState(RunState):
    """The run folder's callback; its resume point holds the critic's and the generator's
    optimizer state (the base class keeps one optimizer)."""

    def _read(self):
        if getattr(self, "_gan_owner", None) is not self.model:
            layout, variables = weight_layout(self.model)
            opt_vars = self.model.optimizer_variables()
            self._gan_fn = tf.function(lambda: [tf.identity(v) for v in variables + opt_vars], autograph=False)
            self._gan_owner, self._layout, self._n = self.model, layout, len(variables)
        values = [t.numpy() for t in self._gan_fn()]
        return self._layout, values[:self._n], values[self._n:]


def _restore(net, snapshot):
    variables, opt_vars = weight_layout(net)[1], net.optimizer_variables()
    if len(variables) != len(snapshot["weights"]) or len(opt_vars) != len(snapshot["optimizer"]):
        raise ZooError(f"finetune: the resume point holds {len(snapshot['weights'])} weights and "
                       f"{len(snapshot['optimizer'])} optimizer variables, but this GAN has {len(variables)} and "
                       f"{len(opt_vars)}; resume with the same model and optimizers or choose a new out_dir.")
    keras.backend.batch_set_value(list(zip(variables + opt_vars, snapshot["weights"] + snapshot["optimizer"])))


def _refuse(options):
    for name, (value, default, why) in options.items():
        if value != default:
            raise InvalidArgumentError(f"finetune: {name}={value!r} does not apply to GAN training ({why}); "
                                       f"leave it at {default!r}.")


def _check_optimizer(optimizer):
    if not isinstance(optimizer, keras.optimizers.Optimizer) and optimizer != "adam":
        raise InvalidArgumentError(
            f"finetune: optimizer={optimizer!r}: a GAN trains with its paper's optimizers (WGAN: RMSprop "
            "5e-5; WGAN-GP: Adam 1e-4, beta_1=0, beta_2=0.9); leave optimizer at its default, or pass a "
            "keras optimizer instance (copied for the critic and the generator).")


def _optimizers(variant, optimizer, learning_rate):
    """Two fresh optimizers (made in the strategy's scope): the paper's, or copies of an instance."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = optimizer.get_config()
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        return [optimizer.__class__.from_config(dict(config)) for _ in range(2)]
    return [paper_optimizer(variant, learning_rate) for _ in range(2)]


def _image_spec(dataset):
    spec = dataset.element_spec
    return spec[0] if isinstance(spec, tuple) else spec


def _images_of(dataset, n, dims):
    """Up to ``n`` images of a user's dataset (batched or not; (image, ...) tuples allowed)."""
    batched = _image_spec(dataset).shape.rank == dims + 2
    out, count = [], 0
    for element in dataset:
        x = np.asarray(element[0] if isinstance(element, (tuple, list)) else element, np.float32)
        out.append(x if batched else x[None])
        count += len(out[-1])
        if count >= n:
            break
    return np.concatenate(out, 0)[:n]


def _data(model, train, val, *, seed, options):
    """``(train array or dataset, value_range, real reference images in [-1, 1] or None source)``."""
    dims = len(model.image_shape) - 1
    kwargs = dict(spatial_dims=dims, image_size=model.image_shape[0], channels=model.image_shape[-1])
    if isinstance(train, tf.data.Dataset):
        images, value_range = train, model.value_range
    else:
        images, value_range = unlabelled(train, seed=seed, **kwargs, **options)
    if val is not None:
        reference = unlabelled(val, seed=seed + 7919, **kwargs, **options)[0] if not isinstance(
            val, tf.data.Dataset) else _images_of(val, QUALITY_SAMPLES, dims)
    elif isinstance(train, str) and train == "phantoms":
        reference = unlabelled("phantoms", seed=seed + 7919, **kwargs, **dict(options, n=QUALITY_SAMPLES))[0]
    elif isinstance(images, tf.data.Dataset):
        reference = _images_of(images, QUALITY_SAMPLES, dims)
    else:
        reference = images
    reference = np.clip((np.asarray(reference[:QUALITY_SAMPLES], np.float32) - value_range[0])
                        * (2.0 / (value_range[1] - value_range[0])) - 1.0, -1.0, 1.0)
    return images, value_range, reference


def _dataset(images, global_batch, seed, steps_per_epoch, dims):
    if isinstance(images, tf.data.Dataset):
        is_batched = _image_spec(images).shape.rank == dims + 2
        ds = batched(images, global_batch=global_batch, training=True, is_batched=is_batched, seed=seed)
    else:
        if len(images) < global_batch:
            raise InvalidArgumentError(f"finetune: {len(images)} training image(s) make no batch of {global_batch} "
                                       "(batch_size x replicas); lower batch_size or add images.")
        ds = batched(tf.data.Dataset.from_tensor_slices(images), global_batch=global_batch, training=True,
                     seed=seed, shuffle_buffer=len(images))
    steps, _ = count_steps(ds, steps_per_epoch, "train")
    if steps_per_epoch and int(tf.data.experimental.cardinality(ds)) >= 0:
        ds = ds.repeat()
    return ds, steps


class Gan(loop.Adapter):
    """The loop's adapter for WGAN / WGAN-GP (see the module doc)."""

    def __init__(self, model, info, train, val, options):
        self.model, self.info, self.train, self.val, self.options = model, info, train, val, options
        o = options
        _refuse({"loss": (o.loss, None, "the critic's loss is the Wasserstein estimate"),
                 "freeze_encoder_epochs": (o.freeze_encoder_epochs, 0, "a GAN has no pretrained encoder"),
                 "mixed_precision": (o.mixed_precision, False, "not supported for GAN training yet"),
                 "jit_compile": (o.jit_compile, False, "not supported for GAN training yet"),
                 "weight_decay": (o.weight_decay, 0.0, "the papers use none"),
                 "augment": (o.augment, False, "augmented images would be learnt as real ones"),
                 "aux_loss_weight": (o.aux_loss_weight, None, "a GAN has no auxiliary heads"),
                 "validation_steps": (o.validation_steps, None, "val holds the quality measures' real images"),
                 "ignore_label": (o.ignore_label, None, "a GAN's images have no labels")})
        _check_optimizer(o.optimizer)
        self.batch_size = 64 if o.batch_size is None else o.batch_size

    def prepare(self, strategy):
        o, model = self.options, self.model
        self.variant = variant = infer_variant(model)
        if o.patch_size is not None and tuple(np.broadcast_to(o.patch_size, (len(model.image_shape) - 1,))) \
                != model.image_shape[:-1]:
            raise InvalidArgumentError(f"finetune: patch_size={o.patch_size!r} differs from the GAN's image size "
                                       f"{model.image_shape[:-1]}; the images are resized to it. Build the GAN "
                                       "with image_size=... instead.")
        measures = MEASURES if o.metrics is None else tuple(o.metrics)
        if any(m not in MEASURES for m in measures):
            raise InvalidArgumentError(f"finetune: metrics={o.metrics!r}: a GAN run measures {', '.join(MEASURES)} "
                                       "(None: both, []: none).")
        monitor = ("swd" if "swd" in measures else measures[0] if measures else "critic_steps") \
            if o.monitor == "val_loss" else o.monitor
        known = ["loss", "wasserstein", "g_loss", "critic_steps", "generator_steps", *measures] + (
            ["gp"] if variant == "wgan_gp" else [])
        if monitor not in known:
            raise InvalidArgumentError(f"finetune: monitor={monitor!r} is not a logged value; choose one of "
                                       f"{', '.join(known)}.")
        self.monitor, self.measures = monitor, measures
        self.mode = "max" if monitor in ("critic_steps", "generator_steps") else "min"
        images, value_range, reference = _data(model, self.train, self.val, seed=o.seed,
                                               options=dict(o.data_options or {}))
        model.value_range = value_range
        self.reference = reference
        global_batch = self.batch_size * strategy.num_replicas_in_sync
        self.train_ds, self.steps = _dataset(images, global_batch, o.seed, o.steps_per_epoch,
                                             len(model.image_shape) - 1)
        self.config = dict(
            model=self.info.name, task="generation", variant=variant, spatial_dims=len(model.image_shape) - 1,
            in_channels=model.image_shape[-1], image_size=model.image_shape[0], batch_size=self.batch_size,
            global_batch_size=global_batch, replicas=strategy.num_replicas_in_sync,
            strategy=strategy_name(strategy), steps_per_epoch=self.steps, epochs=o.epochs,
            params=int(model.count_params()), input_shape=list(model.input_shape),
            output_shape=list(model.output_shape), value_range=list(value_range), train=loop.data_record(self.train),
            measures=list(measures), quality_samples=len(reference), seed=o.seed)
        return self.config

    def build(self, strategy):
        o, model = self.options, self.model
        cloned = strategy is not tf.distribute.get_strategy()
        with strategy.scope():
            net = model.__class__.from_config(model.get_config()) if cloned else model
            if cloned:
                net.set_weights(model.get_weights())
            c_opt, g_opt = _optimizers(self.variant, o.optimizer, o.learning_rate)
            net.compile(self.variant, critic_optimizer=c_opt, generator_optimizer=g_opt, seed=o.seed)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            broadcast_weights(strategy, net)
        self.quality = GanQuality(self.reference, seed=o.seed, measures=self.measures) if self.measures else None
        return net

    def enter_phase(self, strategy, net, phase, setting, steps, snapshot):
        if snapshot is not None:  # both optimizers' state with the weights
            with strategy.scope():
                _restore(net, snapshot)
        if self.quality is not None and "quality_init" not in self.config:
            # the distances at initialisation (kept from the first start of the run)
            recorded = read_state(self.options.out_dir).get("config", {}).get("quality_init")
            self.config["quality_init"] = recorded or self.quality.measure(net)

    def run_state(self, out_dir, chief, verbose, config):
        self.config = config
        return GanRunState(out_dir, monitor=self.monitor, mode=self.mode, chief=chief, verbose=verbose,
                           patience=self.options.early_stopping, config=config)

    def fit_arguments(self):
        return dict(x=self.train_ds, steps_per_epoch=self.steps)

    def callbacks(self, run_state):
        return [*([self.quality] if self.quality else []), run_state]

    def record(self, config):
        return self.info.replace(train=config.get("train"), run=config)


def finetune(model, info, train, val, options, strategy):
    """Train the GAN ``model`` with ``options`` on ``strategy`` (see the module doc).

    Args:
        model: a :class:`zoo.models.wgan.WGAN`.
        info: its :class:`zoo.record.ModelInfo`.
        train: the training images (any data source; labels are ignored).
        val: real images for the quality measures, or None.
        options: a :class:`zoo.train.FitOptions` (options that do not apply to GANs are refused).
        strategy: the ``tf.distribute`` strategy.

    Returns:
        The run's Keras ``History``.

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    return loop.fit(Gan(model, info, train, val, options), strategy)


__all__ = ["finetune", "is_gan", "Gan", "GanRunState", "MEASURES", "QUALITY_SAMPLES"]
