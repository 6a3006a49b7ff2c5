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

from zoo import _io
from zoo.compress.report import model_sizes
from zoo.compress.run import compress as compress_model
from zoo.datapath import inspect_source
from zoo.errors import InvalidArgumentError, UnknownModelError, ZooError, check_positive_int, did_you_mean
from zoo.export.api import export as export_model
from zoo.export.result import _mb
from zoo.export.runtime import load_tflite
from zoo.export.sidecar import sidecar_path
from zoo.hub import load
from zoo.hub.registry import get_registry
from zoo.record import info_of
from zoo.resolve import resolve
from zoo.scoring import held_out, predict_arrays, score
from zoo.train import FitOptions, fit, get_strategy, read_state
from zoo.train.loop import data_record, seed_everything
from zoo.train.strategy import is_chief

DEFAULT_SIZE = {2: 64, 3: 32}   # phantom size per axis: small enough for 2 CPU cores
EVAL_SAMPLES = 8


def _log(verbose, text):
    if verbose:
        print(text, file=sys.stderr, flush=True)


def _entry(name):
    registry = get_registry()
    if not isinstance(name, str) or name not in registry.models:
        near = did_you_mean(name, registry.names()) if isinstance(name, str) else ""
        raise UnknownModelError(f"run: {name!r} is not a registry entry.{near} `zoo list` shows the names, e.g. "
                                "unet3d.")
    return registry.models[name]


def _build_options(entry, spatial_dims, patch_size, model_options, from_data=None):
    """The entry's builder keywords for the run: the channels and classes the data implies
    (``from_data``; 1 and 2 for the phantoms), the patch size as the input for fixed-size heads;
    the user's ``model_options`` win."""
    dims = spatial_dims or entry.spatial_dims[0]
    if dims not in entry.spatial_dims:
        raise InvalidArgumentError(f"run: {entry.name} supports spatial_dims {list(entry.spatial_dims)}; got "
                                   f"spatial_dims={dims}. Pass one of those (--spatial-dims).")
    size = patch_size or max(DEFAULT_SIZE[dims], int(entry.input.get("min_size") or 0))
    options = dict(model_options or {})
    channels = options.get("in_channels") or (from_data or {}).get("in_channels") or 1
    kw = {"in_channels": channels, "spatial_dims": dims}
    if entry.task != "generation":
        kw.update(num_classes=(from_data or {}).get("num_classes") or 2, input_shape=(size,) * dims + (channels,))
    kw.update(options)
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
        if train in ("phantoms", "hard_phantoms"):
            val = train  # other phantoms than training's (zoo.datapath.sources.from_source)
        else:
            val = train
            notes.append(f"no validation data: validated on the training data {train}")
    return train, val, notes


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


def _weights_notes(net, info, train, weights, verbose):
    """What the run starts from (said on stderr too), and which of the weights' preprocessing applies to
    its data: all of it to files; none to the generated phantoms, whose intensities already lie in about
    [0, 1] (the range a window maps scans to) and which have no orientation or voxel size."""
    if weights is None:
        return []
    report = getattr(net, "zoo_load_report", None)
    counts = "" if report is None else (
        f": {len(report.loaded)} layers loaded" + (f", {len(report.adapted)} adapted" if report.adapted else "")
        + (f", {len(report.reinitialised)} re-initialised ({', '.join(report.reinitialised)})"
           if report.reinitialised else ""))
    notes = [f"fine-tuned from weights={weights}{counts}"]
    _log(verbose, f"      starting from weights={weights}{counts}")
    prep = dict(info.preprocessing)
    if not prep:
        return notes
    steps = ", ".join(f"{k} {list(v) if isinstance(v, tuple) else v}" for k, v in prep.items())
    if str(train) in ("phantoms", "hard_phantoms"):
        notes.append(f"the weights' preprocessing ({steps}) applies to files (zoo predict on a scan, --data); the "
                     f"{train} are generated with intensities in about [0, 1], the range the window maps scans to, "
                     "and with no orientation or voxel size, so they were used as generated")
    else:
        notes.append(f"the weights' preprocessing ({steps}) was applied to the data {train}")
    return notes


def _from_data(entry, train, dims, model_options, data_options, verbose, ignore_label=None):
    """The channels and classes a user's data implies (nothing for the phantoms), said on stderr."""
    given = dict(model_options or {})
    if train in ("phantoms", "hard_phantoms") or ("in_channels" in given and "num_classes" in given):
        return {}
    found = inspect_source(train, task=entry.task, spatial_dims=dims, options=data_options, ignore_label=ignore_label)
    if not found:
        return {}
    what = []
    if "in_channels" not in given:
        what.append(f"in_channels={found['in_channels']} (its images' channels)")
    if "num_classes" not in given and found.get("num_classes") is not None:
        source = (f"{len(found['class_names'])} class folders" if found.get("class_names") else
                  f"labels 0..{found['num_classes'] - 1} in the {found['read']} label map(s) read")
        what.append(f"num_classes={found['num_classes']} ({source})")
    _log(verbose and what, f"run: from the data {train}: {', '.join(what)}; --in-channels / --num-classes "
                           "choose otherwise")
    return {k: v for k, v in found.items() if k not in given and v is not None}


SEMI_OPTIONS = ("semi", "semi_weight", "semi_rampup", "semi_noise", "ema_decay", "confidence", "pseudo_refresh",
                "unlabeled_ratio")


def _record(entry, kwargs, train, val, recipe, quantization, epochs, compress_epochs, size, opts, weights=None,
            unlabeled=None):
    """What the run is made from (``run.json``): a rerun must match it to continue the run."""
    options = {k: getattr(opts, k) for k in ("batch_size", "steps_per_epoch", "validation_steps", "learning_rate",
                                              "data_options", "seed", "deterministic", "ignore_label")}
    if opts.semi:  # recorded only when used: older run folders stay continuable
        options.update({k: getattr(opts, k) for k in SEMI_OPTIONS})
    if opts.adapt:
        options.update(adapt=opts.adapt, adapt_weight=opts.adapt_weight)
    return json.loads(json.dumps({
        "model": entry.name, "build": {k: v for k, v in kwargs.items() if k != "input_shape"},
        "train": data_record(train), "val": data_record(val), "recipe": recipe, "quantization": quantization,
        "epochs": epochs, "compress_epochs": compress_epochs, "patch_size": size, "options": options,
        "weights": None if weights is None else str(weights),
        **({} if unlabeled is None else {"unlabeled": data_record(unlabeled)})}, default=str))


_FLAGS = {"model": "NAME", "build": "--set/--in-channels/--num-classes", "train": "--data/--train", "val": "--val",
          "recipe": "--recipe", "quantization": "--quantization", "epochs": "--epochs",
          "compress_epochs": "--compress-epochs", "patch_size": "--patch-size", "options": "training options",
          "weights": "--weights", "unlabeled": "--unlabeled"}


def _check_out(out, record, restart, verbose):
    """Continue the run in ``out`` only with the inputs it was made from; ``restart`` deletes
    its stages first."""
    path = out / "run.json"
    if restart and out.is_dir():
        import shutil
        for stage in [p for p in out.iterdir() if p.name[:2] in ("1_", "2_", "3_")]:
            shutil.rmtree(stage)
        for name in ("run.json", "report.json"):
            (out / name).unlink(missing_ok=True)
        _log(verbose, f"run: --restart: the stages in {out} were deleted")
        return
    if not path.exists():
        if out.is_dir() and any(p.name[:2] in ("1_", "2_", "3_") for p in out.iterdir()):
            raise ZooError(f"run: {out} holds stages of a run that recorded no inputs (an older zoo); choose "
                           "another --out, or pass --restart to start the run over there.")
        return
    before = json.loads(path.read_text())
    changed = []
    for key, flag in _FLAGS.items():
        old, new = before.get(key), record.get(key)
        if key in ("build", "options") and isinstance(old, dict) and isinstance(new, dict):
            changed += [f"{flag} {k}: {old.get(k)} there, {new.get(k)} now" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changed.append(f"{flag}: {old} there, {new} now")
    if changed:
        raise ZooError(f"run: {out} holds a run made from other inputs ({'; '.join(changed)}). Run the same "
                       "command as before to continue it, choose another --out, or pass --restart to start "
                       "it over in that folder.")


def _finetune_stage(model, info, stage, train, val, options, strategy, verbose, unlabeled=None):
    """(the fine-tuned model, its record): trained here, resumed, or (finished before) loaded."""
    state = read_state(stage)
    if state.get("finished"):
        done = state.get("config", {}).get("epochs")
        if done is not None and done != options.epochs:
            raise ZooError(f"run: {stage} holds a finished fine-tuning of {done} epochs, not epochs={options.epochs}; "
                           "pass the same epochs, or a new out_dir to start again.")
        _log(verbose, f"      done before: {stage} (loaded)")
        return resolve(stage, verb="run", allow=("run",), say=False)
    fit(model, info, train, val, options.replace(out_dir=stage), strategy, unlabeled=unlabeled)
    return model, info_of(model)


def _compress_stage(model, info, stage, recipe, train, val, options, strategy, verbose):
    """(compressed model, its record, compress report dict), compressed here, resumed or loaded."""
    done = stage / "compress.json"
    if done.exists() and json.loads(done.read_text()).get("finished"):
        _log(verbose, f"      done before: {stage} (loaded)")
        net, net_info = resolve(stage, verb="run", allow=("compress",), say=False)
        return net, net_info, json.loads((stage / "report.json").read_text())
    small, report = compress_model(model, info, recipe, train, val, options.replace(out_dir=stage), strategy)
    return small, info_of(small), report.to_dict()


def _export_stage(model, info, path, quantization, train, verbose, options, verify=True):
    """(the exported file as a LiteRT model, the export result dict): ``model`` (the last stage's,
    in memory, with its record: patch size, preprocessing, data) exported here, or (the file, its
    sidecar and the result written before) read back."""
    done = path.with_name(path.name + ".result.json")
    if path.exists() and sidecar_path(path).exists() and done.exists():
        _log(verbose, f"      done before: {path} (verified when written)")
        return load_tflite(path), json.loads(done.read_text())
    result = export_model(model, info, path, quantization=quantization, representative_data=train,
                          overwrite=path.exists(), data_options=options.data_options, seed=options.seed, verify=verify)
    if verbose:
        print(result, file=sys.stderr, flush=True)
    _io.write_json(done, result.to_dict())  # last: the stage counts as done once this exists
    return load_tflite(path), result.to_dict()


def run(model="unet3d", *, data=None, train=None, val=None, unlabeled=None, recipe=None, quantization="int8", epochs=3,
        compress_epochs=2, out_dir=None, patch_size=None, spatial_dims=None, model_options=None, weights=None,
        verify=True, restart=False, verbose=True, options=None, **option_keywords):
    """Fine-tune, compress, export and verify registry entry ``model``; returns a :class:`RunReport`.

    Args:
        model: the registry entry (``zoo list``).
        data: a folder with train/ and val/ (or the training data itself); or ``train``/``val``:
            any data source. Default: the built-in phantoms of the entry's task and dimension
            (validation on other phantoms).
        unlabeled: unlabelled data for a semi-supervised fine-tuning stage (``semi="mean_teacher"``
            or ``"pseudo_label"``; see :func:`zoo.finetune`); compression trains on ``train`` alone.
        recipe: a compression recipe (``zoo.list_recipes(model)``); default the entry's first;
            ``"none"`` skips compression.
        quantization: the export mode (default ``"int8"``; a QAT recipe's model exports with its
            own ranges).
        epochs, compress_epochs: fine-tuning epochs, and epochs per compression step.
        out_dir: the run's folder (default ``runs/run_<model>``); calling again with the same
            arguments continues an interrupted run and skips finished stages. Its ``run.json``
            records the inputs (model and its build, data, recipe, mode, epochs, patch size,
            training options); called with other inputs, the run stops and lists what differs.
        restart: delete the folder's stages first and start the run over (``zoo run --restart``).
        patch_size: the input size per axis (default 64 px in 2D, 32 voxels in 3D).
        spatial_dims: 2 or 3 for entries with both.
        model_options: builder keywords (``{"filters": 16}``). ``in_channels`` and
            ``num_classes`` default to what the data implies: the channels of its images; the
            class folders of a classification layout, or 1 + the largest label of the label maps.
        weights: fine-tune from these weights (a tag of the entry such as ``"monai"``, a file or
            a URL, as :func:`zoo.load` takes them) instead of random ones; a tag's preprocessing
            (orientation, spacing, intensity window) becomes the model's and applies to files.
        verify: the export's verification: True (a file that disagrees with the Keras model
            beyond the mode's thresholds is an error and is not written) or ``"warn"``.
        verbose: progress on stderr.
        options, option_keywords: :class:`zoo.train.FitOptions` for both training stages (here
            ``batch_size`` 2, ``steps_per_epoch`` 16 and ``validation_steps`` 4 by default;
            ``strategy="multiworker"`` under ``TF_CONFIG`` runs every stage on the cluster, and
            only the chief writes the export and the report).

    Returns:
        A :class:`RunReport` (``print(report)``, ``report.to_dict()``), also in ``report.json``;
        None on a worker of a multi-worker run (the chief reports).

    Raises:
        UnknownModelError: ``model`` is not a registry entry.
        UnknownArgumentError: an unknown training option.
        InvalidArgumentError: a generative entry, a bad option or ``spatial_dims``, both ``data``
            and ``train``/``val``, an ``out_dir`` that is a file, or data that does not fit.
        ZooError: a stage folder holds a finished run of other epochs.
        VerificationError: the exported file disagrees with the Keras model and ``verify=True``.
        RecipeNotApplicableError: the recipe cannot apply to the entry.
    """
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
    defaults = {"batch_size": 2, "steps_per_epoch": 16, "validation_steps": 4} if options is None else {}
    opts = FitOptions.build(options, verb="run", **{**defaults, **option_keywords, "epochs": epochs,
                                                    "verbose": "auto" if verbose else 0})
    strategy = get_strategy(opts.strategy, opts.devices)  # first: a multi-worker strategy precedes all ops
    dims = spatial_dims or entry.spatial_dims[0]
    train, val, notes = _data(data, train, val)
    found = _from_data(entry, train, dims, model_options, opts.data_options, verbose, opts.ignore_label)
    kwargs, size = _build_options(entry, spatial_dims, patch_size, model_options, found)
    opts = opts.replace(patch_size=size)
    recipe = entry.recipes[0] if recipe is None and entry.recipes else recipe
    recipe = None if recipe in (None, "none") else recipe
    out = Path(out_dir if out_dir is not None else Path("runs") / f"run_{entry.name}")
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"run: out_dir {str(out)!r} is a file; pass a folder (it is created).")
    record = _record(entry, kwargs, train, val, recipe, quantization, epochs, compress_epochs, size, opts, weights,
                     unlabeled)
    _check_out(out, record, restart, verbose)
    seed_everything(opts.seed, opts.deterministic)  # the weights too: a seeded run repeats
    steps = 3 if recipe else 2
    mode = opts.semi or opts.adapt
    semi = f" + unlabelled {unlabeled} ({mode})" if mode and unlabeled is not None else ""
    _log(verbose, f"[1/{steps}] fine-tune {entry.name} ({entry.task}, {dims}D, patch {size}) on {train}{semi}: "
                  f"{epochs} epochs x {opts.steps_per_epoch} steps -> {out / '1_finetune'}")
    net = load(entry.name, weights=weights, **kwargs)
    info = info_of(net)
    notes += _weights_notes(net, info, train, weights, verbose)
    if is_chief(strategy):
        out.mkdir(parents=True, exist_ok=True)
        _io.write_json(out / "run.json", record)
    xs, ys = held_out(net, info, val, EVAL_SAMPLES, patch_size=size, seed=opts.seed, options=opts.data_options)
    net, info = _finetune_stage(net, info, out / "1_finetune", train, val, opts, strategy, verbose, unlabeled)
    metric, first = score(entry.task, ys, predict_arrays(net, xs))
    scores = {"finetuned": first, "compressed": None}
    artefacts = {"finetune": str(out / "1_finetune")}
    creport = None
    if recipe:
        stage = out / f"2_{recipe.replace('+', '_')}"
        _log(verbose, f"[2/{steps}] compress with {recipe}: {compress_epochs} epochs per step -> {stage}")
        net, info, creport = _compress_stage(net, info, stage, recipe, train, val,
                                             opts.replace(epochs=compress_epochs, semi=None, adapt=None), strategy,
                                             verbose)
        scores["compressed"] = score(entry.task, ys, predict_arrays(net, xs))[1]
        artefacts["compressed"] = str(stage)
    path = out / "3_export" / f"{entry.name}_{quantization}.tflite"
    if not is_chief(strategy):  # the chief exports and reports; the other workers are done
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    _log(verbose, f"[{steps}/{steps}] export {quantization} TFLite and verify it in LiteRT -> {path}")
    tfl, xresult = _export_stage(net, info, path, quantization, train, verbose, opts, verify)
    scores["exported"] = score(entry.task, ys, predict_arrays(tfl, xs))[1]
    artefacts["tflite"] = str(path)
    float_sizes = dict((creport or {}).get("size") or {})
    if "float32_bytes" not in float_sizes:  # no compression: the fine-tuned model's float32 weights
        base = model_sizes(net)
        float_sizes = {"float32_bytes": base["bytes"], "float32_zipped": base["zipped"]}
    lat = xresult.get("latency") or {}
    report = RunReport({
        "model": entry.name, "task": entry.task, "spatial_dims": dims, "params": int(net.count_params()),
        "train": str(train), "val": str(val), "patch_size": size, "epochs": epochs, "recipe": recipe,
        "quantization": xresult.get("mode", quantization), "metric": metric, "eval_samples": len(xs),
        "scores": scores,
        "sizes": {"float32_bytes": float_sizes.get("float32_bytes"),
                  "float32_zipped": float_sizes.get("float32_zipped"),
                  "compressed_zipped": float_sizes.get("compressed_zipped"), "tflite_bytes": xresult.get("bytes"),
                  "tflite_zipped": xresult.get("zipped_bytes")},
        "latency": lat, "verification": xresult.get("verification"), "artefacts": artefacts,
        "notes": notes + list(xresult.get("notes") or []), "seconds": round(time.time() - t0, 1)})
    _io.write_json(out / "report.json", report.to_dict())
    report._data["artefacts"]["report"] = str(out / "report.json")
    return report
