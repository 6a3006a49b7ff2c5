"""Peak memory of preparing a MedMNIST file with the catalogue builder (which streams the .npz
row by row) next to reading the same file whole with numpy, measured side by side in one run.

    python tools/bench_catalog.py [--images 800]

Writes a synthetic ``pathmnist_224.npz`` (the official keys and shapes, random pixels) to a
temporary folder, then runs two fresh processes, ``np.load`` of every array and
``zoo.datasets.prepare("medmnist/pathmnist_224")``, each measuring its peak resident memory
above its size after the imports (Linux: VmHWM reset through /proc/self/clear_refs). Prints
both, their ratio, and the time per image, and writes them with the command, commit, date,
machine and wall time (tools/_provenance.py) to ``docs/models/measured.json``
(``benchmarks.bench_catalog``; ``--no-record``: print only).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _provenance import Clock, record  # noqa: E402

COMMON = """
import json, sys, time
import numpy as np, tensorflow_datasets, zoo.datasets
from zoo._keras import tf

def status(key):  # kB, from /proc/self/status
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key + ':'))

rss = status('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current size
"""
RUNS = {
    "np.load (whole arrays)": """
        with np.load(sys.argv[1] + '/pathmnist_224.npz') as z:
            arrays = {k: z[k] for k in z.files}
    """,
    "zoo.datasets.prepare (streamed)": """
        zoo.datasets.prepare('medmnist/pathmnist_224', manual_dir=sys.argv[1], data_dir=sys.argv[1] + '/tfds')
    """,
}


def run(body, folder):
    code = COMMON + "t = time.perf_counter()\n" + textwrap.dedent(body) + (
        "\nprint(json.dumps({'peak_mb': (status('VmHWM') - rss) / 1024, 'seconds': time.perf_counter() - t}))")
    res = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=ROOT)
    if res.returncode:
        sys.exit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    clock = Clock(__file__, [__file__, *(sys.argv[1:] if argv is None else argv)])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=800, help="training images (val, test: a fifth each)")
    p.add_argument("--no-record", action="store_true", help="do not write docs/models/measured.json")
    p.add_argument("--json", help="also write the results (with their provenance) to this JSON file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {"train": args.images, "val": args.images // 5, "test": args.images // 5}
        arrays = {}
        for split, n in sizes.items():
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
            arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1), dtype=np.uint8)
        np.savez(Path(tmp) / "pathmnist_224.npz", **arrays)
        pixels = sum(a.nbytes for k, a in arrays.items() if k.endswith("images")) / 2 ** 20
        del arrays
        results = {name: run(body, tmp) for name, body in RUNS.items()}
    total = sum(sizes.values())
    print(f"synthetic pathmnist_224.npz: {total} images, {pixels:.0f} MB of pixels")
    for name, r in results.items():
        print(f"  {name:<34} peak +{r['peak_mb']:7.0f} MB above the imports  ({r['seconds']:.1f} s, "
              f"{1000 * r['seconds'] / total:.1f} ms per image)")
    whole, streamed = (results[k]["peak_mb"] for k in RUNS)
    print(f"  streamed / whole-array peak: {streamed / whole:.2f}")
    names = list(RUNS)
    data = {"images": total, "train_images": args.images, "pixels_mb": pixels, "whole": results[names[0]],
            "streamed": results[names[1]]}
    if args.json:
        Path(args.json).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not args.no_record:
        record(None, "bench_catalog", data, clock)
        print("written to docs/models/measured.json (benchmarks.bench_catalog); run python tools/gen_cards.py")


if __name__ == "__main__":
    main()
