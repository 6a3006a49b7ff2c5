"""zoo._progress: the one progress line of downloads and sliding windows."""
import numpy as np
from _proc import ROOT, run_python

from zoo._progress import Progress


def test_progress_line_formats_throttles_and_ends_with_a_newline(capsys):
    bar = Progress("w.h5", unit="bytes", enabled=True, interval=60.0)
    bar.update(2 ** 20, 4 * 2 ** 20)  # first update: drawn
    bar.update(2 * 2 ** 20, 4 * 2 ** 20)  # within the interval: skipped
    bar.update(4 * 2 ** 20, 4 * 2 ** 20, final=True)  # the final one is always drawn
    err = capsys.readouterr().err
    lines = err.split("\r")[1:]
    assert len(lines) == 2 and lines[0].startswith("w.h5:  25.0% 1.0/4.0 MiB ")
    assert lines[1].startswith("w.h5: 100.0% 4.0/4.0 MiB ") and lines[1].endswith(" MiB/s\n")
    Progress("stream", enabled=True).update(3 * 2 ** 19, None, final=True)  # unknown total
    assert capsys.readouterr().err.startswith("\rstream: 1.5 MiB ")
    Progress("sliding window", unit="patches", enabled=True).update(3, 8, final=True)
    assert capsys.readouterr().err == "\rsliding window: 3/8 patches\n"
    Progress("quiet").update(1, 2, final=True)  # default: only on a terminal (not under pytest)
    assert capsys.readouterr().err == ""


def test_sliding_window_reports_patches_when_asked(capsys):
    from zoo._keras import keras
    from zoo.inference import sliding_window
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    sliding_window(model, np.zeros((16, 16, 1), "float32"), (8, 8), overlap=0.0, batch_size=2,
                   progress=True)
    err = capsys.readouterr().err
    assert err.endswith("\rsliding window: 4/4 patches\n")  # 4 patches in 2 batches, then a newline
    sliding_window(model, np.zeros((16, 16, 1), "float32"), (8, 8), overlap=0.0)
    assert capsys.readouterr().err == ""


def test_the_download_path_stays_free_of_tensorflow():
    code = ("import sys, zoo.hub._fetch, zoo._progress; "
            "assert 'tensorflow' not in sys.modules, 'fetching must not import TensorFlow'")
    res = run_python(code, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]


def test_predict_with_a_2d_model_on_a_volume_reports_slices(capsys):
    import zoo
    from zoo._keras import keras
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    labels = zoo.predict(model, np.zeros((16, 16, 5, 1), "float32"), patch_size=(8, 8), progress=True)
    assert labels.shape == (16, 16, 5)
    assert capsys.readouterr().err.endswith("\rsliding window: 5/5 slices\n")
