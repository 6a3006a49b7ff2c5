#!/usr/bin/env python
"""Model cards: ``docs/models/NAME.md`` for every registry entry, and the README's model table.

A card is rendered from the registry (task, dims, parameters, paper, deviations, weights with
their source and licence, recipes) plus the numbers measured by tools (``docs/models/measured.json``):
MACs/FLOPs at the reference input (``--measure``, counted by :func:`zoo.bench.flops`), and where a
benchmark has run, the compression recipes' size ratios and metric deltas
(``tools/bench_compress.py --json``) and the export modes that passed verification
(``tools/bench_export.py --json``), merged with ``--merge-compress`` / ``--merge-export``; and where
``tools/card_pictures.py`` has run, a picture (``docs/models/img/NAME.png``: a segmentation overlay on
a phantom, a GAN sample grid) with a caption made from its metadata (``NAME.picture`` in measured.json).

    python tools/gen_cards.py                  # rewrite the cards and the README table
    python tools/gen_cards.py --check          # exit 1 when a committed card or the table is stale
    python tools/gen_cards.py --measure        # recount FLOPs for every entry (builds each at its reference input)
    python tools/gen_cards.py --merge-compress bench.json

tests/tools/test_cards.py runs ``--check``, so a registry change without regenerated cards fails, and so does
picture metadata naming a missing PNG (or a PNG that no metadata names).
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CARDS = ROOT / "docs" / "models"
MEASURED = CARDS / "measured.json"
README = ROOT / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def _read_measured():
    return json.loads(MEASURED.read_text()) if MEASURED.exists() else {}


def _g(n):
    return f"{n / 1e9:.2f} G" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _weights_rows(entry):
    rows = []
    for tag, w in entry.weights.items():
        rows.append(f"| `{tag}` | {w.num_classes if w.num_classes is not None else '-'} | "
                    f"{w.source or '-'} | {w.license or '-'} |")
    return rows


class PictureError(ValueError):
    """measured.json names a picture that is not there."""


def _size(settings):
    dims = settings.get("dims", 2)
    return "x".join([str(settings["size"])] * dims)


def _checkpoint(pic):
    if not pic.get("checkpoint"):
        return ""
    epoch = f": epoch {pic['best_epoch']} of {pic['settings']['epochs']}" if pic.get("best_epoch") else ""
    return f" (checkpoint {pic['checkpoint']}{epoch})"


def picture_caption(name, pic):
    """The caption of an entry's picture, from its metadata (tools/card_pictures.py)."""
    s = pic["settings"]
    made = (f"Made by `python tools/card_pictures.py {name}` on {pic['date']} in {pic['seconds']:.0f} s "
            f"({pic.get('machine', 'CPU')}).")
    config = f"builder config {s['config']}" if s.get("config") else "the registry config"
    if pic["kind"] == "segmentation":
        where = (f"middle slice z={s['size'] // 2} of a {_size(s)} volume" if s.get("dims") == 3
                 else f"{_size(s)} image")
        return (f"Phantom | ground truth | prediction: held-out phantom {pic['shown']} ({where}) after "
                f"`zoo.finetune` of `{name}` ({config}, 1 input channel, {s['num_classes']} classes, "
                f"input {_size(s)}) on the built-in phantoms: {s['epochs']} epochs x {s['steps_per_epoch']} "
                f"steps of batch {s['batch_size']}, learning rate {s['learning_rate']:g}{_checkpoint(pic)}. "
                "Mean foreground "
                f"Dice on {pic['eval_samples']} held-out phantoms: **{pic['dice']:.3f}** (the one shown: "
                f"{pic['dice_shown']:.3f}). {made} Synthetic data: this shows that the model trains and "
                "predicts, not clinical accuracy.")
    before, after = pic.get("quality_before") or {}, pic.get("quality_after") or {}
    quality = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in sorted(before) if k in after)
    return (f"Left: {pic['samples']} samples of `{name}` ({config}, 1 channel, {_size(s)} px) trained for this "
            f"card with `zoo.finetune` on the built-in phantoms: {s['epochs']} epochs x {s['steps_per_epoch']} "
            f"steps of batch {s['batch_size']} with the paper's optimiser settings{_checkpoint(pic)}: "
            f"{pic['critic_steps']:,} critic / {pic['generator_steps']:,} generator updates; right: held-out "
            f"real phantoms. Quality before training -> at that checkpoint (lower is better; `zoo.quality` on "
            f"a fixed untrained feature net, not FID): {quality or 'not measured'}. {made} The papers train "
            "for about 10^5 generator updates; this is a short run.")


def _picture_lines(name, pic):
    path = CARDS / pic["file"]
    if not path.is_file():
        raise PictureError(f"{name}: docs/models/measured.json names the picture {pic['file']}, but "
                           f"{path.relative_to(ROOT)} does not exist; run python tools/card_pictures.py {name} "
                           f"(or delete \"picture\" from the {name} entry of measured.json).")
    return ["## Picture", "", f"![{name}: {pic['kind']} picture]({pic['file']})", "",
            f"*{picture_caption(name, pic)}*", ""]


def card(entry, measured, registry):
    """The Markdown card of one entry."""
    m = measured.get(entry.name, {})
    lines = [f"# `{entry.name}`", "", "*Generated by `tools/gen_cards.py` from `registry.yaml` and "
             "`docs/models/measured.json`; edit those, not this file.*", "",
             f"- **Task**: {entry.task}, spatial dims {', '.join(map(str, entry.spatial_dims))}",
             f"- **Builder**: `{entry.builder}` with `{dict(entry.config)}`" if entry.config else
             f"- **Builder**: `{entry.builder}`",
             f"- **Parameters** (Keras total at the reference config): {entry.params:,}"
             + (f" ({entry.trainable_params:,} trainable)" if entry.trainable_params is not None else "")]
    f = m.get("flops")
    if f:
        lines.append(f"- **Compute** at the reference input {tuple(f['input_shape'])}: {_g(f['macs'])}MACs "
                     f"= {_g(f['flops'])}FLOPs (convolutions and dense layers, batch 1; `zoo bench {entry.name}`)")
    if entry.paper:
        lines.append(f"- **Paper**: {entry.paper}")
    if entry.mirrors:
        lines.append(f"- **Mirrors**: {entry.mirrors}")
    lines += ["", "```python", "import zoo", f"model = zoo.load(\"{entry.name}\")", "```", ""]
    if m.get("picture"):
        lines += _picture_lines(entry.name, m["picture"])
    if entry.notes:
        lines += ["## Deviations from the paper and remarks", "", str(entry.notes), ""]
    lines += ["## Weights", ""]
    if entry.weights:
        lines += ["| tag | classes | source | licence |", "|---|---|---|---|", *_weights_rows(entry), ""]
    else:
        lines += ["None published for this entry: train it (`zoo finetune`) or convert your own.", ""]
    lines += ["## Compression recipes", ""]
    if entry.recipes:
        lines.append("Listed (the first is the default of `zoo compress` and `zoo run`): "
                     + ", ".join(f"`{r}`" for r in entry.recipes) + ".")
        rows = m.get("compress") or []
        if rows:
            lines += ["", "Measured (`tools/bench_compress.py`, phantoms, short fine-tunes):", "",
                      "| recipe | zipped size vs float32 | metric before -> after |", "|---|---:|---|"]
            for r in rows:
                lines.append(f"| `{r['recipe']}` | {r['x_zipped']:.1f}x smaller | "
                             f"{r['metric']} {r['before']:.3f} -> {r['after']:.3f} |")
        else:
            lines += ["", "Size ratios and metric deltas not measured for this entry yet "
                      "(`tools/bench_compress.py --models "
                      f"{entry.name} --json out.json`, then `tools/gen_cards.py --merge-compress out.json`)."]
    else:
        lines.append("None apply (see `zoo recipes " + entry.name + "` for why).")
    lines += ["", "## Export", ""]
    rows = m.get("export") or []
    if rows:
        lines += ["| mode | size | verification | LiteRT ms | Keras ms |", "|---|---:|---|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['mode']} | {r['bytes'] / 1e6:.2f} MB | {'passed' if r['passed'] else 'failed'}: "
                         f"{r['summary']} | {r['tflite_ms']:.1f} | {r['keras_ms']:.1f} |")
    else:
        lines.append("Not measured for this entry yet (`zoo.export(model, path, quantization=...)` verifies "
                     "every file it writes).")
    return "\n".join(lines).rstrip() + "\n"


def table(registry, measured):
    rows = ["| name | task | dims | params (Keras total) | trainable | GMACs | weights | paper |",
            "|---|---|---|---:|---:|---:|---|---|"]
    for name in registry.names():
        e = registry.models[name]
        f = (measured.get(name) or {}).get("flops")
        trainable = f"{e.trainable_params:,}" if e.trainable_params is not None else ""
        gmacs = f"{f['macs'] / 1e9:.2f}" if f else "-"
        rows.append(f"| [`{name}`](docs/models/{name}.md) | {e.task} | {', '.join(map(str, e.spatial_dims))} | "
                    f"{e.params:,} | {trainable} | {gmacs} | "
                    f"{', '.join(e.weights) or '-'} | {e.paper or ''} |")
    return "\n".join(rows)


def _replace_table(text, new_table):
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def render(registry=None, measured=None):
    """{path: text} of every card and the README."""
    from zoo.hub.registry import get_registry
    registry = registry or get_registry()
    measured = _read_measured() if measured is None else measured
    out = {CARDS / f"{n}.md": card(registry.models[n], measured, registry) for n in registry.names()}
    out[README] = _replace_table(README.read_text(), table(registry, measured))
    return out


def unused_pictures(measured):
    """PNGs under docs/models/img/ that no entry's picture metadata names."""
    named = {CARDS / m["picture"]["file"] for m in measured.values() if m.get("picture")}
    return sorted(p for p in (CARDS / "img").glob("*.png") if p not in named)


def measure_flops(names):
    from zoo._keras import keras
    from zoo.bench import bench
    measured = _read_measured()
    for name in names:
        r = bench(name, runs=0)
        measured.setdefault(name, {})["flops"] = {"input_shape": r["input_shape"], "macs": r["macs"],
                                                  "flops": r["flops"]}
        print(f"{name}: {r['input_shape']} {r['macs'] / 1e9:.3f} GMACs", file=sys.stderr)
        _write_measured(measured)  # after each entry: a long recount that stops keeps what it counted
        keras.backend.clear_session()
    return measured


def merge(kind, path):
    """Rows of a benchmark's JSON (a list of dicts with "model") into measured.json."""
    measured = _read_measured()
    rows = json.loads(Path(path).read_text())
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append({k: v for k, v in r.items() if k != "model"})
    for name, items in by_model.items():
        measured.setdefault(name, {})[kind] = items
    return measured


def _write_measured(measured):
    CARDS.mkdir(parents=True, exist_ok=True)
    MEASURED.write_text(json.dumps(dict(sorted(measured.items())), indent=1, sort_keys=True) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--check", action="store_true", help="exit 1 if a card or the README table is stale")
    p.add_argument("--measure", nargs="*", metavar="NAME", help="count FLOPs (all entries when no name is given)")
    p.add_argument("--merge-compress", metavar="JSON", help="rows of tools/bench_compress.py --json")
    p.add_argument("--merge-export", metavar="JSON", help="rows of tools/bench_export.py --json")
    args = p.parse_args(argv)
    from zoo.hub.registry import get_registry
    registry = get_registry()
    if args.measure is not None:
        _write_measured(measure_flops(args.measure or registry.names()))
    for kind, path in (("compress", args.merge_compress), ("export", args.merge_export)):
        if path:
            _write_measured(merge(kind, path))
    try:
        files = render(registry)
    except PictureError as e:
        print(f"gen_cards: {e}", file=sys.stderr)
        return 1
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    extra = sorted(set(CARDS.glob("*.md")) - set(files))
    unused = unused_pictures(_read_measured())
    for path in unused:
        print(f"{path.relative_to(ROOT)}: no entry of measured.json names this picture; delete it or run "
              f"python tools/card_pictures.py {path.stem}", file=sys.stderr)
    if args.check:
        for path in stale + extra:
            print(f"{path.relative_to(ROOT)}: stale; run python tools/gen_cards.py", file=sys.stderr)
        return 1 if stale or extra or unused else 0
    CARDS.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(files[path])
    for path in extra:
        path.unlink()
    print(f"{len(files) - 1} cards in {CARDS.relative_to(ROOT)}; {len(stale)} rewritten, {len(extra)} removed",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
