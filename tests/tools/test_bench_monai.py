"""tools/bench_monai.py at its --quick scale: MONAI's spleen network (narrowed) and the zoo's TFLite files of it
on the same NIfTI volumes; its record has the provenance fields, every runner's label map lies on the
volumes' own grid, and tools/gen_cards.py renders the record into the README's bench_monai block with every
figure traced."""
import copy
import json

import pytest
from _proc import ROOT, run_python

RUNNERS = ["MONAI (torch)", "zoo Keras float32", "zoo TFLite float16", "zoo TFLite int8"]


@pytest.mark.slow  # ~40 s: a fine-tune, two exports and four runners on two volumes
def test_bench_monai_quick_writes_a_record_the_readme_block_renders(tmp_path, gen, registry, measured):
    out = tmp_path / "monai.json"
    before = (ROOT / "docs" / "models" / "measured.json").read_text()
    res = run_python(ROOT / "tools" / "bench_monai.py", "--quick", "--out", str(out), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ROOT / "docs" / "models" / "measured.json").read_text() == before  # --quick never writes there
    rec = json.loads(out.read_text())
    assert not gen.missing_fields(rec["provenance"]) and rec["provenance"]["command"].startswith(
        "python tools/bench_monai.py --quick")
    rows = {r["runner"]: r for r in rec["rows"]}
    assert list(rows) == RUNNERS
    assert rows["MONAI (torch)"]["x_monai_end_to_end"] == 1.0 and rows["MONAI (torch)"]["dice_vs_monai"] == 1.0
    for r in rows.values():
        assert r["same_grid"] and 0.0 <= r["dice_vs_monai"] <= 1.0 and r["end_to_end_ms"] > 0 and r["window_ms"] > 0
    assert rows["zoo TFLite int8"]["bytes"] < rows["zoo TFLite float16"]["bytes"] < rows["MONAI (torch)"]["bytes"]
    assert "to_state_dict" in rec["settings"]["weights"] and set(rec["exports"]) == {"float16", "int8"}
    full = copy.deepcopy(measured)
    full.setdefault("benchmarks", {})["bench_monai"] = rec
    files = gen.render(registry, full)
    block = gen.readme_blocks(files[gen.README])["bench_monai"]
    assert "Not recorded yet" not in block and "| zoo TFLite int8 |" in block
    assert f"{rows['zoo TFLite int8']['x_monai_end_to_end']:.2f}" in block
    assert not gen.audit(registry, full, files)
