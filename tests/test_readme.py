"""The README says what the code does: its model table, its two opening commands and its Data sets section."""
import re

import pytest
from _proc import ROOT, run_python, run_zoo

README = (ROOT / "README.md").read_text()


def test_model_table_and_cards_match_registry():
    """tools/gen_cards.py --check: every docs/models/NAME.md and the README's table are what the
    registry and docs/models/measured.json render to (regenerate with python tools/gen_cards.py)."""
    res = run_python(ROOT / "tools" / "gen_cards.py", "--check", timeout=120)
    assert res.returncode == 0, res.stderr


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    first = blocks[0]
    commands = [l for l in first.splitlines() if l.strip() and not l.startswith("#")]
    assert len(commands) == 2
    assert "pip install ." in commands[0] and commands[0].endswith("zoo run unet3d")
    assert 'pip install -e ".[test]"' in commands[1] and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]"' in ci and "pytest" in ci


# ----------------------------------------------------------------------------- Data sets
def _section(title):
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_data_sets_table_gives_every_catalogue_entry_its_licence():
    import zoo.datasets
    rows = [line.split(" | ") for line in _section("Data sets").splitlines()
            if line.startswith("| `")]
    by_builder = {}
    for cells in rows:
        first = re.findall(r"`([a-z0-9_]+)", cells[0])
        by_builder.setdefault(first[0], cells)
    entries = zoo.datasets.list()
    assert set(by_builder) == {e["name"].split("/")[0] for e in entries}
    for e in entries:
        cells = by_builder[e["name"].split("/")[0]]
        assert e["license"] in cells[3], (e["name"], e["license"], cells[3])
        assert f"{e['spatial_dims']}D" in cells[2], e["name"]
    assert f"# {len(entries)} names:" in _section("Data sets")


@pytest.mark.slow
def test_data_sets_examples_run_as_written(tmp_path):
    """The section's commands and Python block, verbatim, from a folder holding the checkout's
    datasets/ (its dummy files), with a private TFDS data_dir. ``zoo ...`` runs as
    ``python -m zoo.cli ...`` (the same entry point)."""
    section = _section("Data sets")
    (tmp_path / "datasets").symlink_to(ROOT / "datasets")
    env = {"TFDS_DATA_DIR": tmp_path / "tfds", "TF_CPP_MIN_LOG_LEVEL": None, "TF_USE_LEGACY_KERAS": None}
    bash, = re.findall(r"```bash\n(.*?)```", section, re.S)
    outputs = []
    for line in bash.splitlines():
        command = line.split("  #")[0].split()
        assert command[0] == "zoo", line
        res = run_zoo(*command[1:], cwd=tmp_path, env=env, timeout=900)
        assert res.returncode == 0, (line, res.stderr[-3000:])
        outputs.append(res.stdout)
    assert "decathlon/task05_prostate" in outputs[0] and "Task04_Hippocampus.tar" in outputs[1]
    assert "prepared isbi2012_em in" in outputs[2] and "train 5, validation 1" in outputs[2]
    assert (tmp_path / "runs" / "isbi-demo" / "best.h5").is_file()
    python, = re.findall(r"```python\n(.*?)```", section, re.S)
    res = run_python(python, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "runs" / "msd-demo" / "best.h5").is_file()


# ----------------------------------------------------------------------------- Classifying images from folders
@pytest.mark.slow
def test_classification_from_folders_runs_as_written(tmp_path):
    """The section's commands, verbatim, on two class folders like the ones it shows."""
    import json

    from _files import make_class_folders
    section = _section("Classifying images from folders")
    make_class_folders(tmp_path / "data2d")
    env = {"TF_CPP_MIN_LOG_LEVEL": None, "TF_USE_LEGACY_KERAS": None}
    bash, = re.findall(r"```bash\n(.*?)```", section, re.S)
    outputs = []
    for line in bash.splitlines():
        command = line.split()
        assert command[0] == "zoo", line
        res = run_zoo(*command[1:], cwd=tmp_path, env=env, timeout=900)
        assert res.returncode == 0, (line, res.stderr[-3000:])
        outputs.append((res.stdout, res.stderr))
    assert "2 classes from the folders of data2d/train (clock, disc)" in outputs[0][1]
    assert "the top classes of 2: clock, disc" in outputs[0][0]
    state = json.loads((tmp_path / "runs" / "r18" / "state.json").read_text())
    assert state["config"]["class_names"] == ["clock", "disc"] and state["config"]["output_shape"] == [None, 2]
    for stdout, _ in outputs[1:]:
        head, *rows = stdout.splitlines()
        names = sorted(r.split()[0] for r in rows if not r.strip().startswith("written"))
        assert names == ["clock", "disc"] and head.split(": ")[1].split()[0] in names
    data = json.loads((tmp_path / "pred.json").read_text())
    assert data["input"] == "data2d/val/clock/clock1.png" and {t["class"] for t in data["top"]} == {"clock", "disc"}
    assert abs(sum(t["probability"] for t in data["top"]) - 1) < 1e-5
    # what the section shows it printed: the lines that do not hold measured numbers, as printed now
    printed = re.findall(r"```\n(finetune: .*?)```", section, re.S)[0].splitlines()
    assert printed[0] == outputs[0][1].strip().splitlines()[0]
    assert printed[1] == next(x for x in outputs[0][0].splitlines() if x.startswith("finetune done"))
    assert printed[3] == next(x for x in outputs[0][0].splitlines() if x.strip().startswith("predict:"))
