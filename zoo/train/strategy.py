"""tf.distribute strategies for training: one device, several GPUs, several machines, TPU.

``get_strategy("auto")`` trains on one device, uses ``MirroredStrategy`` over several GPUs, and
``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster. The helpers here answer
the questions a training loop asks of its strategy: is this process the chief, what is the
strategy called in the run's record, how to give every worker the same initial weights, and
what to tell the user when a peer process died.
"""
import json
import os

from zoo._keras import tf
from zoo.errors import InvalidArgumentError, ZooError, check_choice

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multiworker", "tpu")


def _tf_config_workers():
    try:
        cfg = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as e:
        raise InvalidArgumentError(f"TF_CONFIG is not valid JSON ({e}); fix or unset it.") from None
    cluster = cfg.get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("worker", "chief"))


_MIRRORED = {}


def get_strategy(strategy="auto", devices=None):
    """A ``tf.distribute.Strategy`` from a name or a strategy object.

    Args:
        strategy: a Strategy (returned as is) or one of :data:`STRATEGIES`: ``"auto"``
            (multiworker under a ``TF_CONFIG`` cluster, mirrored with several GPUs or ``devices``,
            else the default), ``"default"``, ``"one_device"``, ``"mirrored"``, ``"multiworker"``, ``"tpu"``.
        devices: the devices of a mirrored strategy (default: every GPU, else the CPU).

    Returns:
        The strategy (one mirrored strategy per device set and process).

    Raises:
        InvalidArgumentError: an unknown name.
        ZooError: ``"multiworker"`` after TensorFlow already ran, or ``"tpu"`` without a TPU.
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    check_choice("strategy", strategy, STRATEGIES, "finetune")
    if strategy == "auto":
        if _tf_config_workers() > 1:
            strategy = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1 or devices:
            strategy = "mirrored"
        else:
            strategy = "default"
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if strategy == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        key = tuple(devices)
        if key not in _MIRRORED:  # one per device set and process: a second MirroredStrategy object
            # would reuse the first one's collective instance keys, and its all-reduces then meet
            # the first one's tensors ("Shape mismatch in the collective instance")
            _MIRRORED[key] = tf.distribute.MirroredStrategy(devices=list(devices))
        return _MIRRORED[key]
    if strategy == "multiworker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            if "program startup" not in str(e):
                raise
            raise ZooError(
                "finetune: MultiWorkerMirroredStrategy must exist before TensorFlow runs its first op, "
                "and this program already built a model or ran TensorFlow. Create it first: "
                "strategy = zoo.train.get_strategy('multiworker') at the start of the program, then "
                "zoo.load(...), then zoo.finetune(..., strategy=strategy).") from None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ZooError(
            f"finetune: strategy='tpu' found no TPU ({type(e).__name__}: {' '.join(str(e).split())[:200]}). "
            "Run on a Cloud TPU VM (or set TPU_NAME to a TPU node), or use strategy='auto' for the "
            "CPUs/GPUs of this machine.") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """Whether this process writes the run's files.

    Args:
        strategy: a ``tf.distribute`` strategy.

    Returns:
        True for a single process, the chief, or worker 0 of a cluster without a chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                            and "chief" not in resolver.cluster_spec().as_dict())


def strategy_name(strategy):
    """The strategy's name as a run records it.

    Args:
        strategy: a ``tf.distribute`` strategy.

    Returns:
        ``"default"``, ``"MultiWorkerMirroredStrategy"`` or the strategy's class name.
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    return "default" if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy() \
        else type(strategy).__name__


def broadcast_weights(strategy, model):
    """Give every replica of every worker the weights of global replica 0 (exact: a sum
    all-reduce in which only replica 0 contributes). Each worker builds its own model, so
    without this, randomly initialised workers would train different copies.

    Args:
        strategy: the ``tf.distribute`` strategy.
        model: a model built in its scope.

    Returns:
        None; the model's variables are assigned.
    """
    weights = list(model.weights)

    @tf.function
    def run():
        def fn():
            ctx = tf.distribute.get_replica_context()
            first = tf.equal(ctx.replica_id_in_sync_group, 0)
            return [ctx.all_reduce("sum", tf.where(first, tf.identity(v), tf.zeros_like(v)))
                    for v in weights]
        return strategy.run(fn)

    for v, value in zip(weights, run()):
        v.assign(strategy.experimental_local_results(value)[0])


LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                     tf.errors.CancelledError)


def multi_process(strategy):
    """Whether ``strategy`` spans several processes (its collectives fail when a peer dies).

    Args:
        strategy: a ``tf.distribute`` strategy.

    Returns:
        True for a MultiWorkerMirroredStrategy or a ``TF_CONFIG`` cluster of several workers.
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or _tf_config_workers() > 1


def lost_worker(error, out_dir, run_state):
    """The error a surviving worker raises when another worker died (killed, preempted, OOM).

    Args:
        error: the collective's error.
        out_dir: the run folder.
        run_state: the run's :class:`zoo.train.runfolder.RunState` (its completed epochs).

    Returns:
        A ZooError saying what is saved and how to resume (the caller raises it).
    """
    first = " ".join(str(error).split())[:240]
    done = run_state.rows[-1]["epoch"] if run_state.rows else 0
    saved = f"Epochs 1-{done} are saved in {out_dir}" if done else "No epoch had completed yet"
    return ZooError(
        f"finetune: the multi-worker run lost a worker during epoch {done + 1} ({type(error).__name__}: "
        f"{first}). {saved}; start the same command on every worker again (same TF_CONFIG cluster, "
        "same out_dir) to resume from the last completed epoch.")
