"""``zoo.finetune`` trains one short epoch on every catalogue builder's dummy data through the
``tfds:NAME`` form (prepared from ``manual_dir`` on first use), with tiny models."""
import math

import numpy as np
import pytest
from _proc import ROOT

import zoo


def dummy(name):
    return ROOT / "datasets" / name.split("/")[0] / "dummy_data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def unet(**kw):
    return zoo.load("unet", **{"filters": 4, "depth": 2, "dropout": 0.0, **kw})


def unet3d(**kw):
    return zoo.load("unet", **{"spatial_dims": 3, "filters": 2, "depth": 1, "dropout": 0.0, **kw})


CASES = {  # data set: (model, finetune options, training batches of the first epoch)
    "isbi2012_em": (lambda: unet(), dict(patch_size=(16, 16)), 5 // 2),
    "camvid": (lambda: unet(in_channels=3, num_classes=12), dict(patch_size=(8, 8)), 2 // 2),
    "decathlon/task05_prostate": (lambda: unet3d(in_channels=2, num_classes=3),
                                  dict(patch_size=(4, 4, 4), data_options={"samples_per_volume": 2}), 4 * 2 // 2),
    "decathlon/task04_hippocampus": (lambda: unet3d(num_classes=3),
                                     dict(patch_size=(4, 4, 4), data_options={"normalize": "zscore"}), 4 // 2),
    "promise12": (lambda: unet3d(), dict(patch_size=(4, 4, 4), data_options={"spacing": (1.0, 1.0, 3.0)}), 4 // 2),
    "medmnist/pathmnist_28": (lambda: zoo.load("resnet18", width=4, num_classes=9, in_channels=3,
                                               input_shape=(28, 28, 3)), {}, 3 // 2),
    "medmnist/organmnist3d_28": (lambda: zoo.load("resnet18", width=2, spatial_dims=3, num_classes=11,
                                                  input_shape=(28, 28, 28, 1)), {}, 3 // 2),
    "phantoms/seg2d": (lambda: unet(), dict(patch_size=(32, 32), steps_per_epoch=4, validation_steps=2), 4),
    "phantoms/seg3d": (lambda: unet3d(), dict(patch_size=(8, 8, 8), steps_per_epoch=4, validation_steps=2), 4),
}
# ~20 s: ResNet graphs; then 5.3-7.9 s each in the quick tier (two workers on the 2-core machine)
SLOW = {"medmnist/pathmnist_28", "medmnist/organmnist3d_28", "camvid", "isbi2012_em", "decathlon/task05_prostate"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_finetune_one_epoch_by_name(name, data_dir, tmp_path):
    make, options, batches = CASES[name]
    model = make()
    before = [w.copy() for w in model.get_weights()]
    data_options = {"manual_dir": dummy(name), "data_dir": data_dir, **options.pop("data_options", {})}
    history = zoo.finetune(model, train=f"tfds:{name}", val=f"tfds:{name}", epochs=1, batch_size=2,
                           out_dir=tmp_path / "run", data_options=data_options, tensorboard=False,
                           verbose=0, **options)
    assert history.params["steps"] == batches
    assert all(math.isfinite(history.history[k][0]) for k in ("loss", "val_loss")), history.history
    assert history.zoo_state["config"]["train"] == f"tfds:{name}"
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # it trained
    assert (tmp_path / "run" / "best.h5").is_file()


def test_the_command_trains_on_a_catalogue_name(data_dir, tmp_path, capsys):
    from zoo.cli import main
    code = main(["finetune", "unet", "--train", "tfds:isbi2012_em", "--val", "tfds:isbi2012_em",
                 "--epochs", "1", "--patch-size", "16", "--set", "filters=4", "--set", "depth=2",
                 "--data-option", f"manual_dir={dummy('isbi2012_em')}", "--data-option", f"data_dir={data_dir}",
                 "--out", str(tmp_path / "cli"), "--quiet", "--no-tensorboard"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "finetune done: 1 epoch(s) of unet on tfds:isbi2012_em (2D, patch 16x16, global batch 2)" in out
