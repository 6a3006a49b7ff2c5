"""zoo.datapath.from_source layouts and patches: fixed validation patches, per-axis phantom sizes,
patch_size on image folders, read_image, and DICOM folder detection."""
import numpy as np
import pytest
from _files import _dicom_root, _nii, _png, _series

import zoo.data as zd
from zoo.data import DataError, from_arrays, phantom_arrays, segmentation_folder
from zoo.datapath import from_source
from zoo.errors import InvalidArgumentError


def _epochs(ds, n=2):
    return [[a for a, _ in ds.as_numpy_iterator()] for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- 1. volume patches per epoch
def test_validation_volume_patches_are_fixed_training_patches_vary_and_repeat_from_the_seed(tmp_path):
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        _nii(tmp_path / "imagesTr" / f"{case}.nii.gz", rng.normal(size=(12, 12, 12)).astype(np.float32))
        _nii(tmp_path / "labelsTr" / f"{case}.nii.gz", (rng.random((12, 12, 12)) > 0.9).astype(np.uint8))
    kw = dict(task="segmentation", spatial_dims=3, patch_size=(4, 6, 5), seed=3, samples_per_volume=5)
    val = from_source(tmp_path, training=False, **kw)
    first, second = _epochs(val)
    assert len(first) == 10 and first[0].shape == (4, 6, 5, 1)
    assert _same(first, second)  # validation: the same patches every epoch
    train = from_source(tmp_path, training=True, **kw)
    t1, t2 = _epochs(train)
    assert not _same(t1, t2)  # training: new patches each epoch ...
    assert _same(t1, _epochs(from_source(tmp_path, training=True, **kw), 1)[0])  # ... repeatable from the seed
    assert not _same(t1, _epochs(from_source(tmp_path, training=True, **(kw | {"seed": 4})), 1)[0])


# --------------------------------------------------------------------------- 2. phantoms, per-axis sizes
def test_phantoms_take_per_axis_sizes_in_2d_and_3d():
    im, lab = phantom_arrays(3, size=(48, 32), seed=1)
    assert im.shape == (3, 48, 32, 1) and lab.shape == (3, 48, 32, 1) and (lab > 0).any()
    square, _ = phantom_arrays(3, size=32, seed=1)
    np.testing.assert_array_equal(square, phantom_arrays(3, size=(32, 32), seed=1)[0])  # int = same per axis
    vol, vlab = phantom_arrays(2, spatial_dims=3, size=(16, 24, 20), seed=0)
    assert vol.shape == (2, 16, 24, 20, 1) and vlab.shape == (2, 16, 24, 20, 1) and (vlab > 0).any()
    cls, y = phantom_arrays(4, size=(40, 24), task="classification", num_classes=3, seed=2)
    assert cls.shape == (4, 40, 24, 1) and y.shape == (4,)
    ds = from_source("phantoms", task="segmentation", patch_size=(48, 32), n=2)
    assert ds.element_spec[0].shape == (48, 32, 1) and ds.element_spec[1].shape == (48, 32, 1)
    ds3 = from_source("phantoms", task="segmentation", spatial_dims=3, patch_size=(16, 24, 20), n=1)
    assert next(iter(ds3))[0].shape == (16, 24, 20, 1)
    for bad, match in (((48,), r"size=\(48,\).*2 ints"), ((8, 32), r"size=\(8, 32\).*>= 16"),
                       ((32.5, 32), r"size=\(32\.5, 32\)"), (True, "size=True")):
        with pytest.raises(InvalidArgumentError, match=match):
            phantom_arrays(1, size=bad)


# --------------------------------------------------------------------------- 3. patch_size on image folders
def _position_folder(root, shapes):
    """Images whose pixel (r, c) holds 1 + 16 r + c (so 1/255 is the minimum); masks (r + c) % 2:
    where a crop came from can be read off its pixels."""
    for i, (h, w) in enumerate(shapes):
        r, c = np.mgrid[:h, :w]
        _png(root / "images" / f"c{i}.png", (1 + r * 16 + c).astype(np.uint8))
        _png(root / "masks" / f"c{i}.png", ((r + c) % 2).astype(np.uint8))


def _code(image):
    return np.round(image[..., 0] * 255).astype(int) - 1  # 16 r + c of the source pixel


def test_segmentation_folder_patches_random_for_training_centre_for_validation(tmp_path):
    _position_folder(tmp_path, [(12, 10)] * 4)
    kw = dict(task="segmentation", num_classes=2, patch_size=(8, 6), seed=1)
    train = from_source(tmp_path, **kw)
    assert train.element_spec[0].shape == (8, 6, 1) and train.element_spec[1].shape == (8, 6, 1)
    e1 = list(train.as_numpy_iterator())
    rows, cols = np.mgrid[:8, :6]
    for x, m in e1:  # image and mask are cut at the same place
        code = _code(x)
        r0, c0 = divmod(code[0, 0], 16)
        assert 0 <= r0 <= 4 and 0 <= c0 <= 4
        np.testing.assert_array_equal(code, (rows + r0) * 16 + cols + c0)
        np.testing.assert_array_equal(m[..., 0], (rows + r0 + cols + c0) % 2)
    e2 = list(train.as_numpy_iterator())
    assert not _same([x for x, _ in e1], [x for x, _ in e2])  # new crops each epoch
    again = list(from_source(tmp_path, **kw).as_numpy_iterator())
    assert _same([x for x, _ in e1], [x for x, _ in again])  # the same seed repeats them
    val = from_source(tmp_path, training=False, **kw)
    v1, v2 = _epochs(val)
    assert _same(v1, v2) and all(_code(x)[0, 0] == 2 * 16 + 2 for x in v1)  # centre crop, every epoch


def test_segmentation_folder_pads_small_images_and_takes_mixed_sizes_with_a_patch(tmp_path):
    _position_folder(tmp_path, [(4, 3), (12, 10)])
    with pytest.raises(DataError, match="differ in size"):
        segmentation_folder(tmp_path / "images", tmp_path / "masks")  # no patch: one size needed
    ds = segmentation_folder(tmp_path / "images", tmp_path / "masks", patch_size=(8, 6), random_crop=False)
    (small, small_mask), (big, _) = list(ds.as_numpy_iterator())
    assert small.shape == big.shape == (8, 6, 1) and small_mask.shape == (8, 6, 1)
    code = _code(small)
    r, c = np.mgrid[:4, :3]
    np.testing.assert_array_equal(code[2:6, 1:4], r * 16 + c)  # centred: 2 rows / 1 column before
    code[2:6, 1:4] = -99
    assert (code[code != -99] == 0).all()  # padded with the image minimum (1/255, not 0) ...
    assert small_mask.sum() == ((r + c) % 2).sum()  # ... and the mask with background
    with pytest.raises(InvalidArgumentError, match=r"patch_size=\(8,\)"):
        segmentation_folder(tmp_path / "images", tmp_path / "masks", patch_size=(8,))
    with pytest.raises(DataError, match=r"2D images and masks \(2D data\) but the model is 3D"):
        from_source(tmp_path, spatial_dims=3, patch_size=(8, 8, 8))  # before any size check or read


def test_fit_patch_crops_arrays_and_user_datasets_anew_each_epoch():
    x = np.arange(6 * 10 * 10, dtype=np.float32).reshape(6, 10, 10, 1)
    ds = zd.fit_patch(from_arrays(x, (x[..., 0] % 3).astype(np.int32)), (5, 4), random=True, seed=2)
    e1, e2 = _epochs(ds)
    assert e1[0].shape == (5, 4, 1) and not _same(e1, e2)
    f1, _ = _epochs(zd.fit_patch(from_arrays(x, (x[..., 0] % 3).astype(np.int32)), (5, 4), seed=2))
    assert _same(f1, e1)  # reproducible from the seed
    flat = zd.fit_patch(from_arrays(x)
                     .map(lambda a: (a, a[..., 0])), (5, 4), random=False)  # a label map without channel axis
    assert flat.element_spec[1].shape == (5, 4)
    a, m = next(iter(flat))
    np.testing.assert_array_equal(a[..., 0], m)
    np.testing.assert_array_equal(a[..., 0], x[0, 2:7, 3:7, 0])


def test_classification_folder_patch_size_is_the_image_size(tmp_path):
    _png(tmp_path / "no" / "a.png", np.full((10, 7), 51, np.uint8))
    _png(tmp_path / "yes" / "b.png", np.full((30, 20), 102, np.uint8))  # mixed sizes: all resized
    ds = from_source(tmp_path, task="classification", patch_size=(16, 12))
    items = list(ds.as_numpy_iterator())
    assert [x.shape for x, _ in items] == [(16, 12, 1)] * 2 and [y for _, y in items] == [0, 1]
    np.testing.assert_allclose([x.mean() for x, _ in items], [0.2, 0.4], atol=1e-6)
    assert from_source(tmp_path, task="classification", patch_size=16, image_size=(8, 8)
                       ).element_spec[0].shape == (8, 8, 1)  # an explicit image_size wins


# --------------------------------------------------------------------------- 4. read_image
def test_read_image_is_public_and_converts_channels(tmp_path, monkeypatch):
    _png(tmp_path / "g.png", np.full((5, 4), 51, np.uint8))
    _png(tmp_path / "c.png", np.dstack([np.full((5, 4), v, np.uint8) for v in (255, 0, 0)]))
    _png(tmp_path / "w.tif", np.full((5, 4), 65535, np.uint16))
    g, c = zd.read_image(tmp_path / "g.png"), zd.read_image(tmp_path / "c.png")
    assert g.shape == (5, 4, 1) and g.dtype == np.float32 and g.max() == pytest.approx(0.2)
    assert c.shape == (5, 4, 3) and c[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert zd.read_image(tmp_path / "g.png", channels=3).shape == (5, 4, 3)
    assert zd.read_image(tmp_path / "c.png", channels=1)[0, 0, 0] == pytest.approx(76 / 255)  # ITU-R 601 luma
    assert zd.read_image(tmp_path / "w.tif").max() == 1.0
    grown = zd.read_image(tmp_path / "g.png", size=(10, 6))  # bilinear resize, as image_folder does
    assert grown.shape == (10, 6, 1) and np.allclose(grown, 0.2)
    with pytest.raises(InvalidArgumentError, match=r"size=\(0, 4\)"):
        zd.read_image(tmp_path / "g.png", size=(0, 4))
    with pytest.raises(InvalidArgumentError, match="channels=2"):
        zd.read_image(tmp_path / "g.png", channels=2)
    with pytest.raises(DataError, match=r"nope\.png"):
        zd.read_image(tmp_path / "nope.png")
    from zoo._keras import keras
    from zoo.api import predict
    seen = []
    real = zd.read_image
    monkeypatch.setattr(zd, "read_image", lambda p, ch=None, size=None: seen.append(ch) or real(p, ch, size))
    inp = keras.Input((None, None, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    assert predict(model, tmp_path / "c.png", out=False, patch_size=(4, 4)).shape == (5, 4)
    assert seen == [1]  # zoo.predict reads images through the public reader


# --------------------------------------------------------------------------- 5. DICOM folders
def test_dicom_images_and_labels_folders_are_detected(tmp_path):
    _dicom_root(tmp_path / "seg", {"case.1": [1, 0, 2], "case2": [0, 1, 2, 3]})
    for f in (tmp_path / "seg" / "images" / "case2").iterdir():  # DICOM files without a suffix
        f.rename(f.with_suffix(""))
    ds = from_source(tmp_path / "seg", task="segmentation", spatial_dims=3, num_classes=2, training=False)
    (x1, y1), (x2, y2) = list(ds.as_numpy_iterator())
    assert x1.shape == (3, 4, 3, 1) and x2.shape == (3, 4, 4, 1) and y2.shape == (3, 4, 4, 1)
    assert y1[1, 2, 0, 0] == 1 and y1.sum() == 1  # the label volume of the case with the same name
    patches = from_source(tmp_path / "seg", task="segmentation", spatial_dims=3, patch_size=(2, 2, 2))
    assert patches.element_spec[0].shape == (2, 2, 2, 1) and int(patches.cardinality()) == 2
    _dicom_root(tmp_path / "nii", {"p": [0, 1]}, label_ext=".nii.gz")
    assert next(iter(from_source(tmp_path / "nii", spatial_dims=3)))[1].shape == (3, 4, 2, 1)
    (tmp_path / "seg" / "labels" / "case2.npy").unlink()
    with pytest.raises(DataError, match=r"no label volume for .*case2"):
        from_source(tmp_path / "seg", spatial_dims=3)


def test_dicom_class_folders_and_unlabelled_series_errors(tmp_path):
    _series(tmp_path / "cls" / "benign" / "p1", [0, 1])
    _series(tmp_path / "cls" / "malignant" / "p2", [1, 0], series="1.2.3.9")
    _series(tmp_path / "cls" / "malignant" / "p3", [0, 1, 2], series="1.2.3.10")
    ds = from_source(tmp_path / "cls", task="classification", spatial_dims=3, training=False)
    assert ds.class_names == ["benign", "malignant"] and [f[-2:] for f in ds.file_paths] == ["p1", "p2", "p3"]
    assert [(x.shape, int(y)) for x, y in ds.as_numpy_iterator()] == [((3, 4, 2, 1), 0), ((3, 4, 2, 1), 1),
                                                                       ((3, 4, 3, 1), 1)]
    _series(tmp_path / "cases" / "p1", [0, 1])
    root = str(tmp_path / "cases")
    with pytest.raises(DataError, match=rf"{root}.*DICOM series.*no labels.*images/<case>/.*labels/<case>\.nii"):
        from_source(tmp_path / "cases")
    with pytest.raises(DataError, match=r"p1.*one DICOM series.*images/<case>/"):
        from_source(tmp_path / "cases" / "p1")
    (tmp_path / "odd" / "x").mkdir(parents=True)
    (tmp_path / "odd" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=rf"{tmp_path / 'odd'}.*not a known data layout.*DICOM"):
        from_source(tmp_path / "odd")
