"""The test extra: CI installs every package of setup.py's ``test`` extra, so no test may skip because
one is missing (a skip would hide a broken install; CI never fails on a skip).

tests/conftest.py takes the three hooks below: the run stops at once, naming the missing packages,
when a package of the extra is not installed; and a test (or a test module) that skips anyway for a
missing package (``pytest.importorskip`` and the like) is reported as failed. A skip for another
reason (e.g. no GPU on the machine) stays a skip; its reason says why.
"""
import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "the test extra is not installed: pip install -e '.[test]'"
MISSING_PACKAGE = re.compile(r"could not import|no module named|not installed", re.IGNORECASE)


def extra_requirements(setup_py=ROOT / "setup.py"):
    """The requirements (strings) of setup.py's ``test`` extra, read from its source, not run: the
    ``EXTRAS = {...}`` literal and the ``EXTRAS[key] = ...`` assignments (lists, ``+`` and ``EXTRAS[k]``)."""
    extras = {}

    def value(node):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "EXTRAS":
            return extras[ast.literal_eval(node.slice)]
        return ast.literal_eval(node)

    for stmt in ast.parse(Path(setup_py).read_text()).body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        target = stmt.targets[0]
        if isinstance(target, ast.Name) and target.id == "EXTRAS":
            extras = dict(value(stmt.value))
        elif isinstance(target, ast.Subscript) and getattr(target.value, "id", None) == "EXTRAS":
            key = ast.literal_eval(target.slice)
            if key == "test":
                extras[key] = value(stmt.value)
    return list(extras["test"])


def missing(requirements=None):
    """The distribution names of the requirements (default: the test extra) that are not installed."""
    out = []
    for req in (extra_requirements() if requirements is None else requirements):
        name = Requirement(req).name
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            out.append(name)
    return out


def pytest_sessionstart(session):
    gone = missing()
    if gone:
        pytest.exit(f"{INSTALL} (missing: {', '.join(gone)})", returncode=pytest.ExitCode.USAGE_ERROR)


def _fail_a_skip_for_a_missing_package(report, where):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if MISSING_PACKAGE.search(reason):
        report.outcome = "failed"
        report.longrepr = f"{where} skipped for a missing package ({reason}); {INSTALL}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip_for_a_missing_package(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_skip_for_a_missing_package(outcome.get_result(), collector.nodeid)
