"""The training options: one validated object that ``zoo.finetune``, ``zoo.compress``'s steps and
``zoo.run`` pass along instead of re-listing every keyword.

``FitOptions(epochs=5, learning_rate=1e-4)`` checks each value when it is made; the verbs take
the same fields as keywords (``zoo.finetune(model, "data/train", epochs=5)``) or a ready object
(``options=FitOptions(...)``), and :meth:`FitOptions.build` merges the two and refuses an unknown
keyword with the nearest valid one.
"""
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Optional

from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, UnknownArgumentError, check_choice, did_you_mean
from zoo.train.strategy import STRATEGIES

SCHEDULES = (None, "constant", "cosine")
SEMI = (None, "mean_teacher", "pseudo_label")
ADAPT = (None, "dann")
OPTIMIZERS = ("adam", "adamw", "sgd")


def _positive(where, name, value, optional=True):
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{where}: {name}={value!r} must be a positive integer"
                                   + (" or None" if optional else "") + f"; e.g. {name}=2.")


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How a model trains (``zoo.finetune``; each step of ``zoo.compress``; ``zoo.run``'s stages).

    Attributes:
        epochs: epochs in all (a resumed run may grow it). Default 10.
        batch_size: per replica (the global batch is ``batch_size x replicas``); default 2
            (64 for a GAN, as in both WGAN papers).
        patch_size: the training patch, an int or one per spatial axis; default the model's
            fixed input size, else the data's own size (segmentation elements of another size
            are cropped/padded to it; classification folders are resized to it; volumes give
            patches of it).
        loss: a loss name (``dice_ce`` default for segmentation, ``ce`` for classification,
            ``dice``, ``weighted_ce``, ``focal``) or a Keras loss.
        metrics: Keras metrics (default: ``zoo.metrics.get_metrics(task, classes)``); a GAN's
            quality measures (``fd``, ``swd``; ``[]`` for none).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or a Keras optimizer (copied per phase).
        learning_rate: default 1e-3 (or the optimizer instance's own); a float gets
            ``lr_schedule`` (``"cosine"`` default, ``"constant"``), a schedule is used as is.
        weight_decay: for ``adamw`` (default 1e-4 there).
        out_dir: the run folder (checkpoints, state, history, resume point).
        strategy, devices: the ``tf.distribute`` strategy (``auto``, ``default``, ``one_device``,
            ``mirrored``, ``multiworker``, ``tpu`` or a Strategy) and its devices.
        mixed_precision: train in float16 with loss scaling (logits stay float32).
        jit_compile: XLA-compile the train step.
        freeze_encoder_epochs: train the first N epochs with the encoder (the layer-name
            contract's) frozen, then every layer.
        early_stopping: stop after N epochs without improvement of ``monitor``.
        monitor: the logged value that picks ``best.h5`` (default ``val_loss``; ``loss``
            without validation data).
        tensorboard: write TensorBoard logs in ``out_dir/logs``.
        steps_per_epoch, validation_steps: batches per epoch (default: the whole data; the
            validation set is never read past its end).
        augment: random flips, rotations and intensity changes (True or a ``zoo.data.augment.Augment``).
        seed: the run's random seed: ``keras.utils.set_random_seed(seed)`` at its start (Python,
            NumPy and TensorFlow: shuffling, patches, augmentation, dropout, any weights the run
            creates), so a seeded run repeats on one machine up to the nondeterminism of some
            TensorFlow kernels (parallel reductions; GPU convolutions) - see ``deterministic``.
        deterministic: ``tf.config.experimental.enable_op_determinism()`` first: every op gives
            the same result for the same inputs (slower; ops without a deterministic kernel raise).
        resume: continue an unfinished run in ``out_dir`` (same options only).
        force_resume: continue it even though options changed.
        restore_best: the model ends with the best checkpoint's weights (else the last epoch's).
        callbacks: extra Keras callbacks, run after the zoo's checkpointing.
        verbose: ``"auto"`` (a progress bar on a terminal, a line per epoch otherwise), 0, 1, 2.
        data_options: keywords of the data source (``window``, ``normalize``, ``spacing``,
            ``samples_per_volume``, ``n`` ...), for training and validation data alike.
        aux_loss_weight: the loss weight of auxiliary heads (default 0.3 for classification,
            0.5 for segmentation).
        ignore_label: a label value that marks unannotated voxels (sparse annotation, e.g. 255):
            the default loss and metrics leave them out and normalise by the labelled voxels,
            patch sampling never takes them for foreground, and the class checks let them pass.
        semi: semi-supervised training on ``unlabeled`` data besides the labelled ``train``:
            ``"mean_teacher"`` or ``"pseudo_label"`` (:mod:`zoo.train.semi`); None (default) trains
            on labelled data only.
        semi_weight: the weight of the unlabelled loss after the ramp-up (default 3.0 for
            ``mean_teacher``, 1.0 for ``pseudo_label``: :data:`zoo.train.semi.DEFAULT_WEIGHTS`).
        semi_rampup: the share of the run's steps over which that weight ramps up from ~0
            (``exp(-5 (1 - t)^2)``; default 0.3).
        semi_noise: the Gaussian input noise of the consistency loss, as a share of each
            image's intensity spread (default 0.1).
        ema_decay: ``mean_teacher``: the teacher's moving-average decay per step (default 0.99).
        confidence: ``pseudo_label``: the teacher probability a pixel/voxel needs to become a
            label (default 0.9).
        pseudo_refresh: ``pseudo_label``: copy the student into the teacher at the start of
            every epoch (default True; False keeps the starting model as the teacher).
        unlabeled_ratio: unlabelled images per labelled image in each step (default 1).
        adapt: unsupervised domain adaptation to the ``unlabeled`` (target-domain) data:
            ``"dann"``, domain-adversarial training (:mod:`zoo.train.adapt`); None (default) does not.
        adapt_weight: the weight of the domain loss (default 1.0).

    Raises:
        InvalidArgumentError: a value out of range or of the wrong type (checked when the object
            is made, and again by :meth:`replace`).
    """
    epochs: int = 10
    batch_size: Optional[int] = None
    patch_size: Any = None
    loss: Any = None
    metrics: Any = None
    optimizer: Any = "adam"
    learning_rate: Any = None
    lr_schedule: Optional[str] = "cosine"
    weight_decay: float = 0.0
    out_dir: Any = "runs/zoo"
    strategy: Any = "auto"
    devices: Any = None
    mixed_precision: bool = False
    jit_compile: bool = False
    freeze_encoder_epochs: int = 0
    early_stopping: Optional[int] = None
    monitor: str = "val_loss"
    tensorboard: bool = True
    steps_per_epoch: Optional[int] = None
    validation_steps: Optional[int] = None
    augment: Any = False
    seed: int = 0
    deterministic: bool = False
    resume: bool = True
    force_resume: bool = False
    restore_best: bool = True
    callbacks: Any = None
    verbose: Any = "auto"
    data_options: Any = None
    aux_loss_weight: Optional[float] = None
    ignore_label: Optional[int] = None
    semi: Optional[str] = None
    semi_weight: Optional[float] = None
    semi_rampup: float = 0.3
    semi_noise: float = 0.1
    ema_decay: float = 0.99
    confidence: float = 0.9
    pseudo_refresh: bool = True
    unlabeled_ratio: int = 1
    adapt: Optional[str] = None
    adapt_weight: float = 1.0

    def __post_init__(self):
        where = "finetune"
        _positive(where, "epochs", self.epochs, optional=False)
        for name in ("batch_size", "early_stopping", "steps_per_epoch", "validation_steps"):
            _positive(where, name, getattr(self, name))
        f = self.freeze_encoder_epochs
        if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < self.epochs:
            raise InvalidArgumentError(f"{where}: freeze_encoder_epochs={f!r} must be an integer in "
                                       f"[0, epochs={self.epochs}).")
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES, where)
        if not isinstance(self.optimizer, keras.optimizers.Optimizer):
            check_choice("optimizer", self.optimizer, OPTIMIZERS, where)
        if not isinstance(self.strategy, tf.distribute.Strategy):
            check_choice("strategy", self.strategy, STRATEGIES, where)
        lr = self.learning_rate
        if lr is not None and not isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) and (
                isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0):
            raise InvalidArgumentError(f"{where}: learning_rate={lr!r} must be a number >= 0 or a Keras "
                                       "LearningRateSchedule; e.g. learning_rate=1e-4.")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or self.weight_decay < 0:
            raise InvalidArgumentError(f"{where}: weight_decay={self.weight_decay!r} must be a number >= 0.")
        w = self.aux_loss_weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0):
            raise InvalidArgumentError(f"{where}: aux_loss_weight={w!r} must be a number >= 0 (the weight of "
                                       "each auxiliary output's loss, e.g. 0.3; 0 ignores them).")
        i = self.ignore_label
        if i is not None and (isinstance(i, bool) or not isinstance(i, int) or i < 0):
            raise InvalidArgumentError(f"{where}: ignore_label={i!r} must be a label value >= 0 (e.g. 255) or None.")
        check_choice("semi", self.semi, SEMI, where)
        check_choice("adapt", self.adapt, ADAPT, where)
        if self.semi and self.adapt:
            raise InvalidArgumentError(f"{where}: semi={self.semi!r} and adapt={self.adapt!r} both train on the "
                                       "unlabeled data; choose one.")
        for name, low, high in (("semi_weight", 0, None), ("semi_rampup", 0, 1), ("semi_noise", 0, None),
                                ("adapt_weight", 0, None),
                                ("ema_decay", 0, 1), ("confidence", 0, 1)):
            value = getattr(self, name)
            if value is None and name == "semi_weight":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= (
                    high if high is not None else math.inf):
                span = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise InvalidArgumentError(f"{where}: {name}={value!r} must be a number {span}.")
        _positive(where, "unlabeled_ratio", self.unlabeled_ratio, optional=False)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidArgumentError(f"{where}: seed={self.seed!r} must be an integer.")
        if self.verbose not in ("auto", 0, 1, 2, True, False):
            raise InvalidArgumentError(f"{where}: verbose={self.verbose!r} must be 'auto', 0, 1 or 2.")
        if not isinstance(self.monitor, str):
            raise InvalidArgumentError(f"{where}: monitor={self.monitor!r} must be the name of a logged value.")
        if self.data_options is not None and not isinstance(self.data_options, dict):
            raise InvalidArgumentError(f"{where}: data_options={self.data_options!r} must be a dict of the data "
                                       "source's keywords, e.g. {'window': (-100, 400)}.")
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @classmethod
    def fields(cls):
        """The option names, in the documented order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls, options=None, *, verb="finetune", **overrides):
        """Merge a ready object and keywords.

        Args:
            options: a FitOptions, or None for the defaults.
            verb: the caller's name in messages.
            **overrides: option fields; they win over ``options``.

        Returns:
            The FitOptions.

        Raises:
            UnknownArgumentError: a keyword that is no option (the nearest is named).
            InvalidArgumentError: ``options`` is not a FitOptions, or a value is out of range.
        """
        valid = cls.fields()
        unknown = [k for k in overrides if k not in valid]
        if unknown:
            raise UnknownArgumentError(
                f"{verb}: unknown option {unknown[0]!r}.{did_you_mean(unknown[0], valid)} Training options: "
                f"{', '.join(valid)} (zoo.train.FitOptions documents each).")
        if options is None:
            return cls(**overrides)
        if not isinstance(options, cls):
            raise InvalidArgumentError(f"{verb}: options must be a zoo.train.FitOptions; got "
                                       f"{type(options).__name__}. Pass the training options as keywords or "
                                       "as FitOptions(...).")
        return dataclasses.replace(options, **overrides) if overrides else options

    def replace(self, **changes):
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    @property
    def verbosity(self):
        """Keras' verbose: a progress bar on a terminal, one line per epoch otherwise."""
        if self.verbose == "auto":
            return 1 if sys.stderr.isatty() else 2
        return int(self.verbose)


__all__ = ["FitOptions"]
