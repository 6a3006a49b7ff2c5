"""Synthetic phantoms: noisy ellipses (2D) or ellipsoids (3D), the data source that needs no data.

Segmentation: ``num_classes - 1`` tissue classes; class ``c`` shapes get a class-specific
intensity band (higher classes brighter and smaller, painted last, like lesions inside an
organ), so the label is learnable from the image. Classification: every image holds one or
two large dim "organ" shapes, and the label is the number of small bright "lesions" (0 ..
num_classes - 1; with ``num_classes=2`` it is lesion presence).

Sample ``i`` depends only on ``(seed, i)``, not on ``n``: ``phantoms(n=10)`` is a prefix of
``phantoms(n=100)``.
"""
import numpy as np

from zoo.errors import InvalidArgumentError, check_choice, check_positive_int

TASKS = ("segmentation", "classification")


def _sizes(size, spatial_dims):
    """``size`` (an int, or one int per spatial axis, each >= 16) as a tuple of ints."""
    sizes = (size,) * spatial_dims if isinstance(size, (int, np.integer)) else size
    ok = isinstance(sizes, (tuple, list, np.ndarray)) and len(sizes) == spatial_dims and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 16 for s in sizes)
    if not ok:
        raise InvalidArgumentError(
            f"phantoms: size={size!r} must be an int >= 16 or {spatial_dims} ints >= 16 (one per spatial "
            f"axis, spatial_dims={spatial_dims}); pass e.g. size=64 or size={(64, 48, 32)[:spatial_dims]}.")
    return tuple(int(s) for s in sizes)


def _grid(size, spatial_dims):
    axes = [np.arange(n, dtype=np.float32) + 0.5 for n in size]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, spatial_dims)


def _rotations(rng, k, d):
    if d == 2:
        t = rng.uniform(0, np.pi, k)
        c, s = np.cos(t), np.sin(t)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    q, r = np.linalg.qr(rng.normal(size=(k, d, d)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]


def _ellipsoids(grid, centers, radii, rot):
    """(K, N) bool: voxel n lies inside ellipsoid k (vectorised over voxels and shapes)."""
    local = (grid[None] - centers[:, None].astype(np.float32)) @ rot.astype(np.float32)
    local /= radii[:, None].astype(np.float32)
    return np.einsum("knd,knd->kn", local, local) <= 1.0


def _segmentation_sample(rng, grid, size, d, num_classes, max_shapes):
    n_shapes = int(rng.integers(1, max_shapes + 1))
    classes = np.sort(rng.integers(1, num_classes, n_shapes))  # small bright classes on top
    span = 1.0 / max(num_classes - 1, 1)
    scale = 1.0 / (1.0 + 0.6 * (classes - 1))
    radii = rng.uniform(0.10, 0.25, (n_shapes, d)) * size * scale[:, None]
    radii = np.maximum(radii, 1.5)
    centers = rng.uniform(0.2, 0.8, (n_shapes, d)) * size
    inside = _ellipsoids(grid, centers, radii, _rotations(rng, n_shapes, d))
    level = 0.25 + 0.7 * (classes - 0.5) * span + rng.uniform(-0.15, 0.15, n_shapes) * 0.7 * span
    image = np.full(grid.shape[0], rng.uniform(0.0, 0.1), np.float32)
    label = np.zeros(grid.shape[0], np.int32)
    for k in range(n_shapes):
        image[inside[k]] = level[k]
        label[inside[k]] = classes[k]
    return image, label


def _classification_sample(rng, grid, size, d, num_classes):
    target = int(rng.integers(0, num_classes))
    n_organs = int(rng.integers(1, 3))
    centers = rng.uniform(0.35, 0.65, (n_organs, d)) * size
    radii = rng.uniform(0.2, 0.32, (n_organs, d)) * size
    organs = _ellipsoids(grid, centers, radii, _rotations(rng, n_organs, d)).any(0)
    image = np.full(grid.shape[0], rng.uniform(0.0, 0.1), np.float32)
    image[organs] = rng.uniform(0.3, 0.45)
    r = max(1.5, 0.06 * float(np.min(size)))
    spots, candidates = [], grid[organs] if organs.any() else grid
    for _ in range(200 * max(target, 1)):
        if len(spots) == target:
            break
        c = candidates[rng.integers(len(candidates))]
        if all(np.linalg.norm(c - s) > 3 * r for s in spots):
            spots.append(c)
    while len(spots) < target:  # crowded image: fall back to a free spot anywhere
        c = rng.uniform(r, size - r, d)
        if all(np.linalg.norm(c - s) > 3 * r for s in spots):
            spots.append(c)
    if target:
        lesions = _ellipsoids(grid, np.asarray(spots), rng.uniform(0.8, 1.2, (target, d)) * r,
                              _rotations(rng, target, d)).any(0)
        image[lesions] = rng.uniform(0.8, 1.0)
    return image, target


def phantom_arrays(n=16, *, spatial_dims=2, size=64, num_classes=2, task="segmentation",
                   max_shapes=4, noise=0.05, in_channels=1, seed=0):
    """NumPy arrays ``(images, labels)`` of synthetic phantoms.

    size: an int (the same on every axis) or one int per spatial axis, each >= 16, e.g.
    ``(48, 32)``; shapes are scaled per axis. images: float32 ``(n, *spatial, in_channels)``
    (channels are copies of one phantom, each with its own noise). labels: int32
    ``(n, *spatial, 1)`` label maps (segmentation) or ``(n,)`` class indices (classification).
    """
    check_positive_int("n", n, "phantoms")
    check_choice("spatial_dims", spatial_dims, (2, 3), "phantoms")
    check_choice("task", task, TASKS, "phantoms")
    check_positive_int("num_classes", num_classes, "phantoms", minimum=2)
    check_positive_int("max_shapes", max_shapes, "phantoms")
    check_positive_int("in_channels", in_channels, "phantoms")
    if task == "classification" and num_classes > 6:
        raise InvalidArgumentError(f"phantoms: num_classes={num_classes} is too many for the lesion-count "
                                   "classification phantom (label = number of lesions); use 2..6.")
    if not noise >= 0:
        raise InvalidArgumentError(f"phantoms: noise={noise!r} must be >= 0 (the Gaussian noise std).")
    shape = _sizes(size, spatial_dims)
    grid = _grid(shape, spatial_dims)
    size = np.asarray(shape, np.float64)  # per-axis extents scale the shapes
    images = np.empty((n, *shape, in_channels), np.float32)
    labels = (np.empty((n, *shape, 1), np.int32) if task == "segmentation"
              else np.empty((n,), np.int32))
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        if task == "segmentation":
            img, lab = _segmentation_sample(rng, grid, size, spatial_dims, num_classes, max_shapes)
            labels[i] = lab.reshape(*shape, 1)
        else:
            img, labels[i] = _classification_sample(rng, grid, size, spatial_dims, num_classes)
        img = np.repeat(img[:, None], in_channels, axis=1)
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32) if noise else img
        images[i] = img.reshape(*shape, in_channels)
    return images, labels


def phantoms(n=16, *, spatial_dims=2, size=64, num_classes=2, task="segmentation",
             max_shapes=4, noise=0.05, in_channels=1, seed=0):
    """A ``tf.data.Dataset`` of (image, label) phantom pairs (see :func:`phantom_arrays`)."""
    from zoo._keras import tf  # heavy: TensorFlow; zoo.datasets imports zoo.data and must stay TF-free
    images, labels = phantom_arrays(n, spatial_dims=spatial_dims, size=size, num_classes=num_classes,
                                    task=task, max_shapes=max_shapes, noise=noise,
                                    in_channels=in_channels, seed=seed)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def other_scanner(images, *, strength=0.4, seed=0):
    """``images`` (``(N, *spatial, C)``, intensities about [0, 1]) as another scanner would show
    them: contrast inverted (``1 - x``) and multiplied by a smooth bias field ``1 + strength x
    prod_k cos(2 pi u_k + phase_k)`` (``u_k`` in [0, 1] along each axis, random phases per
    image). The geometry, and so the label maps, stay the same: a labelled source domain and an
    unlabelled target domain for trying ``adapt="dann"`` on the phantoms.

    Args:
        images: float images, channels last.
        strength: the bias field's amplitude (0: inversion only).
        seed: the phases' seed.

    Returns:
        A float32 array of ``images``' shape.
    """
    images = np.asarray(images, np.float32)
    rng = np.random.default_rng(seed)
    spatial = images.shape[1:-1]
    axes = np.meshgrid(*[np.linspace(0.0, 1.0, s) for s in spatial], indexing="ij")
    out = np.empty_like(images)
    for i in range(len(images)):
        field = np.ones(spatial, np.float32)
        for u, phase in zip(axes, rng.uniform(0, 2 * np.pi, len(spatial))):
            field = field * np.cos(2 * np.pi * u + phase)
        out[i] = (1.0 - images[i]) * (1.0 + strength * field)[..., None]
    return out
