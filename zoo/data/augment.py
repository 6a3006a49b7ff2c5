"""On-the-fly augmentation for tf.data, 2D and 3D, in TensorFlow ops (graph mode).

``Augment(...)`` is a callable ``(image, label, key) -> (image, label)`` on one unbatched
element: image ``(*spatial, C)`` float, label a ``(*spatial, 1)`` integer map (gets exactly the
image's geometry, sampled with nearest neighbour) or a class index (left alone). Randomness
is stateless: every draw comes from ``key`` (a ``[2]`` integer seed), so the same key gives
the same result. :func:`augment_dataset` keys element ``i`` by ``(seed, i)`` folded with the
``i``-th value of ``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)``, a stream
that is redrawn, deterministically, each epoch: a run is reproducible from its seed (and
TensorFlow's global seed, if set) and every epoch sees fresh draws; ``vary_per_epoch=False``
keys by ``(seed, i)`` only. "bilinear" means trilinear for 3D.

Operations, in order: random flips; 90-degree rotations in the ``rot90_axes`` plane (the
in-plane axes for 3D: NIfTI/DICOM volumes here are (X, Y, Z), so (0, 1)); one resampling
step that combines a small affine (rotation up to ``rotation`` degrees, about every axis in
3D, and isotropic scaling in ``[1 - scale, 1 + scale]``) with the U-Net elastic deformation
(Gaussian displacements of std ``elastic_sigma`` px on an ``elastic_grid``^d grid, bicubic
upsampled); intensity jitter on the image only (gamma on the min-max range, scale
``1 + U(-intensity_scale, intensity_scale)``, shift ``U(-intensity_shift, intensity_shift)``
times the image std). Apply it before batching.
"""
import math

from zoo._keras import tf
from zoo.errors import InvalidArgumentError, check_choice


def _uniform(key, lo=0.0, hi=1.0, shape=()):
    return tf.random.stateless_uniform(shape, key, lo, hi)


def _rot90(x, k, a, b):
    """np.rot90(x, k, axes=(a, b)) for a tensor, k a Python int."""
    perm = list(range(x.shape.rank))
    perm[a], perm[b] = perm[b], perm[a]
    if k == 1:
        return tf.transpose(tf.reverse(x, [b]), perm)
    if k == 2:
        return tf.reverse(x, [a, b])
    if k == 3:
        return tf.reverse(tf.transpose(x, perm), [b])
    return x


def _rotation_matrix(key, max_deg, d):
    angles = _uniform(key, -1.0, 1.0, (3,)) * (max_deg * math.pi / 180.0)
    c, s = tf.cos(angles), tf.sin(angles)
    if d == 2:
        return tf.reshape(tf.stack([c[0], -s[0], s[0], c[0]]), (2, 2))
    one, zero = tf.ones(()), tf.zeros(())
    rx = tf.reshape(tf.stack([one, zero, zero, zero, c[0], -s[0], zero, s[0], c[0]]), (3, 3))
    ry = tf.reshape(tf.stack([c[1], zero, s[1], zero, one, zero, -s[1], zero, c[1]]), (3, 3))
    rz = tf.reshape(tf.stack([c[2], -s[2], zero, s[2], c[2], zero, zero, zero, one]), (3, 3))
    return rz @ ry @ rx


def _upsample_field(field, size, d):
    """Bicubic upsampling of a coarse (g,)*d + (d,) displacement grid to ``size``."""
    if d == 2:
        return tf.image.resize(field, size, method="bicubic")
    g = tf.shape(field)[0]
    f = tf.reshape(field, tf.stack([g, g, g * 3]))
    f = tf.image.resize(f, size[:2], method="bicubic")  # (D, H, g*3)
    f = tf.reshape(f, tf.stack([size[0], size[1], g, 3]))
    return tf.image.resize(f, tf.stack([size[1], size[2]]), method="bicubic")  # (D, H, W, 3)


def _gather(x, idx, size, fill_zeros):
    """x[idx] with idx (..., d) int32; out-of-range -> 0 (fill_zeros) or the edge value."""
    clipped = tf.clip_by_value(idx, 0, size - 1)
    out = tf.gather_nd(x, clipped)
    if fill_zeros:
        inside = tf.reduce_all(tf.equal(clipped, idx), axis=-1, keepdims=True)
        out = out * tf.cast(inside, out.dtype)
    return out


def _sample(x, coords, size, d, linear, fill_zeros):
    """Sample x (*S, C) at float coords (*S_out, d), (bi/tri)linear or nearest."""
    if not linear:
        return _gather(x, tf.cast(tf.round(coords), tf.int32), size, fill_zeros)
    base = tf.floor(coords)
    frac = coords - base
    base = tf.cast(base, tf.int32)
    out = 0.0
    for corner in range(2 ** d):
        bits = [(corner >> j) & 1 for j in range(d)]
        offset = tf.constant(bits, tf.int32)
        w = tf.ones_like(frac[..., 0])
        for j, bit in enumerate(bits):
            w = w * (frac[..., j] if bit else 1.0 - frac[..., j])
        out = out + w[..., None] * _gather(x, base + offset, size, fill_zeros)
    return out


class Augment:
    """Random 2D/3D augmentation of (image, label) pairs; see the module docstring.

    Defaults: flips on every axis, quarter turns, the affine on half the elements (up to 15
    degrees, zoom 0.9..1.1), elastic deformation off (``p_elastic=0``; e.g. 0.5 turns it on),
    light intensity jitter always. Set a probability or range to 0 to disable an operation.
    """

    def __init__(self, *, flip=True, rot90=True, rot90_axes=(0, 1), rotation=15.0, scale=0.1,
                 p_affine=0.5, elastic_sigma=10.0, elastic_grid=3, p_elastic=0.0,
                 intensity_scale=0.1, intensity_shift=0.1, gamma=0.2, p_intensity=1.0,
                 image_interpolation="bilinear", fill="zeros", seed=0):
        check_choice("image_interpolation", image_interpolation, ("bilinear", "nearest"), "Augment")
        check_choice("fill", fill, ("zeros", "border"), "Augment")
        for name, p in (("p_affine", p_affine), ("p_elastic", p_elastic), ("p_intensity", p_intensity)):
            if not 0.0 <= p <= 1.0:
                raise InvalidArgumentError(f"Augment: {name}={p!r} must be a probability in [0, 1].")
        if not 0.0 <= scale < 1.0:
            raise InvalidArgumentError(f"Augment: scale={scale!r} must lie in [0, 1); e.g. 0.1 zooms "
                                       "by a factor in [0.9, 1.1].")
        if isinstance(elastic_grid, bool) or not isinstance(elastic_grid, int) or elastic_grid < 2:
            raise InvalidArgumentError(f"Augment: elastic_grid={elastic_grid!r} must be an int >= 2 "
                                       "(control points per axis; the U-Net paper uses 3).")
        self.flip, self.rot90, self.rot90_axes = flip, rot90, tuple(rot90_axes)
        self.rotation, self.scale, self.p_affine = float(rotation), float(scale), float(p_affine)
        self.elastic_sigma, self.elastic_grid = float(elastic_sigma), elastic_grid
        self.p_elastic = float(p_elastic)
        self.intensity_scale, self.intensity_shift = float(intensity_scale), float(intensity_shift)
        self.gamma, self.p_intensity = float(gamma), float(p_intensity)
        self.linear, self.fill_zeros = image_interpolation == "bilinear", fill == "zeros"
        self.seed = int(seed)

    # ------------------------------------------------------------------ geometry
    def _flip_axes(self, d):
        if self.flip is True:
            return tuple(range(d))
        return tuple(self.flip) if self.flip else ()

    def _geometric_exact(self, x, key, d):
        for a in self._flip_axes(d):
            do = _uniform(tf.random.experimental.stateless_fold_in(key, 10 + a)) < 0.5
            x = tf.cond(do, lambda x=x, a=a: tf.reverse(x, [a]), lambda x=x: x)
        if self.rot90:
            a, b = self.rot90_axes
            if max(a, b) >= d:
                raise InvalidArgumentError(f"Augment: rot90_axes={self.rot90_axes} needs axes < {d} "
                                           f"for {d}D images.")
            square = x.shape[a] is not None and x.shape[a] == x.shape[b]
            k = tf.random.stateless_uniform((), tf.random.experimental.stateless_fold_in(key, 20),
                                            0, 4, dtype=tf.int32)
            if square:
                x = tf.switch_case(k, [lambda j=j: _rot90(x, j, a, b) for j in range(4)])
            else:  # a quarter turn would change the shape; half turns keep it
                x = tf.cond(k >= 2, lambda: _rot90(x, 2, a, b), lambda: x)
        return x

    def _coords(self, key, size, d, do_affine, do_elastic):
        sizef = tf.cast(size, tf.float32)
        axes = [tf.range(sizef[j]) for j in range(d)]
        grid = tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1)  # (*S, d)
        centre = (sizef - 1.0) / 2.0
        rot = _rotation_matrix(tf.random.experimental.stateless_fold_in(key, 30), self.rotation, d)
        zoom = 1.0 + _uniform(tf.random.experimental.stateless_fold_in(key, 31), -self.scale, self.scale)
        matrix = tf.where(do_affine, rot / zoom, tf.eye(d))
        coords = tf.einsum("...j,ij->...i", grid - centre, matrix) + centre
        g = self.elastic_grid
        field = tf.random.stateless_normal((g,) * d + (d,), tf.random.experimental.stateless_fold_in(key, 32),
                                           stddev=self.elastic_sigma)
        disp = _upsample_field(field, size, d)
        return coords + disp * tf.cast(do_elastic, tf.float32)

    def _resample(self, image, label, key, d):
        affine_on = self.p_affine > 0 and (self.rotation > 0 or self.scale > 0)
        elastic_on = self.p_elastic > 0 and self.elastic_sigma > 0
        if not (affine_on or elastic_on):  # nothing to resample: keep the graph small
            return image, label
        size = tf.shape(image)[:d]
        do_affine = _uniform(tf.random.experimental.stateless_fold_in(key, 40)) < self.p_affine
        do_elastic = _uniform(tf.random.experimental.stateless_fold_in(key, 41)) < self.p_elastic
        do_affine = tf.logical_and(do_affine, affine_on)
        do_elastic = tf.logical_and(do_elastic, elastic_on)

        def warp():
            coords = self._coords(key, size, d, do_affine, do_elastic)
            img = _sample(image, coords, size, d, self.linear, self.fill_zeros)
            if label is None:
                return img, tf.zeros((), tf.int32)
            lab = _sample(label, coords, size, d, False, True)
            return img, lab

        out_img, out_lab = tf.cond(tf.logical_or(do_affine, do_elastic), warp,
                                   lambda: (image, label if label is not None else tf.zeros((), tf.int32)))
        return out_img, (out_lab if label is not None else None)

    # ------------------------------------------------------------------ intensity
    def _intensity(self, image, key):
        if self.p_intensity == 0 or not (self.gamma or self.intensity_scale or self.intensity_shift):
            return image
        do = _uniform(tf.random.experimental.stateless_fold_in(key, 50)) < self.p_intensity
        u = _uniform(tf.random.experimental.stateless_fold_in(key, 51), -1.0, 1.0, (3,))

        def jitter():
            x = image
            if self.gamma > 0:
                gamma = tf.exp(u[0] * math.log1p(self.gamma))
                lo, hi = tf.reduce_min(x), tf.reduce_max(x)
                span = tf.maximum(hi - lo, 1e-8)
                x = lo + span * tf.pow((x - lo) / span, gamma)
            std = tf.math.reduce_std(x)
            return x * (1.0 + u[1] * self.intensity_scale) + u[2] * self.intensity_shift * std

        return tf.cond(do, jitter, lambda: image)

    # ------------------------------------------------------------------ call
    def __call__(self, image, label=None, key=None):
        image = tf.convert_to_tensor(image)
        dtype = image.dtype
        image = tf.cast(image, tf.float32)
        d = image.shape.rank - 1
        if d not in (2, 3):
            raise InvalidArgumentError(f"Augment: images must be (H, W, C) or (D, H, W, C) (unbatched; "
                                       f"augment before .batch()); got shape {image.shape}.")
        key = tf.constant([self.seed, 0], tf.int64) if key is None else tf.cast(key, tf.int64)
        label_map = label is not None and tf.convert_to_tensor(label).shape.rank == d + 1
        static = image.shape
        c = image.shape[-1]
        if label_map:
            label = tf.convert_to_tensor(label)
            ldtype = label.dtype
            both = tf.concat([image, tf.cast(label, tf.float32)], axis=-1)
            both = self._geometric_exact(both, key, d)
            image, lab = both[..., :c], both[..., c:]
            image, lab = self._resample(image, lab, key, d)
            label = tf.cast(tf.round(lab), ldtype)
        else:
            image = self._geometric_exact(image, key, d)
            image, _ = self._resample(image, None, key, d)
        image = self._intensity(image, key)
        if static.is_fully_defined():  # every step keeps the shape (quarter turns only if square)
            image.set_shape(static)
            if label_map:
                label.set_shape(static[:-1].concatenate([label.shape[-1]]))
        image = tf.cast(image, dtype) if dtype.is_floating else image
        return (image, label) if label is not None else image


def augment_dataset(ds, augment=True, *, seed=None, vary_per_epoch=True):
    """``ds.map`` with an :class:`Augment` (``True`` = defaults), keyed per element and epoch."""
    aug = Augment(seed=seed or 0) if augment is True else augment
    if not isinstance(aug, Augment):
        raise InvalidArgumentError(f"augment={augment!r} must be True or a zoo.data.augment.Augment(...).")
    seed = aug.seed if seed is None else int(seed)
    pairs = isinstance(ds.element_spec, tuple)

    def apply(index, element, token):
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        key = tf.random.experimental.stateless_fold_in(key, token)
        return aug(*element, key=key) if pairs else aug(element, key=key)

    indexed = ds.enumerate()
    if vary_per_epoch:
        tokens = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        data = tf.data.Dataset.zip((indexed, tokens)).map(
            lambda ie, t: apply(ie[0], ie[1], t), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        data = indexed.map(lambda i, e: apply(i, e, tf.constant(0, tf.int64)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data
