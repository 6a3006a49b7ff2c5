"""Fuzz harness for the zoo's file readers: seeded mutations of valid files, each run in a worker
process under a per-case time limit.

For each reader kind (``registry``, ``weights``, ``nifti``, ``dicom``) a worker writes valid seed
files, then answers case numbers on stdin: case ``i`` is mutation ``i`` of a seed, drawn from
``random.Random(f"{kind}:{seed}:{i}")`` (so any case can be replayed alone), fed to the reader
(and, where it applies, to ``zoo.load``/weight transfer/``zoo.predict``). The oracle: the case ends
in a ZooError that leaves no trace (model weights unchanged, no ``.part`` or unverified file in the
weights cache, no output file), or it succeeds and the result is valid (finite weights, a
finite non-singular affine, positive voxel sizes, typed registry fields). Anything else - a raw
exception, a failed invariant, a case slower than the limit (a hang), a dead worker - is a finding.

    python tests/_fuzz.py KIND [FIRST [COUNT]]   # run cases in this process, with tracebacks
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _fuzz_kinds import CLASSES, Invalid  # noqa: E402


def run_case(kind_obj, kind, seed, i):
    """One case: ``{"i", "desc", "outcome": ok | zoo | raw | invalid, "detail"}``."""
    from zoo.errors import ZooError
    rng = random.Random(f"{kind}:{seed}:{i}")
    try:
        desc, target = kind_obj.make(rng, i)
    except Exception as e:  # noqa: BLE001 - a bug of the mutator itself: report it, keep going
        return {"i": i, "desc": "(mutation failed)", "outcome": "harness", "detail": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()[-2000:]}
    result = {"i": i, "desc": desc}
    try:
        kind_obj.run(target)
        result.update(outcome="ok")
    except Invalid as e:
        result.update(outcome="invalid", detail=str(e)[:500])
    except ZooError as e:
        result.update(outcome="zoo", detail=str(e)[:300])
    except Exception as e:  # noqa: BLE001 - anything else is the finding
        result.update(outcome="raw", detail=f"{type(e).__name__}: {str(e)[:300]}",
                      traceback=traceback.format_exc()[-2000:])
    return result


# --------------------------------------------------------------------------- worker and parent
def worker(kind, work, seed):
    import warnings
    warnings.simplefilter("ignore")
    obj = CLASSES[kind](work)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(run_case(obj, kind, seed, int(line))), flush=True)


class _Worker:
    def __init__(self, kind, work, seed):
        env = dict(os.environ, ZOO_HOME=str(Path(work) / "home"), TF_CPP_MIN_LOG_LEVEL="3",
                   CUDA_VISIBLE_DEVICES="", ZOO_OFFLINE="1", PYTHONPATH=os.pathsep.join(
                       [str(HERE.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        env.pop("ZOO_REGISTRY", None)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--worker", kind, str(work), str(seed)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, start_new_session=True)
        self.lines = []
        self.ready = threading.Event()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.lines:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self.cond.wait(left)
            line = self.lines.pop(0)
        return None if line is None else json.loads(line)

    def send(self, i):
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()

    def kill(self):
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()


def fuzz(kind, count, *, seed=0, timeout=30.0, start_timeout=180.0, first=0):
    """Run cases ``first .. first + count - 1`` of ``kind``; returns the list of results (findings
    have outcome raw/invalid/hang/crash)."""
    results = []
    with tempfile.TemporaryDirectory(prefix=f"zoo-fuzz-{kind}-") as work:
        w, i = None, first
        while i < first + count:
            if w is None:
                w = _Worker(kind, work, seed)
                ready = w.next(start_timeout)
                if not isinstance(ready, dict):
                    w.kill()
                    raise RuntimeError(f"the {kind} fuzz worker did not start ({ready})")
            w.send(i)
            result = w.next(timeout)
            if not isinstance(result, dict):
                desc = f"case {i} (replay it: python tests/_fuzz.py {kind} {i} 1)"
                results.append({"i": i, "desc": desc, "outcome": "hang" if result == "timeout" else "crash",
                                "detail": f"no answer within {timeout:g} s" if result == "timeout"
                                else f"worker died (exit {w.proc.poll()})"})
                w.kill()
                w = None
            else:
                results.append(result)
            i += 1
        if w is not None:
            w.proc.stdin.close()
            w.kill()
    return results


def main(argv):
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2], int(argv[3]))
    kind, first, count = argv[0], int(argv[1]) if len(argv) > 1 else 0, int(argv[2]) if len(argv) > 2 else 20
    with tempfile.TemporaryDirectory() as work:
        os.environ["ZOO_HOME"] = str(Path(work) / "home")
        obj = CLASSES[kind](work)
        for i in range(first, first + count):
            r = run_case(obj, kind, int(os.environ.get("ZOO_FUZZ_SEED", "0")), i)
            print(f"{r['i']:5d} {r['outcome']:8s} {r['desc'][:70]:70s} {r.get('detail', '')[:160]}")
            if r["outcome"] in ("raw", "invalid"):
                print(r.get("traceback", ""))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
