"""zoo.data: phantoms, image folders, NIfTI, DICOM, NumPy/.npz, TFDS, and the bad-input errors."""
import os
import sys

import numpy as np
import pytest
from _files import _dicom_slice, _nii, _png, _series

from zoo.data import (
    DataError,
    dicom,
    from_arrays,
    image_folder,
    load_nifti,
    nifti,
    npz,
    phantom_arrays,
    phantoms,
    read_dicom_series,
    segmentation_folder,
)
from zoo.datapath import from_source
from zoo.errors import InvalidArgumentError, MissingDependencyError, ZooError


# --------------------------------------------------------------------------- phantoms
def test_phantoms_segmentation_shapes_determinism_and_learnable_intensities():
    im, lab = phantom_arrays(6, size=32, num_classes=3, seed=1)
    assert im.shape == (6, 32, 32, 1) and im.dtype == np.float32
    assert lab.shape == (6, 32, 32, 1) and lab.dtype == np.int32
    assert set(np.unique(lab)) <= {0, 1, 2} and (lab > 0).any()
    again, lab2 = phantom_arrays(6, size=32, num_classes=3, seed=1)
    np.testing.assert_array_equal(im, again)
    np.testing.assert_array_equal(lab, lab2)
    prefix, _ = phantom_arrays(3, size=32, num_classes=3, seed=1)  # sample i depends on (seed, i) only
    np.testing.assert_array_equal(prefix, im[:3])
    other, _ = phantom_arrays(6, size=32, num_classes=3, seed=2)
    assert not np.array_equal(other, im)
    clean, clab = phantom_arrays(40, size=32, num_classes=3, noise=0.0, seed=0)
    means = [clean[clab == c].mean() for c in range(3)]
    assert means[0] < 0.1 < means[1] < means[2]  # each class has its own intensity band
    assert clean[clab == 0].max() <= 0.1 and clean[clab == 1].max() < clean[clab == 2].min()


def test_phantoms_3d_and_dataset():
    ds = phantoms(3, spatial_dims=3, size=16, num_classes=2, in_channels=2, seed=0)
    image, label = next(iter(ds))
    assert image.shape == (16, 16, 16, 2) and image.dtype.name == "float32"
    assert label.shape == (16, 16, 16, 1) and label.dtype.name == "int32"
    assert int(ds.cardinality()) == 3


def test_phantoms_classification_label_is_the_lesion_count():
    from scipy import ndimage
    im, lab = phantom_arrays(30, size=48, num_classes=3, task="classification", noise=0.0, seed=3)
    assert lab.shape == (30,) and set(lab.tolist()) == {0, 1, 2}
    for image, y in zip(im, lab):
        assert ndimage.label(image[..., 0] > 0.7)[1] == y  # bright blobs = lesions, organs stay < 0.5
    with pytest.raises(InvalidArgumentError, match="task"):
        phantom_arrays(2, task="detection")


# --------------------------------------------------------------------------- image folders
def test_image_folder_classes_scaling_and_majority_conversion(tmp_path):
    _png(tmp_path / "benign" / "a.png", np.full((6, 5), 51, np.uint8))
    _png(tmp_path / "benign" / "b.png", np.full((6, 5), 102, np.uint8))
    _png(tmp_path / "malignant" / "c.tif", np.full((6, 5), 65535, np.uint16))
    _png(tmp_path / "malignant" / "d.png", np.zeros((6, 5, 3), np.uint8))  # the one RGB file
    with pytest.warns(UserWarning, match="mixes 3 grayscale and 1 colour"):
        ds = image_folder(tmp_path)
    assert ds.class_names == ["benign", "malignant"]
    items = list(ds.as_numpy_iterator())
    assert [y for _, y in items] == [0, 0, 1, 1]
    assert all(x.shape == (6, 5, 1) and x.dtype == np.float32 for x, _ in items)
    np.testing.assert_allclose([x.max() for x, _ in items], [0.2, 0.4, 1.0, 0.0], atol=1e-6)
    resized = image_folder(tmp_path, image_size=(8, 4), color_mode="rgb")
    assert resized.element_spec[0].shape == (8, 4, 3)
    assert next(iter(resized))[0].numpy().max() == pytest.approx(0.2, abs=1e-6)


def test_image_folder_errors_name_the_file(tmp_path):
    _png(tmp_path / "a" / "x.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        image_folder(tmp_path)
    _png(tmp_path / "b" / "y.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"x\.png.*3 channel\(s\) but in_channels=1"):
        image_folder(tmp_path, in_channels=1)
    assert image_folder(tmp_path, in_channels=1, color_mode="grayscale").element_spec[0].shape == (4, 4, 1)
    _png(tmp_path / "b" / "z.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"differ in size.*image_size="):
        image_folder(tmp_path)
    (tmp_path / "b" / "z.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"z\.png: cannot be read as an image"):
        image_folder(tmp_path)
    good = tmp_path / "b" / "z.png"
    _png(good, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    good.write_bytes(good.read_bytes()[:200])  # truncated PNG: header fine, pixel data cut
    with pytest.raises(DataError, match=r"z\.png: the image data cannot be decoded.*truncated"):
        image_folder(tmp_path, image_size=(4, 4))


# --------------------------------------------------------------------------- image/mask folders
def test_segmentation_folder_pairs_by_stem_and_maps_mask_values(tmp_path):
    for name, value in (("case1", 10), ("case2", 200)):
        _png(tmp_path / "img" / f"{name}.png", np.full((6, 6), value, np.uint8))
        mask = np.zeros((6, 6), np.uint8)
        mask[:3] = 255
        _png(tmp_path / "msk" / f"{name}_mask.png", mask)
    ds = segmentation_folder(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask", mask_values=[0, 255],
                             num_classes=2, image_size=(12, 12))
    (x1, m1), (x2, _) = list(ds.as_numpy_iterator())
    assert x1.shape == (12, 12, 1) and m1.shape == (12, 12, 1) and m1.dtype == np.int32
    assert x1.max() == pytest.approx(10 / 255) and x2.max() == pytest.approx(200 / 255)
    assert m1[:6].min() == 1 and m1[6:].max() == 0  # nearest resize keeps {0, 1}
    with pytest.raises(DataError, match=r"case1_mask\.png: label values \[255\] are outside.*0\.\.1"):
        segmentation_folder(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask", num_classes=2)


def test_segmentation_folder_errors(tmp_path):
    _png(tmp_path / "img" / "a.png", np.zeros((6, 6), np.uint8))
    _png(tmp_path / "img" / "b.png", np.zeros((6, 6), np.uint8))
    _png(tmp_path / "msk" / "a.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DataError, match=r"no mask for .*b\.png"):
        segmentation_folder(tmp_path / "img", tmp_path / "msk")
    _png(tmp_path / "msk" / "b.png", np.zeros((6, 7), np.uint8))
    _png(tmp_path / "msk" / "c.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DataError, match=r"no image for .*c\.png"):
        segmentation_folder(tmp_path / "img", tmp_path / "msk")
    os.remove(tmp_path / "msk" / "c.png")
    with pytest.raises(DataError, match=r"img.b\.png is 6x6 but its mask .*msk.b\.png is 6x7"):
        segmentation_folder(tmp_path / "img", tmp_path / "msk")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        segmentation_folder(tmp_path / "empty", tmp_path / "msk")


# --------------------------------------------------------------------------- NIfTI
def test_load_nifti_reads_affine_and_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = _nii(tmp_path / "ct.nii.gz", data, spacing=(0.8, 0.9, 2.5), origin=(10, -20, 30))
    volume, spacing, affine = load_nifti(path)
    assert volume.shape == (4, 5, 6, 1)
    np.testing.assert_array_equal(volume[..., 0], data)
    np.testing.assert_allclose(spacing, (0.8, 0.9, 2.5), rtol=1e-6)
    np.testing.assert_allclose(affine[:3, 3], (10, -20, 30))
    np.testing.assert_allclose(np.diag(affine)[:3], (0.8, 0.9, 2.5), rtol=1e-6)


def test_nifti_window_zscore_resample_and_foreground_patches(tmp_path):
    ct = np.full((20, 20, 10), -2000.0, np.float32)
    ct[:10] = 400.0 + 1000.0
    ct[10:, :10] = -300.0
    seg = np.zeros((20, 20, 10), np.int16)
    seg[16:18, 16:18, 7:9] = 1  # a small lesion in a corner
    _nii(tmp_path / "images" / "p1.nii.gz", ct, spacing=(1.0, 1.0, 2.0))
    _nii(tmp_path / "labels" / "p1.nii.gz", seg, spacing=(1.0, 1.0, 2.0))
    whole = nifti(tmp_path / "images", tmp_path / "labels", window=(-1000, 400))
    x, y = next(iter(whole))
    assert x.shape == (20, 20, 10, 1) and y.shape == (20, 20, 10, 1)
    assert set(np.unique(x.numpy()).round(6)) == {0.0, 0.5, 1.0}  # -2000 -> 0, -300 -> 0.5, 1400 -> 1
    z = next(iter(nifti(tmp_path / "images", tmp_path / "labels")))[0].numpy()
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-5)
    resampled = next(iter(nifti(tmp_path / "images", tmp_path / "labels", spacing=(2.0, 2.0, 2.0))))
    assert resampled[0].shape == (10, 10, 10, 1)
    assert set(np.unique(resampled[1].numpy())) == {0, 1}  # nearest: no blended label values
    fg = nifti(tmp_path / "images", tmp_path / "labels", patch_size=6, samples_per_volume=8, fg_fraction=1.0)
    patches = list(fg.as_numpy_iterator())
    assert len(patches) == 8 == int(fg.cardinality())
    assert all(p.shape == (6, 6, 6, 1) and m.sum() > 0 for p, m in patches)
    rnd = nifti(tmp_path / "images", tmp_path / "labels", patch_size=6, samples_per_volume=40,
                fg_fraction=0.0, seed=1)
    epoch0 = list(rnd.as_numpy_iterator())
    assert np.mean([m.sum() > 0 for _, m in epoch0]) < 0.5  # uniform patches rarely see the lesion
    epoch1 = list(rnd.as_numpy_iterator())  # the next epoch draws new patches ...
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))
    fresh = nifti(tmp_path / "images", tmp_path / "labels", patch_size=6, samples_per_volume=40,
                  fg_fraction=0.0, seed=1)
    for a, b in zip(epoch0, fresh.as_numpy_iterator()):  # ... and the same seed repeats the run
        np.testing.assert_array_equal(a[0], b[0])


def test_patch_sampler_gives_the_requested_foreground_share():
    from zoo.data.volumes import sample_patches
    label = np.zeros((40, 40, 40), np.int32)
    label[35, 36, 37] = 1  # one foreground voxel; a uniform 4^3 patch holds it with p ~ 1e-3
    image = np.zeros((40, 40, 40, 1), np.float32)
    starts = sample_patches(image, label, (4, 4, 4), 40, 0.25, np.random.default_rng(0))
    hits = [np.all((s <= (35, 36, 37)) & ((35, 36, 37) < s + 4)) for s in starts]
    assert sum(hits) == 10 and all(np.all(s >= 0) and np.all(s + 4 <= 40) for s in starts)


def test_nifti_pads_small_volumes_and_takes_class_labels(tmp_path):
    vol = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3) + 5
    path = _nii(tmp_path / "tiny.nii", vol)
    ds = nifti([path], [1], patch_size=(8, 8, 8), normalize=None, num_classes=2)
    x, y = next(iter(ds))
    assert x.shape == (8, 8, 8, 1) and int(y) == 1
    x = x.numpy()[..., 0]
    assert x.min() == 5.0 and np.array_equal(np.sort(x[x > 5].ravel()), np.arange(6, 53, dtype=np.float32))


def test_nifti_bad_input_errors(tmp_path):
    good = _nii(tmp_path / "img" / "a.nii.gz", np.zeros((6, 6, 6), np.float32))
    _nii(tmp_path / "lab" / "a.nii.gz", np.full((6, 6, 6), 3, np.int16))
    with pytest.raises(DataError, match=r"lab.a\.nii\.gz: label values \[3\] are outside"):
        nifti(tmp_path / "img", tmp_path / "lab", num_classes=2)
    _nii(tmp_path / "lab" / "a.nii.gz", np.zeros((6, 6, 5), np.int16))
    with pytest.raises(DataError, match=r"a\.nii\.gz has spatial shape \(6, 6, 6\) but its label"):
        nifti(tmp_path / "img", tmp_path / "lab")
    nan = np.zeros((6, 6, 6), np.float32)
    nan[1, 2, 3] = np.nan
    bad = _nii(tmp_path / "nan.nii.gz", nan)
    with pytest.raises(DataError, match=r"nan\.nii\.gz: the data holds 1 NaN/Inf.*\(1, 2, 3, 0\)"):
        nifti([bad])
    with pytest.raises(DataError, match=r"a\.nii\.gz: has 1 channel\(s\) but in_channels=3"):
        nifti([good], in_channels=3)
    truncated = tmp_path / "cut.nii"
    _nii(truncated, np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"cut\.nii: cannot read this NIfTI file.*truncated"):
        nifti([truncated])
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        nifti(tmp_path / "none")


def test_missing_optional_extras_name_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[nifti\]"'):
        nifti([tmp_path / "x.nii"])
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[images\]"'):
        image_folder(tmp_path)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[dicom\]"'):
        read_dicom_series(tmp_path)


# --------------------------------------------------------------------------- DICOM
@pytest.mark.parametrize("orientation,normal", [((1, 0, 0, 0, 1, 0), (0, 0, 1)),      # axial
                                                ((1, 0, 0, 0, 0, -1), (0, 1, 0))])   # coronal
def test_dicom_series_sorted_by_position_with_spacing_and_rescale(tmp_path, orientation, normal):
    folder = _series(tmp_path / "s", [3, 0, 4, 1, 2], orientation, normal)
    volume, spacing, affine = read_dicom_series(folder)
    assert volume.shape == (3, 4, 5, 1)  # (columns, rows, slices, 1)
    assert spacing == pytest.approx((0.7, 0.5, 2.5))
    stored = np.arange(12).reshape(4, 3).T  # (cols, rows) of the stored pixel grid
    for k in range(5):  # slice k holds stored + 100 k, rescaled by 2 and -1024
        np.testing.assert_array_equal(volume[:, :, k, 0], (stored + 100 * k) * 2.0 - 1024)
    np.testing.assert_allclose(affine[:3, 2], np.array(normal) * 2.5)
    np.testing.assert_allclose(affine[:3, 3], (5.0, -3.0, 7.0))


def test_dicom_dataset_and_errors(tmp_path):
    _series(tmp_path / "root" / "a", [1, 0, 2])
    _series(tmp_path / "root" / "b", [0, 2, 1], series="1.2.3.5")
    ds = dicom(tmp_path / "root", [0, 1], window=(-1024, 0), shuffle=False)
    (xa, ya), (xb, yb) = list(ds.as_numpy_iterator())
    assert xa.shape == (3, 4, 3, 1) and (ya, yb) == (0, 1)
    assert xa[0, 0, 0, 0] == 0.0 and xa.max() <= 1.0
    _series(tmp_path / "mixed", [0, 1], series="1.2.3.6")
    _dicom_slice(tmp_path / "mixed" / "other.dcm", 5, (0, 0, 50), "1.2.3.7", [1, 0, 0, 0, 1, 0])
    with pytest.raises(DataError, match=r"mixes 2 DICOM series.*1\.2\.3\.6 \(2 files\)"):
        read_dicom_series(tmp_path / "mixed")
    assert read_dicom_series(tmp_path / "mixed", series_uid="1.2.3.6")[0].shape[2] == 2
    cut = _series(tmp_path / "cut", [0, 1, 2]) / "IM0001.dcm"
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"IM0001\.dcm: the DICOM pixel data cannot be decoded.*truncated"):
        read_dicom_series(tmp_path / "cut")
    (tmp_path / "cut" / "IM0001.dcm").write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match=r"IM0001\.dcm: cannot be read as DICOM"):
        read_dicom_series(tmp_path / "cut")
    (tmp_path / "void").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        read_dicom_series(tmp_path / "void")


# --------------------------------------------------------------------------- arrays, npz, TFDS
def test_arrays_and_npz(tmp_path):
    images = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    masks = np.zeros((4, 8, 8), np.uint8)
    ds = from_arrays(images, masks, num_classes=2)
    assert ds.element_spec[0].shape == (8, 8, 1) and ds.element_spec[1].shape == (8, 8, 1)
    vol = from_arrays(np.zeros((2, 4, 4, 4)), [0, 1], spatial_dims=3)
    assert vol.element_spec[0].shape == (4, 4, 4, 1) and vol.element_spec[1].shape == ()
    np.savez(tmp_path / "d.npz", x=images, y=np.array([0, 1, 1, 0]))
    x, y = list(npz(tmp_path / "d.npz", images_key="x", labels_key="y").as_numpy_iterator())[1]
    np.testing.assert_array_equal(x[..., 0], images[1])
    assert y == 1
    with pytest.raises(DataError, match=r"d\.npz: no array named 'images'; the file holds \['x', 'y'\]"):
        npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match="do not match images"):
        from_arrays(images, np.zeros((4, 8, 7)))
    with pytest.raises(DataError, match=r"label values \[2\] are outside"):
        from_arrays(images, masks + 2, num_classes=2)
    with pytest.raises(DataError, match=r"1 channel\(s\) but in_channels=3"):
        from_arrays(images, masks, in_channels=3)
    images[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="NaN/Inf"):
        from_arrays(images, masks)


def test_tfds_reads_a_local_dataset_and_never_downloads(tmp_path):
    import tensorflow_datasets as tfds_mod

    from zoo.datasets.reader import tfds

    class ZooTinyPhantoms(tfds_mod.core.GeneratorBasedBuilder):
        VERSION = tfds_mod.core.Version("1.0.0")

        def _info(self):
            return tfds_mod.core.DatasetInfo(builder=self, features=tfds_mod.features.FeaturesDict({
                "image": tfds_mod.features.Image(shape=(8, 8, 1)),
                "label": tfds_mod.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((8, 8, 1), 51 * (i % 3), np.uint8), "label": i % 3}

    ZooTinyPhantoms(data_dir=str(tmp_path)).download_and_prepare()
    ds = tfds("zoo_tiny_phantoms", data_dir=tmp_path, num_classes=3)
    items = list(ds.as_numpy_iterator())
    assert len(items) == 6 and items[0][0].shape == (8, 8, 1)
    assert all(x.max() == pytest.approx(0.2 * y) for x, y in items)  # uint8 / 255, label kept
    with pytest.raises(DataError, match=r"has 3 classes but num_classes=2"):
        tfds("zoo_tiny_phantoms", data_dir=tmp_path, num_classes=2)
    with pytest.raises(ZooError, match=rf"not prepared in data_dir='{tmp_path}'.*`tfds build mnist "
                                       rf"--data_dir {tmp_path}`"):
        tfds("mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------- from_source (finetune's entry)
def test_from_source_routes_layouts(tmp_path):
    ds = from_source("phantoms", task="segmentation", spatial_dims=2, num_classes=3, patch_size=32, n=4)
    assert ds.element_spec[0].shape == (32, 32, 1) and int(ds.cardinality()) == 4
    val = from_source("phantoms", training=False, task="segmentation", num_classes=3, patch_size=32, n=4)
    assert not np.array_equal(next(iter(ds))[0], next(iter(val))[0])  # validation uses other phantoms
    _png(tmp_path / "seg" / "images" / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "seg" / "masks" / "a.png", np.ones((8, 8), np.uint8))
    seg = from_source(tmp_path / "seg", task="segmentation", num_classes=2, in_channels=1)
    assert int(next(iter(seg))[1].numpy().min()) == 1
    _nii(tmp_path / "vol" / "imagesTr" / "c1.nii.gz", np.ones((6, 6, 6), np.float32))
    _nii(tmp_path / "vol" / "labelsTr" / "c1.nii.gz", np.ones((6, 6, 6), np.uint8))
    vol = from_source(tmp_path / "vol", task="segmentation", spatial_dims=3, patch_size=4, seed=3)
    assert vol.element_spec[0].shape == (4, 4, 4, 1) and vol.element_spec[1].shape == (4, 4, 4, 1)
    _png(tmp_path / "cls" / "yes" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="one class label per image"):
        from_source(tmp_path / "cls", task="segmentation")
    with pytest.raises(InvalidArgumentError, match="'patch' is not accepted by zoo.data.image_folder"):
        from_source(tmp_path / "cls", task="classification", patch=3)
    from zoo.data.augment import Augment
    jitter = Augment(flip=False, rot90=False, p_affine=0.0)  # intensity only: a small graph
    aug = from_source("phantoms", task="segmentation", num_classes=3, patch_size=32, n=4, augment=jitter)
    (xa, ya), (x, y) = next(iter(aug)), next(iter(ds))
    assert not np.allclose(xa, x) and np.array_equal(ya, y)  # training data is augmented
    no_aug = from_source("phantoms", training=False, task="segmentation", num_classes=3, patch_size=32, n=4,
                         augment=jitter)
    assert np.array_equal(next(iter(no_aug))[0], next(iter(val))[0])  # validation data is not
