"""tools/bench_adapt.py at its --quick scale: both runs side by side, a record with the provenance
fields, and the README block tools/gen_cards.py renders from it with every figure traced."""
import copy
import json

import pytest
from _proc import ROOT, run_python


@pytest.mark.slow  # ~20 s: two one-epoch runs
def test_bench_adapt_quick_writes_a_record_the_readme_block_renders(tmp_path, gen, registry, measured):
    out = tmp_path / "adapt.json"
    before = (ROOT / "docs" / "models" / "measured.json").read_text()
    res = run_python(ROOT / "tools" / "bench_adapt.py", "--quick", "--out", str(out), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (ROOT / "docs" / "models" / "measured.json").read_text() == before  # --quick never writes there
    rec = json.loads(out.read_text())
    assert not gen.missing_fields(rec["provenance"])
    assert rec["provenance"]["command"].startswith("python tools/bench_adapt.py --quick")
    assert [r["mode"] for r in rec["rows"]] == ["source_only", "dann"]
    assert all(0.0 <= r["source_dice"] <= 1.0 and 0.0 <= r["target_dice"] <= 1.0 for r in rec["rows"])
    full = copy.deepcopy(measured)
    full.setdefault("benchmarks", {})["bench_adapt"] = rec
    files = gen.render(registry, full)
    block = gen.readme_blocks(files[gen.README])["bench_adapt"]
    assert "Not recorded yet" not in block and "| dann | 0 |" in block
    assert f"{rec['rows'][1]['target_dice']:.3f}" in block
    assert not gen.audit(registry, full, files)
