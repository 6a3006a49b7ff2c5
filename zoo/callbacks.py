"""Keras callbacks for generative models: sample grids and the per-epoch quality measures.

* :class:`SampleGrid` writes ``out_dir/epoch_0003.png`` every ``every`` epochs: a grid of
  ``gan.sample(n, seed)`` (the same latent vectors each time, so the grids show training
  progress). 3D samples show their three middle slices side by side; ``nifti=True`` also
  writes each volume as ``epoch_0003_sample00.nii.gz``.
* :class:`GanQuality` adds ``fd`` and ``swd`` (see :mod:`zoo.quality`) to each epoch's logs,
  comparing a fixed set of real images with samples of fixed latent vectors.

:func:`save_grid` is the grid writer (``zoo sample`` uses it too).
"""
import io
from pathlib import Path

import numpy as np

from zoo import _io
from zoo._deps import require
from zoo._keras import keras
from zoo.errors import InvalidArgumentError, check_positive_int
from zoo.models.wgan import generate
from zoo.quality import RandomFeatures, frechet_distance, sliced_wasserstein_images


def _tile(image):
    """One sample as a 2D ``(H, W, C)`` tile: 3D -> its middle slices along each axis side by
    side; channels other than 1 or 3 -> each channel as a grayscale panel side by side."""
    if image.ndim == 4:
        mid = [s // 2 for s in image.shape[:3]]
        image = np.concatenate([image[mid[0]], image[:, mid[1]], image[:, :, mid[2]]], axis=1)
    if image.shape[-1] not in (1, 3):
        image = np.concatenate([image[..., c:c + 1] for c in range(image.shape[-1])], axis=1)
    return image


def grid_image(images, value_range, nrow=None, pad=2):
    """A uint8 grid ``(H, W)`` or ``(H, W, 3)`` of images ``(n, *spatial, C)`` in ``value_range``."""
    images = np.asarray(images, np.float32)
    if images.ndim not in (4, 5) or len(images) == 0:
        raise InvalidArgumentError(f"save_grid: images must be (n, H, W, C) or (n, X, Y, Z, C) with n >= 1; "
                                   f"got shape {images.shape}.")
    lo, hi = value_range
    tiles = [_tile(np.clip((im - lo) / (hi - lo), 0.0, 1.0)) for im in images]
    n = len(tiles)
    cols = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = tiles[0].shape
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = tile
    grid = np.round(grid * 255.0).astype(np.uint8)
    return grid[..., 0] if c == 1 else grid


def save_grid(images, path, value_range=(0.0, 1.0), nrow=None):
    """Write images as one PNG grid (atomically: a crash never leaves half a file)."""
    from PIL import Image  # optional: the images extra (Pillow); only PNG writing needs it
    grid = grid_image(images, value_range, nrow)
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    _io.atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return Path(path)


def save_nifti(volume, path):
    """One volume ``(X, Y, Z, C)`` as NIfTI (identity affine: 1 mm voxels), atomically."""
    nib = require("nibabel", "Writing NIfTI volumes")
    data = volume[..., 0] if volume.shape[-1] == 1 else volume
    image = nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4))
    # the temporary file keeps the target's suffixes (.nii.gz), which nibabel reads as the format
    _io.atomic_write_bytes(Path(path), lambda tmp: nib.save(image, tmp))
    return Path(path)


class SampleGrid(keras.callbacks.Callback):
    """Every ``every`` epochs, a PNG grid of ``n`` samples (latent seed ``seed``) in ``out_dir``."""

    def __init__(self, out_dir, every=1, n=16, seed=0, nifti=False, nrow=None):
        super().__init__()
        check_positive_int("every", every, "SampleGrid")
        check_positive_int("n", n, "SampleGrid", maximum=4096)
        self.out_dir, self.every, self.n, self.seed = Path(out_dir), every, n, seed
        self.nifti, self.nrow = nifti, nrow
        self.written = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if not hasattr(self.model, "sample"):
            raise InvalidArgumentError("SampleGrid: the model has no sample(); use it with a zoo GAN "
                                       "(zoo.load('wgan_gp', ...)).")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        images = self.model.sample(self.n, seed=self.seed)
        stem = f"epoch_{epoch + 1:04d}"
        self.written.append(save_grid(images, self.out_dir / f"{stem}.png", self.model.value_range, self.nrow))
        if self.nifti and images.ndim == 5:
            for i, volume in enumerate(images):
                save_nifti(volume, self.out_dir / f"{stem}_sample{i:02d}.nii.gz")


class GanQuality(keras.callbacks.Callback):
    """Adds ``fd`` and ``swd`` to each epoch's logs: ``real`` (in [-1, 1]) against samples of
    ``len(real)`` fixed latent vectors (``seed``); ``extractor`` as in :mod:`zoo.quality`."""

    def __init__(self, real, seed=0, extractor=None, measures=("fd", "swd")):
        super().__init__()
        self.real = np.asarray(real, np.float32)
        self.seed, self.measures = seed, tuple(measures)
        self.extractor = extractor or RandomFeatures()
        self._real_features = None

    def measure(self, gan):
        fake = generate(gan, gan.latent(len(self.real), self.seed))
        out = {}
        if "fd" in self.measures:
            if self._real_features is None:
                self._real_features = np.asarray(self.extractor(self.real))
            out["fd"] = frechet_distance(self._real_features, np.asarray(self.extractor(fake)))
        if "swd" in self.measures:
            out["swd"] = sliced_wasserstein_images(self.real, fake, seed=self.seed)
        return out

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.measure(self.model))
