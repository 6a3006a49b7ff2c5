"""zoo.finetune under tf.distribute, each in fresh interpreters: MirroredStrategy over two
logical CPU devices (they must be configured before TensorFlow initialises its devices) and
MultiWorkerMirroredStrategy with two local worker processes talking over loopback ports."""
import json
import socket
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT, run_python, start_python

MIRRORED = """
import json, sys
from zoo._keras import keras, tf
import numpy as np
import zoo
from zoo.data import phantom_arrays
from zoo import finetune
from zoo.train import read_state

out = sys.argv[1]

class Count(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []
    def on_epoch_begin(self, epoch, logs=None):
        self.batches.append(0)
    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1

# no BatchNorm (per-replica batch statistics would differ from whole-batch ones) and no dropout
# (random masks): then one replica with the global batch and two with half of it each compute
# the same mean loss and gradients, up to float32 summation order. Deterministic kernels: the
# multi-threaded ones add run-to-run noise of their own on a loaded machine (a CI run saw 2.4e-4
# on val_loss, beyond the 2e-4 this compares at), which says nothing about the strategies
x, y = phantom_arrays(16, size=32)
init = zoo.load("unet", filters=4, depth=2, dropout=0.0).get_weights()
report = {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
for name, strategy, batch in (("one", "default", 4), ("mirrored", "mirrored", 2)):
    model = zoo.load("unet", filters=4, depth=2, dropout=0.0)
    model.set_weights(init)
    count = Count()
    h = finetune(model, (x, y), (x[:4], y[:4]), epochs=2, batch_size=batch, strategy=strategy,
                 optimizer="sgd", learning_rate=0.05, lr_schedule="constant", restore_best=False,
                 out_dir=f"{out}/{name}", verbose=0, tensorboard=False, callbacks=[count], deterministic=True)
    np.savez(f"{out}/{name}.npz", *model.get_weights())
    report[name] = {"history": h.history, "batches": count.batches,
                    "config": read_state(f"{out}/{name}")["config"]}
json.dump(report, open(f"{out}/report.json", "w"))
"""


@pytest.mark.slow
def test_mirrored_two_replicas_match_one_device(tmp_path):
    res = run_python(MIRRORED, tmp_path, cwd=ROOT, timeout=400, cpus=2)
    assert res.returncode == 0, res.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["devices"]) == 2
    one, mirrored = report["one"], report["mirrored"]
    assert mirrored["config"]["replicas"] == 2 and mirrored["config"]["strategy"] == "MirroredStrategy"
    # global batch = batch_size (2) * replicas (2): 16 samples -> 4 steps per epoch, as on one device
    assert mirrored["config"]["global_batch_size"] == 4 == one["config"]["global_batch_size"]
    assert mirrored["batches"] == one["batches"] == [4, 4]
    for key in ("loss", "val_loss", "dice", "val_dice"):
        np.testing.assert_allclose(mirrored["history"][key], one["history"][key], rtol=2e-4, err_msg=key)
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "mirrored.npz")
    assert len(a.files) == len(b.files) > 0
    moved = 0.0
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=2e-6, err_msg=k)
        moved = max(moved, float(np.abs(a[k]).max()))
    assert moved > 0
    for name in ("one", "mirrored"):
        assert {p.name for p in (tmp_path / name).iterdir()} == {
            "best.h5", "last.h5", "history.csv", "state.json", "model.json"}


WORKER = """
import json, sys
import numpy as np
from zoo._keras import tf
import zoo
import zoo._io as R
import zoo.train as T
from zoo.data import phantom_arrays

index, out, record = int(sys.argv[1]), sys.argv[2], sys.argv[3]
written = []  # every file the zoo writes goes through one of these two


def spy(module, name, path_arg):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        written.append(str(args[path_arg]))
        return real(*args, **kwargs)
    setattr(module, name, wrapper)


spy(R, "atomic_write_bytes", 0)
spy(R, "link_atomic", 1)
strategy = T.get_strategy("auto")  # TF_CONFIG names 2 workers -> multi-worker, before any op
tf.random.set_seed(100 + index)  # each worker starts from its own random weights
model = zoo.load("unet", filters=4, depth=2, dropout=0.0)
x, y = phantom_arrays(16, size=32)
h = zoo.finetune(model, (x, y), (x[:4], y[:4]), epochs=2, batch_size=2, strategy=strategy,
               optimizer="sgd", learning_rate=0.05, restore_best=False, out_dir=out, verbose=0)
np.savez(record + ".npz", *model.get_weights())
json.dump({"written": written, "history": h.history, "state": T.read_state(out)},
          open(record + ".json", "w"))
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _finish(procs, timeout):
    """Each worker's (stdout, stderr) once all exited 0; a worker still running is killed."""
    results = []
    try:
        for p in procs:
            results.append(p.communicate(timeout=timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-4000:]
    return results


@pytest.mark.slow
def test_multiworker_two_processes_chief_writes_checkpoints(tmp_path):
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for i in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(start_python(WORKER, i, out, tmp_path / f"w{i}", cwd=ROOT, env=env))
    _finish(procs, timeout=400)
    chief, worker = (json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2))
    # only the chief (worker 0) wrote files into the run folder; the other worker wrote none there
    assert not [w for w in worker["written"] if Path(w).is_relative_to(out)], worker["written"]
    names = {Path(w).name for w in chief["written"]}
    assert {"model.json", "best.h5", "last.h5", "state.json", "history.csv"} <= names
    state = chief["state"]
    assert state["finished"] and state["epochs_completed"] == 2
    cfg = state["config"]
    assert cfg["strategy"] == "MultiWorkerMirroredStrategy" and cfg["replicas"] == 2
    assert cfg["global_batch_size"] == 4 and cfg["steps_per_epoch"] == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "best.h5", "history.csv", "last.h5", "logs", "model.json", "state.json"]
    # the workers trained one model: same logged values and, despite different random
    # initialisations, the same final weights (the chief's weights were broadcast first)
    assert chief["history"] == worker["history"]
    a, b = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    for k in a.files:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)
    from zoo import load_run
    last = load_run(out, which="last")
    for k, w in zip(a.files, last.get_weights()):
        np.testing.assert_array_equal(a[k], w)


RESTARTABLE_WORKER = """
import sys
import zoo
import zoo.train as T
from zoo.data import phantom_arrays

out = sys.argv[1]
strategy = T.get_strategy("auto")
model = zoo.load("unet", filters=4, depth=2, dropout=0.0)
x, y = phantom_arrays(48, size=32)
zoo.finetune(model, (x, y), (x[:4], y[:4]), epochs=5, batch_size=2, strategy=strategy, out_dir=out,
           verbose=0)
"""


def _start_workers(script, out, cluster, log):
    procs = []
    for i in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(start_python(script, out, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(f"{log}{i}.err", "w")))
    return procs


@pytest.mark.slow
def test_multiworker_run_with_a_killed_worker_fails_clearly_then_resumes(tmp_path):
    """SIGKILL one of two workers mid-run: the survivor stops with an error saying how to resume
    (no hang); the same command on both workers then finishes the run from the last epoch."""
    import time
    script, out = tmp_path / "worker.py", tmp_path / "run"
    script.write_text(textwrap.dedent(RESTARTABLE_WORKER))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = _start_workers(script, out, cluster, tmp_path / "a")
    try:
        deadline = time.time() + 400
        while not (out / "last.h5").exists():  # the chief finished epoch 1
            assert time.time() < deadline and all(p.poll() is None for p in procs), \
                (tmp_path / "a0.err").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.0)  # into epoch 2
        procs[1].kill()
        assert procs[0].wait(timeout=180) != 0  # the survivor fails instead of hanging
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    err = (tmp_path / "a0.err").read_text()
    assert "finetune: the multi-worker run lost a worker during epoch" in err, err[-3000:]
    assert "start the same command on every worker again" in err
    crashed = json.loads((out / "state.json").read_text())
    done = crashed["epochs_completed"]
    assert 1 <= done < 5 and not crashed["finished"] and (out / "resume.npz").exists()

    procs = _start_workers(script, out, {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}, tmp_path / "b")
    try:
        for p in procs:
            assert p.wait(timeout=400) == 0, (tmp_path / "b0.err").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["epochs_completed"] == 5
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3, 4, 5]
    assert state["history"][:done] == crashed["history"]  # the epochs before the kill are kept
    assert state["best"] == min(r["val_loss"] for r in state["history"])
    assert not (out / "resume.npz").exists()


@pytest.mark.slow  # ~2 min: two workers through every stage of zoo run
def test_zoo_run_on_two_loopback_workers_the_chief_writes_every_artefact(tmp_path):
    """`zoo run --strategy multiworker` under TF_CONFIG: the strategy exists before any model is
    built (it must, or TensorFlow refuses), every stage trains on both workers, and only the chief
    writes the run folder, the export and the report (each worker is given its own --out)."""
    from _proc import start_zoo
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for i in range(2):
        (tmp_path / f"w{i}").mkdir()
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(start_zoo("run", "unet", "--set", "filters=4", "--set", "depth=2", "--epochs", "1",
                               "--compress-epochs", "1", "--steps-per-epoch", "2", "--validation-steps", "1",
                               "--patch-size", "32", "--recipe", "prune_50", "--quantization", "float32",
                               "--strategy", "multiworker", "--out", "run", "--quiet", "--json",
                               cwd=tmp_path / f"w{i}", env=env))
    results = _finish(procs, timeout=900)
    chief = tmp_path / "w0" / "run"
    report = json.loads(results[0][0])
    assert report["recipe"] == "prune_50" and report["scores"]["exported"] is not None
    assert (chief / "3_export" / "unet_float32.tflite").is_file() and (chief / "report.json").is_file()
    assert json.loads((chief / "2_prune_50" / "compress.json").read_text())["finished"]
    config = json.loads((chief / "1_finetune" / "state.json").read_text())["config"]
    assert config["strategy"] == "MultiWorkerMirroredStrategy" and config["replicas"] == 2
    worker = tmp_path / "w1" / "run"
    assert not worker.exists() or not [p for p in worker.rglob("*") if p.is_file()], list(worker.rglob("*"))
    assert results[1][0].strip() == ""  # the other worker reports nothing; the chief does
