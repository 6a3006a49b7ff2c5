"""``zoo sample RUN``: images from a trained GAN run (a PNG grid, optionally NIfTI volumes or .npy),
and the summary ``zoo finetune`` prints after training a GAN."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import sys
from pathlib import Path

import numpy as np

from zoo import _io
from zoo.errors import InvalidArgumentError


def _fmt(values):
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def print_gan_summary(state, name, train, out):
    cfg = state.get("config", {})
    rows = state.get("history", [])
    last = rows[-1] if rows else {}
    size = "x".join([str(cfg.get("image_size"))] * (cfg.get("spatial_dims") or 2))
    print(f"\nfinetune done: {state.get('epochs_completed')} epoch(s) of {name} ({cfg.get('variant')}) on {train} "
          f"({size}x{cfg.get('in_channels')}, global batch {cfg.get('global_batch_size')}, "
          f"{int(last.get('critic_steps', 0))} critic / {int(last.get('generator_steps', 0))} generator updates)")
    init = cfg.get("quality_init") or {}
    if init:
        now = {k: last[k] for k in init if k in last}
        print(f"  quality ({cfg.get('quality_samples')} real vs generated, lower is better):")
        print(f"    before training: {_fmt(init)}")
        print(f"    last epoch:      {_fmt(now)}")
        if state.get("best") is not None:
            print(f"    best {state['monitor']}: {state['best']:.4g} at epoch {state['best_epoch']}")
    print(f"  last losses: {_fmt({k: last[k] for k in ('loss', 'wasserstein', 'gp', 'g_loss') if k in last})}")
    print(f"  checkpoints: {out}/best.h5 (best), {out}/last.h5 (last)")
    print(f"  history:     {out}/history.csv")
    print(f"  sample:      zoo sample {out} -n 64 --out samples.png\n"
          f"               (Python: zoo.load_run('{out}').sample(64, seed=0))")
    return 0


def _cmd_sample(args):
    import zoo.models.wgan  # noqa: F401  (registers the WGAN class for model.json)
    from zoo.callbacks import save_grid, save_nifti
    from zoo.models.wgan import WGAN
    from zoo.resolve import load_run
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InvalidArgumentError(f"zoo sample: --out {args.out!r} must be a .png file (the grid); add --npy "
                                   "or --nifti for the raw samples.")
    targets = [out] + [Path(p) for p in (args.npy, args.nifti) if p]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.overwrite:
        raise InvalidArgumentError(f"zoo sample: {', '.join(existing)} already exist(s); pass --overwrite to "
                                   "replace, or choose another --out.")
    gan = load_run(args.run, which=args.which)
    if not isinstance(gan, WGAN):
        raise InvalidArgumentError(f"zoo sample: {args.run} holds a {type(gan).__name__} run, not a GAN; "
                                   "train one with zoo finetune wgan_gp.")
    images = gan.sample(args.n, seed=args.seed)
    save_grid(images, out, gan.value_range)
    written = [str(out)]
    if args.npy:
        _io.atomic_write_bytes(Path(args.npy), lambda t: np.save(t, images))
        written.append(args.npy)
    if args.nifti:
        if images.ndim != 5:
            raise InvalidArgumentError("zoo sample: --nifti needs a 3D GAN (volumes); this one makes 2D images.")
        folder = Path(args.nifti)
        for i, volume in enumerate(images):
            save_nifti(volume, folder / f"sample{i:03d}.nii.gz")
        written.append(f"{folder}/sample000.nii.gz ... sample{len(images) - 1:03d}.nii.gz")
    print(f"zoo sample: {args.n} sample(s) of {args.run} ({args.which}.h5, seed {args.seed}), values in "
          f"[{gan.value_range[0]:g}, {gan.value_range[1]:g}] -> {', '.join(written)}", file=sys.stderr)
    return 0


def add_parsers(sub):
    s = sub.add_parser("sample", help="generate images with a trained GAN run (a PNG grid)",
                       description="Generate N images with the GAN of a zoo finetune run folder and write "
                       "them as a PNG grid (3D: middle slices), optionally as .npy or NIfTI volumes.",
                       epilog="example: zoo sample runs/gan -n 64 --out samples.png --seed 1")
    s.add_argument("run", help="a zoo finetune run folder of a GAN (e.g. runs/gan)")
    s.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--out", default="samples.png", help="the PNG grid to write (default samples.png)")
    s.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same samples")
    s.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint (default best)")
    s.add_argument("--npy", help="also write the samples (in the data's value range) to this .npy file")
    s.add_argument("--nifti", metavar="DIR", help="3D GANs: also write each volume as DIR/sampleNNN.nii.gz")
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.set_defaults(func=_cmd_sample)
