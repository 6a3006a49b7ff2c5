"""zoo.run / zoo run: fine-tune -> compress -> export -> verify, with resume and skipped stages."""
import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from _proc import run_zoo, start_zoo

import zoo
from zoo.errors import InvalidArgumentError, UnknownModelError
from zoo.scoring import score

TINY = dict(model_options={"filters": 4, "depth": 2}, patch_size=32, epochs=1, compress_epochs=1,
            steps_per_epoch=4, validation_steps=2)


def test_score_is_per_case_foreground_dice_and_top1():
    labels = np.zeros((3, 4, 4), int)
    labels[0, :2] = 1                      # case 0: 8 foreground pixels
    labels[2, 2:] = 1                      # case 2: 8 foreground pixels, none predicted: Dice 0
    probs = np.zeros((3, 4, 4, 2))
    probs[..., 0] = 1
    probs[0, :1, :, 1] = 2                 # predicts 4 of them: Dice 2*4/(4+8)
    probs[1, 0, 0, 1] = 2                  # case 1: no foreground in its labels: left out (MONAI's ignore_empty)
    assert score("segmentation", labels, probs) == ("dice", pytest.approx((8 / 12 + 0) / 2))
    onehot = np.eye(3)[[0, 2, 1]]
    assert score("classification", np.array([0, 2, 2]), onehot) == ("accuracy", pytest.approx(2 / 3))


@pytest.mark.slow  # measured 20.2 s in the quick tier
def test_run_writes_every_stage_and_a_second_call_skips_them(tmp_path, capsys):
    out = tmp_path / "r"
    report = zoo.run("unet", recipe="prune_50", quantization="float32", out_dir=out, **TINY)
    d = report.to_dict()
    assert d["model"] == "unet" and d["recipe"] == "prune_50" and d["quantization"] == "float32"
    s = d["scores"]
    assert all(0 <= s[k] <= 1 for k in ("finetuned", "compressed", "exported"))
    assert abs(s["exported"] - s["compressed"]) < 1e-3   # float32 TFLite computes the same masks
    assert d["verification"]["passed"] is True
    assert Path(d["artefacts"]["tflite"]).is_file() and (out / "report.json").is_file()
    assert (out / "1_finetune" / "state.json").is_file() and (out / "2_prune_50" / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["scores"] == s
    # the export is of the last stage's run folder: its patch size reaches the sidecar
    sidecar = json.loads(Path(d["artefacts"]["tflite"] + ".json").read_text())
    assert sidecar["patch_size"] == [32, 32] and sidecar["entry"] == "unet"
    assert "fine-tuned" in str(report) and "TFLite" in str(report)
    capsys.readouterr()
    t = time.time()
    again = zoo.run("unet", recipe="prune_50", quantization="float32", out_dir=out, verbose=True, **TINY)
    err = capsys.readouterr().err
    assert err.count("done before") == 3, err          # fine-tuning, compression and export skipped
    assert again["scores"] == s and time.time() - t < 60


def test_refusals_name_the_fix(tmp_path):
    with pytest.raises(UnknownModelError, match="zoo list"):
        zoo.run("unet4d")
    with pytest.raises(InvalidArgumentError, match="generative"):
        zoo.run("wgan_gp")
    with pytest.raises(InvalidArgumentError, match="not both"):
        zoo.run("unet", data=str(tmp_path), train="phantoms")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        zoo.run("unet", out_dir=tmp_path / "f")
    with pytest.raises(InvalidArgumentError, match="spatial_dims"):
        zoo.run("alexnet", spatial_dims=1)
    with pytest.raises(InvalidArgumentError, match="'warn'"):
        zoo.run("unet", verify="maybe")


def _zoo(*args, **kw):
    return run_zoo(*args, timeout=900, **kw)


def test_cli_errors_are_one_line():
    for args, match in ((["run", "unet4d"], "not a registry entry"),
                        (["run", "unet", "--patch-size", "32,16"], "one size for every axis")):
        res = _zoo(*args)
        assert res.returncode == 2, res.stderr
        lines = [l for l in res.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and match in lines[0], res.stderr


@pytest.mark.slow
def test_cli_run_json_and_a_killed_run_continues(tmp_path):
    """SIGKILL during fine-tuning; the same command again finishes, with every epoch trained once."""
    out = tmp_path / "r"
    args = ["run", "unet", "--set", "filters=4", "--set", "depth=2", "--patch-size", "32", "--epochs", "3",
            "--compress-epochs", "1", "--steps-per-epoch", "40", "--validation-steps", "2", "--recipe", "prune_50",
            "--quantization", "float16", "--out", str(out), "--json"]
    proc = start_zoo(*args)
    state = out / "1_finetune" / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text() or "{}").get("epochs_completed", 0) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["epochs_completed"] < 3
    res = _zoo(*args)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["quantization"] == "float16" and d["verification"]["passed"]
    assert [h["epoch"] for h in json.loads(state.read_text())["history"]] == [1, 2, 3]
