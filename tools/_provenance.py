"""Where a figure comes from: the shared helper every benchmark tool uses to write its results
into ``docs/models/measured.json`` (DESIGN.md section 8: nothing is typed by hand).

A *record* is a dict holding the tool's results plus ``"provenance"``::

    {"tool": "tools/bench_compress.py",            # the script that wrote the record
     "command": "python tools/bench_compress.py --models unet --json out.json",   # as run
     "commit": "e700c02...", "dirty": false,        # git HEAD, and whether the tree had changes
     "date": "2026-12-03T06:01:12Z",                # UTC, when the tool finished
     "machine": {"cores": 2, "cpu": "Intel(R) Xeon(R) Processor", "gpu": [],
                 "tensorflow": "2.21.0", "python": "3.12.3", "platform": "Linux-..."},
     "wall_s": 123.4}                               # the tool's wall time

Records live in measured.json under a registry entry (``measured[NAME][KIND]``: ``flops``,
``picture``, ``compress``, ``export``, ``run``) or, for figures that are not one entry's, under
``measured["benchmarks"][KIND]`` (``bench_train``, ``bench_catalog``, ``bench_export``,
``bench_task``). ``tools/gen_cards.py`` renders the cards and the README's tables from them;
``tests/tools/test_provenance.py`` checks every record has these fields and names a tool that
exists.

    from _provenance import Clock, record
    clock = Clock()                       # at the start of main(): the command line and the start time
    ...
    record("unet", "compress", {"rows": rows, "settings": {...}}, clock)
"""
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "docs" / "models" / "measured.json"
BENCHMARKS = "benchmarks"   # measured.json's key for figures that belong to no single entry
FIELDS = ("tool", "command", "commit", "dirty", "date", "machine", "wall_s")
MACHINE_FIELDS = ("cores", "cpu", "gpu", "tensorflow")


def git_state(root=ROOT):
    """(HEAD commit, whether tracked files differ from it); ("unknown", True) outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        # measured.json itself changes while tools write into it: that is not a dirty tree
        dirty = [line for line in dirty.splitlines() if not line.endswith("docs/models/measured.json")]
        return commit, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def cpu_model():
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(with_tensorflow=True):
    """Cores (the ones this process may use), CPU model, GPUs (TensorFlow's names, [] when none),
    TensorFlow and Python versions, platform."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cores": cores, "cpu": cpu_model(), "gpu": None, "tensorflow": None,
            "python": platform.python_version(), "platform": platform.platform()}
    if with_tensorflow:
        from zoo._keras import tf
        info["tensorflow"] = tf.__version__
        info["gpu"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def command_line(argv=None, tool=None):
    """The command as a user would type it again: ``python tools/X.py ARGS``."""
    argv = list(sys.argv if argv is None else argv)
    script = tool or argv[0]
    path = Path(script)
    if path.is_absolute():
        try:
            script = str(path.resolve().relative_to(ROOT))
        except ValueError:
            script = str(path)
    return shlex.join(["python", script, *argv[1:]])


class Clock:
    """Started at the beginning of a tool's main(): holds its command line and start time;
    ``provenance()`` stamps a record with it when the tool writes its results."""

    def __init__(self, tool=None, argv=None):
        argv = list(sys.argv if argv is None else argv)
        if tool is None:
            tool = argv[0]
        path = Path(tool).resolve()
        self.tool = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(tool)
        self.command = command_line([self.tool, *argv[1:]])
        self.t0 = time.time()

    def provenance(self, with_tensorflow=True, **extra):
        commit, dirty = git_state()
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        prov = {"tool": self.tool, "command": self.command, "commit": commit, "dirty": dirty,
                "date": now.isoformat().replace("+00:00", "Z"), "machine": machine(with_tensorflow),
                "wall_s": round(time.time() - self.t0, 1)}
        prov.update(extra)
        return prov


def read(path=MEASURED):
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def write(measured, path=MEASURED):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(measured.items())), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def record(name, kind, data, clock, *, path=MEASURED, with_tensorflow=True, **extra):
    """Write ``data`` (a dict of results) with the clock's provenance as ``measured[name][kind]``
    (``name=None``: ``measured["benchmarks"][kind]``), re-reading the file first so what another
    tool wrote meanwhile is kept. Returns the record."""
    rec = dict(data, provenance=clock.provenance(with_tensorflow, **extra))
    measured = read(path)
    measured.setdefault(BENCHMARKS if name is None else name, {})[kind] = rec
    write(measured, path)
    return rec


def missing_fields(prov):
    """The provenance fields a record lacks (empty when complete)."""
    if not isinstance(prov, dict):
        return list(FIELDS)
    missing = [f for f in FIELDS if f not in prov or prov[f] is None or prov[f] == ""]
    m = prov.get("machine")
    if isinstance(m, dict):
        missing += [f"machine.{f}" for f in MACHINE_FIELDS if f not in m or (m[f] is None and f != "gpu")]
    if prov.get("commit") in ("unknown",):
        missing.append("commit (unknown)")
    return missing


def records(measured):
    """(where, record) for every record in measured.json: ``("unet", "compress")``,
    ``("benchmarks", "bench_train")``, ..."""
    for name, kinds in measured.items():
        for kind, rec in (kinds or {}).items():
            yield (name, kind), rec
