"""Model cards (tools/gen_cards.py): one per entry, with the registry's facts and the measured
numbers; a registry change makes --check fail until the cards are regenerated."""
import importlib.util
import json
from pathlib import Path

from zoo.hub.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("gen_cards", ROOT / "tools" / "gen_cards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_entry_has_a_card_with_its_facts():
    reg = get_registry()
    measured = json.loads((ROOT / "docs" / "models" / "measured.json").read_text())
    for name in reg.names():
        entry = reg.models[name]
        text = (ROOT / "docs" / "models" / f"{name}.md").read_text()
        assert f"{entry.params:,}" in text and (entry.paper or "") in text, name
        assert all(f"`{tag}`" in text for tag in entry.weights), name
        assert all(f"`{r}`" in text for r in entry.recipes), name
        if entry.task != "generation":  # FLOPs at the reference input, for every classifier and segmenter
            assert name in measured and measured[name]["flops"]["macs"] > 0, name


def test_check_fails_when_the_registry_changes(tmp_path, monkeypatch):
    tool = _tool()
    reg = get_registry()
    files = tool.render(reg)
    assert all(p.read_text() == t for p, t in files.items())  # committed cards are current
    entry = reg.models["unet"]
    import dataclasses
    changed = dataclasses.replace(entry, notes="a different remark")
    models = dict(reg.models)
    models["unet"] = changed
    stale = tool.render(dataclasses.replace(reg, models=models))
    assert stale[tool.CARDS / "unet.md"] != files[tool.CARDS / "unet.md"]
    assert "a different remark" in stale[tool.CARDS / "unet.md"]


def test_measured_flops_match_registry_parameter_counts():
    """measured.json was counted on the entries as they are: a builder change that alters the
    reference config's size needs a recount (python tools/gen_cards.py --measure NAME)."""
    reg = get_registry()
    measured = json.loads((ROOT / "docs" / "models" / "measured.json").read_text())
    assert set(measured) <= set(reg.names())
    for name, m in measured.items():
        shape = m["flops"]["input_shape"]
        entry = reg.models[name]
        ref = entry.reference_kwargs().get("input_shape") or (entry.input.get("size"),) * entry.spatial_dims[0]
        assert tuple(shape[:-1]) == tuple(ref[:len(shape) - 1]), name
