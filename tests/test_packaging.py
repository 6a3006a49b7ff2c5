"""Installation and import behaviour, each in a fresh interpreter."""
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, env=None, python=sys.executable, cwd=None):
    env = {**os.environ, **(env or {})}
    env.pop("TF_USE_LEGACY_KERAS", None)
    if python != sys.executable:  # another environment (the fresh venv): never this checkout's zoo
        env.pop("PYTHONPATH", None)
    return subprocess.run([python, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=300)


KERAS3_LOADED = "any(m == 'keras' or m.startswith('keras.') for m in sys.modules)"


@pytest.mark.slow  # measured 8.6 s in the quick tier
def test_import_zoo_first_never_imports_keras3():
    res = run_python(f"""
        import sys
        import zoo
        assert 'tensorflow' not in sys.modules, 'import zoo must stay light'
        names = zoo.list_models()
        from zoo._keras import keras, tf
        assert keras.__name__ == 'tf_keras', keras.__name__
        assert not {KERAS3_LOADED}, sorted(m for m in sys.modules if m.startswith('keras'))[:5]
        m = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        assert type(m).__module__.startswith('tf_keras'), type(m).__module__
        assert not {KERAS3_LOADED}
        print('ok', len(names))
        """)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("ok")


@pytest.mark.slow  # measured 9.8 s in the quick tier
def test_tensorflow_imported_first_still_gives_tf_keras_models():
    # TensorFlow imported by the user before zoo (without TF_USE_LEGACY_KERAS) loads Keras 3 by
    # itself; the zoo must still build tf_keras models and work.
    res = run_python("""
        import tensorflow as tf
        import zoo
        from zoo._keras import keras
        import numpy as np
        names = zoo.list_models()
        m = zoo.load(names[0]) if names else keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        assert isinstance(m, keras.Model), type(m)
        assert type(m).__module__.startswith(('tf_keras', 'zoo')), type(m).__module__
        print('ok')
        """)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv_with_registry_inside(tmp_path):
    """`pip install .` (not -e) gives a working zoo with registry.yaml inside the wheel."""
    wheel_dir = tmp_path / "wheels"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    wheels = list(wheel_dir.glob("medzoo-*.whl"))
    assert len(wheels) == 1, wheels
    import zipfile
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "zoo/registry.yaml" in names
    assert "zoo/_keras.py" in names and not any(n.startswith("tests/") for n in names)
    from zoo.datasets._catalog import folders
    for builder in folders():  # the data-set catalogue inside the package, never as datasets/
        for part in (f"{builder}_dataset_builder.py", "checksums.tsv", "README.md", "CITATIONS.bib"):
            assert f"zoo/datasets/builders/{builder}/{part}" in names, (builder, part)
        assert any(n.startswith(f"zoo/datasets/builders/{builder}/dummy_data/") for n in names), builder
    assert not any(n.startswith("datasets/") or "__pycache__" in n for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # Dependencies (TensorFlow & co.) come from this environment through a .pth path entry, so
    # the test does not download 600 MB; the zoo package itself only from the wheel.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "outer_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a fresh venv, not this checkout
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])],
                         capture_output=True, text=True, timeout=600, env=clean)
    assert res.returncode == 0, res.stderr[-3000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    res = run_python("""
        import zoo, zoo.hub.registry
        from pathlib import Path
        assert 'site-packages' in zoo.__file__, zoo.__file__
        path = zoo.hub.registry.default_path()
        assert path == Path(zoo.__file__).parent / 'registry.yaml', path
        print(len(zoo.list_models()))
        """, python=str(py), cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    from zoo.hub.registry import get_registry
    assert int(res.stdout.strip()) == len(get_registry().names())
    res = subprocess.run([str(venv / "bin" / "zoo"), "list", "--names-only"], capture_output=True,
                         text=True, cwd=workdir, timeout=300, env=clean)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == get_registry().names()

    # the catalogue: the installed builders list and load (2D and 3D) from their shipped dummy data
    import zoo.datasets
    res = run_python(f"""
        import json, zoo, zoo.datasets as zd, zoo.datasets.builders as b
        from pathlib import Path
        here = Path(zoo.__file__).parent / 'datasets' / 'builders'
        assert [str(p) for p in b.__path__] == [str(here)], b.__path__
        counts = {{}}
        for name in ('isbi2012_em', 'promise12'):
            ds = zd.load(name, split='train', manual_dir=here / name / 'dummy_data',
                         data_dir={str(tmp_path / "tfds")!r})
            counts[name] = [tuple(x.shape) for x, y in ds.as_numpy_iterator()]
        print(json.dumps({{'names': [r['name'] for r in zd.list()], 'counts': counts}}))
        """, python=str(py), cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["names"] == [r["name"] for r in zoo.datasets.list()]
    assert got["counts"]["isbi2012_em"] == [[32, 32, 1]] * 5
    assert len(got["counts"]["promise12"]) == 4 and all(len(s) == 4 and s[-1] == 1 for s in got["counts"]["promise12"])
    res = subprocess.run([str(venv / "bin" / "zoo"), "datasets", "list", "--names-only"], capture_output=True,
                         text=True, cwd=workdir, timeout=300, env=clean)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == got["names"]



def test_tensorflow_noise_is_dropped_and_other_warnings_stay():
    import logging

    from zoo._keras import tf
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        logger.warning("Compiled the loaded model, but the compiled metrics have yet to be built. ...")
        logger.warning("Callback method `on_train_batch_end` is slow compared to the batch time (batch time: 0.01s)")
        logger.warning("a warning a user needs")
    finally:
        logger.removeHandler(handler)
    assert seen == ["a warning a user needs"]


# --------------------------------------------------------------------------- the test extra: fail, never skip
def _extra_modules():
    """``{distribution of the test extra: [its top-level modules]}``, each at the version setup.py asks for."""
    import importlib.metadata

    from _extras import extra_requirements
    from packaging.requirements import Requirement
    owners = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            owners.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    out = {}
    for req in map(Requirement, extra_requirements()):
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), (str(req), installed)
        out[req.name] = sorted(m for m in owners.get(req.name.lower().replace("_", "-"), ()) if not m.startswith("_"))
        assert out[req.name], f"{req.name} installs no importable module"
    return out


def test_every_package_of_the_test_extra_is_installed_at_its_version():
    """CI installs setup.py's test extra: each of its distributions is here, at the version setup.py
    asks for, with its modules on the path (conftest.py stops a run that lacks one)."""
    import importlib.util
    modules = _extra_modules()
    assert {"torch", "torchvision", "monai", "nibabel", "pydicom", "pillow", "SimpleITK", "scikit-image",
            "ai-edge-litert", "pytest-xdist", "ruff"} <= set(modules)
    assert modules["pillow"] == ["PIL"] and modules["scikit-image"] == ["skimage"]
    for name in sorted({m for names in modules.values() for m in names}):
        assert importlib.util.find_spec(name) is not None, name


@pytest.mark.slow  # measured 11.3 s: torch, torchvision, monai and TensorFlow (ai_edge_litert) imported in a child
def test_every_module_of_the_test_extra_imports():
    # a fresh interpreter: torchvision after TensorFlow crashes with triton around (tests/conftest.py)
    wanted = sorted({m for names in _extra_modules().values() for m in names})
    res = run_python(f"""
        import importlib, sys
        sys.modules.setdefault("triton", None)
        for name in {wanted!r}:
            importlib.import_module(name)
        print('ok')
        """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


CONFTEST = """
import sys
sys.path.insert(0, {tests!r})
import _extras
from _extras import pytest_make_collect_report, pytest_runtest_makereport, pytest_sessionstart  # noqa: F401
{patch}
"""
SKIPS = """
import pytest

def test_needs_a_package():
    pytest.importorskip("zoo_no_such_package")

def test_needs_a_gpu():
    pytest.skip("no GPU on this machine")

@pytest.mark.skipif(True, reason="torch is not installed")
def test_marked():
    pass
"""


def _pytest_in(folder, patch=""):
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "conftest.py").write_text(CONFTEST.format(tests=str(ROOT / "tests"), patch=patch))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA",
                           str(folder)], capture_output=True, text=True, cwd=folder, timeout=300)


def test_a_skip_for_a_missing_package_fails_the_run_and_other_skips_stay(tmp_path):
    (tmp_path / "test_skips.py").write_text(SKIPS)
    res = _pytest_in(tmp_path)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "1 failed, 1 skipped, 1 error" in res.stdout, res.stdout[-3000:]
    assert "FAILED test_skips.py::test_needs_a_package" in res.stdout
    assert "ERROR test_skips.py::test_marked" in res.stdout  # a skip mark acts at setup
    assert "SKIPPED [1] test_skips.py:8: no GPU on this machine" in res.stdout
    assert "skipped for a missing package" in res.stdout and "pip install -e '.[test]'" in res.stdout
    # a module that skips as it is imported
    (tmp_path / "test_skips.py").write_text('import pytest\n\ntorch = pytest.importorskip("zoo_no_such_package")\n')
    res = _pytest_in(tmp_path)
    assert res.returncode != 0 and "ERROR test_skips.py" in res.stdout, res.stdout[-3000:]
    assert "skipped for a missing package" in res.stdout
    # a package of the extra missing: nothing runs
    res = _pytest_in(tmp_path, patch="_extras.extra_requirements = lambda: ['pytest>=8', 'zoo-no-such-dist==1.0']")
    assert res.returncode == 4, res.stdout[-3000:] + res.stderr[-3000:]
    assert "the test extra is not installed: pip install -e '.[test]' (missing: zoo-no-such-dist)" in (
        res.stdout + res.stderr)
    assert "test_skips.py" not in res.stdout


def test_no_test_skips_for_a_package(request):
    """A test imports what the test extra installs (a missing package then fails the test): none
    uses pytest.importorskip, and a skip names a reason that is not a missing package; this suite
    runs with the hooks of tests/_extras.py (tests/conftest.py)."""
    import re

    from _extras import MISSING_PACKAGE
    for hook in ("pytest_sessionstart", "pytest_runtest_makereport", "pytest_make_collect_report"):
        impls = getattr(request.config.pluginmanager.hook, hook).get_hookimpls()
        assert any(impl.function.__module__ == "_extras" for impl in impls), hook
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text()
        assert "importorskip(" not in text or path.name == "test_packaging.py", path
        for reason in re.findall(r"(?:pytest\.skip|skipif)\((.*)", text):
            assert not MISSING_PACKAGE.search(reason) or path.name == "test_packaging.py", (path, reason)
