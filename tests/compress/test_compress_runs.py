"""zoo.compress as a run: a SIGKILLed compression resumes with the pruning step and masks intact,
MirroredStrategy on two logical CPU devices, a learnable task stays well above chance and close
to the float model, and the `zoo compress` / `zoo recipes` commands."""
import json
import os
import signal
import time

import numpy as np
import pytest
from _proc import ROOT, run_python, run_zoo, start_python

import zoo
from zoo._h5 import weight_layout
from zoo._keras import keras
from zoo.compress import _prune
from zoo.data import phantom_arrays
from zoo.train import read_state
from zoo.train.runfolder import read_snapshot

KILL = """
import sys, time
import zoo
from zoo._keras import keras
out, marker = sys.argv[1], sys.argv[2]

class Slow(keras.callbacks.Callback):  # slow batches, so the kill lands inside epoch 3
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            open(marker, "w").close()
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.15)

model = zoo.load("unet", filters=4, depth=2, dropout=0.0, input_shape=(32, 32, 1))
zoo.compress(model, "prune_80", "phantoms", "phantoms", epochs=6, batch_size=2, out_dir=out,
             data_options={"n": 16}, learning_rate=1e-3, tensorboard=False, verbose=0, callbacks=[Slow()])
print("finished")
"""


def tiny(**kw):
    return zoo.load("unet", **{"filters": 4, "depth": 2, "dropout": 0.0, "input_shape": (32, 32, 1), **kw})


class Record(keras.callbacks.Callback):
    """The pruning step and masks when training (re)starts; the epochs run."""

    def __init__(self):
        super().__init__()
        self.start, self.epochs = None, []

    def on_train_begin(self, logs=None):
        self.start = _prune.pruning_state(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_call_resumes_with_pruning_step_and_masks(tmp_path):
    out, marker = tmp_path / "c", tmp_path / "epoch3"
    (tmp_path / "kill.py").write_text(KILL)
    proc = start_python(tmp_path / "kill.py", out, marker, cwd=ROOT)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-3000:] if proc.poll() is not None else "timeout"
    time.sleep(0.5)  # inside epoch 3 (8 steps of >= 0.15 s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stage = out / "1_prune_80"
    assert read_state(stage)["epochs_completed"] == 2 and not (out / "report.json").exists()
    # the resume point holds the pruning step (16 of 48 steps done; the target is reached at step 24,
    # half of the training) and the masks of epoch 2
    wrapped = _prune.wrap(tiny(), final_sparsity=0.8, exclude={"stem_conv", "classifier"})
    layout, _ = weight_layout(wrapped)
    names = [f"{layer}/{w}" for layer, ws in layout for w in ws]
    snap = read_snapshot(stage / "resume.npz")
    saved = dict(zip(names, snap["weights"]))
    steps = {n: int(v) for n, v in saved.items() if n.endswith("pruning_step:0")}
    assert steps and set(steps.values()) == {16}
    masks = {n: v for n, v in saved.items() if n.endswith("mask:0")}
    assert masks and all(0.0 < np.mean(m == 0) < 0.8 for m in masks.values())  # part-way to the target

    rec = Record()
    small, report = zoo.compress(tiny(), "prune_80", "phantoms", "phantoms", epochs=6, batch_size=2, out_dir=out,
                                 data_options={"n": 16}, learning_rate=1e-3, tensorboard=False, verbose=0,
                                 callbacks=[rec])
    assert rec.epochs == [2, 3, 4, 5]  # epochs 1-2 are not redone
    assert {s for s, _ in rec.start.values()} == {16}  # the pruning step carried over
    restored = [m for _, ms in rec.start.values() for m in ms]
    assert len(restored) == len(masks)
    for a, b in zip(restored, [masks[n] for n in names if n in masks]):
        np.testing.assert_array_equal(a, b)
    for name in report["layers"]:
        if name not in ("stem_conv", "classifier"):
            assert abs(report["layers"][name]["sparsity"] - 0.8) <= 0.01, name
    assert [r["epoch"] for r in read_state(stage)["history"]] == [1, 2, 3, 4, 5, 6]


MIRRORED = """
import json, sys
from zoo._keras import keras, tf
import numpy as np
import zoo
from zoo.data import phantom_arrays
from zoo.train import read_state
out = sys.argv[1]
x, y = phantom_arrays(16, size=32)
result = {"devices": len(tf.config.list_logical_devices("CPU"))}
for recipe in ("prune_80", "prune_80+qat_int8", "cluster_16"):
    model = zoo.load("unet", filters=4, depth=2, dropout=0.0, input_shape=(32, 32, 1))
    small, report = zoo.compress(model, recipe, (x, y), (x[:4], y[:4]), epochs=2, batch_size=2,
                                 strategy="mirrored", out_dir=f"{out}/{recipe}", tensorboard=False, verbose=0,
                                 learning_rate=1e-3)
    last = report["steps"][-1]["dir"]
    result[recipe] = {"layers": report["layers"], "replicas": read_state(last)["config"]["replicas"],
                      "loss": report["metrics_after"]["loss"]}
json.dump(result, open(f"{out}/result.json", "w"))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    res = run_python(MIRRORED, tmp_path, cwd=ROOT, timeout=900, cpus=2)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["devices"] == 2
    for recipe in ("prune_80", "prune_80+qat_int8"):
        assert result[recipe]["replicas"] == 2 and np.isfinite(result[recipe]["loss"])
        for name, row in result[recipe]["layers"].items():
            if name not in ("stem_conv", "classifier"):
                assert abs(row["sparsity"] - 0.8) <= 0.01, (recipe, name)
    assert all(row["int8"] == "yes" for row in result["prune_80+qat_int8"]["layers"].values())
    for name, row in result["cluster_16"]["layers"].items():
        if name not in ("stem_conv", "classifier"):
            assert row["unique"] <= 16, name


@pytest.mark.slow
def test_a_learnable_task_stays_well_above_chance_and_close_to_the_float_model(tmp_path):
    x, y = phantom_arrays(96, size=32, seed=0)
    xv, yv = phantom_arrays(32, size=32, seed=1)
    # 16 filters, not 8: pruned to 80%, an 8-filter U-Net keeps ~2 filters per layer, and over 5
    # initialisations its Dice after 3 epochs ranged 0.01-0.95 (CI once failed at 0.78); with 16 it
    # stays within 0.04-0.11 of the float model. Seeded, so a run is reproducible.
    keras.utils.set_random_seed(0)
    model = zoo.load("unet", filters=16, depth=2, dropout=0.0, input_shape=(32, 32, 1))
    zoo.finetune(model, (x, y), (xv, yv), epochs=8, batch_size=8, out_dir=tmp_path / "float",
                 tensorboard=False, verbose=0)
    chance = 2 * np.mean(yv) / (1 + np.mean(yv))  # Dice of "everything is foreground"
    results = {}
    for recipe in ("prune_80", "prune_80+qat_int8", "cluster_16", "qat_int8"):
        _, report = zoo.compress(str(tmp_path / "float"), recipe, (x, y), (xv, yv), epochs=3, batch_size=8,
                                 learning_rate=1e-3, out_dir=tmp_path / recipe, tensorboard=False, verbose=0)
        results[recipe] = (report["metrics_before"]["dice"], report["metrics_after"]["dice"])
    base = results["prune_80"][0]
    assert base > chance + 0.3, (base, chance)  # the float model learned the task
    for recipe, (before, after) in results.items():
        assert before == pytest.approx(base)  # the same float model each time
        assert after > chance + 0.25 and after >= base - 0.1, (recipe, before, after, chance)  # margin 0.1 Dice


@pytest.mark.slow
def test_cli_compress_and_recipes(tmp_path):
    res = run_zoo("compress", "unet", "--set", "filters=4", "--set", "depth=2", "--set", "dropout=0.0", "--recipe",
                  "prune_50", "--epochs", "1", "--patch-size", "32", "--data-option", "n=8", "--out", tmp_path / "c",
                  "--quiet", "--no-tensorboard", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "zoo.compress unet (2D): prune_50" in res.stdout and "sparsity" in res.stdout
    assert f"{tmp_path / 'c'}/model.keras" in res.stdout and "Traceback" not in res.stderr
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert abs(report["layers"]["stage2_conv1"]["sparsity"] - 0.5) <= 0.01
    # the default recipe of the entry's folder-less run, and a clear error for a 3D QAT
    res = run_zoo("compress", "unet3d", "--set", "filters=4", "--recipe", "qat_int8", "--out", tmp_path / "q",
                  cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "zoo: error: compress: the recipe cannot be applied" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "q").exists()
    res = run_zoo("recipes", "unet3d", cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "prune_80" in res.stdout and "default" in res.stdout
    assert "Conv3D" in res.stdout
