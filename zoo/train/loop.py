"""The run loop: every training run of the zoo goes through :func:`fit`.

A run is a sequence of phases (a frozen-encoder phase, then all layers; a GAN has one), each
fitted with Keras' ``fit`` and checkpointed every epoch into the run folder
(:mod:`zoo.train.runfolder`: ``best.h5``, ``last.h5``, ``state.json``, ``history.csv``, the resume
point). The loop owns what every run shares:

1. the run folder's checks before any work (a file in the way, a finished run, resume);
2. the adapter's data and run record, checked against an unfinished run in the folder;
3. the network in the strategy's scope, the folder opened (by the chief only);
4. the phases: each one compiled by the adapter, a phase finished before a restart skipped, the
   one it stopped in restored from the resume point; a NaN/Inf loss or a lost worker stops the
   run with a ZooError naming the way on;
5. the end: the best (or last) weights into the caller's model, the run marked finished, the
   model's record updated (:class:`zoo.record.ModelInfo`: run folder, patch, preprocessing,
   classes, data), and a Keras History of every epoch, including those before a resume.

An *adapter* says what differs: supervised training (:mod:`zoo.train.supervised`), GAN
training (:mod:`zoo.train.gan`), and through them the steps of ``zoo.compress`` (a supervised
adapter on a tfmot-wrapped model).
"""
import sys
from pathlib import Path

from zoo import _io
from zoo._keras import keras, tf
from zoo.errors import InvalidArgumentError, ZooError
from zoo.record import attach
from zoo.train.runfolder import SNAPSHOT, check_resume, read_snapshot, read_state, restore_snapshot
from zoo.train.strategy import LOST_PEER_ERRORS, is_chief, lost_worker, multi_process


class Adapter:
    """What a kind of training adds to the loop. Subclasses set ``model`` and ``info`` (the
    caller's model and its record) and implement the methods below."""

    model = None
    info = None
    run_state_class = None

    def prepare(self, strategy):
        """Read and check the data; return the run's record (``state.json``'s ``config``)."""
        raise NotImplementedError

    def build(self, strategy):
        """The network to train, made in ``strategy``'s scope (the model itself, or a copy)."""
        raise NotImplementedError

    def phases(self):
        """``[(last epoch of the phase, setting)]``: one entry per phase, in order."""
        return [(self.options.epochs, None)]

    def enter_phase(self, strategy, net, phase, setting, steps, snapshot):
        """Compile ``net`` for ``phase`` (``steps`` optimizer steps, None if unknown) and, when
        ``snapshot`` is given, restore the resume point into it."""
        raise NotImplementedError

    def run_state(self, out_dir, chief, verbose, config):
        """The checkpointing callback (a :class:`zoo.train.runfolder.RunState`)."""
        raise NotImplementedError

    def fit_arguments(self):
        """Keyword arguments of ``net.fit`` besides epochs and callbacks (x, validation data ...)."""
        raise NotImplementedError

    def callbacks(self, run_state):
        """The callbacks of every ``fit`` call, in order (the run state's own included)."""
        return [run_state]

    def trained(self, net):
        """The network in ``net`` whose weights are the run's result (``net`` itself, unless the
        adapter trains a wrapper around it)."""
        return net

    def restore(self, net, snapshot, phase=None):
        """Load the resume point ``snapshot`` into ``net`` (its optimizer state too in ``phase``)."""
        restore_snapshot(net, snapshot, phase)

    def record(self, config):
        """The caller's model's record after the run."""
        return self.info.replace(source=self.info.source, run=dict(config))


def data_record(source):
    """How a run records its data.

    Args:
        source: the data argument.

    Returns:
        A string: an absolute path for a path (a later ``zoo export`` from another folder must
        find it), the name for ``phantoms``/``tfds:``, else the object's type name.
    """
    if isinstance(source, (str, Path)):
        text = str(source)
        if text in ("phantoms", "hard_phantoms") or text.startswith("tfds:"):
            return text
        return str(Path(text).expanduser().resolve())
    return type(source).__name__


def seed_everything(seed, deterministic=False):
    """Seed Python, NumPy and TensorFlow (``keras.utils.set_random_seed``); with ``deterministic``
    also make TensorFlow's ops deterministic (``enable_op_determinism``)."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def check_out_dir(out_dir, verb="finetune"):
    """``out_dir`` as a Path; a file in its place is refused before any work.

    Args:
        out_dir: the run folder.
        verb: the caller's name in messages.

    Returns:
        The ``Path``.

    Raises:
        InvalidArgumentError: ``out_dir`` is an existing file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgumentError(f"{verb}: out_dir {out_dir} is an existing file, not a run folder; name a "
                                   f"new or existing run folder (zoo {verb} --out runs/NAME). Nothing was written.")
    return out_dir


def _fit_once(net, strategy, run_state, out_dir, **fit_kwargs):
    """One ``net.fit`` call; a lost peer or a NaN/Inf loss becomes a ZooError naming the way on."""
    try:
        net.fit(**fit_kwargs)
    except LOST_PEER_ERRORS as e:
        if multi_process(strategy):
            raise lost_worker(e, out_dir, run_state) from e
        raise
    if run_state.nan is not None:
        epoch, batch, value = run_state.nan
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        raise ZooError(
            f"finetune: the loss became {value} at {where}; training stopped. The last good "
            f"checkpoints in {out_dir} were kept (best.h5, last.h5). Lower the "
            "learning rate, check the data for NaN/Inf, or disable mixed precision.")


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


def fit(adapter, strategy):
    """Train ``adapter.model`` with ``adapter.options`` on ``strategy``; see the module doc.

    Args:
        adapter: an :class:`Adapter` (supervised or GAN training).
        strategy: the ``tf.distribute`` strategy.

    Returns:
        A Keras ``History`` of every epoch of the run (``history.zoo_state``: the run's
        ``state.json`` as written at the end, on the chief).

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    options = adapter.options
    out_dir = check_out_dir(options.out_dir)
    state = read_state(out_dir)
    check_resume(out_dir, state, options.resume)
    seed_everything(options.seed, options.deterministic)
    config = adapter.prepare(strategy)
    check_resume(out_dir, state, options.resume, config, force=options.force_resume)
    chief = is_chief(strategy)
    verbose = options.verbosity
    net = adapter.build(strategy)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        _io.atomic_write_bytes(out_dir / "model.json", lambda t: Path(t).write_text(adapter.trained(net).to_json()))
        if state and verbose:
            print(f"finetune: resuming {out_dir} after epoch {state.get('epochs_completed')} (best "
                  f"{state.get('monitor')} {state.get('best')} at epoch {state.get('best_epoch')})",
                  file=sys.stderr)
    run_state = adapter.run_state(out_dir, chief, bool(verbose), config)
    extra = [keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False)] \
        if chief and options.tensorboard else []
    snapshot = read_snapshot(out_dir / SNAPSHOT) if state else None
    done = snapshot["epochs_done"] if snapshot else 0
    fit_args = adapter.fit_arguments()
    steps = fit_args.get("steps_per_epoch")
    start = 0
    for phase, (end, setting) in enumerate(adapter.phases()):
        if snapshot is not None and done >= end:  # this phase was completed before the restart
            start = end
            continue
        adapter.enter_phase(strategy, net, phase, setting, steps and steps * (end - start), snapshot)
        if snapshot is not None:
            start, snapshot = max(start, done), None
        run_state.phase = phase
        _fit_once(net, strategy, run_state, out_dir, epochs=end, initial_epoch=start,
                  callbacks=[*adapter.callbacks(run_state), *extra, *(options.callbacks or [])],
                  verbose=verbose, **fit_args)
        if run_state.stopped_early:
            break
        start = end
    model = adapter.model
    if snapshot is not None:  # every epoch was done before the restart
        adapter.restore(net, snapshot)
    trained = adapter.trained(net)
    if trained is not model:
        model.set_weights(trained.get_weights())
    best = out_dir / "best.h5"
    if options.restore_best and best.exists():
        model.load_weights(str(best))
    if chief:
        run_state.write_state(finished=True)
        (out_dir / SNAPSHOT).unlink(missing_ok=True)
    attach(model, adapter.record({"dir": str(out_dir), **config}))
    return _history(model, run_state, out_dir=out_dir, chief=chief, epochs=options.epochs, steps=steps,
                    verbose=verbose)


__all__ = ["Adapter", "fit", "check_out_dir", "data_record", "seed_everything"]
