"""Issue 10: `zoo predict` and `zoo finetune` end in one clear line (exit 2), never a traceback."""
import json
from pathlib import Path

import nibabel
import numpy as np
import pytest
from _proc import run_zoo, start_zoo

import zoo
from zoo import cli

NIB_DATA = Path(nibabel.__file__).parent / "tests" / "data"


def one_line_error(capsys, argv, code=2):
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and "Traceback" not in err, err
    return lines[0]


def test_predict_with_model_uses_the_strict_weight_loader(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights\n")
    line = one_line_error(capsys, ["predict", notes, NIB_DATA / "anatomical.nii", "--model", "unet3d"])
    assert "cannot tell the format of weights file" in line and "notes.txt" in line
    # a checkpoint of another model (a resnet18 run's best.h5) into unet3d
    run = tmp_path / "r18"
    run.mkdir()
    zoo.load("resnet18", width=8, num_classes=2).save_weights(str(run / "best.h5"))
    line = one_line_error(capsys, ["predict", run / "best.h5", NIB_DATA / "anatomical.nii", "--model", "unet3d"])
    assert f"weights file {run / 'best.h5'}" in line and "saved from another model" in line
    # weights of another configuration (filters=8) into the default unet
    zoo.load("unet", filters=8).save_weights(str(tmp_path / "u8.h5"))
    line = one_line_error(capsys, ["predict", tmp_path / "u8.h5", NIB_DATA / "anatomical.nii", "--model", "unet"])
    assert "(3, 3, 1, 8)" in line and "(3, 3, 1, 64)" in line and "another configuration" in line
    # the same file with its configuration loads and predicts (a single --patch-size is per axis)
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["predict", str(tmp_path / "u8.h5"), str(tmp_path / "x.png"), "--model", "unet",
                     "--set", "filters=8", "--patch-size", "32"]) == 0
    assert (tmp_path / "x_seg.png").is_file()
    missing = one_line_error(capsys, ["predict", tmp_path / "nope.h5", tmp_path / "x.png", "--model", "unet"])
    assert "weights file" in missing and "does not exist" in missing


@pytest.mark.parametrize("name,patch,sizes", [("unet3d", "20", "20,20,20"), ("unet", "20", "20,20")])
def test_finetune_patch_the_model_cannot_take_names_the_nearest_sizes(tmp_path, capsys, name, patch, sizes):
    out = tmp_path / "run"
    line = one_line_error(capsys, ["finetune", name, "--patch-size", patch, "--epochs", "1", "--set", "filters=2",
                                   "--data-option", "n=2", "--out", out, "--no-tensorboard", "--quiet"])
    assert f"patch size {sizes} does not fit {name}" in line and "use 16 or" in line and "--patch-size" in line
    assert "ConcatOp" not in line and "Exception encountered" not in line
    assert not out.exists()


@pytest.fixture(scope="module")
def u3d(tmp_path_factory):
    """A tiny unet3d run (1 epoch on phantoms) to predict with."""
    out = tmp_path_factory.mktemp("runs") / "u3d"
    zoo.finetune(zoo.load("unet3d", filters=2, depth=1), "phantoms", "phantoms", epochs=1, patch_size=16,
                 out_dir=out, verbose=0, tensorboard=False, data_options={"n": 4})
    return out


def test_finetune_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile.txt"
    afile.write_text("keep me\n")
    line = one_line_error(capsys, ["finetune", "unet3d", "--out", afile, "--epochs", "1"])
    assert f"out_dir {afile} is an existing file" in line
    assert afile.read_text() == "keep me\n"


def test_predict_out_folder_existing_file_and_the_input_itself(u3d, tmp_path, capsys):
    import shutil
    scan = tmp_path / "anatomical.nii"
    shutil.copy(NIB_DATA / "anatomical.nii", scan)
    before = scan.read_bytes()
    line = one_line_error(capsys, ["predict", u3d, scan, "--out", scan])
    assert "is the input" in line and scan.read_bytes() == before
    line = one_line_error(capsys, ["predict", u3d, scan, "--out", scan, "--overwrite"])
    assert "is the input" in line and scan.read_bytes() == before
    folder = tmp_path / "outs"
    folder.mkdir()
    assert cli.main(["predict", str(u3d), str(scan), "--out", str(folder)]) == 0
    written = folder / "anatomical_seg.nii.gz"
    assert f"-> {written}" in capsys.readouterr().out and written.is_file()
    line = one_line_error(capsys, ["predict", u3d, scan, "--out", folder])
    assert f"{written} already exists; pass --overwrite" in line
    assert cli.main(["predict", str(u3d), str(scan), "--out", str(folder), "--overwrite"]) == 0
    # the Python API refuses the input as out too, and a folder as out holds the default name
    with pytest.raises(zoo.errors.InvalidArgumentError, match="would overwrite the input"):
        zoo.predict(str(u3d), str(scan), out=str(scan))
    assert scan.read_bytes() == before
    other = tmp_path / "other"
    other.mkdir()
    zoo.predict(str(u3d), str(scan), out=str(other))
    assert (other / "anatomical_seg.nii.gz").is_file()


def test_writer_errors_are_zoo_errors_and_leave_nothing(u3d, tmp_path, capsys, monkeypatch):
    import nibabel as nib
    scan = NIB_DATA / "anatomical.nii"
    blocker = tmp_path / "afile.txt"
    blocker.write_text("x")
    line = one_line_error(capsys, ["predict", u3d, scan, "--out", blocker / "seg.nii.gz"])
    assert f"cannot write the label map to {blocker / 'seg.nii.gz'}" in line and "nothing was written" in line
    out = tmp_path / "seg.nii.gz"

    def bad_save(img, path):  # what nibabel raises for a header it cannot write
        Path(path).write_bytes(b"half")
        raise nib.spatialimages.HeaderDataError("data dtype not supported")
    monkeypatch.setattr(nib, "save", bad_save)
    line = one_line_error(capsys, ["predict", u3d, scan, "--out", out])
    assert "HeaderDataError: data dtype not supported" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]  # no half-written output, no temp file


@pytest.mark.slow
def test_ctrl_c_during_training_says_how_to_resume(tmp_path):
    import json
    import signal
    import time
    out = tmp_path / "run"
    cmd = ["finetune", "unet", "--set", "filters=4", "--set", "depth=2", "--patch-size", "32", "--data-option",
           "n=16", "--out", str(out), "--no-tensorboard", "--quiet"]
    proc = start_zoo(*cmd, "--epochs", "200")
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None and done < 1:
        try:
            done = json.loads((out / "state.json").read_text())["epochs_completed"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    n = json.loads((out / "state.json").read_text())["epochs_completed"]
    assert n >= 1
    assert err.strip().splitlines()[-1] == (f"zoo: interrupted after epoch {n} of 200; run the same command "
                                            f"again to resume (from {out}, best.h5 and last.h5 kept)")
    res = run_zoo(*cmd, "--epochs", n + 1, timeout=240)
    assert res.returncode == 0, res.stderr
    assert f"finetune done: {n + 1} epoch(s)" in res.stdout


def test_predict_counts_nan_in_the_raw_volume_and_an_all_inf_volume_warns_nothing(u3d, tmp_path, capsys):
    import warnings

    import nibabel as nib
    vol = np.random.default_rng(0).random((24, 24, 24)).astype("float32")
    nan_at = [(10, 10, 10), (10, 11, 10), (12, 3, 4), (20, 20, 20), (5, 6, 7), (1, 2, 3), (11, 12, 13), (0, 23, 1)]
    for i, idx in enumerate(nan_at):
        vol[idx] = np.nan if i % 2 else np.inf
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "nan_volume.nii.gz"))
    line = one_line_error(capsys, ["predict", u3d, tmp_path / "nan_volume.nii.gz"])
    assert "holds 8 NaN/Inf value(s) (first at index (0, 23, 1))" in line  # raw values, not 33825 z-scored
    nib.save(nib.Nifti1Image(np.full((24, 24, 24), np.inf, "float32"), np.eye(4)), str(tmp_path / "inf.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail here
        line = one_line_error(capsys, ["predict", u3d, tmp_path / "inf.nii.gz"])
    assert f"holds {24 ** 3} NaN/Inf value(s) (first at index (0, 0, 0))" in line
    assert not (tmp_path / "inf_seg.nii.gz").exists()


@pytest.mark.slow  # measured 5.5 s in the quick tier
def test_a_single_dicom_slice_for_2d_models_and_a_folder_hint_for_3d(u3d, tmp_path, capsys):
    import shutil

    import pydicom
    from PIL import Image
    from pydicom.data import get_testdata_file
    dcm = tmp_path / "CT_small.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), dcm)
    run2d = tmp_path / "u2d"
    zoo.finetune(zoo.load("unet", filters=2, depth=2), "phantoms", epochs=1, patch_size=32, out_dir=run2d,
                 verbose=0, tensorboard=False, data_options={"n": 4})
    assert cli.main(["predict", str(run2d), str(dcm)]) == 0
    assert f"-> {tmp_path / 'CT_small_seg.png'}: label map (128, 128)" in capsys.readouterr().out
    seg = np.asarray(Image.open(tmp_path / "CT_small_seg.png"))
    ds = pydicom.dcmread(str(dcm))  # the slice as displayed (rows, columns), in HU, z-scored
    hu = ds.pixel_array.astype("float32") * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = zoo.predict(str(run2d), hu, normalize="zscore")
    np.testing.assert_array_equal(seg, expected)
    line = one_line_error(capsys, ["predict", u3d, dcm])
    assert "is one DICOM slice but the model is 3D; put the files of the whole series in one folder" in line


@pytest.mark.slow  # measured 4.8 s in the quick tier
def test_resume_only_with_the_same_options_unless_forced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short run folder name: the whole message fits one line
    out = Path("run")
    base = ["finetune", "unet", "--set", "filters=2", "--set", "depth=1", "--data-option", "n=4",
            "--batch-size", "2", "--out", out, "--no-tensorboard", "--quiet", "--epochs", "1"]
    assert cli.main([str(a) for a in base + ["--patch-size", "16"]]) == 0
    state = json.loads((out / "state.json").read_text())
    state["finished"] = False  # as if killed after epoch 1 of a longer run
    (out / "state.json").write_text(json.dumps(state))
    before = (out / "state.json").read_text()
    line = one_line_error(capsys, base + ["--epochs", "2", "--patch-size", "24", "--lr", "0.01",
                                          "--data-option", "n=6"])
    assert "holds an unfinished run with other options" in line
    assert "--patch-size 16,16 there, 24,24 now" in line and "--lr 0.001 there, 0.01 now" in line
    assert "--data-option n=4 there, n=6 now" in line and "--force-resume" in line
    assert "steps-per-epoch" not in line  # follows from the data; the user did not change it
    assert (out / "state.json").read_text() == before  # refused: nothing touched
    assert cli.main([str(a) for a in base + ["--epochs", "2", "--patch-size", "24", "--force-resume"]]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["epochs_completed"] == 2 and state["config"]["patch_size"] == [24, 24]
    capsys.readouterr()
