"""zoo.data.augment: image/mask alignment, seeds, per-epoch variation, each operation's effect, graph mode."""
import numpy as np
import pytest

from zoo._keras import tf
from zoo.data import phantom_arrays
from zoo.data.augment import Augment, augment_dataset
from zoo.errors import InvalidArgumentError

GEOMETRY_ONLY = dict(intensity_scale=0.0, intensity_shift=0.0, gamma=0.0)


def _masks(spatial_dims, n=3, size=24):
    _, labels = phantom_arrays(n, spatial_dims=spatial_dims, size=size, num_classes=3, seed=5)
    return labels


def _run(aug, images, labels, **kw):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return list(augment_dataset(ds, aug, **kw).as_numpy_iterator())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mask_follows_image_exactly_with_nearest_sampling(spatial_dims):
    labels = _masks(spatial_dims)
    aug = Augment(p_affine=1.0, p_elastic=1.0, elastic_sigma=3.0, image_interpolation="nearest",
                  seed=7, **GEOMETRY_ONLY)
    out = _run(aug, labels.astype(np.float32), labels)
    moved = 0
    for (image, mask), original in zip(out, labels):
        assert image.shape == original.shape and mask.shape == original.shape and mask.dtype == np.int32
        np.testing.assert_array_equal(np.round(image).astype(np.int32), mask)
        moved += int(np.sum(mask != original))
    assert moved > 0  # the geometry really changed


def test_bilinear_image_differs_from_the_mask_only_on_label_borders():
    from scipy import ndimage
    labels = _masks(2, n=4, size=48)
    aug = Augment(p_affine=1.0, p_elastic=1.0, elastic_sigma=4.0, seed=3, **GEOMETRY_ONLY)
    for image, mask in _run(aug, labels.astype(np.float32), labels):
        diff = np.round(image[..., 0]).astype(np.int32) != mask[..., 0]
        m = mask[..., 0]
        border = ndimage.maximum_filter(m, 3) != ndimage.minimum_filter(m, 3)
        assert not np.any(diff & ~border)  # away from edges bilinear == nearest
        assert diff.mean() < 0.02


def test_same_key_same_result_new_seed_or_epoch_new_result():
    images, labels = phantom_arrays(3, size=16, seed=1)
    aug = Augment(p_affine=1.0, p_elastic=0.5, seed=11)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    per_epoch = augment_dataset(ds, aug)
    e1, e2 = list(per_epoch.as_numpy_iterator()), list(per_epoch.as_numpy_iterator())
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(e1, e2))  # each epoch draws anew
    rebuilt = augment_dataset(ds, Augment(p_affine=1.0, p_elastic=0.5, seed=11))
    for (a, b), (c, d) in zip(e1, rebuilt.as_numpy_iterator()):  # same seed: same run, epoch by epoch
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    fixed = augment_dataset(ds, aug, vary_per_epoch=False)
    for a, b in zip(fixed.as_numpy_iterator(), fixed.as_numpy_iterator()):
        np.testing.assert_array_equal(a[0], b[0])
    key, other = tf.constant([11, 2], tf.int64), tf.constant([12, 2], tf.int64)
    np.testing.assert_array_equal(aug(images[0], labels[0], key)[0], aug(images[0], labels[0], key)[0])
    assert not np.array_equal(aug(images[0], labels[0], key)[0], aug(images[0], labels[0], other)[0])


def test_flips_and_quarter_turns_give_a_symmetry_of_the_input():
    image = np.arange(36, dtype=np.float32).reshape(6, 6, 1)
    aug = Augment(p_affine=0.0, **GEOMETRY_ONLY)
    group = set()
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(image[::-1] if flip else image, k)
            group.add(x.tobytes())
    seen = set()
    for i in range(24):
        out = aug(image, key=tf.constant([0, i], tf.int64)).numpy()
        assert out.tobytes() in group
        seen.add(out.tobytes())
    assert len(seen) >= 5  # several of the 8 symmetries occur
    rect = np.zeros((4, 6, 6, 1), np.float32)  # 3D, non-square plane: half turns only, shape kept
    assert aug(rect, key=tf.constant([0, 1], tf.int64)).shape == (4, 6, 6, 1)


def test_affine_rotation_keeps_a_centred_disk_in_place():
    yy, xx = np.mgrid[:41, :41]
    disk = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 64).astype(np.int32)[..., None]
    aug = Augment(flip=False, rot90=False, rotation=30.0, scale=0.0, p_affine=1.0, **GEOMETRY_ONLY)
    for i in range(3):
        _, mask = aug(disk.astype(np.float32), disk, tf.constant([1, i], tf.int64))
        mask = mask.numpy()[..., 0]
        assert abs(mask.sum() - disk.sum()) <= 0.05 * disk.sum()
        cy, cx = np.argwhere(mask).mean(0)
        assert abs(cy - 20) < 0.5 and abs(cx - 20) < 0.5


def test_elastic_displacements_are_smooth_and_about_sigma():
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))[..., None]  # pixel value = x coordinate
    aug = Augment(flip=False, rot90=False, p_affine=0.0, p_elastic=1.0, elastic_sigma=4.0, fill="border",
                  **GEOMETRY_ONLY)
    out = aug(ramp, key=tf.constant([0, 3], tf.int64)).numpy()[..., 0]
    dx = (out - ramp[..., 0])[8:-8, 8:-8]  # x displacement, away from the clamped border
    assert 0.5 < np.abs(dx).mean() < 12.0
    assert np.abs(np.diff(dx, axis=1)).max() < 1.0 and np.abs(np.diff(dx, axis=0)).max() < 1.0


def test_intensity_jitter_changes_only_the_image():
    images, labels = phantom_arrays(1, size=16, seed=0)
    aug = Augment(flip=False, rot90=False, p_affine=0.0, gamma=0.0, intensity_shift=0.0,
                  intensity_scale=0.2)
    image, mask = aug(images[0], labels[0], tf.constant([0, 5], tf.int64))
    np.testing.assert_array_equal(mask, labels[0])
    ratio = image.numpy() / images[0]
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-4) and 0.8 <= ratio.flat[0] <= 1.2
    assert ratio.flat[0] != pytest.approx(1.0)


def test_graph_mode_classification_labels_and_3d_elastic():
    images, labels = phantom_arrays(2, spatial_dims=3, size=16, task="classification", seed=0)
    aug = Augment(p_affine=1.0, p_elastic=1.0, elastic_sigma=2.0)
    out = _run(aug, images, labels)  # tf.data.map traces the augmentation: graph mode
    assert [int(y) for _, y in out] == labels.tolist()  # class labels pass through untouched
    assert all(x.shape == (16, 16, 16, 1) and not np.array_equal(x, i) for (x, _), i in zip(out, images))
    assert aug(images[0], key=tf.constant([0, 1], tf.int64)).shape == (16, 16, 16, 1)  # image only


def test_invalid_settings_are_rejected():
    with pytest.raises(InvalidArgumentError, match="p_affine"):
        Augment(p_affine=1.5)
    with pytest.raises(InvalidArgumentError, match="elastic_grid"):
        Augment(elastic_grid=1)
    with pytest.raises(InvalidArgumentError, match="fill"):
        Augment(fill="reflect-ish")
    with pytest.raises(InvalidArgumentError, match="unbatched"):
        Augment()(np.zeros((2, 4, 4, 4, 1), np.float32))
