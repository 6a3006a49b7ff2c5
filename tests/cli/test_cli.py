"""The `zoo` command as a user meets it: one clear line per error, exit codes, pipes, --debug."""
import json

import numpy as np
import pytest
from _proc import ROOT, run_zoo, start_python

from zoo import cli


def zoo_cmd(*args, **kw):
    return run_zoo(*args, cwd=ROOT, timeout=300, **kw)


def test_version_and_help_with_examples():
    res = zoo_cmd("--version")
    assert res.returncode == 0 and res.stdout.strip().startswith("zoo 0.")
    res = zoo_cmd("--help")
    assert res.returncode == 0 and "examples:" in res.stdout and "zoo finetune unet" in res.stdout
    for command in ("list", "info", "build"):
        res = zoo_cmd(command, "--help")
        assert res.returncode == 0 and "example: zoo " + command in res.stdout, command


def test_list_json_is_machine_readable():
    res = zoo_cmd("list", "unet*", "--json")
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ["unet", "unet3d", "unet3d_genesis"]
    assert rows[0]["task"] == "segmentation" and rows[0]["params"] == 31030658


def test_closed_pipe_ends_quietly():
    """`zoo list --names-only | head -1`: the reader goes away; no BrokenPipeError traceback."""
    proc = start_python("import sys; from zoo.cli import main; sys.exit(main(['list', '--names-only']))",
                        cwd=ROOT, text=False)
    proc.stdout.read(1)
    proc.stdout.close()  # like `head -1` exiting after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("args,expected", [
    (["build", "unet", "--size", "100"], "use 96 or 112"),  # the size check runs for --size too
    (["build", "unet3d", "--size", "100"], "use 96 or 104"),
    (["build", "nosuch"], "no model named 'nosuch'"),
])
def test_errors_are_one_line_with_exit_code_2(args, expected):
    res = zoo_cmd(*args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and expected in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_the_traceback():
    res = zoo_cmd("--debug", "build", "unet", "--size", "100")
    assert res.returncode != 0 and "Traceback" in res.stderr and "use 96 or 112" in res.stderr


@pytest.mark.slow  # measured 7.2 s in the quick tier
def test_build_takes_set_overrides():
    res = zoo_cmd("build", "unet", "--set", "filters=4", "--set", "depth=2", "--size", "32")
    assert res.returncode == 0, res.stderr
    assert "input (1, 32, 32, 1) -> output (1, 32, 32, 2)" in res.stdout


def _fake(exc):
    def run(args):
        raise exc
    return run


def test_unexpected_errors_and_ctrl_c_are_one_line(monkeypatch, capsys):
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = parser._subparsers._group_actions[0].choices["list"]
    sub.set_defaults(func=_fake(RuntimeError("disk on fire")))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: RuntimeError: disk on fire") and "--debug" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "list"])
    sub.set_defaults(func=_fake(KeyboardInterrupt()))
    assert cli.main(["list"]) == 130
    assert "interrupted" in capsys.readouterr().err


def _walk(parser, path=()):
    """(command path, parser) of every subcommand, nested ones included (zoo datasets list ...)."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _walk(sub, path + (name,))


def test_every_option_has_help_and_every_subcommand_an_example():
    import argparse
    commands = list(_walk(cli.build_parser()))
    assert {("finetune",), ("predict",), ("compress",), ("datasets", "prepare")} <= {c for c, _ in commands}
    for command, parser in commands:
        missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
                   if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not missing, f"zoo {' '.join(command)}: options without help: {missing}"
        assert parser.epilog and "example: zoo " + " ".join(command) in parser.epilog, \
            f"zoo {' '.join(command)} --help shows no example"


def test_python_hints_are_given_in_the_shells_words():
    """A ZooError written for the Python API suggests the command's own option on the command line."""
    opts = cli._command_options(cli.build_parser(), "predict")
    assert "--patch-size" in opts and "--overlap" in opts
    text = "patch_size is needed, e.g. patch_size=(96, 96, 96); spacing=(1.0, 1.0, 2.0), strides=(2, 2) or filters=8"
    assert cli.cli_words(text, opts) == ("patch_size is needed, e.g. --patch-size 96,96,96; --spacing 1.0,1.0,2.0, "
                                         "strides=(2, 2) or filters=8")  # only the command's options
    assert cli.cli_words("input_shape=(64, 64, 1)", cli._command_options(cli.build_parser(), "export")) == \
        "--input-shape 64,64,1"


@pytest.mark.slow  # measured 17.2 s in the quick tier
def test_predict_with_a_weights_file_builds_from_its_config_and_asks_for_the_patch_in_shell_words(tmp_path):
    import nibabel as nib

    import zoo
    model = zoo.load("unet3d", filters=2, in_channels=1, num_classes=2)
    zoo.save_weights(model, tmp_path / "u3.weights.h5", verbose=False)
    vol = np.random.default_rng(0).normal(size=(20, 18, 16)).astype("float32")
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    base = ["predict", "u3.weights.h5", "v.nii.gz", "--model", "unet3d", "--out", "seg.nii.gz"]
    res = run_zoo(*base, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "e.g. --patch-size 96,96,96" in res.stderr.splitlines()[-1], res.stderr
    res = run_zoo(*base, "--patch-size", "16,16,16", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]  # filters=2, 1 channel, 2 classes: from the file
    assert nib.load(str(tmp_path / "seg.nii.gz")).shape == (20, 18, 16)
