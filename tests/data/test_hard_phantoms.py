"""zoo.data.hard_phantoms: the benchmark task has the properties its docstring states (seeded,
every class present, noise at the stated SNR, a bias field, anisotropic voxels, overlapping class
intensities) and is measurably harder than the easy phantoms."""
import numpy as np
import pytest

from zoo.data import phantom_arrays
from zoo.data.hard_phantoms import hard_phantom_arrays, hard_phantoms, intensity_dice, mean_dice
from zoo.datapath import from_source
from zoo.errors import InvalidArgumentError


def test_a_seed_gives_the_same_phantoms_and_sample_i_does_not_depend_on_n():
    a = hard_phantom_arrays(4, size=32, seed=3)
    b = hard_phantom_arrays(4, size=32, seed=3)
    c = hard_phantom_arrays(2, size=32, seed=3)
    d = hard_phantom_arrays(4, size=32, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0][:2], c[0])
    assert not np.array_equal(a[1], d[1])
    for task in ("segmentation", "classification"):
        x3 = hard_phantom_arrays(2, spatial_dims=3, size=16, task=task, seed=1)
        np.testing.assert_array_equal(x3[0], hard_phantom_arrays(2, spatial_dims=3, size=16, task=task, seed=1)[0])


def test_element_format_is_the_phantoms_one():
    x, y = hard_phantom_arrays(3, size=(32, 24), in_channels=2)
    assert x.shape == (3, 32, 24, 2) and x.dtype == np.float32 and y.shape == (3, 32, 24, 1) and y.dtype == np.int32
    x, y = hard_phantom_arrays(3, spatial_dims=3, size=16, task="classification", num_classes=3)
    assert x.shape == (3, 16, 16, 16, 1) and y.shape == (3,) and y.dtype == np.int32 and set(y) <= {0, 1, 2}
    ds = hard_phantoms(2, size=32)
    image, label = next(iter(ds))
    assert image.shape == (32, 32, 1) and image.dtype.name == "float32" and label.dtype.name == "int32"
    assert not np.array_equal(x[..., 0], x[..., 0][::-1])  # not a constant image


def test_every_class_is_present_and_the_small_ones_are_small():
    _, y = hard_phantom_arrays(32, size=64, num_classes=4, seed=0)
    present = np.array([[(yi == c).any() for c in range(4)] for yi in y])
    assert present.mean(0).min() >= 0.9, present.mean(0)          # each class in >= 90 % of the images
    frac = np.bincount(y.ravel(), minlength=4) / y.size
    assert frac[0] > 0.5 and 0.05 < frac[1] < 0.4                  # background dominates; organs are large
    assert frac[2] < 0.03 and frac[3] < 0.1                        # lesions and vessels are small / thin
    # vessels are thin: most vessel pixels have a non-vessel pixel within one step
    ves = y[..., 0] == 3
    near_edge = np.zeros_like(ves)
    for axis in (1, 2):
        for shift in (1, -1):
            near_edge |= ves & ~np.roll(ves, shift, axis=axis)
    assert near_edge.sum() / ves.sum() > 0.8
    # classification: every count of lesions occurs
    _, c = hard_phantom_arrays(40, size=32, task="classification", num_classes=4, seed=0)
    assert set(c.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("snr", [4.0, 10.0])
def test_noise_has_the_stated_snr(snr):
    x, _, clean, _ = hard_phantom_arrays(6, size=64, snr=snr, seed=2, return_parts=True)
    noise = x[..., 0] - clean
    for i in range(len(x)):
        measured = clean[i].mean() / noise[i].std()
        assert abs(measured / snr - 1) < 0.05, (i, measured)
    quiet, _ = hard_phantom_arrays(2, size=64, snr=None, seed=2)
    np.testing.assert_allclose(quiet[..., 0], clean[:2], atol=1e-6)


def test_a_smooth_multiplicative_bias_field_is_present():
    _, _, clean, field = hard_phantom_arrays(4, size=64, snr=None, bias=0.3, seed=5, return_parts=True)
    _, _, flat, none = hard_phantom_arrays(4, size=64, snr=None, bias=0.0, seed=5, return_parts=True)
    np.testing.assert_array_equal(none, 1.0)
    np.testing.assert_allclose(clean, flat * field, rtol=1e-5)    # multiplicative
    for f in field:
        assert f.max() / f.min() > 1.2 and f.min() >= np.exp(-0.3) - 1e-6 and f.max() <= np.exp(0.3) + 1e-6
        # smooth: one pixel changes it by under 5 % while it spans over 20 % across the image
        step = max(np.abs(np.diff(np.log(f), axis=a)).max() for a in (0, 1))
        assert step < 0.05 and step < 0.25 * np.log(f.max() / f.min()), step


def test_3d_voxels_are_anisotropic():
    x, y, clean, _ = hard_phantom_arrays(4, spatial_dims=3, size=32, snr=None, bias=0.0, seed=0,
                                         return_parts=True)
    lab = y[..., 0]
    # label boundaries are ~3x denser along the thick (last) axis than in-plane: shapes are physical
    changes = [(np.diff(lab, axis=a) != 0).mean() for a in (1, 2, 3)]
    assert changes[2] > 2.0 * max(changes[0], changes[1]), changes
    iso = hard_phantom_arrays(4, spatial_dims=3, size=32, voxel_size=(1, 1, 1), seed=0)[1][..., 0]
    iso_changes = [(np.diff(iso, axis=a) != 0).mean() for a in (1, 2, 3)]
    assert max(iso_changes) < 1.5 * min(iso_changes), iso_changes
    # partial volume along the thick axis: the image is not a function of the label at the voxel centre
    organ = lab == 1
    assert clean[organ].std() > 0 and x.shape == (4, 32, 32, 32, 1)


def test_class_intensity_ranges_overlap():
    x, y = hard_phantom_arrays(32, size=64, num_classes=4, seed=0)
    ranges = [np.percentile(x[..., 0][y[..., 0] == c], [10, 90]) for c in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            lo, hi = max(ranges[a][0], ranges[b][0]), min(ranges[a][1], ranges[b][1])
            assert hi > lo, (a, b, ranges)  # the 10-90 % ranges of every two classes overlap
    # the easy phantoms' foreground classes sit in separate bands
    ex, ey = phantom_arrays(32, size=64, num_classes=4, noise=0.0, seed=0)
    easy = [np.percentile(ex[..., 0][ey[..., 0] == c], [0, 100]) for c in range(1, 4)]
    assert all(easy[i][1] < easy[i + 1][0] for i in range(2)), easy


def test_harder_than_the_easy_phantoms_for_an_intensity_classifier():
    """The best per-voxel intensity classifier (each intensity bin -> its most frequent training
    class) segments the easy phantoms well and the hard ones poorly."""
    hard = intensity_dice(hard_phantom_arrays(48, size=64, seed=0), hard_phantom_arrays(16, size=64, seed=99), 4)
    easy = intensity_dice(phantom_arrays(48, size=64, num_classes=4, seed=0),
                          phantom_arrays(16, size=64, num_classes=4, seed=99), 4)
    assert easy > 0.9 and hard < 0.45 and easy - hard > 0.5, (easy, hard)


def test_mean_dice_is_per_case_over_the_classes_in_the_label():
    label = np.array([[0, 1, 1, 2], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 0, 2], [0, 1, 1, 1]])
    # case 0: class 1 Dice 2/3, class 2 Dice 1 -> 5/6; case 1: class 1 Dice 0.8 (class 2 absent)
    assert mean_dice(pred, label, 3) == pytest.approx((5 / 6 + 0.8) / 2)


def test_from_source_reaches_it_by_name():
    train = from_source("hard_phantoms", training=True, task="segmentation", spatial_dims=2, num_classes=3,
                        in_channels=1, patch_size=32, n=4)
    val = from_source("hard_phantoms", training=False, task="segmentation", spatial_dims=2, num_classes=3,
                      in_channels=1, patch_size=32, n=4)
    (xt, yt), (xv, _) = next(iter(train)), next(iter(val))
    assert xt.shape == (32, 32, 1) and int(np.max(yt)) <= 2 and len(list(train)) == 4
    assert not np.array_equal(np.asarray(xt), np.asarray(xv))  # validation draws other phantoms
    cls = from_source("hard_phantoms", training=True, task="classification", spatial_dims=3, num_classes=2,
                      in_channels=1, patch_size=(16, 16, 16), n=2, snr=4.0)
    x, y = next(iter(cls))
    assert x.shape == (16, 16, 16, 1) and y.shape == ()
    with pytest.raises(InvalidArgumentError, match="not accepted by zoo.data.hard_phantoms"):
        from_source("hard_phantoms", training=True, task="segmentation", spatial_dims=2, patch_size=32, noise=0.1)


def test_bad_arguments_are_refused():
    for kwargs in ({"num_classes": 5}, {"snr": 0}, {"bias": -1}, {"voxel_size": (1, 1)}, {"size": 8}):
        with pytest.raises(InvalidArgumentError):
            hard_phantom_arrays(1, spatial_dims=3 if "voxel_size" in kwargs else 2, **kwargs)


def test_finetune_trains_on_it_by_name(tmp_path):
    import zoo
    model = zoo.load("unet", num_classes=4, in_channels=1, filters=2, depth=1, input_shape=(32, 32, 1))
    history = zoo.finetune(model, "hard_phantoms", "hard_phantoms", epochs=1, steps_per_epoch=1, validation_steps=1,
                           patch_size=32, out_dir=tmp_path / "run", verbose=0, tensorboard=False,
                           data_options={"n": 4, "snr": 8.0})
    assert np.isfinite(history.history["val_loss"][0]) and "val_dice_3" in history.history
