"""zoo.datasets: names, descriptions, preparing from manual_dir, the errors for missing or
incomplete files, the verified download, and the ``zoo datasets`` command."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT, run_python, run_zoo

import zoo.datasets as zd
from zoo.datasets._catalog import folders


def dummy(name):
    return ROOT / "datasets" / name / "dummy_data"


def test_builders_come_from_the_checkouts_datasets_folder():
    assert set(folders()) == {"camvid", "decathlon", "isbi2012_em", "medmnist", "phantoms", "promise12"}
    assert all(path.parent == ROOT / "datasets" for path in folders().values())
    assert str(ROOT / "datasets") not in sys.path  # never importable as a top-level package


def test_list_describes_every_configuration():
    rows = zd.list()
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    assert {"isbi2012_em", "camvid", "promise12", "decathlon/task02_heart", "decathlon/task04_hippocampus",
            "decathlon/task05_prostate", "phantoms/seg2d"} <= set(names)
    assert sum(n.startswith("decathlon/") for n in names) == 10
    mnist = {n.split("/")[1] for n in names if n.startswith("medmnist/")}
    assert len(mnist) == 12 * 4 + 6 * 2  # 2D: 28, 64, 128, 224; 3D: 28, 64
    assert {"pathmnist_224", "chestmnist_28", "organmnist3d_64"} <= mnist and "organmnist3d_128" not in mnist
    for r in rows:
        assert r["task"] in ("segmentation", "classification", "multilabel"), r
        assert r["spatial_dims"] in (2, 3) and r["channels"] >= 1 and len(r["classes"]) >= 2, r
        assert r["license"] and r["files"] and r["source"], r
        assert zd.info(r["name"]) == r
    prostate = zd.info("decathlon/task05_prostate")
    assert prostate["channels"] == 2 and prostate["classes"] == ["background", "PZ", "TZ"]
    assert prostate["download"].endswith("/Task05_Prostate.tar") and prostate["license"] == "CC BY-SA 4.0"
    assert zd.info("medmnist/dermamnist_64")["license"] == "CC BY-NC 4.0"
    assert zd.info("isbi2012_em")["download"] is None
    assert [r["name"] for r in zd.list("medmnist/*3d_64")] == [
        f"medmnist/{f}3d_64" for f in ("organmnist", "nodulemnist", "adrenalmnist", "fracturemnist",
                                        "vesselmnist", "synapsemnist")]
    assert {r["name"] for r in zd.list(spatial_dims=3, task="segmentation")} == \
        {n for n in names if n.startswith("decathlon/")} | {"promise12", "phantoms/seg3d"}


def test_import_and_list_need_no_tensorflow():
    code = ("import sys, zoo; rows = zoo.datasets.list(); "
            "assert 'tensorflow' not in sys.modules, 'listing imported TensorFlow'; print(len(rows))")
    res = run_python(code, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout) == len(zd.list())


@pytest.mark.parametrize("name, message", [
    ("isbi", r"'isbi' is not a data set of the catalogue.*Did you mean 'isbi2012_em'"),
    ("decathlon", r"'decathlon' has 10 configurations; name one, e\.g\. 'decathlon/task01_braintumour'"),
    ("decathlon/task4_hippocampus", r"no configuration 'task4_hippocampus'.*'task04_hippocampus'"),
    ("medmnist/pathmnist_32", r"60 in all.*Did you mean 'pathmnist_28'"),
])
def test_unknown_names_say_what_exists(name, message):
    with pytest.raises(zd.UnknownDatasetError, match=message):
        zd.info(name)


def test_a_default_configuration_needs_no_name():
    assert zd.info("phantoms")["name"] == "phantoms/seg2d"
    assert zd.info("isbi2012_em")["name"] == "isbi2012_em"


# ------------------------------------------------------------------ missing / incomplete files
ONE_CONFIG = {"isbi2012_em": "isbi2012_em", "decathlon": "decathlon/task02_heart",
              "promise12": "promise12", "medmnist": "medmnist/pathmnist_28", "camvid": "camvid"}


@pytest.mark.parametrize("name", sorted(ONE_CONFIG.values()))
def test_an_empty_manual_dir_lists_the_files_to_place_there(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # the Decathlon and MedMNIST would download otherwise
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(zd.DatasetFilesError) as err:
        zd.prepare(name, manual_dir=manual, data_dir=tmp_path / "data")
    text = str(err.value)
    assert f"manual_dir: {manual}" in text
    for line in zd.info(name)["files"]:
        assert line in text
    assert zd.info(name)["source"] in text and f"then run: zoo datasets prepare {name} --manual-dir DIR" in text
    assert len(" ".join(text.split())) <= 600, len(text)  # fits a one-line CLI error
    if zd.info(name)["download"]:
        assert "ZOO_OFFLINE=1 is set" in text
    assert not zd.builder(name, tmp_path / "data").is_prepared()
    leftovers = [p for p in (tmp_path / "data").rglob("*") if "incomplete" in p.name]
    assert not leftovers, leftovers


def test_a_manual_dir_that_is_no_folder_is_named(tmp_path):
    with pytest.raises(zd.DatasetFilesError, match=r"manual_dir='.*nowhere' is not a folder\.\n"
                       r"create it and place there: train-volume\.tif; train-labels\.tif\nget them from: http"):
        zd.prepare("isbi2012_em", manual_dir=tmp_path / "nowhere", data_dir=tmp_path)


def _copy(name, tmp_path):
    target = tmp_path / name
    shutil.copytree(dummy(name), target)
    return target


@pytest.mark.parametrize("name, remove, listed", [
    ("isbi2012_em", "train-labels.tif", "train-labels.tif"),
    ("decathlon/task02_heart", "Task02_Heart/labelsTr/la_003.nii.gz", "labelsTr/la_003.nii.gz"),
    ("promise12", "TrainingData_Part2/Case03_segmentation.raw", "TrainingData_Part2/Case03_segmentation.raw"),
    ("promise12", "TrainingData_Part2/Case04_segmentation.mhd", "TrainingData_Part2/Case04_segmentation.mhd"),
    ("camvid", "CamVid/valannot/0016E5_07959.png", "valannot/0016E5_07959.png"),
    ("medmnist/pathmnist_28", "pathmnist.npz", "pathmnist.npz"),
])
def test_an_incomplete_manual_dir_names_the_missing_files(name, remove, listed, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    manual = _copy(name.split("/")[0], tmp_path)
    (manual / remove).unlink()
    with pytest.raises(zd.DatasetFilesError) as err:
        zd.prepare(name, manual_dir=manual, data_dir=tmp_path / "data")
    missing, = [line for line in str(err.value).splitlines() if line.startswith("missing: ")]
    assert missing == f"missing: {listed}", str(err.value)


def test_files_of_the_wrong_kind_are_refused(tmp_path, monkeypatch):
    from PIL import Image
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    manual = _copy("isbi2012_em", tmp_path)
    pages = [Image.fromarray(np.full((32, 32), 128, np.uint8))] * 6  # a grey stack: not labels
    pages[0].save(manual / "train-labels.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(zd.DatasetFilesError, match=r"train-labels\.tif: holds values \[128\].*label stack"):
        zd.prepare("isbi2012_em", manual_dir=manual, data_dir=tmp_path / "a")
    manual = _copy("medmnist", tmp_path)
    (manual / "pathmnist.npz").rename(manual / "pathmnist_64.npz")  # the 28-pixel file, named as 64
    with pytest.raises(zd.DatasetFilesError, match=r"train_images has shape \(3, 28, 28, 3\).*\(64, 64, 3\)"):
        zd.prepare("medmnist/pathmnist_64", manual_dir=manual, data_dir=tmp_path / "b")
    with np.load(dummy("medmnist") / "chestmnist_64.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "test_labels"}
    np.savez(manual / "chestmnist_64.npz", **arrays)
    with pytest.raises(zd.DatasetFilesError, match=r"lacks the arrays \['test_labels'\]"):
        zd.prepare("medmnist/chestmnist_64", manual_dir=manual, data_dir=tmp_path / "c")
    manual = _copy("decathlon", tmp_path)
    shutil.copy(manual / "Task03_Liver" / "dataset.json", manual / "Task02_Heart" / "dataset.json")
    with pytest.raises(zd.DatasetFilesError, match=r"labels \['background', 'liver', 'cancer'\].*another task"):
        zd.prepare("decathlon/task02_heart", manual_dir=manual, data_dir=tmp_path / "d")


# ------------------------------------------------------------------------ verified download
def _fetcher(tmp_path):
    import tensorflow_datasets as tfds

    from zoo.datasets import _kit
    builder = zd.builder("medmnist/pathmnist_28", tmp_path / "data")
    dl = tfds.download.DownloadManager(download_dir=str(tmp_path / "dl"), manual_dir=str(tmp_path / "empty"),
                                       manual_dir_instructions="x")
    return _kit, builder, dl


def test_download_is_checked_against_the_published_md5(tmp_path, server, http_env):
    import hashlib
    body = b"not really an npz" * 100
    url = server.add("pathmnist.npz", body)
    kit, builder, dl = _fetcher(tmp_path)
    path = kit.fetch(builder, dl, "pathmnist.npz", url=url, md5=hashlib.md5(body).hexdigest())
    assert Path(path).read_bytes() == body
    kit, builder, dl = _fetcher(tmp_path / "second")
    with pytest.raises(zd.DatasetFilesError, match=r"has MD5 [0-9a-f]{32} but the published MD5 is 0{32}; "
                       r"the file was removed"):
        kit.fetch(builder, dl, "pathmnist.npz", url=url, md5="0" * 32)
    assert not [p for p in (tmp_path / "second" / "dl").rglob("*") if p.is_file() and p.stat().st_size == len(body)]


def test_offline_never_downloads(tmp_path, server, http_env, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    url = server.add("pathmnist.npz", b"x")
    kit, builder, dl = _fetcher(tmp_path)
    with pytest.raises(zd.DatasetFilesError, match="ZOO_OFFLINE=1 is set"):
        kit.fetch(builder, dl, "pathmnist.npz", url=url, md5="0" * 32)
    assert server.requests == []


# ------------------------------------------------------------------------ prepare and reuse
def test_prepare_once_then_reuse_or_overwrite(tmp_path):
    data = tmp_path / "data"
    first = zd.prepare("isbi2012_em", manual_dir=dummy("isbi2012_em"), data_dir=data)
    assert {k: v.num_examples for k, v in first.info.splits.items()} == {"train": 5, "validation": 1}
    info = Path(first.data_dir) / "dataset_info.json"
    stamp = info.stat().st_mtime_ns
    again = zd.prepare("isbi2012_em", data_dir=data)  # no manual_dir needed any more
    assert again.is_prepared() and info.stat().st_mtime_ns == stamp
    zd.prepare("isbi2012_em", manual_dir=dummy("isbi2012_em"), data_dir=data, overwrite=True)
    assert info.stat().st_mtime_ns != stamp


def test_tfds_load_knows_the_names_after_register(tmp_path):
    import tensorflow_datasets as tfds
    assert "phantoms" in zd.register() and "phantoms" in tfds.list_builders(with_community_datasets=False)
    ds = tfds.load("phantoms/cls2d", split="validation", data_dir=str(tmp_path))
    from zoo.data import phantom_arrays
    images, labels = phantom_arrays(16, task="classification", seed=7919)
    got = list(tfds.as_numpy(ds))
    by_image = {ex["image"].tobytes(): ex["label"] for ex in got}
    assert len(got) == 16 and all(by_image[img.tobytes()] == lab for img, lab in zip(images, labels))


# ------------------------------------------------------------------------------ the command
def _zoo(*args):
    # as a user's shell: without the variables zoo._keras set in this test process
    return run_zoo(*args, cwd=ROOT, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": None, "TF_USE_LEGACY_KERAS": None})


def test_cli_lists_and_describes():
    res = _zoo("datasets", "list", "--names-only")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [r["name"] for r in zd.list()]
    res = _zoo("datasets", "list", "decathlon/*")
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["name", "task", "dims", "ch", "classes", "get", "licence"]
    assert lines[5].split() == ["decathlon/task05_prostate", "segmentation", "3", "2", "3", "download",
                                "CC", "BY-SA", "4.0"]
    res = _zoo("datasets", "info", "promise12")
    assert res.returncode == 0 and "TrainingData_Part1.zip" in res.stdout and "1 prostate" in res.stdout


def test_cli_prepares_and_reports_errors(tmp_path, capsys):
    from zoo.cli import main
    assert main(["datasets", "prepare", "camvid", "--manual-dir", str(dummy("camvid")),
                 "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"prepared camvid in {tmp_path}/camvid/default/1.0.0: train 2, validation 1, test 1" in out
    assert main(["datasets", "prepare", "promise12", "--manual-dir", str(tmp_path), "--data-dir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: data set 'promise12': "), err
    assert "TrainingData_Part1.zip" in err and "Traceback" not in err
