"""Sliding-window inference and zoo.predict (NIfTI, PNG, arrays): exactness, geometry, errors."""
import functools
import itertools

import nibabel as nib
import numpy as np
import pytest

import zoo
from zoo._keras import keras
from zoo.api import predict
from zoo.errors import InvalidArgumentError, ZooError
from zoo.inference import _starts, gaussian_importance, sliding_window, window_steps


def conv_net(dims, convs=0, channels=1, classes=3, seed=0):
    """A fully convolutional net: a 1x1 conv, then ``convs`` 3x3 'same' convs (receptive-field
    radius = convs). No BatchNorm, no pooling: its output at a pixel depends only on the
    input within that radius."""
    conv = keras.layers.Conv2D if dims == 2 else keras.layers.Conv3D
    init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    x = inp = keras.Input((None,) * dims + (channels,))
    x = conv(4, 1, kernel_initializer=init, bias_initializer=init)(x)
    for _ in range(convs):
        x = conv(4, 3, padding="same", activation="tanh", kernel_initializer=init)(x)
    x = conv(classes, 1, kernel_initializer=init, name="classifier")(x)
    return keras.Model(inp, x)


def full(model, image):
    return model.predict_on_batch(image[None].astype("float32"))[0]


@pytest.mark.parametrize("dims,shape,patch", [(2, (37, 29), (16, 16)), (3, (19, 13, 11), (8, 8, 8))])
@pytest.mark.parametrize("overlap,blend", [(0.5, "gaussian"), (0.0, "constant"), (0.25, "gaussian")])
def test_pointwise_model_is_exact_everywhere(dims, shape, patch, overlap, blend):
    model = conv_net(dims, convs=0)
    image = np.random.default_rng(1).normal(size=shape + (1,)).astype("float32")
    got = sliding_window(model, image, patch, overlap=overlap, blend=blend, batch_size=3)
    assert got.shape == shape + (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got, full(model, image), rtol=1e-5, atol=1e-5)


def _safe_mask(shape, patch, overlap, radius):
    """Voxels that every covering patch sees with its full receptive field (or the image edge)."""
    starts = [_starts(s, p, st) for s, p, st in zip(shape, patch, window_steps(patch, overlap))]
    axes = []
    for size, p, st in zip(shape, patch, starts):
        ok = np.ones(size, bool)
        for c in st:
            lo = c if c == 0 else c + radius
            hi = c + p if c + p == size else c + p - radius
            inside = np.zeros(size, bool)
            inside[c:c + p] = True
            safe = np.zeros(size, bool)
            safe[lo:hi] = True
            ok &= ~inside | safe
        axes.append(ok)
    d = len(axes)
    return functools.reduce(np.logical_and, [a.reshape([-1 if i == k else 1 for i in range(d)])
                                             for k, a in enumerate(axes)])


@pytest.mark.parametrize("dims,shape,patch", [(2, (40, 36), (16, 16)), (3, (20, 18, 16), (10, 10, 10))])
def test_small_receptive_field_matches_full_prediction_in_the_interior(dims, shape, patch):
    model = conv_net(dims, convs=2)  # receptive-field radius 2
    image = np.random.default_rng(2).normal(size=shape + (1,)).astype("float32")
    got = sliding_window(model, image, patch, overlap=0.5)
    ref = full(model, image)
    mask = _safe_mask(shape, patch, 0.5, radius=2)
    assert mask.mean() > 0.2  # the comparison covers a real share of the image
    np.testing.assert_allclose(got[mask], ref[mask], rtol=1e-4, atol=1e-4)
    # where a patch border cuts the receptive field, tiles do differ: the mask is needed
    assert np.abs(got[~mask] - ref[~mask]).max() > 1e-3


def test_gaussian_importance_map():
    w = gaussian_importance((9, 12))
    assert w.shape == (9, 12) and w.dtype == np.float32
    assert w.max() == pytest.approx(1.0) and w.min() >= 1e-3
    np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric about the centre
    row = w[4]
    assert np.all(np.diff(row[:6]) > 0) and np.all(np.diff(row[6:]) < 0)  # peaks at the centre
    w3 = gaussian_importance((5, 5, 5))
    assert w3.argmax() == np.ravel_multi_index((2, 2, 2), w3.shape)


def test_tile_starts_cover_the_image_with_the_requested_overlap():
    assert _starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]  # last tile flush with the edge
    assert _starts(64, 32, 32) == [0, 32]
    assert _starts(20, 32, 16) == [0]
    for size, p, step in [(37, 16, 8), (100, 30, 21), (17, 16, 1)]:
        starts = _starts(size, p, step)
        covered = np.zeros(size, int)
        for c in starts:
            covered[c:c + p] += 1
        assert covered.min() >= 1 and starts[-1] + p == size
        assert all(b - a <= step for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("patch,overlap", [(32, 0.6), (32, 0.5), (96, 0.25), (7, 0.3), (10, 0.9), (16, 0.0)])
def test_windows_never_overlap_less_than_asked(patch, overlap):
    """The step is floored: overlap=0.6 on 32-voxel patches gives step 12 (62.5 %), never 13 (59 %)."""
    (step,) = window_steps((patch,), overlap)
    assert step >= 1 and (patch - step) / patch >= overlap - 1e-9
    assert step == max(1, int(patch * (1 - overlap) + 1e-9))  # the largest step that keeps the overlap


@pytest.mark.parametrize("overlap,blend", [(0.0, "constant"), (0.5, "gaussian"), (0.75, "constant")])
def test_identity_model_returns_the_image_for_any_overlap(overlap, blend):
    # blending must normalise by the summed weights: an identity net gives the image back
    x = inp = keras.Input((None, None, 2))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1, bias_initializer="zeros")(x))
    model.layers[-1].kernel.assign(np.eye(2, dtype="float32")[None, None])
    image = np.random.default_rng(3).normal(size=(45, 31, 2)).astype("float32")
    np.testing.assert_allclose(sliding_window(model, image, (16, 16), overlap=overlap, blend=blend),
                               image, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims,shape,patch", [(2, (10, 12), (16, 16)), (3, (5, 9, 7), (8, 8, 8))])
def test_image_smaller_than_the_patch_is_padded(dims, shape, patch):
    model = conv_net(dims, convs=0)
    image = np.random.default_rng(4).normal(size=shape + (1,)).astype("float32")
    got = sliding_window(model, image, patch)
    assert got.shape == shape + (3,)
    np.testing.assert_allclose(got, full(model, image), rtol=1e-5, atol=1e-5)


def test_sliding_window_errors_name_the_argument():
    model = conv_net(2)
    img = np.zeros((20, 20, 1), "float32")
    with pytest.raises(InvalidArgumentError, match="channels.*in_channels=2"):
        sliding_window(model, np.zeros((20, 20, 2)), (16, 16))
    with pytest.raises(InvalidArgumentError, match="patch_size is needed"):
        sliding_window(model, img)
    with pytest.raises(InvalidArgumentError, match="overlap=1"):
        sliding_window(model, img, (16, 16), overlap=1)
    with pytest.raises(InvalidArgumentError, match="expected 3 axes"):
        sliding_window(model, np.zeros((20, 20, 20, 1)), (16, 16))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        sliding_window(model, np.full((20, 20, 1), np.nan), (16, 16))
    with pytest.raises(InvalidArgumentError, match="blend"):
        sliding_window(model, img, (16, 16), blend="mean")


# --------------------------------------------------------------------------- predict
AFFINE = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0], [0.0, 0.0, 3.0, 7.5], [0, 0, 0, 1]])


def write_volume(path, data, affine=AFFINE):
    img = nib.Nifti1Image(data.astype("float32"), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return img


def test_predict_nifti_writes_labels_with_the_input_geometry(tmp_path):
    model = zoo.load("unet", spatial_dims=3, filters=4, depth=2, dropout=0.0, num_classes=3)
    rng = np.random.default_rng(5)  # fixed weights: the labels do not depend on TF's RNG state
    model.set_weights([rng.normal(0.0, 0.4, w.shape).astype("float32") for w in model.get_weights()])
    vol = rng.normal(100.0, 30.0, (21, 18, 12)).astype("float32")
    src = tmp_path / "case_001.nii.gz"
    write_volume(src, vol)
    labels = predict(model, src, patch_size=(16, 16, 8), window=(50, 150))
    written = tmp_path / "case_001_seg.nii.gz"  # the default output beside the input
    assert written.exists() and sorted(p.name for p in tmp_path.iterdir()) == [src.name, written.name]
    out = nib.load(str(written))
    ref = nib.load(str(src))
    np.testing.assert_allclose(out.affine, ref.affine)
    np.testing.assert_allclose(out.get_qform(), ref.get_qform())
    np.testing.assert_allclose(out.get_sform(), ref.get_sform())
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
    assert out.header.get_zooms() == ref.header.get_zooms() == (2.0, 1.5, 3.0)
    assert out.header.get_xyzt_units() == ("mm", "sec")
    assert out.get_data_dtype() == np.uint8 and out.shape == vol.shape
    data = np.asarray(out.dataobj)
    np.testing.assert_array_equal(data, labels)
    # the labels are the argmax of the sliding-window logits of the windowed volume
    windowed = ((np.clip(vol, 50, 150) - 50) / 100)[..., None]
    logits = sliding_window(model, windowed, (16, 16, 8))
    np.testing.assert_array_equal(labels, np.argmax(logits, -1))
    assert len(np.unique(labels)) > 1
    # an explicit out= path (plain .nii), and probabilities on request
    probs = predict(model, src, out=tmp_path / "o" / "seg.nii", patch_size=(16, 16, 8), window=(50, 150),
                    return_probabilities=True)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(nib.load(str(tmp_path / "o" / "seg.nii")).get_fdata(), labels)


def test_predict_nifti_default_normalisation_is_the_training_default(tmp_path):
    model = conv_net(3, convs=1, classes=2)
    vol = np.random.default_rng(6).normal(500.0, 80.0, (12, 10, 9)).astype("float32")
    write_volume(tmp_path / "v.nii", vol)
    labels = predict(model, tmp_path / "v.nii", patch_size=(8, 8, 8), out=False)
    z = ((vol - vol.mean()) / vol.std())[..., None]  # "auto" = per-volume z-score, as zoo.data.nifti
    np.testing.assert_array_equal(labels, np.argmax(sliding_window(model, z, (8, 8, 8)), -1))
    assert not (tmp_path / "v_seg.nii.gz").exists()  # out=False writes nothing


def test_predict_2d_model_on_a_volume_runs_slice_by_slice(tmp_path):
    model = conv_net(2, convs=1, classes=2)
    vol = np.random.default_rng(7).normal(size=(20, 16, 3)).astype("float32")
    write_volume(tmp_path / "v.nii.gz", vol)
    labels = predict(model, tmp_path / "v.nii.gz", patch_size=(16, 16), normalize="none")
    for k in range(3):
        np.testing.assert_array_equal(
            labels[:, :, k], np.argmax(sliding_window(model, vol[:, :, k, None], (16, 16)), -1))


def test_predict_arrays_and_png(tmp_path):
    from PIL import Image
    model = conv_net(2, convs=1, classes=3)
    image = np.random.default_rng(8).integers(0, 256, (40, 33)).astype("uint8")
    ref = np.argmax(sliding_window(model, image[..., None] / 255.0, (16, 16)), -1)
    np.testing.assert_array_equal(predict(model, image / 255.0, patch_size=(16, 16)), ref)
    probs = predict(model, image / 255.0, patch_size=(16, 16), return_probabilities=True)
    assert probs.shape == (40, 33, 3)
    np.testing.assert_array_equal(probs.argmax(-1), ref)
    Image.fromarray(image).save(tmp_path / "slice.png")
    labels = predict(model, tmp_path / "slice.png", patch_size=(16, 16))
    np.testing.assert_array_equal(labels, ref)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "slice_seg.png")), ref)


def test_predict_errors_name_the_file_or_argument(tmp_path):
    model = conv_net(3, classes=2)
    bad = np.zeros((10, 10, 10), "float32")
    bad[3, 4, 5] = np.nan
    write_volume(tmp_path / "nan.nii.gz", bad)
    with pytest.raises(ZooError, match=r"nan\.nii\.gz.*NaN"):
        predict(model, tmp_path / "nan.nii.gz", patch_size=(8, 8, 8))
    two = nib.Nifti1Image(np.zeros((10, 10, 10, 2), "float32"), AFFINE)
    nib.save(two, str(tmp_path / "two.nii.gz"))
    with pytest.raises(InvalidArgumentError,
                       match=r"two\.nii\.gz is a 4D NIfTI image .*read as channels.*in_channels=2"):
        predict(model, tmp_path / "two.nii.gz", patch_size=(8, 8, 8))
    with pytest.raises(InvalidArgumentError, match=r"source=.*missing\.nii\.gz.*no such file"):
        predict(model, tmp_path / "missing.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidArgumentError, match="neither NIfTI"):
        predict(model, tmp_path / "notes.txt")
    write_volume(tmp_path / "ok.nii.gz", np.ones((10, 10, 10)))
    with pytest.raises(InvalidArgumentError, match="out=.*must end with .nii"):
        predict(model, tmp_path / "ok.nii.gz", patch_size=(8, 8, 8), out=tmp_path / "seg.png")
    with pytest.raises(InvalidArgumentError, match="normalize='minmax'"):
        predict(model, np.zeros((8, 8, 8, 1)), normalize="minmax")
    with pytest.raises(InvalidArgumentError, match="is not a keras.Model, a finetune run folder"):
        predict(str(tmp_path), np.zeros((8, 8, 8, 1)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.nii.gz", "notes.txt", "ok.nii.gz",
                                                         "two.nii.gz"]  # nothing written on errors


def test_predict_classification_model_gives_one_class():
    model = zoo.load("resnet18", width=8, num_classes=4, in_channels=1, input_shape=(32, 32, 1))
    image = np.random.default_rng(9).normal(size=(32, 32)).astype("float32")
    logits = full(model, image[..., None])
    assert predict(model, image) == int(np.argmax(logits))
    np.testing.assert_allclose(predict(model, image, return_probabilities=True).sum(), 1.0, rtol=1e-5)


def test_predict_resamples_to_the_training_spacing_and_back(tmp_path):
    model = conv_net(3, convs=0, classes=2)
    vol = np.random.default_rng(10).normal(size=(16, 12, 10)).astype("float32")
    write_volume(tmp_path / "v.nii.gz", vol)  # zooms (2, 1.5, 3)
    labels = predict(model, tmp_path / "v.nii.gz", spacing=(1.0, 1.0, 1.0), patch_size=(16, 16, 16))
    assert labels.shape == vol.shape
    direct = predict(model, tmp_path / "v.nii.gz", patch_size=(16, 16, 16), out=False)
    # a pointwise model on linearly interpolated intensities: mostly the same labels
    assert np.mean(labels == direct) > 0.7


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_batches_do_not_change_the_result(dims):
    model = conv_net(dims, convs=1)
    shape = (30, 22) if dims == 2 else (14, 12, 10)
    image = np.random.default_rng(11).normal(size=shape + (1,)).astype("float32")
    results = [sliding_window(model, image, (8,) * dims, batch_size=b) for b in (1, 3, 64)]
    for a, b in itertools.combinations(results, 2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_predict_dicom_series_folder_writes_nifti_on_the_series_grid(tmp_path):
    from _files import _series

    from zoo.data import read_dicom_series
    from zoo.inference import LPS_TO_RAS, default_output
    folder = _series(tmp_path / "scans" / "case7", [2, 0, 3, 1, 4], gap=2.5)
    model = conv_net(3, convs=1, classes=3, seed=4)  # a seed whose labels are not all one class
    labels = predict(model, folder, patch_size=(8, 8, 8), window=(-1100, -900))
    volume, _, lps = read_dicom_series(folder)
    windowed = (np.clip(volume, -1100, -900) + 1100) / 200
    np.testing.assert_array_equal(labels, np.argmax(sliding_window(model, windowed, (8, 8, 8)), -1))
    assert labels.shape == (3, 4, 5) and len(np.unique(labels)) > 1
    written = tmp_path / "scans" / "case7_seg.nii.gz"  # beside the series folder
    assert default_output(folder) == written  # (what `zoo predict` reports)
    assert sorted(p.name for p in (tmp_path / "scans").iterdir()) == ["case7", "case7_seg.nii.gz"]
    img = nib.load(str(written))
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    np.testing.assert_allclose(img.affine, LPS_TO_RAS @ lps)  # DICOM LPS -> NIfTI RAS
    np.testing.assert_allclose(img.affine[:3, 3], (-5.0, 3.0, 7.0))  # first slice's corner, in RAS
    assert int(img.header["qform_code"]) == int(img.header["sform_code"]) == 1
    assert img.header.get_zooms() == pytest.approx((0.7, 0.5, 2.5))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match=r"empty is a folder without DICOM files"):
        predict(model, tmp_path / "empty")


def test_predict_png_with_a_classifier_resizes_to_the_training_size(tmp_path):
    from PIL import Image

    from zoo.data import read_image
    model = zoo.load("resnet18", width=8, num_classes=4, in_channels=1, input_shape=(32, 32, 1))
    pixels = np.random.default_rng(11).integers(0, 256, (45, 37)).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "xray.png")
    probs = predict(model, tmp_path / "xray.png", patch_size=(32, 32), return_probabilities=True)
    expected = keras.activations.softmax(model(read_image(tmp_path / "xray.png", 1, (32, 32))[None]))[0]
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert predict(model, tmp_path / "xray.png", patch_size=(32, 32)) == int(np.argmax(expected))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xray.png"]  # a class, no file written
