"""`zoo finetune` and `zoo run` with --unlabeled and --semi, on nibabel's test volumes (real MR
files, no labels) as the unlabelled data."""
import json
import os
import shutil

import pytest
from _proc import run_zoo

TINY = ["--set", "filters=4", "--epochs", "2", "--steps-per-epoch", "2", "--patch-size", "16"]


@pytest.fixture
def unlabelled(tmp_path):
    import nibabel
    data = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in ("anatomical.nii", "reoriented_anat_moved.nii"):
        shutil.copy(os.path.join(data, name), folder / name)
    return folder


@pytest.mark.slow  # ~15 s
def test_zoo_finetune_trains_the_student_on_a_folder_of_volumes_without_labels(unlabelled, tmp_path):
    res = run_zoo("finetune", "unet3d", "--unlabeled", str(unlabelled), "--semi", "mean_teacher", "--ema-decay",
                  "0.95", *TINY, "--out", "runs/mt", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "unlabeled_loss" in res.stdout and "Traceback" not in res.stderr
    assert f"on phantoms + unlabelled {unlabelled} (mean_teacher)" in res.stdout
    state = json.loads((tmp_path / "runs/mt/state.json").read_text())
    options = state["config"]["options"]
    assert options["semi"] == "mean_teacher" and options["ema_decay"] == 0.95
    assert options["unlabeled"] == str(unlabelled.resolve())
    assert all(row["unlabeled_loss"] > 0 for row in state["history"])


@pytest.mark.slow  # ~20 s
def test_zoo_run_records_the_unlabelled_data_and_compresses_the_student(unlabelled, tmp_path):
    res = run_zoo("run", "unet3d", "--unlabeled", str(unlabelled), "--semi", "pseudo_label", "--confidence", "0.7",
                  *TINY, "--compress-epochs", "1", "--recipe", "prune_50", "--quantization", "float32", "--json",
                  cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"+ unlabelled {unlabelled} (pseudo_label)" in res.stderr
    record = json.loads((tmp_path / "runs/run_unet3d/run.json").read_text())
    assert record["unlabeled"] == str(unlabelled.resolve()) and record["options"]["semi"] == "pseudo_label"
    stage = json.loads((tmp_path / "runs/run_unet3d/1_finetune/state.json").read_text())
    assert stage["config"]["options"]["confidence"] == 0.7
    report = json.loads(res.stdout)
    assert report["verification"]["passed"] and report["scores"]["compressed"] is not None
    # a rerun without the unlabelled data is another run: it stops and says what differs
    res = run_zoo("run", "unet3d", *TINY, "--compress-epochs", "1", "--recipe", "prune_50", "--quantization",
                  "float32", cwd=tmp_path, timeout=600)
    assert res.returncode != 0 and "--unlabeled" in res.stderr, res.stderr[-2000:]


def test_unlabelled_data_without_a_mode_is_refused_in_shell_words(tmp_path):
    res = run_zoo("finetune", "unet3d", "--unlabeled", "phantoms", "--epochs", "1", cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "pass --semi mean_teacher, --semi pseudo_label or --adapt dann" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow  # ~15 s
def test_zoo_finetune_adapts_to_a_folder_of_another_scanners_volumes(unlabelled, tmp_path):
    res = run_zoo("finetune", "unet3d", "--unlabeled", str(unlabelled), "--adapt", "dann", "--adapt-weight", "0.5",
                  *TINY, "--out", "runs/dann", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "domain_loss" in res.stdout and f"+ unlabelled {unlabelled} (dann)" in res.stdout
    config = json.loads((tmp_path / "runs/dann/state.json").read_text())["config"]
    assert config["options"]["adapt_weight"] == 0.5 and config["adapt"]["features"] == "stage4_out"
    res = run_zoo("predict", "runs/dann", str(unlabelled / "anatomical.nii"), "--out", "seg.nii.gz", cwd=tmp_path,
                  timeout=300)
    assert res.returncode == 0 and (tmp_path / "seg.nii.gz").exists(), res.stderr[-2000:]
