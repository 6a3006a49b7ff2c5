"""The fuzz suite: seeded mutations of valid registry, weights (4 formats), NIfTI and DICOM files,
each case in a worker process with a time limit (tests/_fuzz.py). A finding is a raw exception, a
hang, a dead worker, or garbage accepted (an invalid result, a trace left in the cache or at the
output path). ``ZOO_FUZZ_EXAMPLES=N`` runs N cases per reader (nightly: e.g. 5000),
``ZOO_FUZZ_SEED`` draws other cases, ``ZOO_FUZZ_TIMEOUT`` is the per-case limit in seconds.
Replay one case with tracebacks: ``python tests/_fuzz.py KIND CASE 1``."""
import os

import pytest
from _fuzz import fuzz

CI_CASES = {"registry": 80, "weights": 320, "nifti": 200, "dicom": 200}  # ~2 min in all on 2 cores


def _report(kind, findings):
    lines = [f"{len(findings)} finding(s) in the {kind} fuzz:"]
    lines += [f"  case {r['i']} [{r['outcome']}] {r['desc']}: {r.get('detail', '')}" for r in findings[:20]]
    lines += [f"  replay: python tests/_fuzz.py {kind} {findings[0]['i']} 1"]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CI_CASES))
def test_fuzz_reader(kind):
    count = int(os.environ.get("ZOO_FUZZ_EXAMPLES", CI_CASES[kind]))
    results = fuzz(kind, count, seed=int(os.environ.get("ZOO_FUZZ_SEED", "0")),
                   timeout=float(os.environ.get("ZOO_FUZZ_TIMEOUT", "60")))
    assert len(results) == count
    findings = [r for r in results if r["outcome"] not in ("ok", "zoo")]
    assert not findings, _report(kind, findings)
    outcomes = [r["outcome"] for r in results]
    # both paths are exercised: files refused with a ZooError, and valid variants accepted
    assert outcomes.count("zoo") >= count // 10 and outcomes.count("ok") >= 1, outcomes


def test_harness_reports_hangs_raw_errors_crashes_and_garbage():
    results = fuzz("selftest", 7, timeout=3, start_timeout=120)
    assert [r["outcome"] for r in results] == ["ok", "hang", "raw", "zoo", "crash", "invalid", "ok"]
    assert "KeyError" in results[2]["detail"] and "garbage accepted" in results[5]["detail"]
