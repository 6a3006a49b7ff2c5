"""Unlabelled data for semi-supervised training (zoo.datapath.unlabeled), on files nobody here
wrote: nibabel's test volumes and scikit-image's pictures, with no labels beside them."""
import os
import shutil

import numpy as np
import pytest

from zoo.data import DataError, phantom_arrays
from zoo.datapath.prepare import Target
from zoo.datapath.unlabeled import prepare_unlabeled
from zoo.errors import InvalidArgumentError


def _first(ds):
    return next(iter(ds)).numpy()


def test_a_folder_of_nifti_volumes_without_labels_gives_normalised_patches(tmp_path):
    import nibabel
    data = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")
    for name in ("anatomical.nii", "reoriented_anat_moved.nii"):
        shutil.copy(os.path.join(data, name), tmp_path / name)
    target = Target("unet3d", "segmentation", 3, 1, 2, patch=(16, 16, 16))
    batch = _first(prepare_unlabeled(tmp_path, target, batch_size=3, seed=0))
    assert batch.shape == (3, 16, 16, 16, 1) and batch.dtype == np.float32
    assert np.isfinite(batch).all() and batch.std() > 0.1  # scan intensities, normalised
    again = _first(prepare_unlabeled(tmp_path, target, batch_size=3, seed=0))
    np.testing.assert_array_equal(batch, again)  # seeded


def test_a_folder_of_pictures_gives_random_windows_or_resized_images(tmp_path):
    import skimage.data
    from PIL import Image
    for name in ("camera", "coins", "moon"):
        Image.fromarray(getattr(skimage.data, name)()).save(tmp_path / f"{name}.png")
    seg = Target("unet", "segmentation", 2, 1, 2, patch=(64, 64))
    batch = _first(prepare_unlabeled(tmp_path, seg, batch_size=2, seed=1))
    assert batch.shape == (2, 64, 64, 1) and 0 <= batch.min() and batch.max() <= 1
    cls = Target("resnet18", "classification", 2, 1, 3, patch=(32, 32))
    assert _first(prepare_unlabeled(tmp_path, cls, batch_size=4, seed=1)).shape == (4, 32, 32, 1)


def test_a_labelled_source_and_arrays_give_their_images_only():
    x, y = phantom_arrays(6, size=32, seed=3)
    target = Target("unet", "segmentation", 2, 1, 2, patch=(32, 32))
    batch = _first(prepare_unlabeled((x, y), target, batch_size=6, seed=0))
    assert batch.shape == (6, 32, 32, 1)
    assert sorted(map(float, batch.sum(axis=(1, 2, 3)))) == pytest.approx(sorted(map(float, x.sum(axis=(1, 2, 3)))),
                                                                          rel=1e-5)
    generated = _first(prepare_unlabeled("phantoms", target, batch_size=2, seed=3))
    assert generated.shape == (2, 32, 32, 1)
    assert not any(np.allclose(g, v) for g in generated for v in x)  # never the labelled phantoms' draw


def test_unreadable_unlabeled_data_is_named(tmp_path):
    target = Target("unet3d", "segmentation", 3, 1, 2, patch=(16, 16, 16))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images this 3D model can read"):
        prepare_unlabeled(tmp_path, target, batch_size=2)
    with pytest.raises(InvalidArgumentError, match="has 3 channel"):
        prepare_unlabeled(np.zeros((4, 16, 16, 16, 3), "float32"), target, batch_size=2)
