#!/usr/bin/env python
"""Record a ``zoo run NAME`` for the README and the cards: runs ``zoo run NAME --json`` (in a fresh
process, into a temporary run folder), and writes its report with the command, commit, date,
machine and wall time to ``docs/models/measured.json`` (``NAME.run``); ``tools/gen_cards.py``
renders it (how long the job took, its scores per stage, sizes, verification, latency).

    python tools/record_run.py unet3d                       # the README's main job (minutes on 2 CPU cores)
    python tools/record_run.py unet --args "--epochs 5"     # other zoo run options, recorded with it
    python tools/record_run.py unet3d --quick --out /tmp/run.json   # smoke test: a tiny run, not recorded

Options of ``zoo run`` go in ``--args`` and are part of the recorded command. ``--quick`` adds
``--epochs 1 --compress-epochs 1 --steps-per-epoch 2 --set filters=4 --verify warn`` and writes only
to ``--out``.
"""
import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

from _provenance import Clock, record  # noqa: E402

QUICK = ["--epochs", "1", "--compress-epochs", "1", "--steps-per-epoch", "2", "--set", "filters=4", "--verify", "warn"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    clock = Clock(__file__, [__file__, *argv])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a registry entry (zoo list)")
    p.add_argument("--args", default="", help="further zoo run options, as one string")
    p.add_argument("--quick", action="store_true", help="a tiny run (smoke test), written to --out only")
    p.add_argument("--out", help="also write the record to this JSON file")
    args = p.parse_args(argv)
    extra = shlex.split(args.args) + (QUICK if args.quick else [])
    zoo_command = shlex.join(["zoo", "run", args.name, "--json", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, "-m", "zoo.cli", "run", args.name, "--json", *extra,
                              "--out", str(Path(tmp) / "run")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if res.returncode:
        print(f"record_run: {zoo_command} failed (exit {res.returncode}); nothing recorded", file=sys.stderr)
        return res.returncode
    report = json.loads(res.stdout)
    report.pop("artefacts", None)  # temporary paths
    data = {"zoo_command": zoo_command, "report": report}
    if args.out:
        Path(args.out).write_text(json.dumps(dict(data, provenance=clock.provenance()), indent=1) + "\n")
    if not args.quick:
        record(args.name, "run", data, clock)
        print(f"recorded {zoo_command} in docs/models/measured.json ({args.name}.run); run python tools/gen_cards.py",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
