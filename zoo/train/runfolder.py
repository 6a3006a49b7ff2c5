"""The run folder of a training run: atomic files, state.json, the checkpointing callback, resume.

``out_dir/`` holds ``best.h5``, ``last.h5`` (Keras 2 HDF5 weights, each written to a
temporary file and renamed, so a crash never leaves half a checkpoint), ``model.json`` (the architecture),
``state.json`` (epochs completed, best value and epoch, configuration, per-epoch history),
``history.csv`` (rewritten from it) and, while a run is unfinished, ``resume.npz`` (weights
and optimizer state after the last completed epoch). Only the chief writes; the other
workers take part in the collective reads.
"""
import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np

from zoo import _io
from zoo._h5 import weight_layout, write_weights
from zoo._keras import keras, tf
from zoo.errors import ZooError


def read_state(out_dir):
    """The run's ``state.json``.

    Args:
        out_dir: the run folder.

    Returns:
        Its content as a dict (``{}`` when there is none).

    Raises:
        ZooError: the file exists but cannot be read or parsed.
    """
    path = Path(out_dir) / "state.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{path} is unreadable ({e}); it records the run's progress. Restore it or "
                       "choose a new out_dir.") from None


# --------------------------------------------------------------------------- callbacks
class RunState(keras.callbacks.Callback):
    """The run folder's callback: atomic best/last checkpoints, state.json + history.csv, NaN
    guard, resumable early stop.

    Args:
        out_dir: the run folder.
        monitor: the logged value that picks ``best.h5``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy, Dice, AUC, IoU; else min).
        chief: this process writes the folder (the chief of a multi-worker run).
        verbose: print checkpoint notes.
        patience: early stopping after this many epochs without improvement (None: never).
        config: the run's record (``state.json``'s ``config``; default the one on disk).
        rename: ``{logged key: history key}`` for multi-output models.

    Raises:
        ZooError: the folder's ``state.json`` is unreadable.
    """

    def __init__(self, out_dir, monitor="val_loss", mode="auto", chief=True, verbose=True,
                 patience=None, config=None, rename=None):
        super().__init__()
        self.rename = dict(rename or {})  # logged key -> history key (multi-output models)
        self._supports_tf_logs = True  # batch logs stay tensors; only the loss is read
        self.out_dir = Path(out_dir)
        self.monitor = monitor
        self.mode = mode if mode != "auto" else ("max" if any(
            k in monitor for k in ("acc", "dice", "auc", "iou")) else "min")
        self.chief, self.verbose, self.patience = chief, verbose, patience
        state = read_state(out_dir)
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.rows = list(state.get("history", []))
        self.config = config or state.get("config", {})
        self.nan = None
        self.stopped_early = None
        self.phase = 0
        self._epoch = 0
        best, last = self.out_dir / "best.h5", self.out_dir / "last.h5"
        if chief and self.best_epoch and h5_epoch(best) != self.best_epoch == h5_epoch(last):
            _io.link_atomic(last, best)  # killed between recording a new best and linking it

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.nan is None:
            value = float(loss)
            if not math.isfinite(value):
                self.nan = (self._epoch, batch, value)
                self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = {self.rename.get(k, k): float(v) for k, v in (logs or {}).items() if tf.is_tensor(v)
                or isinstance(v, (int, float)) or hasattr(v, "dtype")}
        if self.nan is not None or not all(math.isfinite(v) for v in logs.values()):
            bad = next((k for k, v in logs.items() if not math.isfinite(v)), "loss")
            self.nan = self.nan or (epoch, None, logs.get(bad, float("nan")))
            self.model.stop_training = True
            return
        value = logs.get(self.monitor)
        if value is None:
            raise ZooError(f"finetune: monitor={self.monitor!r} is not among the logged values "
                           f"{sorted(logs)}; pass one of them as monitor.")
        improved = self._better(value)
        if improved:
            self.best, self.best_epoch = value, epoch + 1
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [{"epoch": epoch + 1, **logs}]
        if self.patience and epoch + 1 - self.best_epoch >= self.patience:
            self.stopped_early = epoch + 1
            self.model.stop_training = True
        # one read of every variable (collective for sync-on-read ones: all workers do it)
        layout, values, opt_values = self._read()
        if not self.chief:
            return
        # order: last -> history -> state -> best -> resume point. A kill between two steps
        # leaves a state that the next run repairs (best) or redoes (the epoch). Each file is
        # fsynced before its rename; the folder once at the end (the renames' durability).
        _io.atomic_write_bytes(self.out_dir / "last.h5",
                               lambda tmp: write_weights(tmp, layout, values, {"zoo_epoch": epoch + 1}),
                               False)
        _io.write_csv(self.out_dir / "history.csv", self.rows, False)
        self.write_state(sync_dir=False)
        if improved:  # the same bytes as last.h5: a hard link (a copy where links fail)
            _io.link_atomic(self.out_dir / "last.h5", self.out_dir / "best.h5", False)
            if self.verbose:
                print(f"\nepoch {epoch + 1}: {self.monitor} improved to {value:.5g}; saved "
                      f"{self.out_dir / 'best.h5'}", file=sys.stderr)
        _io.atomic_write_bytes(self.out_dir / SNAPSHOT, lambda tmp: write_snapshot(
            tmp, values, opt_values, epoch + 1, self.phase), False)
        _io.fsync_dir(self.out_dir)

    def _read(self):
        """(layout, weight values, optimizer values) in one compiled call (a variable read per
        op dispatch costs ~0.2 ms each; a U-Net has hundreds). Rebuilt when the optimizer changes."""
        opt = getattr(self.model, "optimizer", None)
        owner = getattr(self, "_reader_owner", (None, None))  # the objects, not ids (ids get reused)
        if owner[0] is not self.model or owner[1] is not opt:
            layout, variables = weight_layout(self.model)
            opt_vars = list(opt.variables) if opt is not None else []
            fn = tf.function(lambda: [tf.identity(v) for v in variables + opt_vars], autograph=False)
            # one trace per run is the design; TensorFlow counts traces per code object across
            # instances, so a notebook or sweep calling finetune/compress 5+ times would be told
            # "triggered tf.function retracing" about this one (there is no public switch for it)
            fn._omit_frequent_tracing_warning = True
            self._reader, self._reader_owner, self._layout, self._n = fn, (self.model, opt), layout, \
                len(variables)
        values = [t.numpy() for t in self._reader()]
        return self._layout, values[:self._n], values[self._n:]

    def write_state(self, finished=False, sync_dir=True):
        _io.write_json(self.out_dir / "state.json", sync_dir=sync_dir, data={
            "epochs_completed": self.rows[-1]["epoch"] if self.rows else 0, "best": self.best,
            "best_epoch": self.best_epoch, "monitor": self.monitor, "mode": self.mode,
            "finished": finished, "stopped_early": self.stopped_early, "config": self.config,
            "history": self.rows})


SNAPSHOT = "resume.npz"


def h5_epoch(path):
    """The epoch a checkpoint was written at.

    Args:
        path: a checkpoint (``best.h5``, ``last.h5``).

    Returns:
        Its ``zoo_epoch`` attribute (an int), or None if absent or unreadable.
    """
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs["zoo_epoch"])
    except Exception:  # noqa: BLE001 - missing file, foreign file
        return None


def write_snapshot(path, weights, optimizer, epochs_done, phase):
    """Write the resume point as an .npz of two members (one per array would cost ~0.2 ms each):
    every array's bytes in one buffer, and an index of (dtype, shape) per array.

    Args:
        path: the file (or a binary file object) to write.
        weights: the model's weight values, in :func:`zoo._h5.weight_layout` order.
        optimizer: the optimizer's variable values.
        epochs_done: epochs completed.
        phase: the training phase the optimizer state belongs to.

    Returns:
        None.
    """
    arrays = [np.asarray(a) for a in list(weights) + list(optimizer)]  # tobytes() is C order
    index = {"epochs_done": int(epochs_done), "phase": int(phase), "weights": len(weights),
             "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
    data = np.frombuffer(b"".join(a.tobytes() for a in arrays), np.uint8)
    np.savez(path, data=data, index=np.array(json.dumps(index)))


def read_snapshot(path):
    """Read a resume point written by :func:`write_snapshot`.

    Args:
        path: the snapshot file.

    Returns:
        ``{"epochs_done", "phase", "weights", "optimizer"}`` (lists of arrays), or None when
        there is no file.

    Raises:
        ZooError: the file is truncated or not a snapshot.
    """
    if not Path(path).exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            index, data = json.loads(str(f["index"])), f["data"]
        arrays, offset = [], 0
        for dtype, shape in index["arrays"]:
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            arrays.append(np.frombuffer(data[offset:offset + n].tobytes(), dtype).reshape(shape))
            offset += n
        nw = index["weights"]
        return {"epochs_done": index["epochs_done"], "phase": index["phase"], "weights": arrays[:nw],
                "optimizer": arrays[nw:]}
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise ZooError(f"{path} (the run's resume point) is unreadable ({type(e).__name__}: {e}); "
                       "delete it to restart the run from its last completed state, or choose a new "
                       "out_dir.") from None


def restore_snapshot(model, snapshot, phase=None):
    """Load a snapshot's weights; its optimizer state too when it belongs to ``phase`` (a new
    phase starts with a fresh optimizer; the model must then be compiled).

    Args:
        model: the model to restore.
        snapshot: what :func:`read_snapshot` returned.
        phase: the phase being entered (None: weights only).

    Returns:
        None.

    Raises:
        ZooError: the snapshot holds another number of weights or optimizer variables.
    """
    variables = weight_layout(model)[1]
    if len(variables) != len(snapshot["weights"]):
        raise ZooError(f"finetune: the resume point holds {len(snapshot['weights'])} weights but the "
                       f"model has {len(variables)}; resume with the same model or choose a new out_dir.")
    keras.backend.batch_set_value(list(zip(variables, snapshot["weights"])))
    opt = getattr(model, "optimizer", None)
    if snapshot["phase"] != phase or opt is None:
        return
    opt.build(model.trainable_variables)
    if len(opt.variables) != len(snapshot["optimizer"]):
        raise ZooError(f"finetune: the resume point holds {len(snapshot['optimizer'])} optimizer "
                       f"variables but this optimizer has {len(opt.variables)}; resume with the same "
                       "optimizer settings or choose a new out_dir.")
    keras.backend.batch_set_value(list(zip(opt.variables, snapshot["optimizer"])))


def options_record(data_options, **options):
    """The run's options as state.json records them (what a resume must match).

    Args:
        data_options: the data source's keywords (recorded as ``data_options``).
        **options: the other options.

    Returns:
        A dict of plain values (an object by its class name).
    """
    def plain(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return type(v).__name__
    return {**{k: plain(v) for k, v in options.items()}, "data_options": plain(dict(data_options or {}))}


# option -> its command-line spelling, for the message of a resume with other options
_FLAGS = {"patch_size": "--patch-size", "batch_size": "--batch-size", "train": "--train", "val": "--val",
          "learning_rate": "--lr", "optimizer": "--optimizer", "loss": "--loss", "lr_schedule": "lr_schedule",
          "deterministic": "--deterministic",
          "weight_decay": "weight_decay", "augment": "--augment", "seed": "--seed",
          "data_options": "--data-option", "freeze_encoder_epochs": "--freeze-encoder-epochs",
          "mixed_precision": "--mixed-precision", "steps_per_epoch": "--steps-per-epoch",
          "class_names": "class folders", "semi": "--semi", "unlabeled": "--unlabeled",
          "adapt": "--adapt"}


def _spell(key, value):
    if key == "patch_size" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    if key == "data_options" and isinstance(value, dict):
        return " ".join(f"{k}={json.dumps(v)}" for k, v in value.items()) or "(none)"
    return "(default)" if value is None else str(value)


def resume_changes(old, new):
    """The recorded options that differ between two run records (epochs may grow).

    Args:
        old: the run's recorded config.
        new: the config of the call that resumes it.

    Returns:
        ``[(flag, before, now)]``, flags in their command-line spelling.
    """
    changes = []
    for key in _FLAGS:
        o, n = (old.get("options", {}).get(key, old.get(key)), new.get("options", {}).get(key, new.get(key)))
        in_old = key in old or key in old.get("options", {})
        if in_old and o != n:
            changes.append((_FLAGS[key], _spell(key, o), _spell(key, n)))
    return changes


def check_resume(out_dir, state, resume, config=None, force=False):
    """Refuse to resume a run folder that holds a finished run, another model or other options.

    Args:
        out_dir: the run folder (for messages).
        state: its ``state.json`` (:func:`read_state`).
        resume: the caller allows continuing an unfinished run.
        config: the new call's record, compared with the folder's.
        force: continue even though options changed.

    Returns:
        None.

    Raises:
        ZooError: the folder holds a finished run, an unfinished one without ``resume``, a run of
            another model, or (without ``force``) a run with other options.
    """
    if state.get("finished"):
        raise ZooError(f"finetune: {out_dir} already holds a finished run ({state.get('epochs_completed')} "
                       "epochs; its checkpoints are kept). Choose a new out_dir to train again.")
    if state and not resume:
        raise ZooError(f"finetune: {out_dir} holds an unfinished run ({state.get('epochs_completed')} "
                       "epochs done); pass resume=True to continue it or choose a new out_dir (nothing "
                       "was overwritten).")
    old = state.get("config", {}) if config else {}
    for key in ("params", "input_shape", "output_shape"):
        if key in old and old[key] != config[key]:
            raise ZooError(f"finetune: {out_dir} holds a run of another model ({key} {old[key]} there, "
                           f"{config[key]} now); resume it with the same model or choose a new out_dir.")
    changes = resume_changes(old, config) if old else []
    if changes and not force:
        listed = "; ".join(f"{flag} {a} there, {b} now" for flag, a, b in changes)
        raise ZooError(f"finetune: {out_dir} holds an unfinished run with other options ({listed}). Rerun with "
                       "the same options to resume it, choose a new --out (out_dir), or pass --force-resume "
                       "(force_resume=True) to continue it with the new ones.")
