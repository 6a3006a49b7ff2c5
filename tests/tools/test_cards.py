"""Model cards (tools/gen_cards.py): one per entry, with the registry's facts and the measured
numbers; a registry change makes --check fail until the cards are regenerated."""
import importlib.util
import json

from _proc import ROOT

from zoo.hub.registry import get_registry


def _tool(name="gen_cards"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
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
        pic = measured.get(name, {}).get("picture")
        if pic:  # the picture is linked, its numbers are in the caption, the file is a small PNG
            assert f"]({pic['file']})" in text, name
            assert (f"**{pic['dice']:.3f}**" in text) if pic["kind"] == "segmentation" else \
                f"{pic['critic_steps']:,} critic" in text, name
            path = ROOT / "docs" / "models" / pic["file"]
            assert path.stat().st_size == pic["bytes"] <= 100_000, name
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


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
    measured.pop("benchmarks", None)  # the records of figures that are no single entry's (README benchmarks)
    assert set(measured) <= set(reg.names())
    for name, m in measured.items():
        shape = m["flops"]["input_shape"]
        entry = reg.models[name]
        ref = entry.reference_kwargs().get("input_shape") or (entry.input.get("size"),) * entry.spatial_dims[0]
        assert tuple(shape[:-1]) == tuple(ref[:len(shape) - 1]), name


def _with_picture(measured, name, file):
    measured = json.loads(json.dumps(measured))
    measured[name]["picture"] = {"kind": "segmentation", "file": file, "shown": 0, "dice": 0.5, "dice_shown": 0.5,
                                 "eval_samples": 8, "date": "2025-01-01", "seconds": 1.0,
                                 "settings": {"dims": 2, "size": 64, "num_classes": 3, "config": {}, "epochs": 1,
                                              "steps_per_epoch": 1, "batch_size": 2, "learning_rate": 1e-3}}
    return measured


def test_a_picture_that_measured_json_names_but_that_is_missing_fails(monkeypatch, capsys):
    tool = _tool()
    reg = get_registry()
    measured = _with_picture(tool._read_measured(), "unet", "img/no_such_picture.png")
    try:
        tool.render(reg, measured)
    except tool.PictureError as e:
        assert "img/no_such_picture.png" in str(e) and "tools/card_pictures.py unet" in str(e)
    else:
        raise AssertionError("a card naming a missing picture rendered")
    monkeypatch.setattr(tool, "_read_measured", lambda: measured)
    assert tool.main(["--check"]) == 1
    assert "no_such_picture.png" in capsys.readouterr().err


def test_a_picture_that_no_metadata_names_is_reported(tmp_path, monkeypatch):
    tool = _tool()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "unet.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setattr(tool, "CARDS", tmp_path)
    assert tool.unused_pictures({"unet": {}}) == [tmp_path / "img" / "unet.png"]
    assert tool.unused_pictures(_with_picture({"unet": {}}, "unet", "img/unet.png")) == []


def test_overlay_composition_on_a_tiny_synthetic_input():
    """tools/card_pictures.py's panel: image | truth overlay | prediction overlay, enlarged, white gaps;
    background pixels are the gray image, class c pixels blend it with PALETTE[c]."""
    import numpy as np
    cp = _tool("card_pictures")
    image = np.arange(20, dtype=np.float32).reshape(4, 5)  # 0..19: gray 0..255
    truth = np.zeros((4, 5), int)
    truth[1, 1] = 1
    pred = np.zeros((4, 5), int)
    pred[2, 3] = 2
    panel = cp.segmentation_panel(image, truth, pred, scale=2, gap=3, alpha=0.5)
    assert panel.shape == (8, 3 * 10 + 2 * 3, 3) and panel.dtype == np.uint8
    gray = np.round(image / 19.0 * 255.0)
    tiles = [panel[:, i * 13:i * 13 + 10] for i in range(3)]
    assert (panel[:, 10:13] == 255).all() and (panel[:, 23:26] == 255).all()
    np.testing.assert_array_equal(tiles[0][::2, ::2], np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(tiles[0][1::2, 1::2], tiles[0][::2, ::2])  # nearest-neighbour enlargement
    for tile, (r, c), cls in ((tiles[1], (1, 1), 1), (tiles[2], (2, 3), 2)):
        expected = np.repeat(gray[..., None], 3, -1)
        expected[r, c] = np.round(0.5 * (image[r, c] / 19.0 * 255.0) + 0.5 * cp.PALETTE[cls])
        np.testing.assert_array_equal(tile[::2, ::2], expected)
    # 3D: the middle slice of the last spatial axis; 2D: the image itself (channel dropped)
    vol = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1)
    np.testing.assert_array_equal(cp.middle_slice(vol, 3), vol[:, :, 2, 0])
    np.testing.assert_array_equal(cp.middle_slice(image[..., None], 2), image)
    try:
        cp.overlay(image, truth[:3])
    except ValueError as e:
        assert "one shape" in str(e)
    else:
        raise AssertionError("an overlay of mismatched shapes was made")
