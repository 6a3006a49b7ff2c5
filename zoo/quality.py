"""How close generated images are to real ones: a Fréchet distance on network features and a
sliced Wasserstein distance on pixels or patches.

* :func:`frechet_distance` of two sets of feature vectors: the Fréchet (2-Wasserstein)
  distance between Gaussians fitted to them, ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  (Heusel et al. 2017). ``Tr((S1 S2)^(1/2))`` is computed as the sum of the square roots of
  the eigenvalues of ``S1^(1/2) S2 S1^(1/2)`` (symmetric, so no complex round-off as with a
  general matrix square root).
* :func:`frechet_feature_distance` applies it to features of images. The default feature
  extractor is :class:`RandomFeatures`: a fixed 3-layer conv net (4x4 kernels, stride 2, 16,
  32 and 64 filters, leaky ReLU 0.2, global average pooling of the last layer: 64 features)
  whose weights are **not trained**: they are drawn from a seeded He-normal distribution
  (NumPy ``default_rng(seed)``), so the measure runs offline and gives the same number on every
  machine. This is not FID: FID uses ImageNet-trained InceptionV3 features, whose weights
  cannot be downloaded here, and its values are not comparable with published FIDs. Random
  conv features do separate image distributions (Naeem et al. 2020 use them for non-ImageNet
  domains). Pass any ``extractor`` (a callable ``images in [-1, 1] -> (n, d) features``, e.g. a
  keras.applications.InceptionV3 with local weights) to use other features.
* :func:`sliced_wasserstein` between two point sets (rows): the mean over random unit
  directions of the 1D p-Wasserstein distance between the projections (p-th root of the mean
  of the p-th powers). :func:`sliced_wasserstein_images` applies it to whole images as
  vectors, or to random ``patch_size`` patches of them.

The GAN training run reports both each epoch on the generator's [-1, 1] scale (``fd``, ``swd``).
"""
import numpy as np

from zoo.errors import InvalidArgumentError, check_positive_int


def _as_2d(x, arg):
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) < 2 or not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"{arg} must be finite points (n, d) with n >= 2; got shape {x.shape}"
                                   f"{'' if np.all(np.isfinite(x)) else ' with NaN/Inf values'}.")
    return x


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(features1, features2):
    """Fréchet distance between Gaussians fitted to two sets of features ``(n, d)``."""
    a, b = _as_2d(features1, "features1"), _as_2d(features2, "features2")
    if a.shape[1] != b.shape[1]:
        raise InvalidArgumentError(f"frechet_distance: features of {a.shape[1]} and {b.shape[1]} "
                                   "dimensions; both sets need the same features.")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    root = _psd_sqrt(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0.0, None)).sum()
    return float(max(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross, 0.0))


def _directions(d, n, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((d, n))
    return v / np.linalg.norm(v, axis=0, keepdims=True)


def _quantiles(x, q):
    """The empirical quantile function (inverse CDF, a step function) of each column at ``q``."""
    x = np.sort(x, axis=0)
    idx = np.minimum((q * len(x)).astype(np.int64), len(x) - 1)
    return x[idx]


def sliced_wasserstein(x, y, n_projections=128, p=1, seed=0):
    """Sliced p-Wasserstein distance between point sets ``x (n, d)`` and ``y (m, d)``.

    For each of ``n_projections`` random unit directions (seeded), the exact 1D p-Wasserstein
    distance between the projected samples (their quantile functions compared on the merged
    grid of both sample sizes; equal sizes reduce to sorting both), then
    ``(mean of W_p^p)^(1/p)``.
    """
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise InvalidArgumentError(f"sliced_wasserstein: points of {x.shape[1]} and {y.shape[1]} "
                                   "dimensions; both sets need the same dimension.")
    check_positive_int("n_projections", n_projections, "sliced_wasserstein")
    if not (isinstance(p, (int, float)) and p >= 1):
        raise InvalidArgumentError(f"sliced_wasserstein: p={p!r} must be a number >= 1.")
    theta = _directions(x.shape[1], n_projections, seed)
    px, py = x @ theta, y @ theta
    if len(px) == len(py):
        diff = np.abs(np.sort(px, 0) - np.sort(py, 0))
        cost = np.mean(diff ** p, axis=0)
    else:  # integrate |F^-1 - G^-1|^p over the merged breakpoints of both step functions
        grid = np.unique(np.concatenate([np.arange(len(px) + 1) / len(px), np.arange(len(py) + 1) / len(py)]))
        widths, mids = np.diff(grid), (grid[:-1] + grid[1:]) / 2
        diff = np.abs(_quantiles(px, mids) - _quantiles(py, mids))
        cost = (widths[:, None] * diff ** p).sum(0)
    return float(np.mean(cost) ** (1.0 / p))


def _patches(images, patch_size, n, rng):
    images = np.asarray(images, np.float64)
    dims = images.ndim - 2
    k = patch_size
    if any(s < k for s in images.shape[1:-1]):
        raise InvalidArgumentError(f"sliced_wasserstein_images: patch_size={k} is larger than the images "
                                   f"{images.shape[1:-1]}.")
    which = rng.integers(0, len(images), n)
    starts = [rng.integers(0, s - k + 1, n) for s in images.shape[1:-1]]
    out = np.empty((n, k ** dims * images.shape[-1]))
    for i in range(n):
        sl = tuple(slice(int(st[i]), int(st[i]) + k) for st in starts)
        out[i] = images[(which[i],) + sl].reshape(-1)
    return out


def sliced_wasserstein_images(real, fake, patch_size=None, n_patches=4096, n_projections=128, p=1, seed=0):
    """:func:`sliced_wasserstein` between two sets of images ``(n, *spatial, C)``: each image a
    vector (``patch_size=None``), or ``n_patches`` random ``patch_size``-wide patches of each set."""
    real, fake = np.asarray(real), np.asarray(fake)
    if real.shape[1:] != fake.shape[1:]:
        raise InvalidArgumentError(f"sliced_wasserstein_images: image shapes {real.shape[1:]} and "
                                   f"{fake.shape[1:]} differ.")
    if patch_size is None:
        return sliced_wasserstein(real.reshape(len(real), -1), fake.reshape(len(fake), -1),
                                  n_projections, p, seed)
    check_positive_int("patch_size", patch_size, "sliced_wasserstein_images")
    rng = np.random.default_rng(seed)
    return sliced_wasserstein(_patches(real, patch_size, n_patches, rng), _patches(fake, patch_size, n_patches, rng),
                              n_projections, p, seed)


class RandomFeatures:
    """The default feature extractor: a fixed, untrained (seeded He-normal) conv net; images in
    [-1, 1] ``(n, *spatial, C)`` -> ``(n, 64)`` features (see the module doc)."""

    filters = (16, 32, 64)

    def __init__(self, seed=0):
        self.seed = seed
        self._weights = {}

    def _kernels(self, spatial_dims, channels):
        key = (spatial_dims, channels)
        if key not in self._weights:
            rng = np.random.default_rng([self.seed, spatial_dims, channels])
            kernels, c_in = [], channels
            for c_out in self.filters:
                fan_in = 4 ** spatial_dims * c_in
                kernels.append((rng.standard_normal((4,) * spatial_dims + (c_in, c_out))
                                * np.sqrt(2.0 / fan_in)).astype(np.float32))
                c_in = c_out
            self._weights[key] = kernels
        return self._weights[key]

    def __call__(self, images, batch_size=256):
        from zoo._keras import tf  # heavy: TensorFlow; the NumPy distances above must not start it
        images = np.asarray(images, np.float32)
        dims = images.ndim - 2
        kernels = self._kernels(dims, images.shape[-1])
        out = []
        for i in range(0, len(images), batch_size):
            x = tf.constant(images[i:i + batch_size])
            for k in kernels:
                x = tf.nn.leaky_relu(tf.nn.convolution(x, k, strides=2, padding="SAME"), 0.2)
            out.append(tf.reduce_mean(x, axis=list(range(1, dims + 1))).numpy())
        return np.concatenate(out, 0)


def frechet_feature_distance(real, fake, extractor=None):
    """:func:`frechet_distance` of the features of two image sets (in [-1, 1]); ``extractor``
    default :class:`RandomFeatures` (seed 0)."""
    extractor = extractor or RandomFeatures()
    return frechet_distance(np.asarray(extractor(real)), np.asarray(extractor(fake)))


def gan_quality(real, fake, extractor=None, seed=0):
    """``{"fd": ..., "swd": ...}`` for two image sets on the generator's [-1, 1] scale."""
    return {"fd": frechet_feature_distance(real, fake, extractor),
            "swd": sliced_wasserstein_images(real, fake, seed=seed)}
