"""Sampling a :class:`zoo.models.wgan.WGAN`: latent vectors, samples in the data's value range,
latent interpolation. Latent vectors come from NumPy's ``default_rng(seed)``, so a seed names
the same samples on every machine and device (TensorFlow's random ops differ across them)."""
import numpy as np

from zoo.errors import InvalidArgumentError, check_positive_int


def _seed(seed, arg="seed"):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"WGAN: {arg}={seed!r} must be an integer >= 0 (it names the "
                                   "latent vectors, so the same seed gives the same samples).")
    return int(seed)


def latent(gan, n, seed=0):
    check_positive_int("n", n, "WGAN.latent", maximum=1_000_000)
    rng = np.random.default_rng(_seed(seed))
    return rng.standard_normal((n, gan.z_dim)).astype(np.float32)


def from_unit(images, value_range):
    """Generator output in [-1, 1] -> the data's ``value_range``."""
    lo, hi = value_range
    return (np.asarray(images, np.float32) + 1.0) * np.float32((hi - lo) / 2.0) + np.float32(lo)


def generate(gan, z, batch_size=64):
    """Generator output (in [-1, 1]) for latent vectors ``z``, in batches (inference mode)."""
    check_positive_int("batch_size", batch_size, "WGAN.sample")
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != gan.z_dim:
        raise InvalidArgumentError(f"WGAN: latent vectors must have shape (n, {gan.z_dim}); got "
                                   f"{z.shape}. Use gan.latent(n, seed) to draw them.")
    out = [np.asarray(gan.generator(z[i:i + batch_size], training=False))
           for i in range(0, len(z), batch_size)]
    return np.concatenate(out, 0)


def sample(gan, n, seed=0, batch_size=64):
    return from_unit(generate(gan, latent(gan, n, seed), batch_size), gan.value_range)


def _endpoint(gan, value, arg):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return latent(gan, 1, _seed(value, arg))[0]
    z = np.asarray(value, np.float32).reshape(-1)
    if z.shape != (gan.z_dim,):
        raise InvalidArgumentError(f"WGAN.interpolate: {arg} must be a seed (int) or a latent vector of "
                                   f"length {gan.z_dim}; got shape {np.shape(value)}.")
    return z


def slerp(a, b, t):
    """Spherical interpolation between vectors ``a`` and ``b`` at fractions ``t`` (lerp when parallel)."""
    t = np.asarray(t, np.float64)[:, None]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.dot(a64, b64) / max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a64 + t * b64).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)).astype(np.float32)


def interpolate(gan, start=0, end=1, steps=8, spherical=True):
    check_positive_int("steps", steps, "WGAN.interpolate", minimum=2, maximum=10_000)
    a, b = _endpoint(gan, start, "start"), _endpoint(gan, end, "end")
    t = np.linspace(0.0, 1.0, steps)
    z = slerp(a, b, t) if spherical else ((1 - t[:, None]) * a + t[:, None] * b).astype(np.float32)
    return from_unit(generate(gan, z), gan.value_range)
