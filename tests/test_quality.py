"""GAN quality measures (zoo/quality.py) against scipy and closed forms."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from _proc import run_python

from zoo.errors import InvalidArgumentError
from zoo.quality import (
    RandomFeatures,
    _directions,
    frechet_distance,
    frechet_feature_distance,
    sliced_wasserstein,
    sliced_wasserstein_images,
)


def _scipy_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root)))


def test_frechet_matches_scipy_sqrtm_on_correlated_features():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6)) + 0.7
    ours = frechet_distance(a, b)
    assert ours > 1.0
    np.testing.assert_allclose(ours, _scipy_frechet(a, b), rtol=1e-6)


def test_frechet_closed_forms_shift_and_scale():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 4))
    m = np.array([1.0, -2.0, 0.5, 3.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # same covariance, shifted mean: |m|^2 exactly
    np.testing.assert_allclose(frechet_distance(a, a + m), np.sum(m ** 2), rtol=1e-9)
    # y = s*x: commuting covariances S and s^2 S -> |mu - s mu|^2 + (1 - s)^2 Tr(S)
    s = 2.5
    cov = np.cov(a, rowvar=False)
    expected = np.sum((a.mean(0) * (1 - s)) ** 2) + (1 - s) ** 2 * np.trace(cov)
    np.testing.assert_allclose(frechet_distance(a, s * a), expected, rtol=1e-8)


def test_sliced_wasserstein_1d_equals_scipy_w1_with_unequal_sizes():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 37), rng.exponential(2.0, 53)
    np.testing.assert_allclose(sliced_wasserstein(x, y, n_projections=3), scipy.stats.wasserstein_distance(x, y),
                               rtol=1e-10)
    np.testing.assert_allclose(sliced_wasserstein(x[:30], y[:30]), scipy.stats.wasserstein_distance(x[:30], y[:30]),
                               rtol=1e-10)


def test_sliced_wasserstein_of_a_shift_is_the_mean_projected_shift():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 5))
    m = np.array([0.5, -1.0, 2.0, 0.0, 1.0])
    theta = _directions(5, 64, seed=7)
    # a shift moves every projected point by theta.m: W_1 = |theta.m| and W_2 = |theta.m| exactly
    np.testing.assert_allclose(sliced_wasserstein(x, x + m, 64, p=1, seed=7), np.mean(np.abs(m @ theta)), rtol=1e-9)
    np.testing.assert_allclose(sliced_wasserstein(x, x + m, 64, p=2, seed=7), np.sqrt(np.mean((m @ theta) ** 2)),
                               rtol=1e-9)
    # and each projection agrees with scipy's 1D W1 on the projected samples
    per = [scipy.stats.wasserstein_distance(x @ t, (x + m) @ t) for t in theta.T]
    np.testing.assert_allclose(sliced_wasserstein(x, x + m, 64, seed=7), np.mean(per), rtol=1e-9)


def test_image_distances_separate_distributions():
    from zoo.data import phantom_arrays
    real = phantom_arrays(128, size=16, seed=0)[0] * 2 - 1
    held_out = phantom_arrays(128, size=16, seed=5)[0] * 2 - 1
    noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32)
    for fn in (sliced_wasserstein_images, frechet_feature_distance,
               lambda a, b: sliced_wasserstein_images(a, b, patch_size=4, n_patches=2048)):
        same, other = fn(real, held_out), fn(real, noise)
        assert 0 <= same < 0.5 * other, (fn, same, other)


def test_random_features_are_fixed_and_take_3d_and_multichannel():
    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, (10, 16, 16, 3)).astype(np.float32)
    f1, f2 = RandomFeatures(seed=0)(images), RandomFeatures(seed=0)(images)
    assert f1.shape == (10, 64) and np.array_equal(f1, f2)
    assert not np.allclose(RandomFeatures(seed=1)(images), f1)
    assert RandomFeatures()(rng.uniform(-1, 1, (3, 16, 16, 16, 1)).astype(np.float32)).shape == (3, 64)


def test_bad_inputs_raise_zoo_errors():
    with pytest.raises(InvalidArgumentError, match="same features"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        sliced_wasserstein(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(InvalidArgumentError, match="differ"):
        sliced_wasserstein_images(np.zeros((4, 8, 8, 1)), np.zeros((4, 8, 8, 3)))


def test_import_zoo_and_quality_stay_tensorflow_free():
    code = ("import sys, zoo; zoo.quality.sliced_wasserstein([[0.0], [1.0]], [[0.5], [2.0]]); "
            "assert 'tensorflow' not in sys.modules; assert 'callbacks' in dir(zoo); print('ok')")
    res = run_python(code, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
