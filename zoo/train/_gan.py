"""``zoo.finetune`` for generative models (WGAN, WGAN-GP): the same run folder, resume, NaN
guard and strategies as the supervised path, with the GAN's own data and quality measures.

``finetune(gan, train, ...)`` dispatches here when the model is a :class:`zoo.models.wgan.WGAN`
(or a registry entry of task ``generation``). What differs from the supervised run:

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
import sys
from pathlib import Path

import numpy as np

from zoo._keras import keras, tf
from zoo._h5 import weight_layout
from zoo.errors import InvalidArgumentError, ZooError, check_positive_int
from zoo.train._data import _steps, as_batched_dataset
from zoo.train._runs import SNAPSHOT, RunState, _check_resume, read_snapshot, read_state
from zoo.train.strategy import _broadcast_weights, _is_chief, _strategy_name, get_strategy

QUALITY_SAMPLES = 256
MEASURES = ("fd", "swd")


def is_gan(model):
    """Whether ``model`` (a model or a registry name) is trained by this module."""
    from zoo.models.wgan import WGAN
    if isinstance(model, WGAN):
        return True
    if isinstance(model, str):
        from zoo.hub.registry import get_registry
        try:
            return get_registry().get(model).task == "generation"
        except Exception:  # noqa: BLE001 - unknown names fail later, in the supervised path's words
            return False
    return False


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
    from zoo.models._wgan_train import paper_optimizer
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
    from zoo.data.unlabelled import unlabelled
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
        batched = _image_spec(images).shape.rank == dims + 2
        ds = as_batched_dataset(images, global_batch=global_batch, training=True, batched=batched, seed=seed)
    else:
        if len(images) < global_batch:
            raise InvalidArgumentError(f"finetune: {len(images)} training image(s) make no batch of {global_batch} "
                                       "(batch_size x replicas); lower batch_size or add images.")
        ds = as_batched_dataset(tf.data.Dataset.from_tensor_slices(images), global_batch=global_batch,
                                training=True, batched=False, seed=seed, shuffle_buffer=len(images))
    steps = _steps(ds, steps_per_epoch, "training")
    if steps_per_epoch and int(tf.data.experimental.cardinality(ds)) >= 0:
        ds = ds.repeat()
    return ds, steps


def finetune_gan(model, train="phantoms", val=None, *, epochs=10, batch_size=None, patch_size=None, loss=None,
                 metrics=None, optimizer="adam", learning_rate=None, lr_schedule="cosine", weight_decay=0.0,
                 out_dir="runs/zoo", strategy="auto", devices=None, mixed_precision=False, jit_compile=False,
                 freeze_encoder_epochs=0, early_stopping=None, monitor="val_loss", tensorboard=True,
                 steps_per_epoch=None, validation_steps=None, augment=False, seed=0, resume=True,
                 restore_best=True, callbacks=None, verbose="auto", data_options=None, aux_loss_weight=None,
                 force_resume=False):
    """``zoo.finetune`` of a GAN (see the module doc); batch_size defaults to 64 as in both papers."""
    from zoo.callbacks import GanQuality
    from zoo.train._finetune import _finish, _fit, _history, _resolve_model
    out_dir = Path(out_dir)
    state = read_state(out_dir)
    _check_resume(out_dir, state, resume)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"finetune: epochs={epochs!r} must be a positive integer.")
    batch_size = 64 if batch_size is None else check_positive_int("batch_size", batch_size, "finetune")
    _refuse({"loss": (loss, None, "the critic's loss is the Wasserstein estimate"),
             "freeze_encoder_epochs": (freeze_encoder_epochs, 0, "a GAN has no pretrained encoder"),
             "mixed_precision": (mixed_precision, False, "not supported for GAN training yet"),
             "jit_compile": (jit_compile, False, "not supported for GAN training yet"),
             "weight_decay": (weight_decay, 0.0, "the papers use none"),
             "augment": (augment, False, "augmented images would be learnt as real ones"),
             "aux_loss_weight": (aux_loss_weight, None, "a GAN has no auxiliary heads"),
             "validation_steps": (validation_steps, None, "val holds the quality measures' real images")})
    _check_optimizer(optimizer)
    strat = get_strategy(strategy, devices)
    model = _resolve_model(model, train)
    from zoo.models._wgan_train import infer_variant
    variant = infer_variant(model)
    if patch_size is not None and tuple(np.broadcast_to(patch_size, (len(model.image_shape) - 1,))) \
            != model.image_shape[:-1]:
        raise InvalidArgumentError(f"finetune: patch_size={patch_size!r} differs from the GAN's image size "
                                   f"{model.image_shape[:-1]}; the images are resized to it. Build the GAN "
                                   "with image_size=... instead.")
    measures = MEASURES if metrics is None else tuple(metrics)
    if any(m not in MEASURES for m in measures):
        raise InvalidArgumentError(f"finetune: metrics={metrics!r}: a GAN run measures {', '.join(MEASURES)} "
                                   "(None: both, []: none).")
    monitor = ("swd" if "swd" in measures else measures[0] if measures else "critic_steps") \
        if monitor == "val_loss" else monitor
    known = ["loss", "wasserstein", "g_loss", "critic_steps", "generator_steps", *measures] + (
        ["gp"] if variant == "wgan_gp" else [])
    if monitor not in known:
        raise InvalidArgumentError(f"finetune: monitor={monitor!r} is not a logged value; choose one of "
                                   f"{', '.join(known)}.")
    mode = "max" if monitor in ("critic_steps", "generator_steps") else "min"
    images, value_range, reference = _data(model, train, val, seed=seed, options=dict(data_options or {}))
    model.value_range = value_range
    global_batch = batch_size * strat.num_replicas_in_sync
    train_ds, steps = _dataset(images, global_batch, seed, steps_per_epoch, len(model.image_shape) - 1)
    config = dict(model=getattr(model, "zoo_name", None) or model.name, task="generation", variant=variant,
                  spatial_dims=len(model.image_shape) - 1, in_channels=model.image_shape[-1],
                  image_size=model.image_shape[0], batch_size=batch_size, global_batch_size=global_batch,
                  replicas=strat.num_replicas_in_sync, strategy=_strategy_name(strat), steps_per_epoch=steps,
                  epochs=epochs, params=int(model.count_params()), input_shape=list(model.input_shape),
                  output_shape=list(model.output_shape), value_range=list(value_range),
                  train=train if isinstance(train, str) else type(train).__name__, measures=list(measures),
                  quality_samples=len(reference), seed=seed)
    _check_resume(out_dir, state, resume, config, force=force_resume)
    chief = _is_chief(strat)
    verbose = (1 if sys.stderr.isatty() else 2) if verbose == "auto" else verbose
    cloned = strat is not tf.distribute.get_strategy()
    with strat.scope():
        net = model.__class__.from_config(model.get_config()) if cloned else model
        if cloned:
            net.set_weights(model.get_weights())
            net.zoo_name = getattr(model, "zoo_name", None)
        c_opt, g_opt = _optimizers(variant, optimizer, learning_rate)
        net.compile(variant, critic_optimizer=c_opt, generator_optimizer=g_opt, seed=seed)
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        _broadcast_weights(strat, net)
    quality = GanQuality(reference, seed=seed, measures=measures) if measures else None
    snapshot = read_snapshot(out_dir / SNAPSHOT) if state else None
    if snapshot is not None:
        with strat.scope():
            _restore(net, snapshot)
    if quality is not None:  # the distances at initialisation (kept from the first start of the run)
        config["quality_init"] = state.get("config", {}).get("quality_init") or quality.measure(net)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        from zoo import _io
        _io.atomic_write_bytes(out_dir / "model.json", lambda t: Path(t).write_text(net.to_json()))
        if state and verbose:
            print(f"finetune: resuming {out_dir} after epoch {state.get('epochs_completed')}", file=sys.stderr)
    run_state = GanRunState(out_dir, monitor=monitor, mode=mode, chief=chief, verbose=bool(verbose),
                            patience=early_stopping, config=config)
    extra = [keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False)] if chief and tensorboard else []
    done = snapshot["epochs_done"] if snapshot else 0
    if done < epochs:
        _fit(net, strat, run_state, out_dir, x=train_ds, epochs=epochs, initial_epoch=done, steps_per_epoch=steps,
             callbacks=[*([quality] if quality else []), run_state, *extra, *(callbacks or [])], verbose=verbose)
        snapshot = None
    _finish(model, net, run_state, snapshot, out_dir=out_dir, restore_best=restore_best, chief=chief, config=config)
    return _history(model, run_state, out_dir=out_dir, chief=chief, epochs=epochs, steps=steps, verbose=verbose)
