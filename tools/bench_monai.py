#!/usr/bin/env python
"""MONAI's spleen network run as MONAI runs it, against the zoo's float16 and int8 TFLite files of the
same network run through ``zoo.predict``, on the same volumes, measured side by side in one run.

What a deploying user would want to know before swapping MONAI's CPU inference for the zoo's files:

* the network: ``monai.networks.nets.UNet`` with the ``spleen_ct_segmentation`` bundle's
  ``network_def`` (``--width 1``: the bundle's widths 16..256; ``--width 2`` halves them ...);
* no real bundle file is here, so the converted network (``zoo.from_monai`` on MONAI's random
  initialisation) is first fine-tuned briefly on 3D phantoms with ``zoo.finetune``, and its weights are
  put back into the MONAI module with the converter's inverse (``zoo.hub.convert.monai.to_state_dict``):
  both sides hold one trained model (the output says so);
* the volumes: ``--volumes`` phantom volumes written as NIfTI files in Hounsfield units (the phantom's
  [0, 1] intensities mapped through the inverse of the bundle's window), with another voxel size
  (``--voxel``) and orientation (LAS) than the bundle's, so that every preprocessing step works;
* MONAI's side: the bundle's ``configs/inference.json`` steps: ``LoadImaged``, ``EnsureChannelFirstd``,
  ``Orientationd(RAS)``, ``Spacingd(1.5, 1.5, 2.0, bilinear)``, ``ScaleIntensityRanged(-57, 164 -> 0, 1,
  clip)``, ``SlidingWindowInferer(roi 96^3, sw_batch_size 4, overlap 0.5)`` (torch on the CPU),
  softmax, ``Invertd`` back to the file's grid, argmax;
* the zoo's side: ``zoo.predict(file, scan)`` with the exported file's recorded preprocessing (the same
  steps, ``zoo.data.volumes.preprocess``), its sliding window at the same ROI and overlap with the
  same (constant) blending as MONAI's inferer, the logits put back on the file's grid, argmax; also the
  Keras model (float32), for scale.

Printed and recorded (with the machine's 1-min load average at the start and the end, as other processes
may share its cores): end-to-end latency per volume (file in, label map out, preprocessing included)
and model-only latency (one ROI window, batch 1) as ratios to MONAI's, each the median of calls that
alternate between the runners; file sizes (MONAI's ``state_dict`` file, the .tflite files); the Dice
agreement of each label map with MONAI's (spleen class). ``--quick`` is a smoke test at a tiny scale
(its record goes to ``--out`` only, never to ``docs/models/measured.json``).

    python tools/bench_monai.py                 # the README's figures (~10 min of CPU on 2 cores)
    python tools/bench_monai.py --quick --out /tmp/monai.json
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _provenance import Clock, record  # noqa: E402

sys.modules.setdefault("triton", None)  # torch's triton crashes a process holding TensorFlow (tests/conftest.py)

WINDOW = (-57.0, 164.0)  # the bundle's ScaleIntensityRanged a_min / a_max


def _log(text):
    print(text, file=sys.stderr, flush=True)


def network_def(width):
    return {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
            "channels": [c // width for c in (16, 32, 64, 128, 256)], "strides": [2, 2, 2, 2],
            "num_res_units": 2, "norm": "batch"}


def write_volumes(folder, n, shape, voxel, seed):
    """Phantom volumes as NIfTI in HU (the inverse of the bundle's window), LAS, ``voxel`` mm."""
    import nibabel as nib

    from zoo.data import phantom_arrays
    x, _ = phantom_arrays(n, spatial_dims=3, size=shape, num_classes=2, seed=seed)
    affine = np.diag([-voxel[0], voxel[1], voxel[2], 1.0])  # LAS: the bundle reorients to RAS
    paths = []
    for i in range(n):
        hu = WINDOW[0] + np.clip(x[i, ..., 0], 0, 1) * (WINDOW[1] - WINDOW[0])
        path = Path(folder) / f"phantom_{i}.nii.gz"
        nib.save(nib.Nifti1Image(hu.astype(np.float32), affine), path)
        paths.append(str(path))
    return paths


def finetune(model, args, folder):
    """The converted network fine-tuned on 3D phantoms (clipped to [0, 1], as the window leaves scans)."""
    import zoo
    from zoo.data import phantom_arrays
    x, y = phantom_arrays(args.train, spatial_dims=3, size=args.train_size, num_classes=2, seed=args.seed)
    xv, yv = phantom_arrays(max(4, args.train // 8), spatial_dims=3, size=args.train_size, num_classes=2,
                            seed=args.seed + 7919)
    t0 = time.time()
    history = zoo.finetune(model, (np.clip(x, 0, 1), y), (np.clip(xv, 0, 1), yv), epochs=args.epochs, batch_size=2,
                           learning_rate=args.lr, out_dir=Path(folder) / "finetune", tensorboard=False, verbose=0,
                           seed=args.seed)
    return history.model, {"epochs": args.epochs, "phantoms": args.train, "size": args.train_size,
                           "val_dice": round(float(history.history["val_dice"][-1]), 4),
                           "seconds": round(time.time() - t0, 1)}


def monai_runner(net, roi, threads):
    """The bundle's inference: preprocessing, sliding window (torch, CPU), softmax, Invertd, argmax."""
    import torch
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        Invertd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )
    torch.set_num_threads(threads)
    pre = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"),
                   Orientationd(keys="image", axcodes="RAS"),
                   Spacingd(keys="image", pixdim=(1.5, 1.5, 2.0), mode="bilinear"),
                   ScaleIntensityRanged(keys="image", a_min=WINDOW[0], a_max=WINDOW[1], b_min=0.0, b_max=1.0,
                                        clip=True),
                   EnsureTyped(keys="image")])
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=4, overlap=0.5)
    post = Compose([Activationsd(keys="pred", softmax=True),
                    Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
                    AsDiscreted(keys="pred", argmax=True)])

    def run(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = pre({"image": path})
            with torch.no_grad():
                d["pred"] = inferer(d["image"][None], net)[0]
            d = post(d)
        return np.asarray(d["pred"][0]).astype(np.int32)

    def window(x):
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))))
    return run, window


def dice(a, b):
    a, b = a == 1, b == 1
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def _median_ms(times):
    return round(1000 * statistics.median(times), 1)


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=1, help="divide the bundle's widths (16..256) by this (default 1)")
    p.add_argument("--roi", type=int, default=96, help="sliding-window ROI per axis (the bundle's: 96)")
    p.add_argument("--volumes", type=int, default=3, help="phantom volumes to segment")
    p.add_argument("--shape", default="128,128,80", help="voxels of each volume (X,Y,Z)")
    p.add_argument("--voxel", default="1.2,1.2,1.6", help="voxel size in mm of the volumes (the bundle's: 1.5,1.5,2)")
    p.add_argument("--train", type=int, default=32, help="3D training phantoms for the fine-tune")
    p.add_argument("--train-size", type=int, default=48, help="their size per axis")
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=5, help="end-to-end calls per volume and runner")
    p.add_argument("--window-runs", type=int, default=20, help="model-only calls (one ROI window) per runner")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch and LiteRT threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny scale: a smoke test of the script")
    p.add_argument("--out", help="also write the record to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.roi, args.volumes, args.shape, args.train, args.train_size = 4, 32, 2, "40,40,24", 8, 32
        args.epochs, args.repeats, args.window_runs = 1, 1, 2
    load_start = round(os.getloadavg()[0], 2)  # the machine may be shared: its load goes into the record
    shape = tuple(int(v) for v in args.shape.split(","))
    voxel = tuple(float(v) for v in args.voxel.split(","))
    roi = (args.roi,) * 3

    import torch
    from monai.networks.nets import UNet

    import zoo
    from zoo.hub.api import applied_preprocessing
    from zoo.hub.convert.monai import to_state_dict
    from zoo.hub.registry import get_registry
    from zoo.record import attach, info_of
    nd = network_def(args.width)
    torch.manual_seed(args.seed)
    net = UNet(**{k: v for k, v in nd.items() if k != "_target_"})
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(net.state_dict(), Path(tmp) / "init.pt")
        model = zoo.from_monai(nd, Path(tmp) / "init.pt")
        # the record zoo.load("monai_spleen_ct", weights="monai") gives: the bundle's preprocessing
        prep, _ = applied_preprocessing(get_registry().get("monai_spleen_ct").weights["monai"])
        attach(model, info_of(model).replace(name="monai_spleen_ct", preprocessing=prep))
        _log(f"bench_monai: MONAI UNet channels {nd['channels']} ({model.count_params():,} Keras parameters), "
             f"fine-tuning the converted network on {args.train} phantoms of {args.train_size}^3 ...")
        model, tuned = finetune(model, args, tmp)
        attach(model, info_of(model).replace(patch_size=roi))  # the bundle's sliding window
        net.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(model, nd).items()}, strict=True)
        net.eval()
        torch.save(net.state_dict(), Path(tmp) / "model.pt")
        _log(f"  fine-tuned in {tuned['seconds']:.0f} s (validation Dice {tuned['val_dice']:.3f}); the same weights "
             "loaded back into the MONAI module (to_state_dict)")
        from zoo.data import phantom_arrays
        xr, yr = phantom_arrays(8, spatial_dims=3, size=args.roi, num_classes=2, seed=args.seed + 1)
        exports, runners = {}, {}
        for mode in ("float16", "int8"):
            path = Path(tmp) / f"spleen_{mode}.tflite"
            result = zoo.export(model, path, quantization=mode, representative_data=(np.clip(xr, 0, 1), yr),
                                calibration_samples=6, verify_samples=2, verify="warn", latency_runs=0,
                                num_threads=args.threads)
            exports[mode] = {"bytes": result.bytes, "verification": result.verification["summary"],
                             "passed": bool(result.passed), "float_ops": len(result.float_ops)}
            runners[f"zoo TFLite {mode}"] = zoo.load_tflite(path, num_threads=args.threads)
            _log(f"  exported {mode}: {result.bytes / 1e6:.1f} MB, verification {result.verification['summary']}")
        volumes = write_volumes(tmp, args.volumes, shape, voxel, args.seed + 2)
        monai_run, monai_window = monai_runner(net, roi, args.threads)
        names = ["MONAI (torch)", "zoo Keras float32", "zoo TFLite float16", "zoo TFLite int8"]
        e2e = {n: [] for n in names}
        labels = {n: {} for n in names}

        def call(name, path):
            if name == "MONAI (torch)":
                return monai_run(path)
            target = model if name == "zoo Keras float32" else runners[name]
            return np.asarray(zoo.predict(target, path, out=False, progress=False, blend="constant"))

        for name in names:  # warm-up: first calls build graphs and allocate
            call(name, volumes[0])
        _log(f"  end to end: {args.volumes} volumes {shape} at {voxel} mm (LAS), {args.repeats} rounds ...")
        for r in range(args.repeats):
            for i, path in enumerate(volumes):
                order = names[(r + i) % len(names):] + names[:(r + i) % len(names)]  # alternate who goes first
                for name in order:
                    t0 = time.perf_counter()
                    out = call(name, path)
                    e2e[name].append(time.perf_counter() - t0)
                    labels[name][path] = out
        x = np.clip(xr[:1], 0, 1)
        window = {n: [] for n in names}
        fns = {"MONAI (torch)": lambda: monai_window(x), "zoo Keras float32": lambda: model.predict_on_batch(x),
               "zoo TFLite float16": lambda: runners["zoo TFLite float16"].run_one(x[0]),
               "zoo TFLite int8": lambda: runners["zoo TFLite int8"].run_one(x[0])}
        for name in names:
            fns[name]()
        for r in range(args.window_runs):
            for name in names[r % len(names):] + names[:r % len(names)]:
                t0 = time.perf_counter()
                fns[name]()
                window[name].append(time.perf_counter() - t0)
        sizes = {"MONAI (torch)": (Path(tmp) / "model.pt").stat().st_size, "zoo Keras float32": None,
                 "zoo TFLite float16": exports["float16"]["bytes"], "zoo TFLite int8": exports["int8"]["bytes"]}
        ref = labels["MONAI (torch)"]
        rows = []
        for name in names:
            dices = [dice(labels[name][v], ref[v]) for v in volumes]
            shapes_ok = all(labels[name][v].shape == ref[v].shape for v in volumes)
            rows.append({"runner": name, "bytes": sizes[name], "end_to_end_ms": _median_ms(e2e[name]),
                         "window_ms": _median_ms(window[name]),
                         "x_monai_end_to_end": round(statistics.median(e2e[name]) / statistics.median(
                             e2e["MONAI (torch)"]), 3),
                         "x_monai_window": round(statistics.median(window[name]) / statistics.median(
                             window["MONAI (torch)"]), 3),
                         "dice_vs_monai": round(float(np.mean(dices)), 4), "dice_vs_monai_min": round(min(dices), 4),
                         "same_grid": shapes_ok, "spleen_voxels": int(np.mean([(labels[name][v] == 1).sum()
                                                                               for v in volumes]))})
    data = {"settings": {"network_def": nd, "roi": list(roi), "sw_batch_size": 4, "overlap": 0.5,
                         "volumes": args.volumes, "shape": list(shape), "voxel_mm": list(voxel), "orientation": "LAS",
                         "repeats": args.repeats, "window_runs": args.window_runs, "threads": args.threads,
                         "params": int(model.count_params()), "blend": "constant",
                         "load_average": [load_start, round(os.getloadavg()[0], 2)],
                         "weights": "no real bundle file here: the converted network fine-tuned on phantoms, its "
                                    "weights put back into the MONAI module (to_state_dict); both sides hold them"},
            "finetune": tuned, "exports": exports, "rows": rows}
    _print(data)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not args.quick:
        record(None, "bench_monai", data, clock)
        _log("written to docs/models/measured.json (benchmarks.bench_monai); run python tools/gen_cards.py")
    return 0


def _print(data):
    s = data["settings"]
    print(f"MONAI spleen UNet (channels {s['network_def']['channels']}, {s['params']:,} parameters) on {s['volumes']} "
          f"phantom volumes {'x'.join(map(str, s['shape']))} at {s['voxel_mm']} mm, ROI {s['roi']}, overlap "
          f"{s['overlap']}; {s['threads']} threads; 1-min load average {s['load_average'][0]} at the start, "
          f"{s['load_average'][1]} at the end")
    print(f"weights: {s['weights']} (fine-tuned {data['finetune']['epochs']} epochs, validation Dice "
          f"{data['finetune']['val_dice']:.3f})")
    print(f"{'runner':22} {'file MB':>8} {'end-to-end ms':>14} {'x MONAI':>8} {'window ms':>10} {'x MONAI':>8} "
          f"{'Dice vs MONAI':>14}")
    for r in data["rows"]:
        mb = "-" if r["bytes"] is None else f"{r['bytes'] / 1e6:.2f}"
        print(f"{r['runner']:22} {mb:>8} {r['end_to_end_ms']:>14.1f} {r['x_monai_end_to_end']:>8.2f} "
              f"{r['window_ms']:>10.1f} {r['x_monai_window']:>8.2f} {r['dice_vs_monai']:>8.4f} "
              f"(min {r['dice_vs_monai_min']:.4f})")
    for mode, e in data["exports"].items():
        print(f"export {mode}: verification {e['verification']} ({'passed' if e['passed'] else 'FAILED'})")


if __name__ == "__main__":
    sys.exit(main())
