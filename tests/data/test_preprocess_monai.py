"""The volume preprocessing (zoo.data.volumes.preprocess: orientation, spacing, window) against MONAI's
transforms on nibabel's test volumes: the spleen bundle's Compose([LoadImaged, EnsureChannelFirstd,
Orientationd("RAS"), Spacingd((1.5, 1.5, 2.0), "bilinear"), ScaleIntensityRanged(-57, 164 -> 0, 1,
clip)]). The same grid (shape and voxel positions) and the same values up to float32 rounding of the
interpolation weights (tolerance 1e-5 on [0, 1] values; measured <= 6e-6); labels (nearest) the same but
at exact ties (a sample half-way between two voxels), where MONAI's pick follows its float rounding.
The training reader (zoo.data.nifti) and zoo.predict use the same function; predict puts its labels
back on the file's grid and voxel order."""
import os
import warnings

import monai.transforms as monai_transforms
import nibabel as nib
import numpy as np
import pytest

from zoo.data import nifti
from zoo.data.volumes import load_nifti, preprocess, restore

DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
SPLEEN = dict(orientation="RAS", spacing=(1.5, 1.5, 2.0))


def _volumes(tmp_path):
    """anatomical.nii (LAS, 2 mm) and example4d.nii.gz's first volume (LAS, oblique, 2 x 2 x 2.2 mm)."""
    im = nib.load(os.path.join(DATA, "example4d.nii.gz"))
    first = nib.Nifti1Image(np.asarray(im.dataobj)[..., 0].astype(np.float32), im.affine, im.header)
    nib.save(first, tmp_path / "example4d_0.nii.gz")
    return [os.path.join(DATA, "anatomical.nii"), str(tmp_path / "example4d_0.nii.gz")]


def _monai(path, key, pixdim, mode, window=None):
    T = monai_transforms
    steps = [T.LoadImaged(keys=key), T.EnsureChannelFirstd(keys=key), T.Orientationd(keys=key, axcodes="RAS"),
             T.Spacingd(keys=key, pixdim=pixdim, mode=mode)]
    if window is not None:
        steps.append(T.ScaleIntensityRanged(keys=key, a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0,
                                            clip=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = T.Compose(steps)({key: path})[key]
    return np.moveaxis(np.asarray(out), 0, -1), np.asarray(out.affine)


# the bundle's window, and a wide one under which most voxels are interpolated values, not 0 or 1
@pytest.mark.parametrize("window", [(-57.0, 164.0), (0.0, 15000.0)], ids=["spleen_window", "wide_window"])
def test_the_spleen_preprocessing_equals_monais_transforms(window, tmp_path):
    for path in _volumes(tmp_path):
        want, want_affine = _monai(path, "image", SPLEEN["spacing"], "bilinear", window)
        image, spacing, affine = load_nifti(path)
        got, _, (transform, grid, grid_spacing) = preprocess(image, None, spacing, affine, window=window, **SPLEEN)
        assert got.shape == want.shape, (path, got.shape, want.shape)
        diff = float(np.abs(got - want).max())
        print(f"{os.path.basename(path)} window {window}: {got.shape[:3]} voxels, max abs diff {diff:.1e}, "
              f"std of MONAI's values {want.std():.3f}")
        assert diff <= 1e-5 and want.std() > 0.01
        # the grid: MONAI's affine is the file's reoriented and rescaled to 1.5 x 1.5 x 2 mm
        np.testing.assert_allclose(np.linalg.norm(want_affine[:3, :3], axis=0), SPLEEN["spacing"], rtol=1e-5)
        reoriented = affine @ nib.orientations.inv_ornt_aff(transform, image.shape[:3])
        np.testing.assert_allclose(want_affine[:3, 3], reoriented[:3, 3], atol=1e-4)  # the first voxel stays
        assert nib.aff2axcodes(want_affine) == ("R", "A", "S")


def _ties(shape, grid_spacing, target):
    """Output voxels whose nearest-neighbour source is a tie on some axis (position j * new / old = k + 1/2)."""
    mask = np.zeros(shape, bool)
    for axis, (n, old, new) in enumerate(zip(shape, grid_spacing, target)):
        frac = np.abs(np.arange(n) * new / old % 1 - 0.5) < 1e-6
        mask |= frac.reshape([-1 if a == axis else 1 for a in range(3)])
    return mask


def test_labels_are_resampled_as_monai_does_but_at_exact_ties(tmp_path):
    for path in _volumes(tmp_path):
        image, spacing, affine = load_nifti(path)
        raw = image[..., 0]
        label = (raw > np.percentile(raw, 60)).astype(np.int32) + (raw > np.percentile(raw, 90))
        nib.save(nib.Nifti1Image(label.astype(np.int16), affine), tmp_path / "label.nii.gz")
        want = _monai(str(tmp_path / "label.nii.gz"), "label", SPLEEN["spacing"], "nearest")[0][..., 0]
        _, got, (_, _, grid_spacing) = preprocess(image, label, spacing, affine, **SPLEEN)
        differ = got != want
        ties = _ties(got.shape, grid_spacing, SPLEEN["spacing"])
        print(f"{os.path.basename(path)}: labels differ at {differ.mean():.2%} of voxels, all at ties "
              f"({ties.mean():.1%} of voxels are ties)")
        assert got.shape == want.shape and not np.any(differ & ~ties)


def test_the_training_reader_applies_the_same_steps(tmp_path):
    path = _volumes(tmp_path)[1]
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    im = nib.load(path)
    nib.save(im, tmp_path / "images" / "case.nii.gz")
    label = (np.asarray(im.dataobj) > 300).astype(np.int16)
    nib.save(nib.Nifti1Image(label, im.affine), tmp_path / "labels" / "case.nii.gz")
    x, y = next(iter(nifti(tmp_path / "images", tmp_path / "labels", window=(-57, 164), shuffle=False, **SPLEEN)))
    want = _monai(path, "image", SPLEEN["spacing"], "bilinear", (-57, 164))[0]
    assert x.shape == want.shape and y.shape == want.shape
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)


def test_restore_puts_an_array_back_on_the_files_grid(tmp_path):
    image, spacing, affine = load_nifti(_volumes(tmp_path)[0])
    moved, _, undo = preprocess(image, None, spacing, affine, orientation="RAS", normalize=None)
    assert moved.shape == image.shape and not np.array_equal(moved, image)  # LAS -> RAS flips axis 0
    np.testing.assert_array_equal(restore(moved, undo), image)
    small, _, undo = preprocess(image, None, spacing, affine, normalize=None, **SPLEEN)
    back = restore(small, undo, SPLEEN["spacing"])
    assert back.shape == image.shape
    assert np.corrcoef(back.ravel(), image.ravel())[0, 1] > 0.95  # linear there and back: a smoothed copy
