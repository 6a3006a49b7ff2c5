"""Issue 10, the classification workflow: classes from the folders, class names in the run and in
the predictions (zoo finetune / zoo predict as a user types them)."""
import json
import shutil

import numpy as np
import pytest
from _files import make_class_folders

import zoo
from zoo import cli
from zoo.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("data2d"))


@pytest.fixture(scope="module")
def run(folders, tmp_path_factory):
    """A resnet18 (width 8) run fine-tuned from the shell on the two class folders."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    train, val = folders
    out = tmp_path_factory.mktemp("runs") / "r18"
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        rc = cli.main(["finetune", "resnet18", "--train", str(train), "--val", str(val), "--epochs", "1",
                       "--patch-size", "32", "--set", "width=8", "--out", str(out), "--no-tensorboard",
                       "--quiet"])
    assert rc == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


@pytest.mark.slow  # measured 8.0 s in the quick tier
def test_finetune_by_name_takes_class_count_and_names_from_the_folders(run):
    out, stdout, stderr = run
    config = json.loads((out / "state.json").read_text())["config"]
    assert config["num_classes"] == 2 and config["output_shape"] == [None, 2]
    assert config["class_names"] == ["clock", "disc"]
    assert "2 classes from the folders" in stderr and "num_classes=2" in stderr
    # the summary suggests the classifier's predict command, not a segmentation output
    line = next(x for x in stdout.splitlines() if x.strip().startswith("predict:"))
    assert f"zoo predict {out} IMAGE.png" in line and "--out SEG" not in line and "clock, disc" in line
    assert list(zoo.load_run(out).zoo_info.class_names) == ["clock", "disc"]


def test_a_model_whose_head_does_not_fit_the_folders_is_refused(folders, tmp_path):
    train, val = folders
    model = zoo.load("resnet18", width=8)  # the default 1000-class head
    with pytest.raises(InvalidArgumentError) as err:
        zoo.finetune(model, str(train), str(val), epochs=1, patch_size=32, out_dir=tmp_path / "r", verbose=0)
    msg = str(err.value)
    assert "has 2 classes (clock, disc)" in msg and "1000-class head" in msg and "num_classes=2" in msg
    assert not (tmp_path / "r").exists()  # refused before the run folder is written


def test_a_validation_folder_with_other_classes_is_refused(folders, tmp_path):
    train, val = folders
    other = tmp_path / "val"
    shutil.copytree(val, other)
    (other / "clock").rename(other / "clocks")
    model = zoo.load("resnet18", width=8, num_classes=2)
    with pytest.raises(InvalidArgumentError) as err:
        zoo.finetune(model, str(train), str(other), epochs=1, patch_size=32, out_dir=tmp_path / "r", verbose=0)
    msg = str(err.value)
    assert "missing in validation: clock" in msg and "only in validation: clocks" in msg, msg


@pytest.mark.slow  # measured 7.7 s in the quick tier
def test_predict_prints_class_names_with_probabilities_and_writes_json(run, folders, tmp_path, capsys):
    out, _, _ = run
    image = folders[1] / "disc" / "disc0.png"
    assert cli.main(["predict", str(out), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    first, rows = lines[0], [line.split() for line in lines[1:]]
    assert first.startswith(f"{image}: ") and [r[0] for r in rows] in (["clock", "disc"], ["disc", "clock"])
    probs = {name: float(p) for name, p in rows}
    assert abs(sum(probs.values()) - 1) < 1e-3 and first.split()[1] == max(probs, key=probs.get)
    expected = zoo.predict(str(out), str(image), return_probabilities=True)
    assert abs(probs["disc"] - float(expected[1])) < 1e-4
    # --out x.json writes them (it was silently ignored); an existing file is refused
    target = tmp_path / "pred.json"
    assert cli.main(["predict", str(out), str(image), "--out", str(target), "--top-k", "1"]) == 0
    data = json.loads(target.read_text())
    assert data["prediction"] == first.split()[1] and len(data["top"]) == 1
    assert abs(data["top"][0]["probability"] - max(probs.values())) < 1e-4
    assert cli.main(["predict", str(out), str(image), "--out", str(target)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    # a folder as --out: <out>/<input stem>.json
    folder = tmp_path / "preds"
    folder.mkdir()
    assert cli.main(["predict", str(out), str(image), "--out", str(folder)]) == 0
    assert json.loads((folder / "disc0.json").read_text())["input"] == str(image)


def test_top_k_of_many_classes_is_sorted_and_named():
    from zoo.cli._outputs import top_classes
    p = np.array([0.05, 0.3, 0.01, 0.2, 0.04, 0.25, 0.15])
    names = [f"c{i}" for i in range(7)]
    top = top_classes(p, names, 5)
    assert [t[1] for t in top] == ["c1", "c5", "c3", "c6", "c0"]
    assert top_classes(np.array([0.8]), ["neg", "pos"], 5) == [(1, "pos", 0.8), (0, "neg", pytest.approx(0.2))]
