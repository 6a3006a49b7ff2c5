#!/usr/bin/env python
"""Model cards (``docs/models/NAME.md`` for every registry entry) and every table of figures in the
README, rendered from the registry and from the records tools wrote to ``docs/models/measured.json``.

Nothing here is typed by hand (DESIGN.md section 8): each figure comes from a record that a tool
wrote with its provenance (command, commit, dirty tree, UTC date, machine, wall time; see
``tools/_provenance.py``). A card shows the registry's facts (task, dims, parameters, paper,
deviations, weights with source and licence, recipes) plus, where a tool has measured them:
MACs/FLOPs at the reference input (``--measure``, counted by :func:`zoo.bench.flops`), the
compression recipes' size ratios and metric deltas (``tools/bench_compress.py``), the export
modes and their verification (``tools/bench_export.py``), a picture (``tools/card_pictures.py``:
``docs/models/img/NAME.png`` with a caption made from its record) and the summary of a recorded
``zoo run NAME`` (``tools/record_run.py``). The README's blocks between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` are rendered by :data:`BLOCKS` (the model table, the ``zoo run unet3d``
summary, the training, catalogue, task, compression, export and MONAI benchmarks); a block whose record
is missing says which command writes it, and shows no number.

    python tools/gen_cards.py                  # rewrite the cards and the README's blocks
    python tools/gen_cards.py --check          # exit 1 when a card or a README block is stale, or an audit fails
    python tools/gen_cards.py --measure        # recount FLOPs for every entry (builds each at its reference input)
    python tools/gen_cards.py --merge-compress out.json   # a record a tool wrote with --json (provenance included)

``--check`` (tests/test_readme.py and tests/tools/test_cards.py run it) fails on a stale card or
block, on picture metadata naming a missing PNG (or a PNG that no metadata names), and on what
:func:`audit` finds: a record without its provenance fields or naming a tool that does not exist, a
README block this tool does not render, or a figure in a card or block that no record backs
(tests/tools/test_provenance.py).
"""
import argparse
import copy
import json
import re
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

from _provenance import BENCHMARKS, Clock, missing_fields, record  # noqa: E402

CARDS = ROOT / "docs" / "models"
MEASURED = CARDS / "measured.json"
README = ROOT / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"
MARKER = re.compile(r"<!-- ([a-z0-9_]+):start -->\n(.*?)<!-- \1:end -->", re.S)


def _read_measured():
    return json.loads(MEASURED.read_text()) if MEASURED.exists() else {}


def _entries(measured):
    """measured.json's per-entry records (without the ``benchmarks`` section)."""
    return {k: v for k, v in measured.items() if k != BENCHMARKS}


def _bench(measured, kind):
    return (measured.get(BENCHMARKS) or {}).get(kind)


def _g(n):
    return f"{n / 1e9:.2f} G" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _cpu(machine):
    gpu = machine.get("gpu")
    gpus = ", ".join(gpu) if gpu else "no GPU"
    return (f"{machine.get('cores')} cores of {machine.get('cpu')}, {gpus}, TensorFlow {machine.get('tensorflow')}")


def made(prov):
    """One sentence: how a record was made (command, commit, date, machine, wall time)."""
    if not prov:
        return "(no provenance recorded)"
    commit = str(prov.get("commit", "?"))[:10] + (" with uncommitted changes" if prov.get("dirty") else "")
    return (f"`{prov.get('command')}` at commit {commit}, {str(prov.get('date', '?'))[:10]}, on "
            f"{_cpu(prov.get('machine') or {})}; written {_secs(prov.get('wall_s'))} after it started")


def _secs(s):
    if s is None:
        return "? s"
    return f"{float(s):.0f} s"


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
    made_by = (f"Made by {made(pic['provenance'])}." if pic.get("provenance") else
               f"Made by `python tools/card_pictures.py {name}` on {pic.get('date')} (no provenance recorded).")
    config = f"builder config {s['config']}" if s.get("config") else "the registry config"
    if pic["kind"] == "segmentation":
        where = (f"middle slice z={s['size'] // 2} of a {_size(s)} volume" if s.get("dims") == 3
                 else f"{_size(s)} image")
        return (f"Phantom | ground truth | prediction: held-out phantom {pic['shown']} ({where}) after "
                f"`zoo.finetune` of `{name}` ({config}, one input channel, {s['num_classes']} classes, "
                f"input {_size(s)}) on the built-in phantoms: {s['epochs']} epochs x {s['steps_per_epoch']} "
                f"steps of batch {s['batch_size']}, learning rate {s['learning_rate']:g}{_checkpoint(pic)}. "
                "Mean foreground "
                f"Dice on {pic['eval_samples']} held-out phantoms: **{pic['dice']:.3f}** (the one shown: "
                f"{pic['dice_shown']:.3f}). {made_by} Synthetic data: this shows that the model trains and "
                "predicts, not clinical accuracy.")
    before, after = pic.get("quality_before") or {}, pic.get("quality_after") or {}
    quality = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" for k in sorted(before) if k in after)
    return (f"Left: {pic['samples']} samples of `{name}` ({config}, one channel, {_size(s)} px) trained for this "
            f"card with `zoo.finetune` on the built-in phantoms: {s['epochs']} epochs x {s['steps_per_epoch']} "
            f"steps of batch {s['batch_size']} with the paper's optimiser settings{_checkpoint(pic)}: "
            f"{pic['critic_steps']:,} critic / {pic['generator_steps']:,} generator updates; right: held-out "
            f"real phantoms. Quality before training -> at that checkpoint (lower is better; `zoo.quality` on "
            f"a fixed untrained feature net, not FID): {quality or 'not measured'}. {made_by} The papers train "
            "far longer; this is a short run.")


def _picture_lines(name, pic):
    path = CARDS / pic["file"]
    if not path.is_file():
        raise PictureError(f"{name}: docs/models/measured.json names the picture {pic['file']}, but "
                           f"{path.relative_to(ROOT)} does not exist; run python tools/card_pictures.py {name} "
                           f"(or delete \"picture\" from the {name} entry of measured.json).")
    return ["## Picture", "", f"![{name}: {pic['kind']} picture]({pic['file']})", "",
            f"*{picture_caption(name, pic)}*", ""]



def _compress_lines(entry, rec):
    if not rec:
        return ["", "Size ratios and metric deltas not measured for this entry yet "
                f"(`python tools/bench_compress.py --models {entry.name}` records them in "
                "`docs/models/measured.json`)."]
    s = rec.get("settings") or {}
    lines = ["", f"Measured on `{s.get('data')}` by {made(rec.get('provenance'))}: the float reference fine-tuned "
             f"{s.get('float_epochs')} epoch(s) of {s.get('steps')} steps, each recipe {s.get('epochs')} epoch(s) of "
             f"{s.get('steps')} steps at learning rate {s.get('learning_rate')} (batch {s.get('batch_size')}, "
             f"{s.get('patch')} px); sizes as `zoo.compress`'s report stores them, zipped.", "",
             "| recipe | zipped size vs float32 | metric before -> after | time |", "|---|---:|---|---:|"]
    for r in rec.get("rows") or []:
        lines.append(f"| `{r['recipe']}` | {r['x_zipped']:.2f}x smaller | "
                     f"{r['metric']} {r['before']:.3f} -> {r['after']:.3f} | {_secs(r.get('time_s'))} |")
    return lines


def _export_rows(measured, name):
    rec = _bench(measured, "bench_export")
    rows = [r for r in (rec or {}).get("rows") or [] if r.get("entry") == name]
    return rec, rows


def _export_lines(entry, measured):
    rec, rows = _export_rows(measured, entry.name)
    if not rows:
        return ["Not measured for this entry yet (`zoo.export(model, path, quantization=...)` verifies "
                "every file it writes; `python tools/bench_export.py` records sizes, verification and latency)."]
    lines = [f"Measured by {made(rec.get('provenance'))}, input {rows[0]['input']}:", "",
             "| mode | size | vs float32 | verification (vs Keras) | LiteRT ms | Keras ms |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['bytes'] / 1e6:.2f} MB | {r['x_float32']:.2f}x | "
                     f"{'passed' if r['passed'] else 'FAILED'}: {r['decides']} {r['value']:.4g} | "
                     f"{r['litert_ms']:.1f} | {r['keras_ms']:.1f} |")
    return lines


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
                     f"= {_g(f['flops'])}FLOPs (convolutions and dense layers, batch of one; `zoo bench {entry.name}`; "
                     f"counted by {made(f.get('provenance'))})")
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
        lines += _compress_lines(entry, m.get("compress"))
    else:
        lines.append("None apply (see `zoo recipes " + entry.name + "` for why).")
    lines += ["", "## Export", ""]
    lines += _export_lines(entry, measured)
    if m.get("run"):
        lines += ["", "## `zoo run`", "", *run_summary(entry.name, m["run"])]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- README blocks
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


def _missing(what, command):
    return f"*Not recorded yet: {what}. `{command}` records it in `docs/models/measured.json`.*"


def _mb(n):
    return f"{n / 1e6:.1f} MB" if n is not None else "?"


def run_summary(name, rec):
    """Lines describing a recorded ``zoo run NAME`` (tools/record_run.py) from its report."""
    r = rec.get("report") or {}
    sc, sz, lat, ver = r.get("scores") or {}, r.get("sizes") or {}, r.get("latency") or {}, r.get("verification") or {}
    metric = r.get("metric", "score")

    def f3(v):
        return "-" if v is None else f"{v:.3f}"
    stages = [f"fine-tuned {f3(sc.get('finetuned'))}"]
    if r.get("recipe"):
        stages.append(f"`{r['recipe']}` {f3(sc.get('compressed'))}")
    stages.append(f"{r.get('quantization')} TFLite {f3(sc.get('exported'))}")
    decides = ver.get("decides")
    value = (ver.get("metrics") or {}).get(decides) if decides else None
    lines = [
        f"`{rec.get('zoo_command')}`, recorded by {made(rec.get('provenance'))}: "
        f"**{_secs(r.get('seconds'))}** for the whole job on {r.get('train')} "
        f"({r.get('params', 0):,} parameters, {r.get('spatial_dims')}D, patch {r.get('patch_size')}, "
        f"{r.get('epochs')} fine-tuning epochs).",
        "",
        f"- {metric} on {r.get('eval_samples')} validation samples: " + " -> ".join(stages),
        f"- export verification: {'passed' if ver.get('passed') else 'FAILED'}"
        + (f" ({decides} {value:.4g})" if value is not None else ""),
        f"- sizes: float32 weights {_mb(sz.get('float32_bytes'))}, the {r.get('quantization')} file "
        f"{_mb(sz.get('tflite_bytes'))}"
        + (
            f" ({sz['tflite_bytes'] / sz['float32_bytes']:.2f}x)"
            if sz.get("tflite_bytes") and sz.get("float32_bytes")
            else ""
        ),
    ]
    if lat.get("keras_ms") is not None and lat.get("litert_ms") is not None:
        lines.append(f"- latency at batch size one: Keras {lat['keras_ms']:.1f} ms, LiteRT {lat['litert_ms']:.1f} ms")
    return lines


def block_run(registry, measured, name="unet3d"):
    rec = (measured.get(name) or {}).get("run")
    if not rec:
        return _missing(f"how long `zoo run {name}` takes and what it scores", f"python tools/record_run.py {name}")
    return "\n".join(run_summary(name, rec))


def block_bench_compress(registry, measured):
    recs = [(n, m["compress"]) for n, m in sorted(_entries(measured).items()) if m.get("compress")]
    if not recs:
        return _missing("the recipes' size ratios and metric deltas", "python tools/bench_compress.py")
    lines = ["| model | params | data | recipe | vs zipped float32 | vs float32 file | metric before -> after | time |",
             "|---|---:|---|---|---:|---:|---|---:|"]
    sources = []
    for name, rec in recs:
        s = rec.get("settings") or {}
        for r in rec.get("rows") or []:
            lines.append(f"| {name} | {r['params']:,} | {s.get('data')} | `{r['recipe']}` | {r['x_zipped']:.2f}x | "
                         f"{r['x_file']:.2f}x | {r['metric']} {r['before']:.3f} -> {r['after']:.3f} | "
                         f"{_secs(r.get('time_s'))} |")
        sources.append(f"- {name}: {made(rec.get('provenance'))}; float reference {s.get('float_epochs')} epoch(s), "
                       f"each recipe {s.get('epochs')} epoch(s), of {s.get('steps')} steps at learning rate "
                       f"{s.get('learning_rate')}")
    return "\n".join(lines + ["", *sources])


INTEGER_MODES = ("int8", "int16x8", "qat")  # where a float op in the file is worth naming


def block_bench_export(registry, measured):
    rec = _bench(measured, "bench_export")
    if not rec:
        return _missing("sizes, verification and latency per export mode", "python tools/bench_export.py --quick")
    lines = [f"Measured by {made(rec.get('provenance'))}.", "",
             "| model | input | mode | MB | vs float32 | verification (vs Keras) | Keras ms | LiteRT ms | float ops |",
             "|---|---|---|---:|---:|---|---:|---:|---|"]
    for r in rec.get("rows") or []:
        lines.append(f"| {r['model']} | {r['input']} | {r['mode']} | {r['bytes'] / 2 ** 20:.1f} | "
                     f"{r['x_float32']:.2f}x | "
                     f"{r['decides']} {r['value']:.4g} {'passed' if r['passed'] else 'FAILED'} | {r['keras_ms']:.1f} | "
                     f"{r['litert_ms']:.1f} | {(r['float_ops'] or 'none') if r['mode'] in INTEGER_MODES else '-'} |")
    conv = rec.get("conv3d") or []
    if conv:
        lines += ["", "int8 error of one Conv3D (mean |int8 - float| / mean |float|): "
                  + "; ".join(f"{c['form']}: {c['error']:.2%}" for c in conv) + "."]
    return "\n".join(lines)


def block_bench_train(registry, measured):
    rec = _bench(measured, "bench_train")
    if not rec:
        return _missing("the finetune / fit overhead and the NIfTI pipeline's throughput",
                        "python tools/bench_train.py")
    lines = [f"Measured by {made(rec.get('provenance'))}:", ""]
    o = rec.get("overhead")
    if o:
        lines.append(
            f"- finetune / fit: CPU time per epoch {o['cpu']:.3f} (A/A control {o['cpu_aa']:.3f}), wall time per "
            f"epoch {o['epoch']:.3f} (A/A {o['epoch_aa']:.3f}), per step {o['step']:.3f}; the zoo's callbacks "
            f"{o['hooks_epoch_ms']:.1f} ms per epoch + {o['hooks_step_ms']:.3f} ms per step = "
            f"{o['hooks_share']:.1%} of a plain epoch of {o['steps']} steps ({o['repeats']} repeats, "
            f"{o['epochs']} epochs each)"
        )
    for r in rec.get("pipeline") or []:
        lines.append(f"- NIfTI pipeline vs unet3d (filters {r['filters']}) training: "
                     f"{r['pipeline_cached']:.1f} patches/s "
                     f"cached, {r['pipeline_uncached']:.1f} uncached, against {r['consumption']:.2f} consumed: "
                     f"{r['pipeline_cached'] / r['consumption']:.1f}x / "
                     f"{r['pipeline_uncached'] / r['consumption']:.1f}x")
    return "\n".join(lines)


def block_bench_catalog(registry, measured):
    rec = _bench(measured, "bench_catalog")
    if not rec:
        return _missing("the peak memory of preparing MedMNIST", "python tools/bench_catalog.py")
    w, s = rec["whole"], rec["streamed"]
    return (f"Measured by {made(rec.get('provenance'))}: on a synthetic `pathmnist_224.npz` of "
            f"{rec['images']:,} images "
            f"({rec['pixels_mb']:.0f} MB of pixels), preparing it peaked {s['peak_mb']:.0f} MB above the imports, "
            f"reading the arrays whole with `np.load` {w['peak_mb']:.0f} MB (ratio {s['peak_mb'] / w['peak_mb']:.2f}), "
            f"at {1000 * s['seconds'] / rec['images']:.1f} ms per image.")


def block_bench_task(registry, measured):
    rec = _bench(measured, "bench_task")
    if not rec:
        return _missing("the hard phantoms' baseline", "python tools/bench_task.py")
    s, b, bad, d = rec["settings"], rec["baseline"], rec["bad"], rec["difficulty"]
    h, e = d["hard_phantoms"], d["phantoms"]
    return "\n".join([
        f"Measured by {made(rec.get('provenance'))}, on {s['size']}x{s['size']} phantoms with {s['classes']} classes, "
        f"Dice = mean foreground Dice per case on {s['test']} held-out phantoms (seed {rec['held_out_seed']}):", "",
        "| what | hard phantoms | easy phantoms |", "|---|---:|---:|",
        f"| chance (random labels at the training class frequencies) | {h['chance_dice']:.3f} | "
        f"{e['chance_dice']:.3f} |",
        f"| best per-voxel intensity classifier | {h['intensity_dice']:.3f} | {e['intensity_dice']:.3f} |",
        f"| U-Net, filters {b['filters']} ({b['params']:,} parameters), fine-tuned until validation stopped "
        f"improving ({b['epochs_run']} epochs of {b['steps_per_epoch']} steps, batch {s['batch']}, {s['train']} "
        f"training phantoms; best epoch {b['best_epoch']}; {_secs(b['train_s'])}) | **{b['dice']:.3f}** | |",
        f"| the same U-Net after `{bad['recipe']}` for {bad['epochs']} epoch(s) of {bad['steps_per_epoch']} steps "
        f"(a deliberately bad recipe) | {bad['dice']:.3f} ({bad['dice'] - b['dice']:+.3f}) | |"])


SEMI_LABELS = {"labelled": "the labelled phantoms only", "mean_teacher": "+ the rest unlabelled, `mean_teacher`",
               "pseudo_label": "+ the rest unlabelled, `pseudo_label`", "all_labelled": "every phantom labelled"}


def block_bench_semi(registry, measured):
    rec = _bench(measured, "bench_semi")
    if not rec:
        return _missing("semi-supervised against labelled-only training", "python tools/bench_semi.py")
    s, rows = rec["settings"], rec["rows"]
    seeds = s["seeds"]
    lines = [f"Measured by {made(rec.get('provenance'))}: a 2D U-Net (filters {s['filters']}, depth {s['depth']}) "
             f"on {s['size']}x{s['size']} phantoms with {s['classes']} classes, {s['labelled']} of {s['pool']} "
             f"training phantoms labelled, every run {s['epochs']} epochs of {s['steps']} steps (batch "
             f"{s['batch']}, augmentation on), best validation checkpoint; Dice = mean foreground Dice per case on "
             f"{s['test']} held-out phantoms (seed {rec['held_out_seed']}).", "",
             "| trained on | " + " | ".join(f"Dice, seed {k}" for k in seeds) + " | mean | vs labelled only |",
             "|---|" + "---:|" * (len(seeds) + 2)]
    base = None
    for mode, label in SEMI_LABELS.items():
        dice = [r["dice"] for k in seeds for r in rows if r["mode"] == mode and r["seed"] == k]
        if not dice:
            continue
        mean = sum(dice) / len(dice)
        base = mean if mode == "labelled" else base
        delta = "" if mode == "labelled" or base is None else f"{mean - base:+.3f}"
        lines.append(f"| {label} | " + " | ".join(f"{d:.3f}" for d in dice) + f" | **{mean:.3f}** | {delta} |")
    return "\n".join(lines)


def block_bench_adapt(registry, measured):
    rec = _bench(measured, "bench_adapt")
    if not rec:
        return _missing("domain-adversarial against source-only training", "python tools/bench_adapt.py")
    s, rows = rec["settings"], rec["rows"]
    lines = [f"Measured by {made(rec.get('provenance'))}: a 2D U-Net (filters {s['filters']}, depth {s['depth']}) "
             f"on {s['size']}x{s['size']} phantoms with {s['classes']} classes, {s['train']} labelled source "
             f"phantoms and {s['target']} unlabelled target ones (`{s['shift']}`: contrast inverted, a bias field), "
             f"every run {s['epochs']} epochs of {s['steps']} steps (batch {s['batch']}, augmentation on, `dann` "
             f"with adapt_weight {s['adapt_weight']:g}), best validation checkpoint on source phantoms; Dice = mean "
             f"foreground Dice per case on {s['test']} held-out phantoms (seed {rec['held_out_seed']}) as each "
             "scanner shows them.", "",
             "| trained | seed | Dice, source scanner | Dice, target scanner |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['seed']} | {r['source_dice']:.3f} | {r['target_dice']:.3f} |")
    return "\n".join(lines)


def block_bench_monai(registry, measured):
    rec = _bench(measured, "bench_monai")
    if not rec:
        return _missing("MONAI's spleen network against the zoo's TFLite files", "python tools/bench_monai.py")
    s, f = rec["settings"], rec["finetune"]
    lines = [f"Measured by {made(rec.get('provenance'))}: the spleen bundle's UNet (channels "
             f"{', '.join(map(str, s['network_def']['channels']))}; {s['params']:,} Keras parameters) on "
             f"{s['volumes']} phantom volumes of {'x'.join(map(str, s['shape']))} voxels at "
             f"{' x '.join(f'{v:g}' for v in s['voxel_mm'])} mm ({s['orientation']}, in HU), ROI "
             f"{'x'.join(map(str, s['roi']))}, overlap {s['overlap']:g}, {s['threads']} threads (a shared machine: "
             f"one-minute load average {s['load_average'][0]:g} at the start, {s['load_average'][1]:g} at the end); "
             f"medians of "
             f"{s['repeats']} alternating end-to-end calls per volume and {s['window_runs']} model-only calls per "
             f"runner. Weights: {s['weights']} ({f['epochs']} epochs on {f['phantoms']} phantoms of {f['size']} voxels "
             f"per side, validation Dice {f['val_dice']:.3f}).", "",
             "| runner | file MB | end to end ms (file in, labels out) | x MONAI | model only ms (one window) "
             "| x MONAI | Dice vs MONAI (mean / min) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rec["rows"]:
        mb = "-" if r["bytes"] is None else f"{r['bytes'] / 1e6:.2f}"
        lines.append(f"| {r['runner']} | {mb} | {r['end_to_end_ms']:.0f} | {r['x_monai_end_to_end']:.2f} | "
                     f"{r['window_ms']:.0f} | {r['x_monai_window']:.2f} | {r['dice_vs_monai']:.4f} / "
                     f"{r['dice_vs_monai_min']:.4f} |")
    lines += ["", "The exports' own verification against the Keras model: " + "; ".join(
        f"{mode} {e['verification']}, {'passed' if e['passed'] else 'FAILED'}" for mode, e in rec["exports"].items())
        + "."]
    return "\n".join(lines)


BLOCKS = {"models": table, "run": block_run, "bench_train": block_bench_train, "bench_catalog": block_bench_catalog,
          "bench_task": block_bench_task, "bench_compress": block_bench_compress, "bench_export": block_bench_export,
          "bench_monai": block_bench_monai, "bench_semi": block_bench_semi,
          "bench_adapt": block_bench_adapt}


def readme_blocks(text):
    """{name: content} of the README's marker blocks."""
    return {m.group(1): m.group(2) for m in MARKER.finditer(text)}


def _replace_blocks(text, registry, measured):
    def sub(m):
        fn = BLOCKS.get(m.group(1))
        if fn is None:
            return m.group(0)  # reported by audit()
        return f"<!-- {m.group(1)}:start -->\n{fn(registry, measured)}\n<!-- {m.group(1)}:end -->"
    return MARKER.sub(sub, text)


def _replace_table(text, new_table):
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def render(registry=None, measured=None, readme_text=None):
    """{path: text} of every card and the README."""
    from zoo.hub.registry import get_registry
    registry = registry or get_registry()
    measured = _read_measured() if measured is None else measured
    out = {CARDS / f"{n}.md": card(registry.models[n], measured, registry) for n in registry.names()}
    text = README.read_text() if readme_text is None else readme_text
    out[README] = _replace_blocks(text, registry, measured)
    return out


def unused_pictures(measured):
    """PNGs under docs/models/img/ that no entry's picture metadata names."""
    named = {CARDS / m["picture"]["file"] for m in _entries(measured).values() if m.get("picture")}
    return sorted(p for p in (CARDS / "img").glob("*.png") if p not in named)


# ----------------------------------------------------------------------------- audit
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w]|\.\d)")


def figures(text):
    """The numbers in ``text`` outside inline code and code blocks (commands and paths are not figures)."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return [n.rstrip(",") for n in NUMBER.findall(text)]


def perturbed(measured):
    """measured.json with every number of every record (its provenance too) changed by its own factor,
    the dates and commits replaced: a figure rendered from a record changes, a typed one does not."""
    out = copy.deepcopy(measured)

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "commit":
                    node[k] = "f" * 40
                elif k == "date":
                    node[k] = "1999-09-09T09:09:09Z"
                elif k in ("file", "tool", "command", "zoo_command"):
                    continue
                else:
                    node[k] = walk(v, f"{path}/{k}")
            return node
        if isinstance(node, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            return node
        h = zlib.crc32(path.encode())
        factor = 1.13 + (h % 97) / 61.0
        return int(node * factor) + 101 + h % 89 if isinstance(node, int) else node * factor + 0.0137
    for name, kinds in out.items():
        walk(kinds, name)
    return out


def _tool_problems(where, rec):
    prov = rec.get("provenance") if isinstance(rec, dict) else None
    problems = []
    missing = missing_fields(prov)
    if missing:
        problems.append(f"{where}: the record lacks provenance fields {', '.join(missing)}")
    if not isinstance(prov, dict):
        return problems
    tool = prov.get("tool") or ""
    if not tool or not (ROOT / tool).is_file():
        problems.append(f"{where}: the record names the tool {tool!r}, which does not exist")
        return problems
    command = str(prov.get("command") or "")
    if not command.startswith(f"python {tool}"):
        problems.append(f"{where}: the command {command!r} does not run its tool {tool}")
    source = (ROOT / tool).read_text()
    for option in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", command):
        if f'"{option}"' not in source:
            problems.append(f"{where}: the command {command!r} uses {option}, an option {tool} does not have")
    if isinstance(rec, dict) and rec.get("zoo_command"):
        problems += _zoo_command_problems(where, rec["zoo_command"])
    return problems


def _zoo_command_problems(where, command):
    """A recorded ``zoo ...`` command must name a subcommand, options and (for ``run``) an entry that exist."""
    import argparse as _argparse
    import shlex

    from zoo.cli import build_parser
    from zoo.hub.registry import get_registry
    words = shlex.split(command)
    subs = next(a for a in build_parser()._actions if isinstance(a, _argparse._SubParsersAction)).choices
    if words[:1] != ["zoo"] or len(words) < 2 or words[1] not in subs:
        return [f"{where}: {command!r} is not a zoo command"]
    problems = [f"{where}: {command!r} uses {w}, which zoo {words[1]} does not have"
                for w in words[2:]
                if w.startswith("--") and w.split("=")[0] not in subs[words[1]]._option_string_actions]
    if words[1] == "run" and (len(words) < 3 or words[2] not in get_registry().models):
        problems.append(f"{where}: {command!r} does not name a registry entry")
    return problems


def audit(registry, measured, files=None):
    """What makes a figure untraceable: a record without its provenance or naming a tool (or an
    option, or a zoo command) that does not exist; a README block this tool does not render, or
    one it renders that the README lacks; a figure in a card or a README block that no record
    backs: one that stays the same when every recorded number changes (:func:`perturbed`) and is
    not one of the registry's facts (a card's entry; the model table's entries). Returns the
    problems as sentences (empty: all traced)."""
    problems = []
    for (name, kind), rec in ((w, r) for w, r in _records(measured)):
        problems += _tool_problems(f"measured.json {name}.{kind}", rec)
    files = render(registry, measured) if files is None else files
    readme = files[README]
    blocks = readme_blocks(readme)
    for name in blocks:
        if name not in BLOCKS:
            problems.append(f"README: the block <!-- {name}:start --> is not one tools/gen_cards.py renders "
                            f"({', '.join(BLOCKS)}); its figures have no record behind them")
    for name in BLOCKS:
        if name not in blocks:
            problems.append(f"README: the block <!-- {name}:start --> ... <!-- {name}:end --> is missing")
    other = render(registry, perturbed(measured), readme)
    facts = {n: {f.replace(",", "") for f in figures(repr(registry.models[n]))} for n in registry.names()}
    every_fact = set().union(*facts.values())
    in_records = {f.replace(",", "") for text in _strings(measured) for f in figures(text)}  # a tool's labels
    for path, text in files.items():
        if path == README:
            # the model table's fixed figures are the registry's; every other block's come from records
            pairs = [(f"README block {n}", blocks[n], readme_blocks(other[README]).get(n, ""),
                      every_fact if n == "models" else set()) for n in blocks if n in BLOCKS]
        else:
            pairs = [(path.relative_to(ROOT), text, other[path], facts.get(path.stem, set()))]
        for where, real, changed, allowed in pairs:
            a, b = figures(real), figures(changed)
            # position by position where the perturbed text has the same shape, else as sets
            fixed = {x for x, y in zip(a, b) if x == y} if len(a) == len(b) else set(a) & set(b)
            typed = sorted(x for x in fixed if x.replace(",", "") not in allowed | in_records)
            if typed:
                problems.append(f"{where}: the figures {', '.join(typed)} come from no record (nor the registry: "
                                "typed in tools/gen_cards.py's template?)")
    return problems


def _strings(node):
    """Every string a record holds (labels a tool wrote, e.g. a Conv3D form's name)."""
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _records(measured):
    for name, kinds in measured.items():
        for kind, rec in (kinds or {}).items():
            yield (name, kind), rec


# ----------------------------------------------------------------------------- tools
def measure_flops(names, clock=None):
    """Count MACs/FLOPs of ``names`` at their reference inputs; each entry's record is written with
    this command's provenance as soon as it is counted (a long recount that stops keeps what it counted)."""
    from zoo._keras import keras
    from zoo.bench import bench
    clock = clock or Clock(__file__)
    for name in names:
        t0 = time.time()
        r = bench(name, runs=0)
        record(name, "flops", {"input_shape": r["input_shape"], "macs": r["macs"], "flops": r["flops"],
                               "entry_s": round(time.time() - t0, 1)}, clock)
        print(f"{name}: {r['input_shape']} {r['macs'] / 1e9:.3f} GMACs", file=sys.stderr)
        keras.backend.clear_session()
    return _read_measured()


def merge(kind, path):
    """A record a tool wrote with ``--json`` (``{"provenance": ..., "rows": [{"model": ...}, ...]}``)
    into measured.json, one record per model; a file without provenance is refused."""
    measured = _read_measured()
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or missing_fields(data.get("provenance")):
        raise SystemExit(f"gen_cards: {path} holds no provenance (command, commit, date, machine, wall time); "
                         f"only a file written by a tool's --json since tools/_provenance.py can be merged.")
    by_model = {}
    for r in data.get("rows") or []:
        by_model.setdefault(r["model"], []).append({k: v for k, v in r.items() if k != "model"})
    settings = data.get("settings") or {}
    for name, items in by_model.items():
        measured.setdefault(name, {})[kind] = {"provenance": data["provenance"], "rows": items,
                                               "settings": settings.get(name, settings)}
    return measured


def _write_measured(measured):
    CARDS.mkdir(parents=True, exist_ok=True)
    MEASURED.write_text(json.dumps(dict(sorted(measured.items())), indent=1, sort_keys=True) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a card or a README block is stale, or the audit fails")
    p.add_argument("--measure", nargs="*", metavar="NAME", help="count FLOPs (all entries when no name is given)")
    p.add_argument("--merge-compress", metavar="JSON", help="a record of tools/bench_compress.py --json")
    args = p.parse_args(argv)
    from zoo.hub.registry import get_registry
    registry = get_registry()
    if args.measure is not None:
        measure_flops(args.measure or registry.names())
    if args.merge_compress:
        _write_measured(merge("compress", args.merge_compress))
    measured = _read_measured()
    try:
        files = render(registry, measured)
    except PictureError as e:
        print(f"gen_cards: {e}", file=sys.stderr)
        return 1
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    extra = sorted(set(CARDS.glob("*.md")) - set(files))
    unused = unused_pictures(measured)
    for path in unused:
        print(f"{path.relative_to(ROOT)}: no entry of measured.json names this picture; delete it or run "
              f"python tools/card_pictures.py {path.stem}", file=sys.stderr)
    problems = audit(registry, measured, files)
    for problem in problems:
        print(f"gen_cards: {problem}", file=sys.stderr)
    if args.check:
        for path in stale + extra:
            print(f"{path.relative_to(ROOT)}: stale; run python tools/gen_cards.py", file=sys.stderr)
        return 1 if stale or extra or unused or problems else 0
    CARDS.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(files[path])
    for path in extra:
        path.unlink()
    print(f"{len(files) - 1} cards in {CARDS.relative_to(ROOT)}; {len(stale)} rewritten, {len(extra)} removed",
          file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
