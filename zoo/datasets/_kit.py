"""What the catalogue's TFDS builders share (imported by the builder modules in ``datasets/``).

* :class:`ZooConfig`, a ``tfds.core.BuilderConfig`` with the catalogue's facts about one data
  set (task, dims, channels, classes, licence, the files ``manual_dir`` must hold and where to
  get them), which ``zoo.datasets.list()`` shows without preparing anything;
* :func:`manual_root`, :func:`fetch` and :func:`missing_files`: source files come from
  ``manual_dir`` first; a file with a published URL and MD5 is downloaded and verified only
  when it is not there (never with ``ZOO_OFFLINE=1``); otherwise the error lists the exact
  files expected, where they were looked for and where to get them;
* :func:`volume_features` / :func:`volume_example`: 3D examples keep the voxel spacing (mm)
  and the 4x4 affine (NIfTI/RAS convention) next to the image and the label map;
* :func:`validation_split`: MONAI's DecathlonDataset rule (shuffle the case list with
  ``numpy.random.RandomState(seed)``, the first ``int(n * fraction)`` cases validate).

Builder modules use ``epath``/``tf.io.gfile`` for files, never ``os``/``open`` (TFDS's builder
test enforces it, so the builders also work on GCS or in a zip).
"""
import dataclasses
import hashlib
import inspect
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from zoo._deps import require  # noqa: F401 - the builders' optional imports (names the extra)
from zoo.datasets._catalog import DatasetFilesError


@dataclasses.dataclass(eq=False)
class ZooConfig(tfds.core.BuilderConfig):
    """One catalogue entry. ``files``: what ``manual_dir`` must hold (one line each);
    ``source``: where to get them; ``download``: the URL the builder fetches when the files
    are absent (None: manual only), ``md5`` its published checksum."""
    task: str = "segmentation"
    spatial_dims: int = 2
    channels: int = 1
    classes: tuple = ()
    license: str = ""
    files: tuple = ()
    source: str = ""
    download: str | None = None
    md5: str | None = None
    homepage: str = ""


class ZooBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The catalogue builders' base: TFDS finds a builder's folder (README.md, CITATIONS.bib,
    TAGS.txt, checksums.tsv, dummy_data/) from its module name under the top-level package,
    which misses folders that a package's ``__path__`` adds (the source checkout's
    ``datasets/``); here they are where the module's file is."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))

    @classmethod
    def _get_pkg_dir_path(cls):
        return epath.Path(inspect.getfile(cls)).parent


def offline():
    return os.environ.get("ZOO_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def manual_root(dl_manager):
    """``dl_manager.manual_dir`` as an epath.Path, or None when it is unset, missing or empty."""
    try:
        return epath.Path(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # TFDS: "does not exist or is empty" / not enabled
        return None


def _manual_text(dl_manager):
    path = getattr(dl_manager, "_manual_dir", None)
    return str(path) if path else "(no manual_dir given)"


def missing_files(builder, dl_manager, problem, missing=None):
    """The error for absent or incomplete source files: what is wrong, the files not found
    (``missing``, when known), the files expected, where to get them, how to retry. One fact a
    line, short enough for a one-line CLI error."""
    cfg = builder.builder_config
    name = f"{builder.name}/{cfg.name}" if len(builder.BUILDER_CONFIGS) > 1 else builder.name
    lines = [f"data set {name!r}: {problem}", f"manual_dir: {_manual_text(dl_manager)}"]
    if missing:
        shown = ", ".join(str(m) for m in list(missing)[:6])
        lines.append(f"missing: {shown}" + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""))
    lines.append("expected there: " + "; ".join(cfg.files))
    lines.append(f"get them from: {cfg.source}")
    if cfg.download and offline():
        lines.append("(ZOO_OFFLINE=1 is set: not downloaded)")
    lines.append(f"then run: zoo datasets prepare {name} --manual-dir DIR")
    return DatasetFilesError("\n".join(lines))


def find(root, pattern, depth=3):
    """Files under ``root`` (at most ``depth`` folders down) whose name matches ``pattern``,
    sorted; hidden files and macOS ``._`` resource files skipped (epath has no rglob)."""
    root = epath.Path(root)
    found = sorted(p for p in root.glob(pattern) if not p.name.startswith("."))
    if depth > 0:
        for sub in sorted(root.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                found += find(sub, pattern, depth - 1)
    return found


def md5sum(path, chunk=1 << 22):
    digest = hashlib.md5()
    with epath.Path(path).open("rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(builder, dl_manager, filename, *, url=None, md5=None):
    """``manual_dir/filename`` if it is there; else ``url`` downloaded by TFDS and checked
    against the published ``md5`` (a mismatch removes the file and raises); else the
    missing-files error."""
    root = manual_root(dl_manager)
    if root is not None and (root / filename).exists():
        return root / filename
    if url is None or offline():
        raise missing_files(builder, dl_manager, f"{filename} is not in manual_dir.", [filename])
    path = epath.Path(dl_manager.download(url))
    if md5:
        got = md5sum(path)
        if got != md5:
            path.unlink(missing_ok=True)
            raise DatasetFilesError(
                f"{url} downloaded to {path} has MD5 {got} but the published MD5 is {md5}; the "
                f"file was removed. Retry, or download {filename} yourself, check its MD5 and place "
                f"it in manual_dir.")
    return path


def volume_features(channels):
    """A 3D segmentation example: float32 image (X, Y, Z, C), uint8 label (X, Y, Z), the voxel
    spacing in mm (3,), the 4x4 voxel-to-world affine (RAS, as NIfTI) and the case id."""
    zlib = tfds.features.Encoding.ZLIB
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(None, None, None, channels), dtype=np.float32, encoding=zlib),
        "label": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint8, encoding=zlib),
        "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "affine": tfds.features.Tensor(shape=(4, 4), dtype=np.float64),
        "id": tfds.features.Text(),
    })


def volume_example(case_id, image, label, spacing, affine, *, source, num_classes):
    """Check one case (shapes agree, labels are class indices) and make its example dict."""
    image = np.asarray(image, np.float32)
    label = np.asarray(label)
    if image.shape[:3] != label.shape:
        raise DatasetFilesError(f"{source}: image of spatial shape {image.shape[:3]} but label of "
                                f"shape {label.shape}; the pair must match voxel for voxel.")
    if not np.all(np.isfinite(image)):
        raise DatasetFilesError(f"{source}: the image holds NaN/Inf values; the file is corrupt.")
    values = np.unique(label)
    if values.min() < 0 or values.max() >= num_classes or not np.all(values == np.round(values)):
        raise DatasetFilesError(f"{source}: label values {values[:8].tolist()} are not class indices "
                                f"0..{num_classes - 1}; the file is not this data set's label map.")
    return {"image": image, "label": label.astype(np.uint8), "id": case_id,
            "spacing": np.asarray(spacing, np.float32), "affine": np.asarray(affine, np.float64)}


def validation_split(items, fraction=0.2, seed=0):
    """``(train, validation)`` lists: ``items`` shuffled by ``RandomState(seed)``, the first
    ``int(len * fraction)`` validate (MONAI's DecathlonDataset split, same seed, same cases)."""
    index = np.arange(len(items))
    np.random.RandomState(seed).shuffle(index)
    n_val = int(len(items) * fraction)
    return [items[i] for i in index[n_val:]], [items[i] for i in index[:n_val]]
