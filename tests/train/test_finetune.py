"""zoo.finetune: checkpoints, resume after SIGKILL, NaN guard, freeze phases, early stopping,
every data source kind, errors; and the `zoo finetune` / `zoo predict` commands."""
import csv
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT, run_python, run_zoo, start_python

import zoo
from zoo import finetune, load_run
from zoo._keras import keras, tf
from zoo.data import phantom_arrays
from zoo.errors import InvalidArgumentError, ZooError
from zoo.losses import get_loss
from zoo.train import read_state
from zoo.train.runfolder import read_snapshot

QUIET = dict(verbose=0, tensorboard=False)


def tiny_unet(**kw):
    return zoo.load("unet", **{"filters": 4, "depth": 2, "dropout": 0.0, **kw})


def digest(folder):
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class Record(keras.callbacks.Callback):
    """Weights at the start of each epoch and at the end of each epoch; epochs run."""

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.epochs = {}, {}, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.begin[epoch] = [w.copy() for w in self.model.get_weights()]
        self.opt_begin = getattr(self, "opt_begin", {})
        self.opt_begin[epoch] = [v.numpy().copy() for v in self.model.optimizer.variables]

    def on_epoch_end(self, epoch, logs=None):
        self.end[epoch] = {w.name: w.numpy().copy() for w in self.model.weights}


@pytest.mark.slow  # measured 6.4 s in the quick tier
def test_phantoms_2d_run_writes_checkpoints_state_and_a_rebuildable_model(tmp_path):
    model = tiny_unet()
    h = finetune(model, "phantoms", "phantoms", epochs=2, batch_size=4, patch_size=32, out_dir=tmp_path,
                 data_options={"n": 8}, verbose=0)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["best.h5", "history.csv", "last.h5", "logs", "model.json", "state.json"]
    state = read_state(tmp_path)
    assert state["finished"] and state["epochs_completed"] == 2
    assert state["config"]["patch_size"] == [32, 32] and state["config"]["global_batch_size"] == 4
    assert state["config"]["steps_per_epoch"] == 2  # 8 phantoms / 4
    assert set(h.history) == {"loss", "dice", "iou", "val_loss", "val_dice", "val_iou"}
    assert h.epoch == [0, 1] and all(np.isfinite(v) for vals in h.history.values() for v in vals)
    rows = csv_rows(tmp_path / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    np.testing.assert_allclose([float(r["val_loss"]) for r in rows], h.history["val_loss"])
    assert state["best"] == min(h.history["val_loss"])
    assert state["best_epoch"] == 1 + int(np.argmin(h.history["val_loss"]))
    # the model ends with the best checkpoint's weights; the run folder rebuilds the same model
    rebuilt = load_run(tmp_path)
    for a, b in zip(model.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(x), rebuilt.predict_on_batch(x), rtol=1e-6)
    # zoo.predict on the trained (dynamic-size) model takes the run's 32 px training patch
    image = np.random.default_rng(1).normal(size=(50, 40)).astype("float32")
    assert zoo.info_of(model).patch_size == (32, 32) and zoo.info_of(model).run["dir"] == str(tmp_path)
    np.testing.assert_array_equal(zoo.predict(model, image),
                                  zoo.predict(model, image, patch_size=(32, 32)))
    # a finished run folder is never trained over: error, and not one byte changes
    before = digest(tmp_path)
    with pytest.raises(ZooError, match="already holds a finished run.*new out_dir"):
        finetune(tiny_unet(), "phantoms", epochs=2, out_dir=tmp_path, **QUIET)
    assert digest(tmp_path) == before


KILL_SCRIPT = """
import sys, time
import zoo
from zoo._keras import keras

out, marker = sys.argv[1], sys.argv[2]

class Slow(keras.callbacks.Callback):  # a slow-ish epoch, so the kill lands inside one
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            open(marker, "w").close()
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.1)

model = zoo.load("unet", filters=4, depth=2, dropout=0.0)
zoo.finetune(model, "phantoms", "phantoms", epochs=4, batch_size=2, patch_size=32, out_dir=out,
             data_options={"n": 32}, tensorboard=False, verbose=0, callbacks=[Slow()])
print("finished")
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_call_resumes(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "epoch2.marker"
    (tmp_path / "kill.py").write_text(KILL_SCRIPT)
    proc = start_python(tmp_path / "kill.py", out, marker, cwd=ROOT)
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-2000:] if proc.poll() is not None else "timeout"
    time.sleep(0.4)  # well inside epoch 2 (16 steps of >= 0.1 s each)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = read_state(out)
    assert not before["finished"] and before["epochs_completed"] == 1
    files_before = digest(out)
    best_before = (out / "best.h5").read_bytes()
    last_model = tiny_unet()
    last_model.load_weights(str(out / "last.h5"))  # intact h5 checkpoints after the kill
    snapshot = read_snapshot(out / "resume.npz")  # the resume point: after epoch 1
    assert snapshot["epochs_done"] == 1 and int(snapshot["optimizer"][0]) == 16  # Adam's step count

    rec = Record()
    model = tiny_unet()  # the same call again (fresh random init: the resume point overrides it)
    finetune(model, "phantoms", "phantoms", epochs=4, batch_size=2, patch_size=32, out_dir=out,
             data_options={"n": 32}, tensorboard=False, verbose=0, callbacks=[rec])
    assert rec.epochs == [1, 2, 3]  # epoch 1 is not redone
    for a, b in zip(rec.begin[1], last_model.get_weights()):  # resumed from epoch 1's weights
        np.testing.assert_array_equal(a, b)
    assert len(rec.opt_begin[1]) == len(snapshot["optimizer"]) > 1  # and Adam's moments and step
    for a, b in zip(rec.opt_begin[1], snapshot["optimizer"]):
        np.testing.assert_array_equal(a, b)
    after = read_state(out)
    assert after["finished"] and after["epochs_completed"] == 4
    rows = after["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == before["history"][0]  # the pre-kill epoch's record is kept as it was
    csv_epochs = [int(r["epoch"]) for r in csv_rows(out / "history.csv")]
    assert csv_epochs == [1, 2, 3, 4]  # continuous: no gap, no duplicate from the killed epoch
    losses = [r["val_loss"] for r in rows]
    assert after["best"] == min(losses) <= before["best"]  # best-so-far value carried over
    assert after["best_epoch"] == 1 + int(np.argmin(losses))
    if after["best_epoch"] == 1:  # never improved on epoch 1: its checkpoint is untouched
        assert (out / "best.h5").read_bytes() == best_before
    best = tiny_unet()
    best.load_weights(str(out / "best.h5"))
    for a, b in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not (out / "resume.npz").exists() and not list(out.glob(".*.tmp*"))
    assert set(files_before) - {"resume.npz"} == set(digest(out))


class NanLoss(keras.losses.Loss):
    """dice_ce that turns NaN once ``flag`` is set. NaN is injected through the loss because
    a NaN/Inf *image* does not reliably give a NaN loss (max pooling drops NaN on CPU)."""

    def __init__(self, flag):
        super().__init__(name="nan_dice_ce")
        self.flag, self.inner = flag, get_loss("dice_ce")

    def call(self, y_true, y_pred):
        loss = self.inner.call(y_true, y_pred)
        return tf.where(self.flag > 0, tf.fill(tf.shape(loss), np.float32("nan")), loss)


MANY_RUNS = """
import sys
import numpy as np
import zoo
from zoo._keras import keras
x, y = np.random.default_rng(0).random((16, 16, 16, 1), "float32"), np.zeros((16, 16, 16, 1), "int32")
for i in range(6):  # a notebook or a sweep: one process, several runs (8 steps each: Keras' own
    # train/test functions trace once per run, 1 call in 8, below TensorFlow's warning threshold)
    keras.backend.clear_session()
    model = zoo.load("unet", filters=4, depth=1, dropout=0.0, input_shape=(16, 16, 1))
    zoo.finetune(model, (x, y), (x, y), epochs=1, batch_size=2, out_dir=f"{sys.argv[1]}/r{i}", tensorboard=False,
                 verbose=0)
print("done")
"""


@pytest.mark.slow  # ~25 s: six runs in a fresh process
def test_many_runs_in_one_process_print_no_retracing_warning(tmp_path):
    # issue 10: every run built its own checkpoint reader, and TensorFlow warned "triggered
    # tf.function retracing" from the fifth run on
    res = run_python(MANY_RUNS, tmp_path, cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "done" in res.stdout, res.stderr[-2000:]
    assert len(list(tmp_path.glob("r*/best.h5"))) == 6
    assert "retracing" not in res.stderr, res.stderr[-2000:]


def test_nan_loss_stops_with_a_zoo_error_and_keeps_the_last_good_checkpoints(tmp_path):
    flag = tf.Variable(0.0, trainable=False)
    hashes = {}

    class Trigger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                hashes.update(digest(tmp_path))  # the files as epoch 1 left them

        def on_train_batch_begin(self, batch, logs=None):
            if hashes and batch == 2:
                flag.assign(1.0)  # epoch 2, batch 3

    with pytest.raises(ZooError, match=r"loss became nan at epoch 2, batch 3.*last good checkpoints"):
        finetune(tiny_unet(), "phantoms", epochs=3, batch_size=2, patch_size=32, loss=NanLoss(flag),
                 out_dir=tmp_path, data_options={"n": 8}, callbacks=[Trigger()], **QUIET)
    assert {"best.h5", "last.h5", "state.json", "history.csv", "resume.npz"} <= set(hashes)
    assert digest(tmp_path) == hashes  # every file byte-identical to the end of epoch 1
    state = read_state(tmp_path)
    assert state["epochs_completed"] == 1 and not state["finished"]
    assert [int(r["epoch"]) for r in csv_rows(tmp_path / "history.csv")] == [1]
    # an unfinished run is not silently restarted with resume=False; nothing is touched
    with pytest.raises(ZooError, match="unfinished run.*resume=True"):
        finetune(tiny_unet(), "phantoms", epochs=3, out_dir=tmp_path, resume=False, **QUIET)
    # nor resumed with another architecture
    with pytest.raises(ZooError, match="another model"):
        finetune(tiny_unet(filters=8), "phantoms", epochs=3, batch_size=2, out_dir=tmp_path,
                 data_options={"n": 4}, **QUIET)
    assert digest(tmp_path) == hashes


FREEZE_CASES = {  # one model per contract layout; the encoder as each family's layer names define it
    "zoo": (lambda: tiny_unet(norm="batch"), lambda n: n.startswith(("stem", "stage"))),
    "keras_resnet": (lambda: zoo.load("resnet50", num_classes=2, in_channels=1, width=4, input_shape=(32, 32, 1)),
                     lambda n: n != "predictions"),
    "keras_vgg": (lambda: zoo.load("vgg16", num_classes=2, in_channels=1, width=4, fc_units=8,
                                   input_shape=(32, 32, 1)),
                  lambda n: n.startswith("block")),
}


# keras_resnet: ResNet50 at 27 s; zoo: 8.0 s in the quick tier (two workers on the 2-core machine)
@pytest.mark.parametrize("layout", [pytest.param(k, marks=[pytest.mark.slow] if k in ("keras_resnet", "zoo") else [])
                                    for k in sorted(FREEZE_CASES)])
def test_freeze_encoder_phase_then_all_layers_train(layout, tmp_path):
    build, in_encoder = FREEZE_CASES[layout]
    model = build()
    encoder = {w.name for layer in model.layers if in_encoder(layer.name) for w in layer.weights}
    assert layout == "keras_vgg" or any("moving_mean" in n for n in encoder)
    start = {w.name: w.numpy().copy() for w in model.weights}
    rec = Record()
    finetune(model, "phantoms", epochs=2, freeze_encoder_epochs=1, batch_size=4, patch_size=32,
             out_dir=tmp_path, data_options={"n": 8}, restore_best=False, callbacks=[rec], **QUIET)
    phase1, phase2 = rec.end[0], rec.end[1]
    for name in encoder:  # frozen: kernels, BN scale/offset and BN moving statistics unchanged
        np.testing.assert_array_equal(phase1[name], start[name], err_msg=name)
    decoder = [n for n in start if n not in encoder]
    assert decoder and all(not np.array_equal(phase1[n], start[n]) for n in decoder if "kernel" in n)
    changed = [n for n in encoder if not np.array_equal(phase2[n], phase1[n])]
    assert {n for n in encoder if "kernel" in n} <= set(changed)  # phase 2 trains the encoder
    assert all(layer.trainable for layer in model.layers)  # trainable flags restored


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path):
    # learning rate 0: val_loss is the same every epoch, so only epoch 1 "improves"
    h = finetune(tiny_unet(), "phantoms", "phantoms", epochs=6, early_stopping=2, learning_rate=0.0,
                 batch_size=4, patch_size=32, out_dir=tmp_path, data_options={"n": 4}, **QUIET)
    state = read_state(tmp_path)
    assert state["epochs_completed"] == 3 and state["stopped_early"] == 3 and state["finished"]
    assert state["best_epoch"] == 1 and len(h.history["val_loss"]) == 3
    assert len(set(h.history["val_loss"])) == 1


@pytest.mark.slow  # measured 10.5 s in the quick tier
def test_phantoms_3d_and_arrays(tmp_path):
    m3 = zoo.load("unet", spatial_dims=3, filters=2, depth=1, dropout=0.0)
    h = finetune(m3, "phantoms", epochs=1, batch_size=2, patch_size=16, out_dir=tmp_path / "p3",
                 data_options={"n": 4}, **QUIET)
    assert read_state(tmp_path / "p3")["config"]["patch_size"] == [16, 16, 16]
    assert np.isfinite(h.history["loss"][0])
    x, y = phantom_arrays(6, size=32, num_classes=3)
    model = tiny_unet(num_classes=3)
    h = finetune(model, (x, y), (x[:2], y[:2]), epochs=1, batch_size=3, out_dir=tmp_path / "arr", **QUIET)
    assert read_state(tmp_path / "arr")["config"]["steps_per_epoch"] == 2
    assert {"dice_1", "dice_2", "val_dice_2"} <= set(h.history)  # per-class Dice with 2 foreground classes
    with pytest.raises(ZooError, match=r"label values \[3\] are outside"):
        finetune(model, (x, np.where(y == 2, 3, y)), epochs=1, out_dir=tmp_path / "bad", **QUIET)


@pytest.mark.slow  # measured 19.6 s in the quick tier
def test_classification_phantoms_patch_from_a_fixed_size_model_and_image_folder(tmp_path):
    from PIL import Image
    model = zoo.load("resnet18", width=8, num_classes=2, in_channels=1, input_shape=(32, 32, 1))
    h = finetune(model, "phantoms", epochs=1, batch_size=4, out_dir=tmp_path / "cls",
                 data_options={"n": 8}, **QUIET)
    cfg = read_state(tmp_path / "cls")["config"]
    assert cfg["patch_size"] == [32, 32] and cfg["task"] == "classification"  # from the model's size
    assert set(h.history) == {"loss", "accuracy", "auc"}
    images, labels = phantom_arrays(8, size=32, task="classification", seed=3)
    for i, (img, lab) in enumerate(zip(images, labels)):
        folder = tmp_path / "folder" / ("lesion" if lab else "clean")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(img[..., 0], 0, 1) * 255).astype("uint8")).save(folder / f"{i}.png")
    h = finetune(model, str(tmp_path / "folder"), epochs=1, batch_size=4, out_dir=tmp_path / "img", **QUIET)
    assert read_state(tmp_path / "img")["config"]["steps_per_epoch"] == 2 and "accuracy" in h.history


@pytest.mark.slow  # measured 7.8 s in the quick tier
def test_segmentation_png_folder_is_cropped_to_the_patch_and_nifti_folder(tmp_path):
    import nibabel as nib
    from PIL import Image
    images, masks = phantom_arrays(4, size=40)
    for sub in ("images", "masks"):
        (tmp_path / "png" / sub).mkdir(parents=True)
    for i in range(4):
        Image.fromarray((np.clip(images[i, ..., 0], 0, 1) * 255).astype("uint8")).save(
            tmp_path / "png" / "images" / f"c{i}.png")
        Image.fromarray(masks[i, ..., 0].astype("uint8")).save(tmp_path / "png" / "masks" / f"c{i}.png")
    finetune(tiny_unet(), str(tmp_path / "png"), str(tmp_path / "png"), epochs=1, batch_size=2,
             patch_size=32, out_dir=tmp_path / "r2d", **QUIET)  # 40 px images, random 32 px crops
    assert read_state(tmp_path / "r2d")["config"]["patch_size"] == [32, 32]
    vols, labs = phantom_arrays(3, spatial_dims=3, size=24, seed=5)
    for sub in ("images", "labels"):
        (tmp_path / "nii" / sub).mkdir(parents=True)
    for i in range(3):
        nib.save(nib.Nifti1Image(vols[i, ..., 0] * 1000 - 500, np.eye(4)),
                 str(tmp_path / "nii" / "images" / f"case{i}.nii.gz"))
        nib.save(nib.Nifti1Image(labs[i, ..., 0].astype("uint8"), np.eye(4)),
                 str(tmp_path / "nii" / "labels" / f"case{i}.nii.gz"))
    m3 = zoo.load("unet", spatial_dims=3, filters=2, depth=1, dropout=0.0)
    finetune(m3, str(tmp_path / "nii"), epochs=1, batch_size=2, patch_size=16, out_dir=tmp_path / "r3d",
             data_options={"samples_per_volume": 2, "window": [-500, 500]}, **QUIET)
    cfg = read_state(tmp_path / "r3d")["config"]
    assert cfg["steps_per_epoch"] == 3 and cfg["preprocessing"] == {"window": [-500, 500]}


def test_dicom_folder_finetune_then_predict_the_series(tmp_path):
    import nibabel as nib
    from _files import _dicom_root
    _dicom_root(tmp_path / "dcm", {"a": [1, 0, 2, 3], "b": [3, 2, 1, 0]})  # 3x4x4 volumes, CT values
    m3 = zoo.load("unet", spatial_dims=3, filters=2, depth=1, dropout=0.0)
    finetune(m3, str(tmp_path / "dcm"), epochs=1, batch_size=2, patch_size=4, out_dir=tmp_path / "run",
             data_options={"samples_per_volume": 2, "window": [-1100, -300]}, **QUIET)
    cfg = read_state(tmp_path / "run")["config"]
    assert cfg["steps_per_epoch"] == 2 and cfg["patch_size"] == [4, 4, 4]
    labels = zoo.predict(str(tmp_path / "run"), tmp_path / "dcm" / "images" / "a")  # the run's window
    written = nib.load(str(tmp_path / "dcm" / "images" / "a_seg.nii.gz"))
    assert labels.shape == written.shape == (3, 4, 4)
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels)


@pytest.mark.slow
def test_auxiliary_outputs_train_on_the_same_labels_with_weighted_losses(tmp_path):
    """DeepLab's aux head (and GoogLeNet-style aux classifiers) get the labels too; loss = main + w * aux."""
    seg = zoo.load("deeplabv3_resnet50", width=8, filters=16, num_classes=2, input_shape=(32, 32, 3))
    h = finetune(seg, "phantoms", "phantoms", epochs=1, batch_size=2, out_dir=tmp_path / "dl",
                 monitor="val_dice", data_options={"n": 4}, **QUIET)
    assert set(h.history) == {f"{v}{k}" for v in ("", "val_") for k in ("loss", "out_loss", "aux_loss",
                                                                          "dice", "iou")}  # no "out_" prefix
    np.testing.assert_allclose(h.history["loss"], np.add(h.history["out_loss"], 0.5 * np.array(
        h.history["aux_loss"])), rtol=1e-4)  # torchvision's DeepLab aux weight
    image = np.random.default_rng(0).random((40, 48, 3)).astype("float32")
    assert zoo.predict(str(tmp_path / "dl"), image).shape == (40, 48)  # the first output, sliding window
    report = zoo.load("deeplabv3_resnet50", width=8, filters=16, num_classes=2, input_shape=(32, 32, 3),
                      weights=str(tmp_path / "dl" / "best.h5")).zoo_load_report
    assert not report.reinitialised and "aux_classifier" in report.loaded
    keras.backend.clear_session()
    inp = keras.Input((32, 32, 1))  # a GoogLeNet-like classifier: a main and an auxiliary head
    feat = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(inp))
    cls = keras.Model(inp, [keras.layers.Dense(2, name="classifier")(feat), keras.layers.Dense(2, name="aux1")(feat)])
    h = finetune(cls, "phantoms", epochs=1, batch_size=2, out_dir=tmp_path / "g", data_options={"n": 4},
                 **QUIET)
    np.testing.assert_allclose(h.history["loss"], np.add(h.history["classifier_loss"], 0.3 * np.array(
        h.history["aux1_loss"])), rtol=1e-4)  # the GoogLeNet paper's 0.3
    assert {"accuracy", "auc"} <= set(h.history)
    assert zoo.predict(cls, np.zeros((32, 32, 1), "float32")) in (0, 1)
    with pytest.raises(InvalidArgumentError, match=r"spatial size \(40, 48\) but the classifier .* takes "
                                                   r"\(32, 32\); resize it first"):
        zoo.predict(cls, image[:, :, :1])
    with pytest.raises(InvalidArgumentError, match=r"aux_loss_weight=-1 must be a number >= 0"):
        finetune(cls, "phantoms", epochs=1, out_dir=tmp_path / "bad", aux_loss_weight=-1, **QUIET)
    assert not (tmp_path / "bad").exists()


def test_bad_inputs_name_the_fix(tmp_path):
    model = tiny_unet()
    x, y = phantom_arrays(4, size=32, in_channels=3)
    with pytest.raises(InvalidArgumentError, match=r"3 channel\(s\) but model 'unet' takes 1.*in_channels=3"):
        finetune(model, (x, y), epochs=1, out_dir=tmp_path, **QUIET)
    x3, y3 = phantom_arrays(2, spatial_dims=3, size=16)
    with pytest.raises(InvalidArgumentError, match="2D images.*spatial_dims=3"):
        finetune(model, (x3, y3), epochs=1, out_dir=tmp_path, **QUIET)
    with pytest.raises(InvalidArgumentError, match="2D images.*spatial_dims=3"):  # batched 3D
        finetune(model, tf.data.Dataset.from_tensor_slices((x3, y3)).batch(2), epochs=1, out_dir=tmp_path,
                 **QUIET)
    xc, yc = phantom_arrays(4, size=32, task="classification")
    with pytest.raises(InvalidArgumentError, match="segments.*label maps"):
        finetune(model, (xc, yc), epochs=1, out_dir=tmp_path, **QUIET)
    with pytest.raises(InvalidArgumentError, match="patch size 30,30 does not fit unet: .*use 28 or 32.*--patch-size"):
        finetune(model, "phantoms", epochs=1, patch_size=30, out_dir=tmp_path, **QUIET)
    with pytest.raises(InvalidArgumentError, match="monitor='val_dcie'.*val_dice"):
        finetune(model, "phantoms", "phantoms", monitor="val_dcie", epochs=1, patch_size=32,
                 out_dir=tmp_path, data_options={"n": 2}, **QUIET)
    with pytest.raises(InvalidArgumentError, match="freeze_encoder_epochs=2"):
        finetune(model, "phantoms", epochs=2, freeze_encoder_epochs=2, out_dir=tmp_path, **QUIET)
    with pytest.raises(InvalidArgumentError, match="strategy='mirored'.*'mirrored'"):
        finetune(model, "phantoms", epochs=1, strategy="mirored", out_dir=tmp_path, **QUIET)
    assert not any(tmp_path.iterdir())  # refused before writing anything


class KeepNet(keras.callbacks.Callback):
    """The compiled network a training run fits (Keras sets ``self.model``)."""

    def on_train_end(self, logs=None):
        self.net = self.model


@pytest.mark.slow  # measured 8.1-9.1 s in the quick tier (two runs: mixed precision on and off)
def test_mixed_precision_trains_float16_layers_with_float32_logits_and_a_loss_scale(tmp_path):
    x = np.zeros((1, 16, 16, 1), "float32")
    for mixed in (True, False):
        model, keep = tiny_unet(), KeepNet()
        start = [w.copy() for w in model.get_weights()]
        finetune(model, "phantoms", epochs=1, batch_size=2, patch_size=16, mixed_precision=mixed,
                 out_dir=tmp_path / str(mixed), data_options={"n": 2, "size": 16}, callbacks=[keep], **QUIET)
        net = keep.net
        assert any(not np.array_equal(a, b) for a, b in zip(start, model.get_weights()))  # trained, back in model
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())
        # the user's model stays float32 either way
        assert {layer.dtype_policy.name for layer in model.layers[1:]} == {"float32"}
        layers = {layer.name: layer for layer in net.layers[1:]}  # not the input
        logits = layers.pop("classifier")
        assert logits.dtype_policy.name == "float32" and net.outputs[0].dtype == tf.float32
        assert net(x).dtype == tf.float32
        policies = {layer.dtype_policy.name for layer in layers.values()}
        assert all(v.dtype == tf.float32 for v in net.variables)  # variables (the master weights) in float32
        if mixed:
            assert net is not model and policies == {"mixed_float16"}
            assert all(layer.compute_dtype == "float16" and layer.variable_dtype == "float32"
                       for layer in layers.values())
            assert net.get_layer("stage1_out").output.dtype == tf.float16  # the activations are float16
            assert isinstance(net.optimizer, keras.mixed_precision.LossScaleOptimizer)
            assert isinstance(net.optimizer.inner_optimizer, keras.optimizers.Adam)
            assert net.optimizer.dynamic
        else:
            assert policies == {"float32"} and net.get_layer("stage1_out").output.dtype == tf.float32
            assert type(net.optimizer) is keras.optimizers.Adam


@pytest.mark.slow  # measured 8.9 s in the quick tier
def test_xla_compiled_training_matches_the_plain_graph(tmp_path):
    """jit_compile=True (XLA) trains to the same weights as the default graph, within float noise."""
    x, y = phantom_arrays(4, size=16, num_classes=2)
    start = zoo.load("unet", filters=2, depth=1, dropout=0.0).get_weights()
    results = []
    for jit in (False, True):
        keras.backend.clear_session()
        model = zoo.load("unet", filters=2, depth=1, dropout=0.0)
        model.set_weights(start)  # both runs start from the same weights
        finetune(model, (x, y), epochs=1, batch_size=2, optimizer="sgd", learning_rate=0.1,
                 lr_schedule="constant", jit_compile=jit, out_dir=tmp_path / f"jit{jit}", **QUIET)
        results.append(model.get_weights())
        assert read_state(tmp_path / f"jit{jit}")["finished"]
    assert any(not np.allclose(a, b) for a, b in zip(start, results[1]))  # XLA trained
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_tpu_strategy_without_a_tpu_is_a_clear_error(tmp_path):
    with pytest.raises(ZooError, match=r"strategy='tpu' found no TPU .*strategy='auto'"):
        finetune(tiny_unet(), "phantoms", epochs=1, strategy="tpu", out_dir=tmp_path / "tpu", **QUIET)
    assert not (tmp_path / "tpu").exists()


@pytest.mark.slow
def test_cli_finetune_then_predict(tmp_path, monkeypatch):
    import nibabel as nib
    run = tmp_path / "run"
    res = run_zoo("finetune", "unet", "--spatial-dims", "3", "--epochs", "1", "--set", "filters=2", "--set", "depth=1",
                  "--set", "dropout=0", "--patch-size", "16", "--batch-size", "2", "--data-option", "n=4", "--out", run,
                  "--no-tensorboard", "--quiet", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finetune done: 1 epoch(s) of unet on phantoms (3D, patch 16x16x16, global batch 2)" in res.stdout
    assert f"{run}/best.h5 (best)" in res.stdout and f"zoo predict {run}" in res.stdout
    assert read_state(run)["finished"]
    vol = phantom_arrays(1, spatial_dims=3, size=20, seed=9)[0][0, ..., 0]
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "scan.nii.gz"))
    from zoo.cli import main
    assert main(["predict", str(run), str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "seg.nii.gz")]) == 0
    seg = nib.load(str(tmp_path / "seg.nii.gz"))
    np.testing.assert_allclose(seg.affine, affine)
    model = load_run(run)
    z = ((vol - vol.mean()) / vol.std())[..., None]
    np.testing.assert_array_equal(
        np.asarray(seg.dataobj), np.argmax(zoo.inference.sliding_window(model, z, (16, 16, 16)), -1))
    assert main(["predict", str(run / "best.h5"), str(tmp_path / "missing.nii.gz")]) == 2
    data = json.loads((run / "model.json").read_text())
    assert data["class_name"] == "Functional"
    # the default out_dir of a second run never overwrites a finished run
    from zoo.cli.train import _default_run_dir
    monkeypatch.chdir(tmp_path)
    Path("runs/unet").mkdir(parents=True)
    (Path("runs/unet") / "state.json").write_text(json.dumps({"finished": True}))
    assert _default_run_dir("unet") == Path("runs/unet-2")


def test_public_api_exports():
    import zoo.api
    assert zoo.finetune is finetune and zoo.predict is zoo.api.predict
