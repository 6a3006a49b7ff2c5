"""Where ``zoo predict`` writes, and what it prints for a classifier.

``--out`` may name a file or a folder (then ``<out>/<input stem>_seg.nii.gz``, ``_seg.png`` or
``.json``); an existing file is refused unless ``--overwrite``, and a path that is the input
itself (or a file inside an input folder being read) always is.
"""
import json
from pathlib import Path

import numpy as np

from zoo._io import atomic_write_bytes
from zoo.errors import InvalidArgumentError


def _stem(path):
    name = path.name
    for ext in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".ima"):
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return name


def output_path(out, source, default, *, overwrite=False, suffixes=None):
    """The file ``zoo predict`` writes for ``source``: ``out`` (a file, or a folder to write
    ``default``'s name into) or ``default``; checked before any model runs."""
    source = Path(source).expanduser()
    if out is None:
        path = Path(default)
    else:
        path = Path(out).expanduser()
        if path.is_dir() or str(out).endswith(("/", "\\")):
            path = path / Path(default).name
        elif suffixes and not path.name.lower().endswith(suffixes):
            raise InvalidArgumentError(
                f"predict: --out {out} must end with {' or '.join(suffixes)} (or name a folder, to write "
                f"{Path(default).name} there).")
    resolved, src = path.resolve(), source.resolve()
    if resolved == src or (src.is_dir() and src in resolved.parents):
        raise InvalidArgumentError(
            f"predict: --out {path} is the input {source} itself" + (" (a file inside the input folder)"
                                                                    if resolved != src else "")
            + f"; write elsewhere, e.g. --out {source.parent / Path(default).name}.")
    if path.exists() and not path.is_file():
        raise InvalidArgumentError(f"predict: --out {path} exists and is not a file; name a file or folder.")
    if path.exists() and not overwrite:
        raise InvalidArgumentError(
            f"predict: {path} already exists; pass --overwrite to replace it, or --out another file "
            "or a folder.")
    return path


def json_default(source):
    source = Path(source)
    return source.with_name(f"{_stem(source)}.json")


def top_classes(probabilities, names, k):
    """``[(index, name, probability)]``, most probable first, at most ``k``."""
    p = np.asarray(probabilities, "float64").reshape(-1)
    if p.size == 1:  # one logit: sigmoid probability of class 1
        p = np.array([1.0 - p[0], p[0]])
    names = list(names) if names else [f"class {i}" for i in range(p.size)]
    if len(names) != p.size:
        names = [f"class {i}" for i in range(p.size)]
    order = np.argsort(-p, kind="stable")[:max(1, k)]
    return [(int(i), str(names[i]), float(p[i])) for i in order]


def report_classes(source, top, out=None, *, model=None):
    """Print the top classes of one image (and write them as JSON to ``out``)."""
    (_, best, prob), rest = top[0], top[1:]
    print(f"{source}: {best} ({prob:.4f})")
    width = max(len(name) for _, name, _ in top)
    for _, name, p in top:
        print(f"  {name:<{width}}  {p:.4f}")
    if out is not None:
        data = {"input": str(source), "model": model, "prediction": best, "probability": prob,
                "top": [{"index": i, "class": name, "probability": p} for i, name, p in top]}
        atomic_write_bytes(out, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
        print(f"  written to {out}")
    return rest
