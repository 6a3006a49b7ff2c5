"""The main job: ``zoo.run(NAME)`` fine-tunes, compresses, exports and verifies one registry entry.

::

    report = zoo.run("unet3d")                       # built-in phantoms of the entry's task and dims
    report = zoo.run("unet", train="data/train", val="data/val", recipe="prune_80", quantization="int8")
    print(report); report.to_dict()

Four stages, each in its own folder under ``out_dir`` (default ``runs/run_<name>``), each skipped
when a previous call finished it and resumed when it was interrupted, so rerunning the same call
after a crash continues where it stopped:

1. ``1_finetune/``: :func:`zoo.finetune` on the data (a finetune run folder: resume, checkpoints);
2. ``2_<recipe>/``: :func:`zoo.compress` with the entry's default recipe (the first it lists), or
   ``recipe``; ``recipe="none"`` skips the stage;
3. ``3_export/<name>_<mode>.tflite``: :func:`zoo.export` (verified in LiteRT against the Keras
   model; the file and its sidecar are written only when verification passes);
4. the scores: the task metric (mean foreground Dice per case for segmentation, top-1 accuracy
   for classification) of the fine-tuned model, the compressed model and the exported file, on
   the same held-out validation samples, and ``report.json``.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from zoo import _io
from zoo.errors import InvalidArgumentError, ZooError, check_positive_int

DEFAULT_SIZE = {2: 64, 3: 32}   # phantom size per axis: small enough for 2 CPU cores
EVAL_SAMPLES = 8


def _log(verbose, text):
    if verbose:
        print(text, file=sys.stderr, flush=True)


def _entry(name):
    from zoo.hub.registry import get_registry
    registry = get_registry()
    if not isinstance(name, str) or name not in registry.models:
        from zoo.errors import UnknownModelError
        raise UnknownModelError(f"run: {name!r} is not a registry entry; `zoo list` shows the names, e.g. "
                                "zoo.run('unet3d').")
    return registry.models[name]


def _build_options(entry, spatial_dims, patch_size, model_options):
    """The entry's builder keywords for the run: 1 channel, 2 classes (the phantoms'), the
    patch size as the input for fixed-size heads; the user's ``model_options`` win."""
    dims = spatial_dims or entry.spatial_dims[0]
    if dims not in entry.spatial_dims:
        raise InvalidArgumentError(f"run: {entry.name} supports spatial_dims {list(entry.spatial_dims)}; got "
                                   f"spatial_dims={dims}. Pass one of those.")
    size = patch_size or max(DEFAULT_SIZE[dims], int(entry.input.get("min_size") or 0))
    kw = {"in_channels": 1, "spatial_dims": dims}
    if entry.task != "generation":
        kw.update(num_classes=2, input_shape=(size,) * dims + (1,))
    kw.update(model_options or {})
    return kw, size


def _data(data, train, val):
    """``data=DIR`` is DIR/train + DIR/val (or DIR/validation) when they exist, else DIR for both."""
    notes = []
    if data is not None:
        if train is not None or val is not None:
            raise InvalidArgumentError("run: pass data=DIR or train=/val=, not both.")
        root = Path(data)
        if not root.is_dir():
            raise InvalidArgumentError(f"run: data={str(data)!r} is not a folder; pass a folder of training data "
                                       "(with train/ and val/ inside, or the data itself), or train= and val=.")
        sub = [root / n for n in ("val", "validation") if (root / n).is_dir()]
        if (root / "train").is_dir():
            train, val = str(root / "train"), (str(sub[0]) if sub else None)
        else:
            train = val = str(root)
            notes.append(f"validated on the training data {root} (pass val= or a folder with train/ and val/)")
    train = train if train is not None else "phantoms"
    if val is None:
        if train == "phantoms":
            val = "phantoms"  # other phantoms than training's (zoo.data.from_source)
        else:
            val = train
            notes.append(f"no validation data: validated on the training data {train}")
    return train, val, notes


def _held_out(model, val, task, dims, size, seed, options):
    """``EVAL_SAMPLES`` validation (image, label) pairs as arrays, the same for every stage."""
    from zoo.data import fit_patch, from_source
    ds = from_source(val, training=False, task=task, spatial_dims=dims, num_classes=int(model.output_shape[-1]),
                     in_channels=int(model.input_shape[-1]), patch_size=size, seed=seed, **(options or {}))
    if task == "segmentation":
        ds = fit_patch(ds, (size,) * dims, random=False, seed=seed)
    xs, ys = [], []
    for x, y in ds.take(EVAL_SAMPLES):
        xs.append(np.asarray(x, np.float32))
        ys.append(np.asarray(y))
    if not xs:
        raise ZooError(f"run: the validation data {val!r} gave no samples; pass val= with at least one.")
    return np.stack(xs), np.stack(ys)


def score(task, labels, probs):
    """Segmentation: mean over cases of the mean foreground-class Dice (a class absent from both
    the label and the prediction of a case is skipped); classification: top-1 accuracy."""
    pred = np.argmax(probs, axis=-1)
    labels = np.asarray(labels)
    if task == "classification":
        labels = labels.reshape(len(labels), -1)
        labels = labels.argmax(-1) if labels.shape[-1] > 1 else labels[:, 0]
        return float(np.mean(pred.reshape(-1) == labels.astype(int)))
    labels = labels.reshape(pred.shape).astype(int)
    cases = []
    for p, t in zip(pred, labels):
        dices = []
        for c in range(1, probs.shape[-1]):
            a, b = p == c, t == c
            if a.any() or b.any():
                dices.append(2 * np.sum(a & b) / (np.sum(a) + np.sum(b)))
        if dices:
            cases.append(np.mean(dices))
    return float(np.mean(cases)) if cases else float("nan")


def _predict(model, xs):
    if getattr(model, "zoo_tflite", False):
        return np.concatenate([model.predict_on_batch(x[None]) for x in xs])
    out = model.predict(xs, batch_size=2, verbose=0)
    return out[0] if isinstance(out, list) else out


class RunReport:
    """What ``zoo.run`` did: scores per stage, sizes, latency, artefacts. ``report["key"]``,
    ``to_dict()`` (plain JSON data) and ``print(report)``."""

    def __init__(self, data):
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def to_dict(self):
        return json.loads(json.dumps(self._data, default=str))

    def __repr__(self):
        return f"RunReport({self._data['model']!r}, {self._data['metric']}={self._data['scores']})"

    def __str__(self):
        d = self._data
        from zoo.export.result import _mb
        mb = lambda n: "-" if n is None else _mb(n)  # noqa: E731 - the export report's units
        s = d["scores"]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines = [f"zoo run {d['model']}: {d['task']} {d['spatial_dims']}D, {d['params']:,} parameters, "
                 f"data {d['train']} (validation {d['val']}), {d['seconds']:.0f} s",
                 f"  {d['metric']} on {d['eval_samples']} validation samples: fine-tuned {fmt(s['finetuned'])}"
                 f" -> {d['recipe'] or 'no compression'} {fmt(s['compressed'])} -> {d['quantization']} TFLite "
                 f"{fmt(s['exported'])}",
                 f"  size: float32 weights {mb(d['sizes']['float32_bytes'])} (zipped "
                 f"{mb(d['sizes']['float32_zipped'])}), compressed zipped {mb(d['sizes']['compressed_zipped'])}, "
                 f"TFLite {mb(d['sizes']['tflite_bytes'])} (zipped {mb(d['sizes']['tflite_zipped'])})"]
        lat = d.get("latency") or {}
        if lat:
            lines.append(f"  latency per input (batch 1, median of {lat.get('runs')}): Keras {lat['keras_ms']:.1f} ms, "
                         f"LiteRT {lat['litert_ms']:.1f} ms ({lat['speedup']:.2f}x, {lat.get('threads')} threads)")
        v = d.get("verification") or {}
        if v:
            lines.append(f"  export verification: {'passed' if v.get('passed') else 'FAILED'} ({v.get('summary')})")
        lines.append("  artefacts: " + ", ".join(f"{k} {p}" for k, p in d["artefacts"].items()))
        lines.extend(f"  note: {n}" for n in d["notes"])
        return "\n".join(lines)


def _finetune_stage(model, stage, train, val, *, epochs, size, verbose, options, seed, **kw):
    """The fine-tuned model: trained here, resumed, or (finished before) loaded from its folder."""
    from zoo.train import finetune, load_run, read_state
    state = read_state(stage)
    if state.get("finished"):
        done = state.get("config", {}).get("epochs")
        if done is not None and done != epochs:
            raise ZooError(f"run: {stage} holds a finished fine-tuning of {done} epochs, not epochs={epochs}; "
                           "pass the same epochs, or a new out_dir to start again.")
        _log(verbose, f"      done before: {stage} (loaded)")
        net = load_run(stage)
        net.zoo_name = getattr(model, "zoo_name", None)
        return net
    finetune(model, train, val, epochs=epochs, patch_size=size, out_dir=stage, verbose="auto" if verbose else 0, seed=seed,
             data_options=options, **kw)
    return model


def _compress_stage(model, stage, recipe, train, val, *, epochs, size, verbose, options, seed, **kw):
    """(compressed model, compress report dict), compressed here, resumed or loaded."""
    from zoo.compress import compress
    from zoo.train import load_run
    done = stage / "compress.json"
    if done.exists() and json.loads(done.read_text()).get("finished"):
        _log(verbose, f"      done before: {stage} (loaded)")
        net = load_run(stage)
        net.zoo_name = getattr(model, "zoo_name", None)
        return net, json.loads((stage / "report.json").read_text())
    small, report = compress(model, recipe, train, val, epochs=epochs, out_dir=stage, patch_size=size,
                             verbose="auto" if verbose else 0, data_options=options, seed=seed, **kw)
    small.zoo_name = getattr(model, "zoo_name", None)
    return small, report.to_dict()


def _export_stage(run_dir, path, quantization, train, verbose, options, seed, verify=True):
    """(the exported file as a LiteRT model, the export result dict): ``run_dir`` (the last stage's
    run folder: its best weights, patch size and preprocessing) exported here, or (the file, its
    sidecar and the result written before) read back."""
    from zoo.export import export, load_tflite
    from zoo.export.sidecar import sidecar_path
    done = path.with_name(path.name + ".result.json")
    if path.exists() and sidecar_path(path).exists() and done.exists():
        _log(verbose, f"      done before: {path} (verified when written)")
        return load_tflite(path), json.loads(done.read_text())
    result = export(str(run_dir), path, quantization=quantization, representative_data=train,
                    overwrite=path.exists(), data_options=options, seed=seed, verify=verify)
    if verbose:
        print(result, file=sys.stderr, flush=True)
    _io.write_json(done, result.to_dict())  # last: the stage counts as done once this exists
    return load_tflite(path), result.to_dict()


def run(model="unet3d", *, data=None, train=None, val=None, recipe=None, quantization="int8", epochs=3,
        compress_epochs=2, out_dir=None, patch_size=None, spatial_dims=None, batch_size=2,
        steps_per_epoch=16, validation_steps=4, learning_rate=None, model_options=None,
        data_options=None, seed=0, verify=True, verbose=True):
    """Fine-tune, compress, export and verify registry entry ``model``; returns a :class:`RunReport`.

    data: a folder with train/ and val/ (or the training data itself); or ``train``/``val``:
        anything :func:`zoo.finetune` takes. Default: the built-in phantoms of the entry's task
        and dimension (validation on other phantoms).
    recipe: a compression recipe (``zoo.list_recipes(model)``); default the entry's first; ``"none"``
        skips compression. quantization: the :func:`zoo.export` mode (default ``"int8"``; a QAT
        recipe's model exports with its own ranges).
    epochs / compress_epochs: fine-tuning epochs, and epochs per compression step, each of
        ``steps_per_epoch`` steps of ``batch_size``. patch_size: the input size per axis (default
        64 px in 2D, 32 voxels in 3D). model_options: builder keywords (``{"filters": 16}``);
        data_options: options of the data source (``window=...``).
    verify: the export's verification: True (a file that disagrees with the Keras model beyond
        the mode's thresholds is an error and is not written) or "warn" (written, with a warning).
    out_dir: the run's folder (default ``runs/run_<model>``); calling again with the same
        arguments continues an interrupted run and skips finished stages.
    """
    from zoo.hub import load
    t0 = time.time()
    entry = _entry(model)
    check_positive_int("epochs", epochs, "run")
    check_positive_int("compress_epochs", compress_epochs, "run")
    if verify not in (True, "warn"):
        raise InvalidArgumentError(f"run: verify={verify!r} must be True or 'warn' (the export always verifies).")
    if entry.task == "generation":
        raise InvalidArgumentError(f"run: {entry.name} is a generative model; train it with `zoo finetune "
                                   f"{entry.name}` and sample with `zoo sample` (compression and int8 export "
                                   "are for classifiers and segmenters).")
    kwargs, size = _build_options(entry, spatial_dims, patch_size, model_options)
    dims = kwargs["spatial_dims"]
    recipe = entry.recipes[0] if recipe is None and entry.recipes else recipe
    recipe = None if recipe in (None, "none") else recipe
    train, val, notes = _data(data, train, val)
    if entry.task == "classification" and train != "phantoms" and "num_classes" not in (model_options or {}):
        from zoo.train._classes import head_from_data  # one output per class folder
        kwargs = head_from_data(entry.name, train, {k: v for k, v in kwargs.items() if k != "num_classes"},
                                say=bool(verbose))
        kwargs.setdefault("num_classes", 2)
    out = Path(out_dir if out_dir is not None else Path("runs") / f"run_{entry.name}")
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"run: out_dir {str(out)!r} is a file; pass a folder (it is created).")
    steps = 3 if recipe else 2
    fit_kw = dict(steps_per_epoch=steps_per_epoch, validation_steps=validation_steps, batch_size=batch_size,
                  learning_rate=learning_rate)
    _log(verbose, f"[1/{steps}] fine-tune {entry.name} ({entry.task}, {dims}D, patch {size}) on {train}: "
                  f"{epochs} epochs x {steps_per_epoch} steps -> {out / '1_finetune'}")
    net = load(entry.name, **kwargs)
    net.zoo_name = entry.name
    xs, ys = _held_out(net, val, entry.task, dims, size, seed, data_options)
    net = _finetune_stage(net, out / "1_finetune", train, val, epochs=epochs, size=size, verbose=verbose,
                          options=data_options, seed=seed, **fit_kw)
    scores = {"finetuned": score(entry.task, ys, _predict(net, xs)), "compressed": None}
    artefacts = {"finetune": str(out / "1_finetune")}
    creport = None
    if recipe:
        stage = out / f"2_{recipe.replace('+', '_')}"
        _log(verbose, f"[2/{steps}] compress with {recipe}: {compress_epochs} epochs per step -> {stage}")
        net, creport = _compress_stage(net, stage, recipe, train, val, epochs=compress_epochs, size=size,
                                       verbose=verbose, options=data_options, seed=seed, **fit_kw)
        scores["compressed"] = score(entry.task, ys, _predict(net, xs))
        artefacts["compressed"] = str(stage)
    path = out / "3_export" / f"{entry.name}_{quantization}.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    _log(verbose, f"[{steps}/{steps}] export {quantization} TFLite and verify it in LiteRT -> {path}")
    last = Path(artefacts["compressed"] if recipe else artefacts["finetune"])
    tfl, xresult = _export_stage(last, path, quantization, train, verbose, data_options, seed, verify)
    scores["exported"] = score(entry.task, ys, _predict(tfl, xs))
    artefacts["tflite"] = str(path)
    float_sizes = dict((creport or {}).get("size") or {})
    if "float32_bytes" not in float_sizes:  # no compression: the fine-tuned model's float32 weights
        from zoo.compress._report import model_sizes
        base = model_sizes(net)
        float_sizes = {"float32_bytes": base["bytes"], "float32_zipped": base["zipped"]}
    lat = xresult.get("latency") or {}
    report = RunReport({
        "model": entry.name, "task": entry.task, "spatial_dims": dims, "params": int(net.count_params()),
        "train": str(train), "val": str(val), "patch_size": size, "epochs": epochs, "recipe": recipe,
        "quantization": xresult.get("mode", quantization), "metric": "dice" if entry.task == "segmentation"
        else "accuracy", "eval_samples": len(xs), "scores": scores,
        "sizes": {"float32_bytes": float_sizes.get("float32_bytes"), "float32_zipped": float_sizes.get("float32_zipped"),
                  "compressed_zipped": float_sizes.get("compressed_zipped"), "tflite_bytes": xresult.get("bytes"),
                  "tflite_zipped": xresult.get("zipped_bytes")},
        "latency": lat, "verification": xresult.get("verification"), "artefacts": artefacts,
        "notes": notes + list(xresult.get("notes") or []), "seconds": round(time.time() - t0, 1)})
    _io.write_json(out / "report.json", report.to_dict())
    report._data["artefacts"]["report"] = str(out / "report.json")
    return report
