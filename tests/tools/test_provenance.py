"""Every figure in the README's rendered blocks and in the model cards comes from a record in
docs/models/measured.json that a tool wrote with its provenance (tools/_provenance.py,
tools/gen_cards.py's audit): these tests fail on a record without its provenance fields, on a
record naming a tool, option or zoo command that does not exist, on a README block no tool
renders, and on a figure that no record backs."""
import copy
import json
from pathlib import Path

from _tools import load_tool

ROOT = Path(__file__).resolve().parents[2]


def test_every_committed_figure_is_traced_to_a_record(gen, registry, measured):
    problems = gen.audit(registry, measured)
    assert not problems, "\n".join(problems)


def test_every_record_has_its_provenance(gen, measured):
    prov = load_tool("_provenance")
    records = list(prov.records(measured))
    assert len(records) >= len(registry_names()) - 2  # FLOPs of every classifier and segmenter at least
    for (name, kind), rec in records:
        p = rec.get("provenance")
        assert not prov.missing_fields(p), (name, kind, prov.missing_fields(p))
        assert (ROOT / p["tool"]).is_file() and p["command"].startswith(f"python {p['tool']}"), (name, kind)
        assert len(p["commit"]) == 40 and p["date"].endswith("Z") and p["machine"]["cores"] >= 1, (name, kind)


def registry_names():
    from zoo.hub.registry import get_registry
    return get_registry().names()


def _first(measured, kind="flops"):
    return next(n for n, m in measured.items() if n != "benchmarks" and m.get(kind))


def test_a_record_without_provenance_fields_fails(gen, registry, measured):
    name = _first(measured)
    for field in ("command", "commit", "date", "machine", "wall_s", "tool", "dirty"):
        broken = copy.deepcopy(measured)
        del broken[name]["flops"]["provenance"][field]
        problems = gen.audit(registry, broken)
        assert any(f"{name}.flops" in p and field in p for p in problems), (field, problems)
    broken = copy.deepcopy(measured)
    del broken[name]["flops"]["provenance"]["machine"]["cpu"]
    assert any("machine.cpu" in p for p in gen.audit(registry, broken))
    broken = copy.deepcopy(measured)
    del broken[name]["flops"]["provenance"]
    assert any(f"{name}.flops" in p and "provenance" in p for p in gen.audit(registry, broken))


def test_a_record_naming_a_tool_an_option_or_a_command_that_does_not_exist_fails(gen, registry, measured):
    name = _first(measured)
    broken = copy.deepcopy(measured)
    broken[name]["flops"]["provenance"].update(tool="tools/no_such_bench.py", command="python tools/no_such_bench.py")
    assert any("no_such_bench.py" in p and "does not exist" in p for p in gen.audit(registry, broken))
    broken = copy.deepcopy(measured)
    broken[name]["flops"]["provenance"]["command"] = "python tools/gen_cards.py --measure --fast"
    assert any("--fast" in p for p in gen.audit(registry, broken))
    broken = copy.deepcopy(measured)
    broken[name]["flops"]["provenance"]["command"] = "python tools/bench_export.py"
    assert any("does not run its tool" in p for p in gen.audit(registry, broken))
    # a recorded zoo run must name a zoo subcommand, its options and a registry entry
    problems = gen._zoo_command_problems("x", "zoo run unet3d --json --epochs 3")
    assert problems == []
    assert gen._zoo_command_problems("x", "zoo sprint unet3d")
    assert any("--turbo" in p for p in gen._zoo_command_problems("x", "zoo run unet3d --turbo"))
    assert any("registry entry" in p for p in gen._zoo_command_problems("x", "zoo run no_such_net"))


def test_a_figure_typed_into_a_readme_block_or_a_template_fails(gen, registry, measured, monkeypatch):
    files = gen.render(registry, measured)
    readme = files[gen.README]
    # a hand-made block (a table of figures that no renderer writes)
    typed = readme.replace("<!-- bench_train:end -->",
                           "<!-- bench_train:end -->\n<!-- gan_table:start -->\n| 320 / 64 | 4 min 9 s |\n"
                           "<!-- gan_table:end -->")
    problems = gen.audit(registry, measured, {**files, gen.README: typed})
    assert any("gan_table" in p for p in problems), problems
    # a figure typed into a renderer's template: it does not change when the records do
    real = gen.BLOCKS["models"]
    monkeypatch.setitem(gen.BLOCKS, "models", lambda reg, m: real(reg, m) + "\n\n`zoo run unet3d` took 336 s.")
    problems = gen.audit(registry, measured)
    assert any("336" in p and "models" in p for p in problems), problems
    # a template figure in a card
    real_card = gen.card
    monkeypatch.setitem(gen.BLOCKS, "models", real)
    monkeypatch.setattr(gen, "card", lambda e, m, r: real_card(e, m, r) + (
        "\nDice 0.998 in 24 s.\n" if m.get(e.name, {}).get("flops") else ""))
    problems = gen.audit(registry, measured)
    assert any("0.998" in p and ".md" in p for p in problems), problems


def test_a_hand_edited_figure_makes_the_check_fail(gen, registry, measured, monkeypatch, capsys):
    """gen_cards --check (the staleness check) fails when a rendered figure is edited by hand."""
    readme = gen.README.read_text()
    name = _first(measured)
    gmacs = f"{measured[name]['flops']['macs'] / 1e9:.2f}"
    row = next(line for line in readme.splitlines() if line.startswith(f"| [`{name}`]"))
    edited = readme.replace(row, row.replace(f"| {gmacs} |", "| 9.99 |"))
    assert edited != readme
    files = gen.render(registry, measured, readme_text=edited)
    assert files[gen.README] == readme  # the render puts the record's figure back: the edit is stale


def test_provenance_stamp_fields(tmp_path):
    prov = load_tool("_provenance")
    clock = prov.Clock(str(ROOT / "tools" / "bench_task.py"), ["tools/bench_task.py", "--quick"])
    rec = prov.record(None, "bench_task", {"x": 1}, clock, path=tmp_path / "m.json")
    p = rec["provenance"]
    assert p["tool"] == "tools/bench_task.py" and p["command"] == "python tools/bench_task.py --quick"
    assert not prov.missing_fields(p) and isinstance(p["dirty"], bool) and p["wall_s"] >= 0
    assert json.loads((tmp_path / "m.json").read_text())["benchmarks"]["bench_task"]["x"] == 1
    assert p["machine"]["cpu"] and p["machine"]["tensorflow"]


def _with_sample_records(measured):
    """measured.json plus one record of every kind, as the tools wrote them at a tiny scale
    (tests/tools/sample_records.json: their --quick / --json output)."""
    sample = json.loads((Path(__file__).parent / "sample_records.json").read_text())
    out = copy.deepcopy(measured)
    bench = out.setdefault("benchmarks", {})
    for kind in ("bench_train", "bench_catalog", "bench_export"):
        bench[kind] = sample[kind]
    out["unet3d"]["run"] = sample["run"]
    compress = sample["compress"]
    for name, settings in compress["settings"].items():
        rows = [{k: v for k, v in r.items() if k != "model"} for r in compress["rows"] if r["model"] == name]
        out[name]["compress"] = {"settings": settings, "rows": rows, "provenance": compress["provenance"]}
    return out, sample


def test_every_block_and_card_section_renders_the_tools_records_and_traces_their_figures(gen, registry, measured):
    """The renderers read what the tools write: with a record of every kind (written by the tools
    themselves at a tiny scale), every README block and card section shows it, and every figure
    in them is traced."""
    full, sample = _with_sample_records(measured)
    files = gen.render(registry, full)
    blocks = gen.readme_blocks(files[gen.README])
    assert all("Not recorded yet" not in text for text in blocks.values()), blocks
    run = sample["run"]["report"]
    assert f"**{run['seconds']:.0f} s**" in blocks["run"] and sample["run"]["zoo_command"] in blocks["run"]
    assert f"{run['scores']['exported']:.3f}" in blocks["run"]
    export_row = sample["bench_export"]["rows"][0]
    assert f"{export_row['keras_ms']:.1f}" in blocks["bench_export"]
    assert f"{sample['bench_catalog']['streamed']['peak_mb']:.0f} MB" in blocks["bench_catalog"]
    assert f"{sample['bench_train']['overhead']['cpu']:.3f}" in blocks["bench_train"]
    compress_row = sample["compress"]["rows"][0]
    assert f"{compress_row['x_zipped']:.2f}x" in blocks["bench_compress"]
    unet3d = files[gen.CARDS / "unet3d.md"]
    assert "## `zoo run`" in unet3d and f"**{run['seconds']:.0f} s**" in unet3d
    card = files[gen.CARDS / f"{export_row['entry']}.md"]
    assert f"| {export_row['mode']} |" in card
    assert f"{compress_row['x_zipped']:.2f}x smaller" in files[gen.CARDS / f"{compress_row['model']}.md"]
    for where, text in sample.items():
        assert "provenance" in text and not gen.missing_fields(text["provenance"]), where
    problems = gen.audit(registry, full, files)
    assert not problems, "\n".join(problems)
