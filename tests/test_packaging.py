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
