"""tools/bench_semi.py at its --quick scale: four runs side by side, a record with the provenance
fields, and the README block tools/gen_cards.py renders from it with every figure traced."""
import copy
import json

import pytest
from _proc import ROOT, run_python


@pytest.mark.slow  # ~30 s: four one-epoch runs
def test_bench_semi_quick_writes_a_record_the_readme_block_renders(tmp_path, gen, registry, measured):
    out = tmp_path / "semi.json"
    before = (ROOT / "docs" / "models" / "measured.json").read_text()
    res = run_python(ROOT / "tools" / "bench_semi.py", "--quick", "--out", str(out), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ROOT / "docs" / "models" / "measured.json").read_text() == before  # --quick never writes there
    rec = json.loads(out.read_text())
    assert not gen.missing_fields(rec["provenance"])
    assert rec["provenance"]["command"].startswith("python tools/bench_semi.py --quick")
    assert [r["mode"] for r in rec["rows"]] == ["labelled", "mean_teacher", "pseudo_label", "all_labelled"]
    assert all(0.0 <= r["dice"] <= 1.0 and r["train_s"] > 0 for r in rec["rows"])
    full = copy.deepcopy(measured)
    full.setdefault("benchmarks", {})["bench_semi"] = rec
    files = gen.render(registry, full)
    block = gen.readme_blocks(files[gen.README])["bench_semi"]
    assert "Not recorded yet" not in block and "`pseudo_label`" in block
    assert f"{rec['rows'][2]['dice']:.3f}" in block
    assert not gen.audit(registry, full, files)
