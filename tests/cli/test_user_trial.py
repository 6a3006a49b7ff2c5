"""`zoo run` as a new user meets it, on real files nobody here wrote: scikit-image's sample
pictures, nibabel's test volumes; the labels are derived by thresholding. Each test reproduces
one point of the user trial (issue 24) through the command line, as a user types it."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from _proc import run_python, run_zoo

TINY_RUN = ["--set", "filters=4", "--set", "depth=2", "--epochs", "2", "--compress-epochs", "1",
            "--steps-per-epoch", "3", "--patch-size", "32", "--quantization", "float32", "--quiet"]


def _pictures():
    """Grayscale sample pictures of scikit-image (real photographs and scans, various sizes)."""
    import skimage.data as d
    return {"camera": d.camera(), "coins": d.coins(), "moon": d.moon(), "page": d.page(), "text": d.text(),
            "cell": d.cell(), "brick": d.brick(), "grass": d.grass()}


def _three_classes(image):
    """A label map derived from a picture: 0 below its 40th percentile, 2 above its 80th, else 1."""
    lo, hi = np.percentile(image, [40, 80])
    return (image > lo).astype(np.uint8) + (image > hi).astype(np.uint8)


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    """``seg/train`` (6 pictures) and ``seg/val`` (2: fewer than validation_steps x batch_size =
    4 x 2), images/ + masks/ as PNG, 64x64 crops, three classes."""
    from PIL import Image
    root = tmp_path_factory.mktemp("trial") / "seg"
    for k, (name, picture) in enumerate(_pictures().items()):
        split = "train" if k < 6 else "val"
        crop = np.asarray(Image.fromarray(picture).resize((64, 64)))
        for sub, array in (("images", crop), ("masks", _three_classes(crop))):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / split / sub / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def seg_run(seg_data):
    """One `zoo run unet --data seg` in the data's parent folder, the data named by a relative path."""
    cwd = seg_data.parent
    res = run_zoo("run", "unet", "--data", "seg", "--recipe", "prune_50", "--out", "runs/a", *TINY_RUN,
                  cwd=cwd, timeout=900)
    return cwd, res


@pytest.mark.slow  # ~60 s: a zoo run
def test_a_small_validation_set_and_three_classes_read_from_the_labels(seg_run):
    cwd, res = seg_run
    assert res.returncode == 0, res.stderr[-3000:]
    state = json.loads((cwd / "runs/a/1_finetune/state.json").read_text())
    # point 1: two validation images, validation_steps 4 x batch 2: every epoch logs val_loss
    assert [("val_loss" in row) for row in state["history"]] == [True, True]
    # point 4: three classes read from the label maps; point 2: one channel read from the images
    assert state["config"]["num_classes"] == 3 and state["config"]["in_channels"] == 1
    report = json.loads((cwd / "runs/a/report.json").read_text())
    assert report["eval_samples"] == 2 and report["scores"]["exported"] is not None


@pytest.mark.slow  # ~30 s: two fresh interpreters
def test_predict_and_export_take_the_run_folder_zoo_run_wrote(seg_run, seg_data):
    cwd, res = seg_run
    assert res.returncode == 0, res.stderr[-3000:]
    picture = seg_data / "val" / "images" / "grass.png"
    res = run_zoo("predict", "runs/a", str(picture), "--out", "grass_seg.png", cwd=cwd)
    assert res.returncode == 0, res.stderr[-2000:]  # point 3: the run folder (its last stage)
    assert "using its last stage runs/a/2_prune_50" in res.stderr and (cwd / "grass_seg.png").is_file()
    # point 7: from another folder, the export calibrates on the run's data (recorded absolute), not phantoms
    elsewhere = cwd / "elsewhere"
    elsewhere.mkdir()
    res = run_zoo("export", str(cwd / "runs/a"), "--quantization", "int8", "--out", "a.tflite", "--verify", "warn",
                  cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"representative data: the model's training data {seg_data / 'train'}" in res.stdout


@pytest.mark.slow  # ~40 s: three refused reruns and one restart
def test_a_rerun_with_other_inputs_stops_and_names_them(seg_run):
    cwd, res = seg_run
    assert res.returncode == 0, res.stderr[-3000:]
    before = (cwd / "runs/a/3_export/unet_float32.tflite").read_bytes()
    res = run_zoo("run", "unet", "--data", "seg", "--recipe", "prune_80", "--out", "runs/a", *TINY_RUN, cwd=cwd)
    assert res.returncode == 2 and "--recipe: prune_50 there, prune_80 now" in res.stderr, res.stderr[-2000:]
    args = [a if a != "32" else "48" for a in TINY_RUN]
    res = run_zoo("run", "unet", "--data", "seg", "--recipe", "prune_50", "--out", "runs/a", *args, cwd=cwd)
    assert res.returncode == 2 and "--patch-size: 32 there, 48 now" in res.stderr, res.stderr[-2000:]
    res = run_zoo("run", "unet", "--data", "seg/val", "--recipe", "prune_50", "--out", "runs/a", *TINY_RUN, cwd=cwd)
    assert res.returncode == 2 and "--data/--train:" in res.stderr and "Traceback" not in res.stderr
    assert (cwd / "runs/a/3_export/unet_float32.tflite").read_bytes() == before  # nothing was touched
    assert "pass --restart to start it over" in res.stderr


@pytest.mark.slow  # ~40 s: a zoo run
def test_rgb_class_folders_build_a_three_channel_classifier(tmp_path):
    """Point 2: colour photographs in class folders (scikit-image's), 48x48 crops."""
    import skimage.data as d
    from PIL import Image
    for cls, names in (("animals", ("astronaut", "chelsea", "coffee")), ("objects", ("rocket", "motorcycle_left",
                                                                                       "hubble_deep_field"))):
        (tmp_path / "cls" / cls).mkdir(parents=True)
        for name in names:
            picture = getattr(d, name)() if hasattr(d, name) else None
            if picture is None:
                from skimage import io
                picture = io.imread(Path(d.__file__).parent / f"{name}.png")
            picture = np.asarray(picture)[..., :3]
            for k in range(3):  # three crops of each picture
                h, w = picture.shape[:2]
                y, x = (h - 96) * k // 3, (w - 96) * k // 3
                Image.fromarray(picture[y:y + 96, x:x + 96]).resize((48, 48)).save(
                    tmp_path / "cls" / cls / f"{name}_{k}.png")
    res = run_zoo("run", "resnet18", "--data", "cls", "--set", "width=8", "--epochs", "1", "--steps-per-epoch", "2",
                  "--patch-size", "48", "--recipe", "none", "--quantization", "float32", "--out", "runs/c",
                  cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "in_channels=3 (its images' channels)" in res.stderr and "num_classes=2 (2 class folders)" in res.stderr
    config = json.loads((tmp_path / "runs/c/1_finetune/state.json").read_text())["config"]
    assert config["in_channels"] == 3 and config["class_names"] == ["animals", "objects"]


def test_a_volume_with_fewer_slices_than_the_patch_is_padded_as_in_training(tmp_path):
    """Point 5: nibabel's anatomical.nii (25 slices; cut to 32 x 32 in-plane) under a 32^3 patch:
    zoo predict pads it as training pads volumes (symmetric, with the volume's minimum), not at
    the end by reflection, so it sees what the model was trained on."""
    import nibabel as nib

    import zoo
    from zoo.data.volumes import load_nifti, normalize_intensity, pad_to
    from zoo.scoring import labels
    source = nib.load(str(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"))
    volume = np.asarray(source.dataobj)[:32, 4:36, :]
    nib.save(nib.Nifti1Image(volume, source.affine), str(tmp_path / "anat.nii.gz"))
    model = zoo.load("unet3d", filters=2, depth=1, num_classes=2, in_channels=1)
    zoo.save_weights(model, tmp_path / "w.h5", verbose=False)
    res = run_zoo("predict", str(tmp_path / "w.h5"), "anat.nii.gz", "--model", "unet3d", "--set", "filters=2",
                  "--set", "depth=1", "--patch-size", "32", "--out", "seg.nii.gz", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = np.asanyarray(nib.load(str(tmp_path / "seg.nii.gz")).dataobj)
    image = normalize_intensity(load_nifti(tmp_path / "anat.nii.gz")[0])
    padded, _ = pad_to(image, None, (32, 32, 32))  # training's rule: symmetric, the volume's minimum
    before = (32 - 25) // 2
    want = labels(model.predict(padded[None], verbose=0)[0])[:, :, before:before + 25]
    assert got.shape == (32, 32, 25) and padded.shape[:3] == (32, 32, 32)
    np.testing.assert_array_equal(got, want)


def test_a_narrow_model_shared_by_tag_loads_in_a_fresh_process(tmp_path, isolated_home):
    """Point 8: zoo.save_weights' snippet carries the builder config; zoo.load(NAME, weights=TAG)
    on another machine (a fresh process with the snippet in ZOO_REGISTRY) rebuilds filters=8."""
    import zoo
    model = zoo.load("unet", filters=8, depth=2, num_classes=2, in_channels=1)
    saved = zoo.save_weights(model, tmp_path / "unet8.h5", verbose=False)
    (tmp_path / "team.yaml").write_text(saved.snippet)
    res = run_python("import zoo; m = zoo.load('unet', weights='finetuned'); print(m.count_params())",
                     env={"ZOO_REGISTRY": str(tmp_path / "team.yaml"), "ZOO_HOME": str(isolated_home)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.split()[-1]) == model.count_params()


def _same_weights(first, second):
    """Every dataset of two Keras .h5 files holds the same values."""
    import h5py
    with h5py.File(first) as a, h5py.File(second) as b:
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        return bool(names) and all(np.allclose(a[n][()], b[n][()], atol=1e-5) for n in names)


@pytest.mark.slow  # ~70 s: two zoo runs
def test_a_seeded_run_repeats(seg_data, tmp_path):
    """Point 9: the same `zoo run ... --seed 0` twice gives the same model and the same scores."""
    args = ["run", "unet", "--data", str(seg_data), "--recipe", "none", "--seed", "0", *TINY_RUN]
    reports = []
    for k in range(2):
        res = run_zoo(*args, "--out", f"runs/s{k}", "--json", cwd=tmp_path, timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
        reports.append(json.loads(res.stdout))
    assert reports[0]["scores"]["finetuned"] == pytest.approx(reports[1]["scores"]["finetuned"], abs=1e-6)
    assert _same_weights(*(tmp_path / f"runs/s{k}/1_finetune/last.h5" for k in range(2)))


@pytest.mark.slow  # ~30 s: three short zoo finetune runs
def test_a_seeded_finetune_repeats_from_its_initial_weights(seg_data, tmp_path):
    """`zoo finetune` seeds before it builds the model: the same command twice gives the same
    weights (it seeded only the data once, and two runs started from different random weights);
    another --seed gives other weights."""
    args = ["finetune", "unet", "--train", str(seg_data / "train"), "--val", str(seg_data / "val"),
            "--num-classes", "3", "--set", "filters=4", "--set", "depth=2", "--epochs", "1", "--steps-per-epoch", "2",
            "--patch-size", "32", "--quiet", "--no-tensorboard"]
    for k, seed in enumerate((0, 0, 1)):
        res = run_zoo(*args, "--seed", str(seed), "--out", f"runs/f{k}", cwd=tmp_path, timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
    last = [tmp_path / f"runs/f{k}/last.h5" for k in range(3)]
    assert _same_weights(last[0], last[1])
    assert not _same_weights(last[0], last[2])


def test_an_unknown_entry_gets_a_did_you_mean(tmp_path):
    res = run_zoo("run", "unet3dd", cwd=tmp_path)
    assert res.returncode == 2 and "Did you mean 'unet3d'" in res.stderr and "Traceback" not in res.stderr
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.slow  # ~25 s: three zoo predict commands
def test_a_dicom_series_with_a_gap_is_refused_unless_the_user_asks(tmp_path):
    """pydicom's CT2 test series (4 slices, one gap): zoo predict refuses to write a label map whose
    geometry its own warning says is wrong; --dicom-gaps split keeps the evenly spaced slices,
    --dicom-gaps median stacks them all, with a warning."""
    import shutil

    import nibabel as nib
    import pydicom.data

    import zoo
    series = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "77654033" / "CT2"
    shutil.copytree(series, tmp_path / "CT2")
    model = zoo.load("unet3d", filters=2, depth=1, num_classes=2, in_channels=1)
    zoo.save_weights(model, tmp_path / "w.h5", verbose=False)
    base = ["predict", "w.h5", "CT2", "--model", "unet3d", "--set", "filters=2", "--set", "depth=1",
            "--patch-size", "8"]
    res = run_zoo(*base, cwd=tmp_path)
    assert res.returncode == 2 and "uneven slice spacing" in res.stderr and "--dicom-gaps split" in res.stderr
    assert not (tmp_path / "CT2_seg.nii.gz").exists()
    res = run_zoo(*base, "--dicom-gaps", "split", cwd=tmp_path)
    assert res.returncode == 0 and "kept the" in res.stderr, res.stderr[-2000:]
    kept = nib.load(str(tmp_path / "CT2_seg.nii.gz")).shape[2]
    res = run_zoo(*base, "--dicom-gaps", "median", "--out", "all.nii.gz", cwd=tmp_path)
    assert res.returncode == 0 and "as asked (gaps='median')" in res.stderr, res.stderr[-2000:]
    assert kept < nib.load(str(tmp_path / "all.nii.gz")).shape[2] == 4


def test_a_4d_nifti_and_a_volume_for_a_2d_classifier_get_messages_that_say_so(tmp_path):
    """nibabel's example4d.nii.gz (128 x 96 x 24 x 2: two time points) for a 1-channel 3D model, and
    its first volume for a 2D classifier."""
    import nibabel as nib

    import zoo
    source = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    model = zoo.load("unet3d", filters=2, depth=1, num_classes=2, in_channels=1)
    with pytest.raises(zoo.InvalidArgumentError, match=r"is a 4D NIfTI image .* read as channels, but the model "
                                                      r"takes 1\. Pick one volume first"):
        zoo.predict(model, source, out=False, patch_size=(16, 16, 16))
    first = nib.load(str(source))
    nib.save(nib.Nifti1Image(np.asarray(first.dataobj)[..., 0], first.affine), str(tmp_path / "vol.nii.gz"))
    classifier = zoo.load("resnet18", width=8, num_classes=2, in_channels=1)
    with pytest.raises(zoo.InvalidArgumentError, match=r"is a volume of 24 slices .* but the model is a 2D "
                                                      r"classifier"):
        zoo.predict(classifier, tmp_path / "vol.nii.gz")


@pytest.mark.slow  # ~15 s
def test_zoo_finetune_reads_the_classes_from_the_label_maps_as_zoo_run_does(seg_data, tmp_path):
    """Point 4 for `zoo finetune`: a correct 3-class label set needs no --num-classes there either."""
    res = run_zoo("finetune", "unet", "--train", str(seg_data / "train"), "--val", str(seg_data / "val"),
                  "--set", "filters=4", "--set", "depth=2", "--epochs", "1", "--steps-per-epoch", "2",
                  "--patch-size", "32", "--quiet", "--no-tensorboard", "--out", "runs/c3", cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "labels 0..2 in the 6 label map(s) read" in res.stderr and "num_classes=3" in res.stderr
    state = json.loads((tmp_path / "runs/c3/state.json").read_text())
    assert state["config"]["num_classes"] == 3
    res = run_zoo("finetune", "unet", "--train", str(seg_data / "train"), "--num-classes", "4", "--set", "filters=4",
                  "--set", "depth=2", "--epochs", "1", "--steps-per-epoch", "1", "--patch-size", "32", "--quiet",
                  "--no-tensorboard", "--out", "runs/c4", cwd=tmp_path, timeout=600)
    assert res.returncode == 0 and "labels 0.." not in res.stderr, res.stderr[-2000:]
    assert json.loads((tmp_path / "runs/c4/state.json").read_text())["config"]["num_classes"] == 4
