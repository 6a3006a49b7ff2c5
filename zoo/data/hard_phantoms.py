"""Hard phantoms: a seeded synthetic benchmark task that separates good training recipes from bad.

The built-in phantoms (:mod:`zoo.data.phantoms`) give every class its own intensity band, so a
per-voxel intensity threshold already segments them and a U-Net reaches Dice ~0.99 within
seconds: they test that a model trains, not how well. These phantoms are built so that neither
intensity alone nor a short or damaged training run is enough:

* **Classes whose intensities overlap.** Segmentation labels (``num_classes`` 2..4):
  0 background (mean 0.18-0.40), 1 organ (one or two large ellipses/ellipsoids, mean 0.38-0.62),
  2 lesions (1-3 small blobs, 70 % inside an organ, each ``organ mean +- 0.08..0.20``: darker or
  brighter than the organ around it), 3 vessels (1-3 thin tubes, mean 0.45-0.80, crossing
  background and organs). Each instance draws its own mean, so the classes' intensity ranges
  overlap across images and inside one image; what tells them apart is shape, size and context.
  With fewer classes the later structures are still drawn, as distractors labelled as what lies
  under them (``num_classes=2``: organ vs rest, lesions count as organ, vessels as background).
* **Thin and small structures.** Vessels are quadratic Bezier curves of radius 0.7-1.3 voxels
  (in-plane), drawn with a soft (anti-aliased) edge, so a 1-2 voxel wide, faint line; lesions
  have radii of 1.5-3.5 voxels. A few misplaced voxels cost a large part of their Dice.
* **A smooth multiplicative bias field** ``exp(bias * s(x))``, ``s`` a sum of three random
  low-frequency cosines (at most one cycle across the field of view) scaled to [-1, 1]: with the
  default ``bias=0.3`` intensities are multiplied by 0.74 .. 1.35 across an image, more than the
  gap between class means.
* **Texture and noise at a stated SNR.** A mid-frequency texture (amplitude 0.04) on background
  and organs, then Gaussian noise of standard deviation ``mean(noise-free image) / snr``
  (default ``snr=6``: sigma ~0.07, the same order as the lesion contrast).
* **Anisotropic voxels (3D).** ``voxel_size`` (default ``(1, 1, 3)``: 3x thicker along the last
  axis, as thick CT/MR slices): shapes are defined in physical units and sampled at voxel centres;
  the image averages three sub-slices per voxel along a thick axis (partial-volume blur), the
  label is the structure at the voxel centre. A vessel or lesion may cover a single slice.

A simple proxy measures the difficulty (:func:`intensity_dice`): the best per-voxel classifier
on intensity alone (each intensity bin takes its most frequent class on training images) gets a
mean foreground Dice far lower here than on the easy phantoms (tests/data/test_hard_phantoms.py).

Classification (``task="classification"``, ``num_classes`` 2..4): the label is the number of
lesions (0 .. num_classes - 1) in an image that always has organs, vessels, bias and noise as
above; lesions are small (radius 1.5-3 voxels), inside organs and of low contrast.

Sample ``i`` depends only on ``(seed, i)``, not on ``n``. The element format is
:mod:`zoo.data.phantoms`': images float32 ``(*spatial, in_channels)``, labels int32
``(*spatial, 1)`` (segmentation) or scalars (classification). ``zoo.finetune(model,
"hard_phantoms", "hard_phantoms")`` (any data argument that takes ``"phantoms"``) uses them;
``patch_size`` is the phantom size and validation uses other seeds, as for the phantoms.
The baseline (a reduced-width U-Net trained until validation stops improving) is written by
``tools/bench_task.py`` to ``docs/models/measured.json`` and shown in the README.
"""
import inspect

import numpy as np

from zoo.data.phantoms import _ellipsoids, _rotations, _sizes
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int

TASKS = ("segmentation", "classification")
CLASS_NAMES = ("background", "organ", "lesion", "vessel")
MAX_CLASSES = len(CLASS_NAMES)
DEFAULT_VOXEL_SIZE = {2: (1.0, 1.0), 3: (1.0, 1.0, 3.0)}
TEXTURE = 0.04
SUBSAMPLES = 3          # sub-slices averaged along a thick axis (partial volume)


def _voxel_size(voxel_size, spatial_dims):
    vs = DEFAULT_VOXEL_SIZE[spatial_dims] if voxel_size is None else voxel_size
    vs = (float(vs),) * spatial_dims if isinstance(vs, (int, float)) else tuple(float(v) for v in vs)
    if len(vs) != spatial_dims or not all(np.isfinite(v) and 0 < v <= 20 for v in vs):
        raise InvalidArgumentError(f"hard_phantoms: voxel_size={voxel_size!r} must be {spatial_dims} sizes in "
                                   "(0, 20], one per spatial axis, e.g. (1, 1, 3).")
    return vs


def _points(shape, vs, offsets=None):
    """(N, d) physical coordinates of the voxel centres (plus an offset along the thick axes)."""
    axes = [(np.arange(n, dtype=np.float32) + 0.5) * v for n, v in zip(shape, vs)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
    if offsets is not None:
        grid = grid + np.asarray(offsets, np.float32)
    return grid


def _smooth_field(rng, extent, k=3, max_cycles=1.0):
    """Parameters of a sum of ``k`` random cosines with at most ``max_cycles`` cycles per extent."""
    d = len(extent)
    freqs = rng.uniform(-max_cycles, max_cycles, (k, d)) / np.asarray(extent)
    phases = rng.uniform(0, 2 * np.pi, k)
    weights = rng.uniform(0.5, 1.0, k)
    return freqs, phases, weights


def _eval_field(params, pts):
    freqs, phases, weights = params
    s = (np.cos(2 * np.pi * pts @ freqs.T.astype(np.float32) + phases.astype(np.float32))
         * weights.astype(np.float32)).sum(-1)
    return s / weights.sum()  # in [-1, 1]


def _curve(rng, extent, n_seg=24):
    """A quadratic Bezier curve between two random points near the box's faces, as segments."""
    d = len(extent)
    ext = np.asarray(extent)
    a, b = rng.uniform(0.0, 1.0, (2, d)) * ext
    axis = int(rng.integers(d - 1 if d == 3 else d))  # vessels run across, never along a thick axis only
    a[axis], b[axis] = 0.02 * ext[axis], 0.98 * ext[axis]
    c = rng.uniform(0.15, 0.85, d) * ext
    t = np.linspace(0, 1, n_seg + 1)[:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t ** 2 * b


def _distance_to_polyline(pts, poly):
    """(N,) distance from each point to the polyline (vectorised over segments)."""
    a, b = poly[:-1].astype(np.float32), poly[1:].astype(np.float32)
    ab = b - a
    t = np.clip(np.einsum("nsd,sd->ns", pts[:, None] - a[None], ab) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.sqrt(((pts[:, None] - closest) ** 2).sum(-1)).min(1)


class _Scene:
    """One phantom's random structures in physical space; ``render(points)`` gives its noise-free
    intensity (before the bias field) and its label at those points."""

    def __init__(self, rng, extent, vs, task, target):
        d = len(extent)
        ext = np.asarray(extent, np.float64)
        unit = min(vs)  # in-plane voxel: the size unit of small structures
        self.d, self.unit = d, unit
        self.bg = rng.uniform(0.18, 0.40)
        self.texture = _smooth_field(rng, ext / 8.0, k=4, max_cycles=1.0)   # ~8 cycles per field of view
        n_org = int(rng.integers(1, 3))
        self.org_c = rng.uniform(0.35, 0.65, (n_org, d)) * ext
        self.org_r = rng.uniform(0.18, 0.32, (n_org, d)) * ext
        self.org_rot = _rotations(rng, n_org, d)
        self.org_mu = rng.uniform(0.38, 0.62, n_org)
        n_ves = int(rng.integers(1, 4))
        self.vessels = [_curve(rng, ext) for _ in range(n_ves)]
        self.ves_r = rng.uniform(0.7, 1.3, n_ves) * unit
        self.ves_mu = rng.uniform(0.45, 0.80, n_ves)
        n_les = int(rng.integers(1, 4)) if task == "segmentation" else target
        lo, hi = (1.5, 3.5) if task == "segmentation" else (1.5, 3.0)
        inside = rng.uniform(size=n_les) < (0.7 if task == "segmentation" else 1.0)
        centres = []
        for k in range(n_les):
            if inside[k]:  # a point inside organ 0 (uniform in its ellipsoid)
                u = rng.normal(size=d)
                u *= rng.uniform() ** (1.0 / d) * 0.8 / np.linalg.norm(u)
                centres.append(self.org_c[0] + (self.org_rot[0] @ (u * self.org_r[0])))
            else:
                centres.append(rng.uniform(0.15, 0.85, d) * ext)
        self.les_c = np.asarray(centres).reshape(n_les, d)
        self.les_r = rng.uniform(lo, hi, (n_les, d)) * unit
        self.les_rot = _rotations(rng, n_les, d)
        contrast = (0.08, 0.20) if task == "segmentation" else (0.10, 0.22)
        self.les_delta = rng.choice([-1.0, 1.0], n_les) * rng.uniform(*contrast, n_les)
        self.bias = _smooth_field(rng, ext, k=3, max_cycles=1.0)

    def render(self, pts, num_classes):
        n = pts.shape[0]
        image = np.full(n, self.bg, np.float32)
        label = np.zeros(n, np.int32)
        organs = _ellipsoids(pts, self.org_c, self.org_r, self.org_rot)
        organ_mu = np.full(n, self.bg, np.float32)
        for k in range(len(self.org_mu)):
            image[organs[k]] = self.org_mu[k]
            organ_mu[organs[k]] = self.org_mu[k]
            if num_classes > 1:
                label[organs[k]] = 1
        image += TEXTURE * _eval_field(self.texture, pts)
        for poly, r, mu in zip(self.vessels, self.ves_r, self.ves_mu):
            dist = _distance_to_polyline(pts, poly)
            soft = np.clip(r + 0.5 * self.unit - dist, 0.0, self.unit) / self.unit  # anti-aliased edge
            image = image * (1 - soft) + mu * soft
            if num_classes > 3:
                label[dist <= r] = 3
        if len(self.les_c):
            lesions = _ellipsoids(pts, self.les_c, self.les_r, self.les_rot)
            for k in range(len(self.les_c)):
                # the lesion's contrast is relative to the organ (or background) at its centre
                base = organ_mu[lesions[k]].mean() if lesions[k].any() else self.bg
                image[lesions[k]] = base + self.les_delta[k]
                if num_classes > 2:  # else a distractor, labelled as what lies under it
                    label[lesions[k]] = 2
        return image, label

    def bias_field(self, pts, strength):
        return np.exp(strength * _eval_field(self.bias, pts)).astype(np.float32)


def _sample(rng, shape, vs, task, num_classes, snr, bias):
    """(noisy image, label or class, noise-free image, bias field), flat over voxels."""
    d = len(shape)
    extent = tuple(s * v for s, v in zip(shape, vs))
    target = int(rng.integers(0, num_classes)) if task == "classification" else None
    scene = _Scene(rng, extent, vs, task, target)
    centre = _points(shape, vs)
    thick = [i for i, v in enumerate(vs) if v > 1.5 * min(vs)]
    if thick:  # partial volume: average sub-slices across each thick voxel
        acc = np.zeros(centre.shape[0], np.float32)
        offs = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
        for o in offs:
            off = np.zeros(d, np.float32)
            off[thick] = o * np.asarray(vs)[thick]
            acc += scene.render(centre + off, num_classes)[0]
        clean = acc / SUBSAMPLES
        label = scene.render(centre, num_classes)[1]
    else:
        clean, label = scene.render(centre, num_classes)
    field = scene.bias_field(centre, bias) if bias else np.ones_like(clean)
    clean = clean * field
    noisy = clean
    if snr is not None:
        sigma = float(clean.mean()) / float(snr)
        noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return noisy.astype(np.float32), (label if task == "segmentation" else target), clean, field


def _check(n, spatial_dims, task, num_classes, in_channels, snr, bias):
    check_positive_int("n", n, "hard_phantoms")
    check_choice("spatial_dims", spatial_dims, (2, 3), "hard_phantoms")
    check_choice("task", task, TASKS, "hard_phantoms")
    check_positive_int("num_classes", num_classes, "hard_phantoms", minimum=2)
    check_positive_int("in_channels", in_channels, "hard_phantoms")
    if num_classes > MAX_CLASSES:
        raise InvalidArgumentError(f"hard_phantoms: num_classes={num_classes} is more than the {MAX_CLASSES} "
                                   f"it defines ({', '.join(CLASS_NAMES)}; classification: 0..3 lesions); "
                                   "use 2..4.")
    if snr is not None and not (isinstance(snr, (int, float)) and np.isfinite(snr) and snr > 0):
        raise InvalidArgumentError(f"hard_phantoms: snr={snr!r} must be a positive number (mean intensity over "
                                   "the noise standard deviation), or None for no noise.")
    if not (isinstance(bias, (int, float)) and 0 <= bias <= 2):
        raise InvalidArgumentError(f"hard_phantoms: bias={bias!r} must be in [0, 2] (log-amplitude of the "
                                   "multiplicative bias field; 0 turns it off).")


def hard_phantom_arrays(n=16, *, spatial_dims=2, size=64, num_classes=4, task="segmentation", snr=6.0,
                        bias=0.3, voxel_size=None, in_channels=1, seed=0, return_parts=False):
    """NumPy arrays ``(images, labels)`` of hard phantoms (see the module docstring).

    size: an int or one int per spatial axis (each >= 16). voxel_size: the physical size of a
    voxel per axis (default ``(1, 1)`` in 2D, ``(1, 1, 3)`` in 3D). snr: mean intensity of the
    noise-free image over the noise standard deviation (None: no noise). bias: log-amplitude of
    the multiplicative bias field (0: none). images: float32 ``(n, *spatial, in_channels)``
    (channels: the same phantom, each with its own noise); labels: int32 ``(n, *spatial, 1)``
    (segmentation) or ``(n,)`` (classification: the number of lesions). ``return_parts=True``
    also returns the noise-free images and the bias fields (``(n, *spatial)`` each).
    """
    _check(n, spatial_dims, task, num_classes, in_channels, snr, bias)
    shape = _sizes(size, spatial_dims)
    vs = _voxel_size(voxel_size, spatial_dims)
    images = np.empty((n, *shape, in_channels), np.float32)
    labels = np.empty((n, *shape, 1), np.int32) if task == "segmentation" else np.empty((n,), np.int32)
    cleans, fields = np.empty((n, *shape), np.float32), np.empty((n, *shape), np.float32)
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, 23])
        img, lab, clean, field = _sample(rng, shape, vs, task, num_classes, snr, bias)
        if task == "segmentation":
            labels[i] = lab.reshape(*shape, 1)
        else:
            labels[i] = lab
        chans = [img] + [clean + (img - clean if snr is None else
                                  rng.normal(0.0, float(clean.mean()) / snr, clean.shape).astype(np.float32))
                         for _ in range(in_channels - 1)]
        images[i] = np.stack(chans, -1).reshape(*shape, in_channels)
        cleans[i], fields[i] = clean.reshape(shape), field.reshape(shape)
    return (images, labels, cleans, fields) if return_parts else (images, labels)


def hard_phantoms(n=16, *, spatial_dims=2, size=64, num_classes=4, task="segmentation", snr=6.0, bias=0.3,
                  voxel_size=None, in_channels=1, seed=0):
    """A ``tf.data.Dataset`` of unbatched (image, label) hard-phantom pairs (see :func:`hard_phantom_arrays`)."""
    from zoo._keras import tf  # heavy: import zoo.data (and zoo.datasets) must not start TensorFlow
    images, labels = hard_phantom_arrays(n, spatial_dims=spatial_dims, size=size, num_classes=num_classes,
                                         task=task, snr=snr, bias=bias, voxel_size=voxel_size,
                                         in_channels=in_channels, seed=seed)
    return tf.data.Dataset.from_tensor_slices((images, labels))


IGNORED = ("window", "normalize", "spacing")  # file preprocessing: meaningless for generated data


def from_options(*, training, task, spatial_dims, num_classes, in_channels, patch_size, seed, options):
    """The dataset ``zoo.data.from_source("hard_phantoms", ...)`` returns: 64 training / 16
    validation phantoms (``options["n"]``), of ``patch_size`` (default 64 px in 2D, 32 voxels in
    3D), other seeds for validation (as for the phantoms). ``options`` are this module's
    keywords (``snr``, ``bias``, ``voxel_size``, ``n``, ...); a file's preprocessing options
    (``window``, ``normalize``, ``spacing``) are ignored."""
    dims = spatial_dims or (2 if patch_size is None or isinstance(patch_size, int) else len(patch_size))
    opts = {k: v for k, v in options.items() if k not in IGNORED}
    allowed = [k for k, p in inspect.signature(hard_phantoms).parameters.items() if p.kind == p.KEYWORD_ONLY]
    unknown = [k for k in opts if k not in allowed and k != "n"]
    if unknown:
        raise InvalidArgumentError(f"data option {unknown[0]!r} is not accepted by zoo.data.hard_phantoms; it "
                                   f"accepts n, {', '.join(allowed)}.")
    kw = dict(spatial_dims=dims, task=task or "segmentation", size=patch_size or (64 if dims == 2 else 32),
              num_classes=max(num_classes, 2) if num_classes else MAX_CLASSES,
              seed=seed if training else seed + 7919)
    if in_channels is not None:
        kw["in_channels"] = in_channels
    kw.update(opts)
    kw.setdefault("n", 64 if training else 16)
    return hard_phantoms(**kw)


def mean_dice(pred, label, num_classes):
    """Mean foreground Dice as ``zoo.finetune`` logs it: per case, over the foreground classes in
    its label (MONAI's ``ignore_empty``), then over cases. ``pred``, ``label``: integer maps
    ``(n, *spatial)``."""
    scores = []
    for p, y in zip(np.asarray(pred).reshape(len(pred), -1), np.asarray(label).reshape(len(label), -1)):
        per = [2.0 * ((p == c) & (y == c)).sum() / ((p == c).sum() + (y == c).sum())
               for c in range(1, num_classes) if (y == c).any()]
        if per:
            scores.append(np.mean(per))
    return float(np.mean(scores)) if scores else float("nan")


def intensity_dice(train, test, num_classes, bins=64):
    """The difficulty proxy: fit the best per-voxel classifier on intensity alone (each of
    ``bins`` intensity bins, between the training images' 0.5th and 99.5th percentiles, predicts
    its most frequent training class) on ``train = (images, labels)``, and return its mean
    foreground Dice on ``test`` (per case, then averaged; first channel)."""
    (x, y), (xt, yt) = train, test
    x, xt = np.asarray(x)[..., 0].ravel(), np.asarray(xt)[..., 0]
    lo, hi = np.percentile(x, [0.5, 99.5])
    edges = np.linspace(lo, hi, bins + 1)[1:-1]
    counts = np.zeros((bins, num_classes))
    np.add.at(counts, (np.digitize(x, edges), np.asarray(y).ravel()), 1)
    lut = counts.argmax(1)
    pred = lut[np.digitize(xt, edges)]
    return mean_dice(pred, np.asarray(yt)[..., 0], num_classes)
