#!/usr/bin/env python
"""Pictures for the model cards: ``docs/models/img/NAME.png`` plus what produced them, in
``docs/models/measured.json`` under ``NAME.picture`` (``tools/gen_cards.py`` renders both).

Segmentation entries: a short :func:`zoo.finetune` on the built-in phantoms (small input, few
epochs; the settings are in ``SEGMENTATION``), then the first held-out phantom (a seed neither
training nor validation uses; in 3D the first whose middle slice shows foreground) as
image | ground truth overlay | prediction overlay, and the mean foreground Dice over
``EVAL_SAMPLES`` held-out phantoms (:func:`zoo.pipeline.score`, as ``zoo run`` reports it).
GAN entries: a short :func:`zoo.finetune` (the paper's optimiser settings) on 32 px phantoms,
then a grid of samples beside a grid of held-out real phantoms, with the run's quality measures
(``fd``, ``swd``) before and after.

    python tools/card_pictures.py                 # every entry in SEGMENTATION and GENERATION
    python tools/card_pictures.py unet wgan_gp    # only these
    python tools/card_pictures.py --list          # the entries and their settings
    python tools/gen_cards.py                     # then: the cards show the pictures

A run takes minutes on 2 CPU cores; it is a tool, not a test. Each picture's record carries the
command, commit, date, machine and wall time (tools/_provenance.py).
"""
import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

from _provenance import Clock, record  # noqa: E402

CARDS = ROOT / "docs" / "models"
IMG = CARDS / "img"
EVAL_SAMPLES = 8
HELD_OUT_SEED = 104729   # phantoms neither training (seed 0) nor validation (seed 7919) saw
MAX_BYTES = 100_000      # committed pictures stay small
# class index -> RGB (0 = background is never painted): red, green, blue, yellow, magenta
PALETTE = np.array([[0, 0, 0], [230, 57, 70], [46, 196, 120], [60, 120, 230], [240, 200, 40], [200, 80, 200]],
                   np.float32)

# name: builder overrides (beyond in_channels=1, num_classes, input_shape) and the fine-tune settings
SEGMENTATION = {
    "unet": dict(dims=2, size=64, num_classes=3, config={}, epochs=8, steps_per_epoch=32, batch_size=2,
                 learning_rate=1e-3),
    "unet3d": dict(dims=3, size=32, num_classes=2, config={}, epochs=4, steps_per_epoch=16, batch_size=2,
                   learning_rate=1e-3),
    # no DeepLab: deeplabv3plus (ResNet-101, 59M parameters) took 77 s for 8 steps at 64 px here (graph
    # building included), too slow for the few hundred steps a clear picture needs; the Tiramisu takes ~2 min
    "fcdensenet56": dict(dims=2, size=64, num_classes=3, config={}, epochs=12, steps_per_epoch=32, batch_size=2,
                         learning_rate=1e-3),
}
# GANs: zoo.finetune's paper settings (WGAN: RMSprop 5e-5, clipping, 100 critic steps per generator
# step for the first 25; WGAN-GP: Adam 1e-4, 5 critic steps per generator step); batch 64
GENERATION = {
    "wgan_gp": dict(size=32, config={}, epochs=30, steps_per_epoch=32, batch_size=64),
    "wgan": dict(size=32, config={}, epochs=32, steps_per_epoch=100, batch_size=64),
}


# ----------------------------------------------------------------------------- composition
def _gray(image, value_range=None):
    """A 2D image as float RGB in [0, 1] (its own min..max unless ``value_range`` is given)."""
    image = np.asarray(image, np.float32)
    lo, hi = value_range if value_range is not None else (float(image.min()), float(image.max()))
    g = np.clip((image - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(image)
    return np.repeat(g[..., None], 3, axis=-1)


def overlay(image, label, alpha=0.5, value_range=None):
    """uint8 RGB ``(H, W, 3)``: the grayscale ``image`` with every pixel of class ``c > 0`` of
    ``label`` blended with ``PALETTE[c]`` (weight ``alpha``); class 0 stays the image."""
    image, label = np.asarray(image), np.asarray(label).astype(int)
    if image.ndim != 2 or label.shape != image.shape:
        raise ValueError(f"overlay: image and label must be 2D arrays of one shape; got {image.shape} and "
                         f"{label.shape}. Pass one slice (e.g. volume[:, :, z, 0]).")
    if label.min() < 0 or label.max() >= len(PALETTE):
        raise ValueError(f"overlay: label classes must be 0..{len(PALETTE) - 1}; got {label.min()}..{label.max()}. "
                         "Extend PALETTE or merge classes.")
    rgb = _gray(image, value_range) * 255.0
    fg = label > 0
    rgb[fg] = (1.0 - alpha) * rgb[fg] + alpha * PALETTE[label[fg]]
    return np.round(rgb).astype(np.uint8)


def strip(tiles, scale=1, gap=4):
    """uint8 RGB tiles of one shape side by side, each enlarged ``scale`` times (nearest), with
    white ``gap``-pixel columns between them."""
    tiles = [np.kron(np.asarray(t, np.uint8), np.ones((scale, scale, 1), np.uint8)) for t in tiles]
    h = tiles[0].shape[0]
    if any(t.shape != tiles[0].shape for t in tiles):
        raise ValueError(f"strip: tiles must share one shape; got {[t.shape for t in tiles]}.")
    white = np.full((h, gap, 3), 255, np.uint8)
    parts = [tiles[0]]
    for t in tiles[1:]:
        parts += [white, t]
    return np.concatenate(parts, axis=1)


def segmentation_panel(image, truth, pred, scale=4, gap=4, alpha=0.5):
    """image | ground truth overlay | prediction overlay, uint8 ``(H*scale, 3*W*scale + 2*gap, 3)``;
    the three share the image's intensity scale."""
    image = np.asarray(image, np.float32)
    vr = (float(image.min()), float(image.max()))
    plain = np.round(_gray(image, vr) * 255.0).astype(np.uint8)
    return strip([plain, overlay(image, truth, alpha, vr), overlay(image, pred, alpha, vr)], scale, gap)


def with_titles(panel, titles, band=14):
    """The panel with a white band above it holding one title per equal-width column (Pillow's
    default font)."""
    from PIL import Image, ImageDraw
    h, w, _ = panel.shape
    out = Image.new("RGB", (w, h + band), "white")
    out.paste(Image.fromarray(panel), (0, band))
    draw = ImageDraw.Draw(out)
    col = w / len(titles)
    for i, title in enumerate(titles):
        draw.text((int(i * col) + 2, 1), title, fill=(0, 0, 0))
    return np.asarray(out)


def png_bytes(rgb):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def middle_slice(array, dims):
    """A 2D view of ``(*spatial)`` or ``(*spatial, 1)``: the array itself in 2D, the middle slice of
    the last spatial axis in 3D."""
    v = np.asarray(array)
    v = v[..., 0] if v.ndim == dims + 1 else v
    return v[:, :, v.shape[2] // 2] if dims == 3 else v


# ----------------------------------------------------------------------------- runs
def _settings_record(s):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}


def segmentation_picture(name, s, work):
    import zoo
    from zoo._keras import keras
    from zoo.data import phantom_arrays
    from zoo.pipeline import score
    from zoo.train import read_state
    dims, size, ncls = s["dims"], s["size"], s["num_classes"]
    model = zoo.load(name, in_channels=1, num_classes=ncls, input_shape=(size,) * dims + (1,), **s["config"])
    t0 = time.time()
    zoo.finetune(model, "phantoms", "phantoms", epochs=s["epochs"], steps_per_epoch=s["steps_per_epoch"],
                 batch_size=s["batch_size"], learning_rate=s["learning_rate"], patch_size=size,
                 validation_steps=4, out_dir=work / name, tensorboard=False, verbose=0, seed=0)
    train_s = time.time() - t0
    state = read_state(work / name)
    xs, ys = phantom_arrays(EVAL_SAMPLES, spatial_dims=dims, size=size, num_classes=ncls, seed=HELD_OUT_SEED)
    out = model.predict(xs, batch_size=2, verbose=0)
    probs = out[0] if isinstance(out, list) else out
    dice = score("segmentation", ys, probs)
    pred = np.argmax(probs, axis=-1)
    # shown: the first held-out phantom whose (middle slice of the) label has every class, else any foreground
    views = [set(np.unique(middle_slice(y, dims)).tolist()) for y in ys]
    shown = next((i for i, v in enumerate(views) if len(v) == ncls),
                 next((i for i, v in enumerate(views) if len(v) > 1), 0))
    dice_shown = score("segmentation", ys[shown:shown + 1], probs[shown:shown + 1])
    image, truth = middle_slice(xs[shown], dims), middle_slice(ys[shown], dims)
    p = middle_slice(pred[shown], dims)
    scale = max(1, 192 // size)
    titles = ["phantom" + (f" (z={size // 2})" if dims == 3 else ""), "ground truth",
              f"prediction ({'volume ' if dims == 3 else ''}Dice {dice_shown:.2f})"]
    picture = with_titles(segmentation_panel(image, truth, p, scale=scale), titles)
    meta = {"kind": "segmentation", "settings": _settings_record(s), "dice": round(dice, 4),
            "dice_shown": round(float(dice_shown), 4), "shown": shown, "eval_samples": EVAL_SAMPLES,
            "held_out_seed": HELD_OUT_SEED, "params": int(model.count_params()), "train_seconds": round(train_s, 1),
            "checkpoint": f"best by {state.get('monitor')}", "best_epoch": state.get("best_epoch")}
    del model
    keras.backend.clear_session()
    return picture, meta


def _grid(images, value_range, nrow):
    from zoo.callbacks import grid_image
    g = grid_image(images, value_range, nrow=nrow)
    return np.repeat(g[..., None], 3, axis=-1) if g.ndim == 2 else g


def generation_picture(name, s, work, n=16):
    import zoo
    from zoo._keras import keras
    from zoo.data.unlabelled import unlabelled
    from zoo.train import read_state
    size = s["size"]
    model = zoo.load(name, in_channels=1, image_size=size, **s["config"])
    t0 = time.time()
    zoo.finetune(model, "phantoms", epochs=s["epochs"], steps_per_epoch=s["steps_per_epoch"],
                 batch_size=s["batch_size"], out_dir=work / name, tensorboard=False, verbose=0, seed=0)
    train_s = time.time() - t0
    state = read_state(work / name)
    # the model holds the best checkpoint: its epoch's counters and measures describe the samples
    best = state.get("best_epoch")
    last = next((r for r in state["history"] if r["epoch"] == best), state["history"][-1])
    init = state["config"].get("quality_init") or {}
    samples = model.sample(n, seed=0)
    real, value_range = unlabelled("phantoms", spatial_dims=2, image_size=size, channels=1, n=n, seed=HELD_OUT_SEED)
    side = int(np.ceil(np.sqrt(n)))
    a, b = _grid(samples, model.value_range, side), _grid(real, value_range, side)
    scale = 2 if a.shape[0] < 300 else 1
    picture = with_titles(strip([a, b], scale=scale, gap=8), [f"{n} samples (latent seed 0)",
                                                              f"{n} real phantoms (held out)"])
    meta = {"kind": "generation", "settings": _settings_record(s), "samples": n,
            "critic_steps": int(last.get("critic_steps", 0)), "generator_steps": int(last.get("generator_steps", 0)),
            "quality_before": {k: round(float(v), 4) for k, v in init.items()},
            "quality_after": {k: round(float(last[k]), 4) for k in init if k in last},
            "checkpoint": f"best by {state.get('monitor')}", "best_epoch": last["epoch"],
            "params": int(model.count_params()),
            "train_seconds": round(train_s, 1)}
    del model
    keras.backend.clear_session()
    return picture, meta


def make(name, work):
    """Train ``name`` briefly, write its PNG and return its metadata (for measured.json)."""
    t0 = time.time()
    if name in SEGMENTATION:
        picture, meta = segmentation_picture(name, SEGMENTATION[name], work)
    else:
        picture, meta = generation_picture(name, GENERATION[name], work)
    data = png_bytes(picture)
    if len(data) > MAX_BYTES:
        raise SystemExit(f"card_pictures: {name}'s PNG is {len(data):,} bytes, over {MAX_BYTES:,}; lower the "
                         "scale or the number of samples in tools/card_pictures.py.")
    IMG.mkdir(parents=True, exist_ok=True)
    (IMG / f"{name}.png").write_bytes(data)
    meta.update(file=f"img/{name}.png", bytes=len(data), seconds=round(time.time() - t0, 1))
    return meta


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    known = [*SEGMENTATION, *GENERATION]
    p.add_argument("names", nargs="*", metavar="NAME", help=f"entries (default all: {', '.join(known)})")
    p.add_argument("--list", action="store_true", help="print the entries and their settings")
    args = p.parse_args(argv)
    if args.list:
        for n in known:
            print(n, json.dumps(SEGMENTATION.get(n) or GENERATION[n]))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"no picture settings for {', '.join(unknown)}; known: {', '.join(known)} (add one to "
                "SEGMENTATION or GENERATION in tools/card_pictures.py)")
    for name in args.names or known:
        with tempfile.TemporaryDirectory() as tmp:
            meta = make(name, Path(tmp))
        record(name, "picture", meta, clock)  # re-reads measured.json: keeps what another tool wrote meanwhile
        print(f"{name}: {meta['file']} ({meta['bytes']:,} bytes, {meta['seconds']:.0f} s) "
              + (f"Dice {meta['dice']:.3f}" if "dice" in meta else
                 f"swd {meta['quality_before'].get('swd')} -> {meta['quality_after'].get('swd')}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
