"""GAN runs through zoo.finetune (zoo/train/_gan.py) and zoo sample, unlabelled data sources
(zoo/data/unlabelled.py), and WGAN-GP under MirroredStrategy on two logical CPUs."""
import json
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT, run_python

import zoo
from zoo._keras import keras
from zoo.data.unlabelled import unlabelled
from zoo.errors import InvalidArgumentError

NIB_DATA = Path(__import__("nibabel").__file__).parent / "tests" / "data"


def tiny(name="wgan_gp", **kw):
    keras.backend.clear_session()
    return zoo.load(name, image_size=16, channels=1, filters=4, **kw)


class KillAfter(keras.callbacks.Callback):
    """Stands in for a crash after epoch ``n`` was saved (the run folder callback ran first)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise KeyboardInterrupt


@pytest.mark.slow  # measured 7.3 s in the quick tier
def test_finetune_gan_resumes_with_both_optimizers_and_sample_cli(tmp_path, capsys):
    from PIL import Image

    from zoo.cli import main
    out = tmp_path / "run"
    kw = dict(epochs=3, batch_size=8, out_dir=out, data_options={"n": 40}, verbose=0, tensorboard=False)
    with pytest.raises(KeyboardInterrupt):
        zoo.finetune(tiny(), callbacks=[KillAfter(2)], **kw)
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_completed"] == 2 and not state["finished"] and (out / "resume.npz").exists()
    first = state["history"]
    h = zoo.finetune(tiny(), **kw)  # the same call again: continues after epoch 2
    rows = h.zoo_state["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[:2] == first
    # the counters are the optimizers' iterations: continuing 5, 10 -> 15 shows both states were restored
    assert h.history["critic_steps"] == [5.0, 10.0, 15.0] and h.history["generator_steps"] == [1.0, 2.0, 3.0]
    cfg = h.zoo_state["config"]
    assert cfg["task"] == "generation" and cfg["variant"] == "wgan_gp" and cfg["value_range"] == [0.0, 1.0]
    assert set(cfg["quality_init"]) == {"fd", "swd"} and all(np.isfinite(h.history["swd"]))
    assert h.zoo_state["finished"] and not (out / "resume.npz").exists()
    # zoo sample RUN: a PNG grid, deterministic by seed, refusing to overwrite
    assert (
        main(["sample", str(out), "-n", "9", "--out", str(tmp_path / "a.png"), "--npy", str(tmp_path / "a.npy")]) == 0
    )
    grid = np.asarray(Image.open(tmp_path / "a.png"))
    assert grid.shape == (3 * 18 + 2, 3 * 18 + 2)
    from zoo import load_run
    gan = load_run(out)
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), gan.sample(9, seed=0), atol=1e-6)
    assert main(["sample", str(out), "--out", str(tmp_path / "a.png")]) == 2
    assert "already exist" in capsys.readouterr().err


def test_finetune_gan_refuses_options_that_do_not_apply(tmp_path):
    for kw, match in ((dict(loss="ce"), "loss"), (dict(optimizer="sgd"), "paper"), (dict(metrics=["acc"]), "fd"),
                      (dict(patch_size=32), "image size"), (dict(monitor="dice"), "monitor")):
        with pytest.raises(InvalidArgumentError, match=match):
            zoo.finetune(tiny(), epochs=1, out_dir=tmp_path / "r", data_options={"n": 16}, verbose=0, **kw)
        assert not (tmp_path / "r").exists()


def test_unlabelled_image_folder_recursive_grayscale_and_rgb(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / "a" / "x.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "a" / "b" / "y.png")
    gray, vr = unlabelled(tmp_path, image_size=16, channels=1)
    assert gray.shape == (2, 16, 16, 1) and vr == (0.0, 1.0) and 0 <= gray.min() and gray.max() <= 1
    rgb, _ = unlabelled(tmp_path, image_size=32, channels=3)
    assert rgb.shape == (2, 32, 32, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="no images"):
        unlabelled(tmp_path / "empty", image_size=16, channels=1)


def test_unlabelled_nifti_slices_volumes_and_window(tmp_path):
    import nibabel as nib
    src = NIB_DATA / "anatomical.nii"
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "anat.nii").write_bytes(src.read_bytes())
    depth = nib.load(str(src)).shape[2]
    slices, vr = unlabelled(tmp_path / "scans", image_size=32, channels=1)
    assert slices.shape[1:] == (32, 32, 1) and vr == (0.0, 1.0)
    assert len(slices) == int(np.ceil(0.75 * depth)) - int(np.floor(0.25 * depth))
    assert 0 <= slices.min() and slices.max() <= 1 and slices.std() > 0.05
    vol, _ = unlabelled(tmp_path / "scans", spatial_dims=3, image_size=16, channels=1)
    assert vol.shape == (1, 16, 16, 16, 1)
    windowed, vr = unlabelled(tmp_path / "scans", image_size=16, channels=1, window=(10, 60))
    assert vr == (10.0, 60.0) and windowed.min() >= 10 and windowed.max() <= 60


def test_finetune_cli_on_an_image_folder_then_sample(tmp_path, capsys):
    from PIL import Image

    from zoo.cli import main
    from zoo.data import phantom_arrays
    images = phantom_arrays(48, size=24, seed=1)[0]
    (tmp_path / "slices").mkdir()
    for i, im in enumerate(images):
        Image.fromarray((np.clip(im[..., 0], 0, 1) * 255).astype(np.uint8)).save(tmp_path / "slices" / f"{i}.png")
    out = tmp_path / "runs" / "gan"
    argv = ["finetune", "wgan_gp", "--train", str(tmp_path / "slices"), "--epochs", "2", "--out", str(out),
            "--in-channels", "1", "--set", "image_size=16", "--set", "filters=4", "--batch-size", "8",
            "--no-tensorboard", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    # 48 images / 8: 6 per epoch
    assert "before training: fd" in text and "zoo sample" in text and "12 critic / 2 generator" in text
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0


MIRRORED = """
import json, sys
from zoo._keras import keras, tf
import numpy as np
import zoo

out = sys.argv[1]

class First(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []
    def on_train_batch_end(self, batch, logs=None):
        self.logs.append({k: float(v) for k, v in logs.items()})

report = {}
from zoo.train import get_strategy
mirrored = get_strategy("mirrored")  # one strategy for the process (a second one's collectives clash)
for variant in ("wgan_gp", "wgan"):
    # no BatchNorm: per-replica batch statistics would differ from whole-batch ones
    init = zoo.load(variant, image_size=16, channels=1, filters=4, batch_norm=False).get_weights()
    for name, strategy, batch in (("one", "default", 8), ("mirrored", mirrored, 4)):
        gan = zoo.load(variant, image_size=16, channels=1, filters=4, batch_norm=False)
        gan.set_weights(init)
        rec = First()
        h = zoo.finetune(gan, epochs=1, batch_size=batch, strategy=strategy, out_dir=f"{out}/{variant}-{name}",
                         data_options={"n": 48}, verbose=0, tensorboard=False, callbacks=[rec], metrics=["swd"])
        critic = max(float(np.abs(w).max()) for w in gan.critic.get_weights())
        report[f"{variant}-{name}"] = {"steps": rec.logs, "config": h.zoo_state["config"], "critic_max": critic}
json.dump(report, open(f"{out}/report.json", "w"))
"""


@pytest.mark.slow
def test_mirrored_two_replicas_give_the_first_step_losses_of_one_device(tmp_path):
    res = run_python(MIRRORED, tmp_path, cwd=ROOT, timeout=600, cpus=2)
    assert res.returncode == 0, res.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    for variant in ("wgan_gp", "wgan"):
        one, mirrored = report[f"{variant}-one"], report[f"{variant}-mirrored"]
        assert mirrored["config"]["replicas"] == 2 and mirrored["config"]["strategy"] == "MirroredStrategy"
        assert mirrored["config"]["global_batch_size"] == 8 == one["config"]["global_batch_size"]
        assert len(mirrored["steps"]) == len(one["steps"]) == 6
        keys = ["loss", "wasserstein"] + (["gp"] if variant == "wgan_gp" else [])
        for key in keys:  # the first step: same noise (drawn for the global batch, sliced per replica)
            np.testing.assert_allclose(mirrored["steps"][0][key], one["steps"][0][key], rtol=1e-4, err_msg=key)
        np.testing.assert_allclose([s["loss"] for s in mirrored["steps"]], [s["loss"] for s in one["steps"]],
                                   rtol=2e-3, atol=1e-5)
        assert mirrored["steps"][-1]["generator_steps"] == one["steps"][-1]["generator_steps"] == (
            1 if variant == "wgan_gp" else 0)  # 5:1, and WGAN's 100-step warm-up
    assert report["wgan-mirrored"]["critic_max"] <= 0.01 + 1e-7  # clipping under the strategy
