"""The one data path: any data source prepared for a model and a purpose.

Every verb reads its data here. :func:`prepare` turns a data argument (a folder, a file,
``"phantoms"``, ``"tfds:NAME"``, arrays, a ``tf.data.Dataset``) into what the verb needs:

- ``purpose="train"``: random patches (new each epoch), shuffled, batched with the global batch,
  sharded by data across workers, labels repeated for auxiliary heads; a finite set repeats when
  ``steps`` fixes the epoch's length;
- ``purpose="validate"``: fixed (centre) patches, batched, counted: ``steps`` is capped at the
  batches the data holds, so a small validation set is read whole every epoch and never runs out;
- :func:`samples` (held-out scores, calibration and verification of an export): the first ``n``
  unbatched (image, label) pairs as arrays, at the model's patch (or export) size.

:class:`Target` is what the data must fit, read once from the model and its record
(:class:`zoo.record.ModelInfo`); the element checks themselves are
:func:`zoo.data.checks.check_pairs`, run by :func:`zoo.datapath.sources.from_source` for every source.
"""
import dataclasses
import sys
from typing import Optional, Tuple

import numpy as np

from zoo._keras import tf
from zoo.data.checks import DataError, check_size
from zoo.data.patches import fit_patch
from zoo.datapath.sources import from_source
from zoo.errors import InvalidArgumentError, check_positive_int
from zoo.record import PREPROCESSING

PURPOSES = ("train", "validate")
SYNTHETIC = ("phantoms", "hard_phantoms")  # generated data: no file preprocessing applies


@dataclasses.dataclass(frozen=True)
class Target:
    """What a model takes and predicts, which its data must fit.

    Attributes:
        name: the model's name in messages (its registry entry where known).
        task: ``"classification"`` or ``"segmentation"`` (see :class:`zoo.record.ModelInfo`).
        spatial_dims, in_channels, num_classes: of the input and the main output.
        n_outputs: outputs of the model (auxiliary heads learn the same labels).
        patch: the spatial patch the data is cut to (None: the data's own size).
        ignore_label: a label value the data may hold for unannotated voxels (not a class).
    """
    name: str
    task: str
    spatial_dims: int
    in_channels: Optional[int]
    num_classes: int
    n_outputs: int = 1
    patch: Optional[Tuple[int, ...]] = None
    ignore_label: Optional[int] = None

    @classmethod
    def of(cls, model, info, patch_size=None):
        """The target of ``model`` described by ``info``.

        Args:
            model: the ``keras.Model``.
            info: its :class:`zoo.record.ModelInfo`.
            patch_size: an int or one per spatial axis; default the model's static input size,
                else the size it was trained at (its record's), else None (the data's own size).

        Returns:
            A :class:`Target`.

        Raises:
            InvalidArgumentError: ``patch_size`` is not a positive int or one per spatial axis.
        """
        dims = len(model.input_shape) - 2
        if patch_size is None and all(s is not None for s in model.input_shape[1:-1]):
            patch_size = tuple(model.input_shape[1:-1])
        if patch_size is None and info.patch_size and len(info.patch_size) == dims:
            patch_size = info.patch_size
        return cls(name=info.name, task=info.task, spatial_dims=dims, in_channels=model.input_shape[-1],
                   num_classes=int(model.outputs[0].shape[-1]), n_outputs=len(model.outputs),
                   patch=check_size(patch_size, dims))


@dataclasses.dataclass
class Prepared:
    """A prepared data source (what :func:`prepare` returns).

    Attributes:
        dataset: the batched ``tf.data.Dataset``.
        steps: batches per epoch (None: read it whole).
        class_names: the class names it defines (classification folders), or None.
        notes: what was chosen for the user (e.g. fewer validation batches than asked), for :func:`say`.
    """
    dataset: object
    steps: Optional[int]
    class_names: Optional[list] = None
    notes: list = dataclasses.field(default_factory=list)


def element_spec(ds):
    """The element specs of a dataset.

    Args:
        ds: a ``tf.data.Dataset`` of images or of (image, label) pairs.

    Returns:
        ``(image spec, label spec or None)``.
    """
    spec = ds.element_spec
    return (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) == 2 else (spec, None)


def source_options(source, options=None, preprocessing=None):
    """The keywords for the data source.

    Args:
        source: the data argument.
        options: the caller's data-source keywords; they always apply and win.
        preprocessing: a model's recorded intensity preprocessing (``window``, ``normalize``,
            ``spacing``); it applies to files, not to generated phantoms.

    Returns:
        The merged keywords (a dict).
    """
    synthetic = isinstance(source, str) and source in SYNTHETIC
    base = {} if synthetic else {k: v for k, v in dict(preprocessing or {}).items() if k in PREPROCESSING}
    return {**base, **dict(options or {})}


def _shuffle_buffer(ds, budget=256 * 2 ** 20):
    """Elements in a shuffle buffer of at most ~``budget`` bytes (at least 8): the whole
    dataset when it fits, else as many as fit (256 3D patches of 96^3 voxels and their labels
    would hold ~1.7 GB and delay the first step by 256 reads)."""
    n = int(tf.data.experimental.cardinality(ds))
    cap = n if n > 0 else 256  # a known-size dataset is shuffled whole when it fits the budget
    size = 0
    for s in tf.nest.flatten(ds.element_spec):
        if not s.shape.is_fully_defined():
            return min(cap, 16)
        size += s.shape.num_elements() * s.dtype.size
    return int(max(1, min(cap, max(8, budget // max(size, 1)))))


def batched(ds, *, global_batch, training, is_batched=False, seed=0, shuffle_buffer=None):
    """Shuffle (training), batch with the global batch size, shard by data across workers.

    Args:
        ds: an unbatched (or, with ``is_batched``, batched) dataset.
        global_batch: the global batch size; training drops the last incomplete batch.
        training: shuffle (each epoch anew) and drop the remainder.
        is_batched: ``ds`` is batched already: only the sharding and prefetch apply.
        seed: the shuffle seed.
        shuffle_buffer: elements in the shuffle buffer (default: the whole dataset when it fits
            ~256 MB, else as many as fit, at least 8).

    Returns:
        The batched, prefetched dataset with data auto-sharding.
    """
    if not is_batched:
        if training:
            ds = ds.shuffle(shuffle_buffer or _shuffle_buffer(ds), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(global_batch, drop_remainder=training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def with_aux_targets(ds, n_outputs):
    """(image, label) -> (image, (label,) * n_outputs): every head learns the same labels.

    Args:
        ds: a dataset of (image, label) pairs.
        n_outputs: the model's outputs.

    Returns:
        ``ds`` itself for one output, else the mapped dataset.
    """
    if n_outputs == 1:
        return ds
    return ds.map(lambda image, label: (image, (label,) * n_outputs), num_parallel_calls=tf.data.AUTOTUNE)


def count_steps(ds, steps, purpose, verb="finetune"):
    """Batches per epoch.

    Args:
        ds: the batched dataset.
        steps: ``steps_per_epoch`` (training) or ``validation_steps`` (validation), or None.
        purpose: ``"train"`` or ``"validate"``.
        verb: the caller's name in messages.

    Returns:
        ``(steps, note)``: for training ``steps`` (a finite set then repeats); for validation the
        batches the data holds, capped by ``steps`` (with a note when capped); None when the data
        has an unknown size and no ``steps`` (Keras counts the first epoch). ``note`` is None or
        a sentence for the user.

    Raises:
        InvalidArgumentError: ``steps`` is not a positive integer, the data is an endless stream
            and ``steps`` is None, or the data holds no complete batch.
    """
    arg = "steps_per_epoch" if purpose == "train" else "validation_steps"
    if steps is not None:
        check_positive_int(arg, steps, verb)
    n = int(tf.data.experimental.cardinality(ds))
    if n == tf.data.experimental.INFINITE_CARDINALITY:
        if steps is None:
            raise InvalidArgumentError(
                f"{verb}: the {'training' if purpose == 'train' else 'validation'} data is an endless stream "
                f"(e.g. random patches); pass {arg}=N (--{arg.replace('_', '-')} N).")
        return steps, None
    if n == 0:
        raise InvalidArgumentError(f"{verb}: the {'training' if purpose == 'train' else 'validation'} data has "
                                   "no complete batch; use a smaller batch_size or more samples.")
    if purpose == "validate" and n > 0 and steps is not None and steps > n:
        return n, (f"validation: the data holds {n} batch(es), fewer than validation_steps={steps}; "
                   f"each epoch validates on all {n}")
    if steps is not None:
        return steps, None
    return (None if n < 0 else n), None  # unknown: Keras counts the first epoch


def check_classes(target, source, names, val_source=None, val_names=None):
    """Check that the head fits the training data's classes and validation has the same classes.

    Args:
        target: the model's :class:`Target`.
        source: the training data (for messages).
        names: the training data's class names, or None (nothing to check).
        val_source: the validation data (for messages).
        val_names: the validation data's class names, or None.

    Returns:
        ``list(names)``, or None when ``names`` is None.

    Raises:
        InvalidArgumentError: the head has another number of classes (one logit passes for two
            classes), or the validation classes differ from the training classes.
    """
    if names is None:
        return None
    n = len(names)
    if target.num_classes != n and not (n == 2 and target.num_classes == 1):  # one logit: binary
        raise InvalidArgumentError(
            f"the training data {source} has {n} classes ({_show(names)}) but model {target.name!r} "
            f"has a {target.num_classes}-class head; build it with num_classes={n} "
            f"(zoo.load({target.name!r}, num_classes={n}); on the command line --num-classes {n}, or name the "
            "model and let the zoo read the classes from the folders).")
    if val_names is not None and list(val_names) != list(names):
        missing = [c for c in names if c not in val_names]
        extra = [c for c in val_names if c not in names]
        diff = "; ".join(part for part in (
            f"missing in validation: {_show(missing)}" if missing else "",
            f"only in validation: {_show(extra)}" if extra else "") if part) or "same names, other order"
        raise InvalidArgumentError(
            f"the validation data {val_source} has the classes {_show(val_names)} but the training "
            f"data {source} has {_show(names)} ({diff}). A class's index is its rank among the sorted "
            "folder names, so both need the same class folders; add or rename folders to match.")
    return list(names)


def _show(names, k=6):
    names = list(names)
    return ", ".join(names[:k]) + (f" ... ({len(names)} in all)" if len(names) > k else "")


def _read(source, target, *, training, seed, augment, options, patch=None):
    """(unbatched or batched dataset, is_batched) from ``source``, checked and cut to the patch."""
    patch = target.patch if patch is None else patch
    ds = from_source(source, training=training, task=target.task, spatial_dims=target.spatial_dims,
                     num_classes=target.num_classes, in_channels=target.in_channels, patch_size=patch,
                     seed=seed, augment=augment, model_name=target.name, ignore_label=target.ignore_label,
                     **options)
    image, _ = element_spec(ds)
    is_batched = image.shape.rank == target.spatial_dims + 2
    shape = image.shape[:-1] if not is_batched else None
    if patch and target.task == "segmentation" and shape is not None and tuple(shape) != tuple(patch):
        names = getattr(ds, "class_names", None)
        ds = fit_patch(ds, patch, random=training, seed=seed)
        if names is not None:
            ds.class_names = names
    return ds, is_batched


def prepare(source, target, purpose, *, batch_size=2, steps=None, seed=0, augment=False, options=None,
            preprocessing=None, class_names=None, verb="finetune"):
    """``source`` ready for ``purpose`` (``"train"`` or ``"validate"``) of the model ``target``.

    Args:
        source: any data argument of the verbs (see :func:`zoo.datapath.sources.from_source`).
        target: the model's :class:`Target`.
        purpose: ``"train"`` (random patches, shuffled, repeating when ``steps`` is given) or
            ``"validate"`` (fixed patches, read whole each epoch).
        batch_size: the global batch size (per replica x replicas).
        steps: batches per epoch (training), or at most this many (validation).
        seed: shuffling and random patches; augment: training-time augmentation (True or a
            :class:`zoo.data.augment.Augment`).
        options: the data source's own keywords (``window``, ``n``, ``samples_per_volume`` ...);
        preprocessing: the model's recorded intensity preprocessing (files only).
        class_names: the training data's classes, to check validation folders against.
        verb: the caller's name in messages.

    Returns:
        A :class:`Prepared` (dataset, steps per epoch, the source's class names, notes).

    Raises:
        InvalidArgumentError: a bad ``purpose``, or data that does not fit the model (wrong
            classes, no complete batch, an endless stream without ``steps``); the message names
            the data, what the model needs and the fix.
        DataError: the source cannot be read or its elements do not fit the model.
    """
    if purpose not in PURPOSES:
        raise InvalidArgumentError(f"prepare: purpose={purpose!r} must be one of {', '.join(PURPOSES)}.")
    training = purpose == "train"
    ds, is_batched = _read(source, target, training=training, seed=seed, augment=augment and training,
                           options=source_options(source, options, preprocessing))
    names = getattr(ds, "class_names", None) if target.task == "classification" else None
    if training:
        names = check_classes(target, source, names)
    elif names is not None:
        check_classes(target, source, class_names or names, source, names)
    ds = with_aux_targets(batched(ds, global_batch=batch_size, training=training, is_batched=is_batched,
                                  seed=seed), target.n_outputs)
    n, note = count_steps(ds, steps, purpose, verb)
    if training and steps and int(tf.data.experimental.cardinality(ds)) >= 0:
        ds = ds.repeat()  # a fixed number of steps per epoch draws across the epoch boundary
    return Prepared(ds, n, names, [note] if note else [])


def samples(source, target, n, *, seed=0, options=None, preprocessing=None, shape=None, labels=True):
    """The first ``n`` (image, label) pairs of ``source`` as arrays (fewer if it holds fewer).

    For held-out scores and an export's calibration and verification: validation order and
    patches (fixed), unbatched.

    Args:
        source: any data argument of the verbs.
        target: the model's :class:`Target`.
        n: at most this many pairs.
        seed: the source's seed (validation phantoms are derived from it).
        options: the data source's keywords.
        preprocessing: the model's recorded intensity preprocessing (files only).
        shape: ``(spatial..., channels)`` to cut the images to instead of the target's patch (an
            export's input); generated phantoms start at 16 per axis, so smaller inputs are cut
            out of them.
        labels: False when only the inputs are needed.

    Returns:
        ``(images, labels)`` as stacked float32 images and label arrays; labels are None when
        ``labels=False`` or the source has none.

    Raises:
        DataError: the source gives no samples, or cannot be read.
        InvalidArgumentError: the source's elements do not fit the target.
    """
    spatial = tuple(shape[:-1]) if shape is not None else target.patch
    size = spatial
    opts = source_options(source, options, preprocessing)
    num_classes = target.num_classes
    if isinstance(source, str) and source in SYNTHETIC:
        opts.setdefault("n", n)
        if not labels:
            num_classes = min(num_classes or 2, 4)  # a 1000-class head would ask for 999 lesions
        size = tuple(max(s, 16) for s in spatial) if spatial else spatial
    read_target = dataclasses.replace(target, num_classes=num_classes)
    ds, is_batched = _read(source, read_target, training=False, seed=seed, augment=False, options=opts, patch=size)
    if is_batched:
        ds = ds.unbatch()
    image, label = element_spec(ds)
    if size and image.shape.rank == len(size) + 1 and tuple(image.shape[:-1]) != tuple(size) \
            and label is not None and label.shape.rank >= len(size):
        ds = fit_patch(ds, size, random=False)
    xs, ys = [], []
    for element in ds.take(n):
        x, y = (element[0], element[1]) if isinstance(element, tuple) else (element, None)
        x = np.asarray(x, np.float32)
        if size and spatial and tuple(size) != tuple(spatial):
            x = x[tuple(slice((a - b) // 2, (a - b) // 2 + b) for a, b in zip(size, spatial))]
            if y is not None and np.ndim(y) >= len(spatial):
                y = np.asarray(y)[tuple(slice((a - b) // 2, (a - b) // 2 + b) for a, b in zip(size, spatial))]
        xs.append(x)
        ys.append(None if y is None else np.asarray(y))
    if not xs:
        raise DataError(f"the data {source!r} gave no samples; pass data with at least one.")
    images = np.stack(xs)
    if not labels or any(y is None for y in ys):
        return images, None
    return images, np.stack(ys)


def say(notes, verbose=True):
    """Print prepared-data notes on stderr (what was chosen for the user).

    Args:
        notes: sentences (``Prepared.notes``).
        verbose: print them; False prints nothing.

    Returns:
        None.
    """
    for note in notes:
        if verbose:
            print(f"note: {note}", file=sys.stderr)


__all__ = ["Target", "Prepared", "prepare", "samples", "batched", "with_aux_targets", "count_steps",
           "check_classes", "element_spec", "source_options", "PURPOSES", "SYNTHETIC"]
