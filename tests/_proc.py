"""Fresh interpreters for the tests: the one way a test starts Python or the ``zoo`` command.

    res = run_zoo("list", "--json", cwd=tmp_path)                  # python -m zoo.cli list --json
    res = run_python("import zoo; print(zoo.__version__)")         # code, dedented, via -c
    res = run_python(tmp_path / "run.py", str(out), cpus=2)        # a script file, two CPU devices
    proc = start_zoo("finetune", ..., cwd=tmp_path)                 # a Popen to kill or talk to

Every child imports this checkout's ``zoo`` (``ROOT`` leads ``PYTHONPATH``), whatever its working
folder. ``env`` holds variables set over the current environment; a value of ``None`` removes
that variable. ``run_*`` return a ``subprocess.CompletedProcess`` (text, captured output); a child
still running at ``timeout`` seconds is killed and the test fails naming the command and showing
what it had written so far. ``cpus=2`` splits the CPU into two logical TensorFlow devices before
TensorFlow initialises (what MirroredStrategy tests need on a one-CPU machine).
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository

# must run before TensorFlow creates its devices, so before anything builds a model
SPLIT_CPUS = """\
from zoo._keras import tf as _tf
_tf.config.set_logical_device_configuration(
    _tf.config.list_physical_devices("CPU")[0], [_tf.config.LogicalDeviceConfiguration()] * {cpus})
"""


def child_env(env=None):
    """os.environ with ``env`` set over it (``None`` values removed) and ROOT first on PYTHONPATH."""
    out = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    paths = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in paths if p != str(ROOT)])
    return out


def python_command(code_or_script, *args, cpus=None):
    """The argv of a fresh interpreter: a ``Path`` is a script file, a ``str`` is code (dedented)."""
    if isinstance(code_or_script, Path):
        if not cpus:
            return [sys.executable, str(code_or_script), *map(str, args)]
        code = (f"import runpy, sys\nsys.argv[0] = {str(code_or_script)!r}\n"
                f"runpy.run_path(sys.argv[0], run_name='__main__')\n")
    else:
        code = textwrap.dedent(code_or_script)
    if cpus:
        code = SPLIT_CPUS.format(cpus=int(cpus)) + code
    return [sys.executable, "-c", code, *map(str, args)]


def zoo_command(*args):
    """The argv of the ``zoo`` command as a user types it (its console script's entry point)."""
    return [sys.executable, "-m", "zoo.cli", *map(str, args)]


def run(argv, cwd=None, env=None, timeout=600, input=None):
    """Run ``argv`` to its end: CompletedProcess with text stdout/stderr; a timeout fails the test."""
    try:
        return subprocess.run(argv, cwd=cwd, env=child_env(env), input=input, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"still running after {timeout} s: {_shown(argv)}\n"
                    f"--- stdout so far:\n{_text(e.stdout)[-3000:]}\n--- stderr so far:\n{_text(e.stderr)[-3000:]}",
                    pytrace=False)


def run_python(code_or_script, *args, cwd=None, env=None, timeout=600, cpus=None, input=None):
    """Run code (``str``) or a script (``Path``) with ``args`` in a fresh interpreter."""
    return run(python_command(code_or_script, *args, cpus=cpus), cwd=cwd, env=env, timeout=timeout, input=input)


def run_zoo(*args, cwd=None, env=None, timeout=600, input=None):
    """Run ``zoo ARGS...`` (as ``python -m zoo.cli``) in a fresh interpreter."""
    return run(zoo_command(*args), cwd=cwd, env=env, timeout=timeout, input=input)


def start(argv, cwd=None, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True):
    """Start ``argv`` and return its Popen (pipes and text mode unless told otherwise)."""
    return subprocess.Popen(argv, cwd=cwd, env=child_env(env), stdout=stdout, stderr=stderr, text=text)


def start_python(code_or_script, *args, cpus=None, **kwargs):
    """Start code or a script in a fresh interpreter; keywords as ``start``."""
    return start(python_command(code_or_script, *args, cpus=cpus), **kwargs)


def start_zoo(*args, **kwargs):
    """Start ``zoo ARGS...`` in a fresh interpreter; keywords as ``start``."""
    return start(zoo_command(*args), **kwargs)


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _shown(argv):
    if len(argv) > 2 and argv[1] == "-c":  # the code, not one long line
        code = argv[2] if argv[2].endswith("\n") else argv[2] + "\n"
        return f"{argv[0]} -c \"$(cat <<'EOF'\n{code}EOF\n)\" {' '.join(argv[3:])}"
    return " ".join(argv)
