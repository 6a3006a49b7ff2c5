"""``zoo.export``: a model -> a verified ``.tflite`` file (or a SavedModel folder) + its JSON sidecar."""
import warnings
import zlib
from pathlib import Path

import numpy as np

from zoo import _io
from zoo._keras import keras, tf
from zoo._version import __version__
from zoo.errors import InvalidArgumentError, check_choice, check_positive_int
from zoo.export import ops as _ops
from zoo.export._data import representative, split
from zoo.export.convert import CALIBRATED, MODES, convert
from zoo.export.errors import ExportError, UncoveredLayerError, VerificationError
from zoo.export.result import ExportResult
from zoo.export.rewrite3d import rewrite_3d
from zoo.export.runtime import TFLiteModel
from zoo.export.savedmodel import export_savedmodel
from zoo.export.sidecar import sha256_bytes, sidecar_path, write_sidecar
from zoo.export.verify import FLOAT_TOL, latency, run_verification
from zoo.record import PREPROCESSING, training_data

ALL_MODES = MODES + ("savedmodel",)
MIN_VERIFY = 4  # a quantized file verified on fewer inputs warns instead of being refused
_3D = (keras.layers.Conv3D, keras.layers.Conv3DTranspose, keras.layers.MaxPooling3D,
       keras.layers.AveragePooling3D, keras.layers.UpSampling3D)


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def has_3d_layers(model):
    return any(isinstance(layer, _3D) for layer in _layers(model))


def is_qat(model):
    """True for a tfmot quantization-aware model (its layers are quantize wrappers)."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
               for layer in _layers(model))


def weight_sparsity(model):
    """The share of exact zeros in the model's kernels (pruned models: the pruned share)."""
    zeros = total = 0
    for w in model.weights:
        if "kernel" in w.name and "quantize" not in w.name:
            a = w.numpy()
            zeros, total = zeros + int(np.count_nonzero(a == 0)), total + a.size
    return zeros / total if total else 0.0


def _main_network(model, info):
    """(keras model with one output, notes): a GAN exports its generator, a model with
    auxiliary heads its main output."""
    notes = []
    generator = getattr(model, "generator", None)
    if isinstance(generator, keras.Model) and generator is not model:  # a GAN (zoo's WGAN)
        notes.append(f"a GAN: exported its generator ({generator.name}: z -> images); export "
                     "model.critic for the critic")
        model = generator
    if len(model.outputs) > 1:
        notes.append(f"exported the main output only ({model.output_names[0]}); the auxiliary "
                     f"head(s) {', '.join(model.output_names[1:])} are for training")
        model = keras.Model(model.inputs, model.outputs[0], name=model.name)
    return model, notes


def _shape(model, input_shape, info, notes):
    """The export's input shape without the batch axis (static)."""
    have = tuple(model.input_shape[1:])
    if len(have) == 1:  # a latent vector
        return have
    dims = len(have) - 1
    if input_shape is not None:
        want = tuple(int(s) for s in input_shape)
        want = want if len(want) == dims + 1 else want + have[-1:]
        if len(want) != dims + 1 or any(a is not None and a != b for a, b in zip(have, want)):
            raise InvalidArgumentError(
                f"export: input_shape={tuple(input_shape)!r} does not fit model {model.name!r}, which "
                f"takes {have} (None = any size); give {dims} spatial sizes (+ channels).")
        return want
    if None not in have[:-1]:
        return have
    if info.patch_size and len(info.patch_size) == dims:
        return tuple(info.patch_size) + have[-1:]
    size = 64 if dims == 2 else 32
    shape = tuple(size if s is None else s for s in have[:-1]) + have[-1:]
    notes.append(f"the model takes any size; exported at {'x'.join(map(str, shape[:-1]))} (the "
                 "finetune phantom default; zoo.predict slides this patch). Pass input_shape= to choose")
    return shape


def _target(path, mode, overwrite):
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise InvalidArgumentError(
            f"export: the folder of path={str(path)!r} ({str(path.parent)!r}) does not exist; create it "
            "first (mkdir -p) or choose another path. Nothing was written.")
    if mode != "savedmodel" and path.suffix.lower() != ".tflite":
        raise InvalidArgumentError(f"export: path={str(path)!r} must end with .tflite (or pass "
                                   "quantization='savedmodel' to write a SavedModel folder).")
    if path.exists():
        kind = "folder" if path.is_dir() else "file"
        if (mode == "savedmodel") != path.is_dir():
            raise InvalidArgumentError(f"export: {str(path)!r} is an existing {kind}, which a "
                                       f"{'SavedModel' if mode == 'savedmodel' else '.tflite'} export "
                                       "cannot replace; choose another path.")
        if not overwrite:
            raise InvalidArgumentError(f"export: {str(path)!r} exists; pass overwrite=True (zoo export "
                                       "--overwrite) to replace it, or choose another path. Nothing was "
                                       "written.")
    return path


def _run_data(info, notes):
    """The model's own training data is the default representative data (read with its
    preprocessing): :func:`zoo.record.training_data` - phantoms only for a phantom-trained model."""
    data = training_data(info, "export", arg="representative_data", flag="zoo export --data DIR")
    if data not in ("phantoms", "hard_phantoms"):
        notes.append(f"representative data: the model's training data {data}")
    return data


def _mode(mode, model):
    check_choice("quantization", mode, ALL_MODES, "export")
    qat = is_qat(model)
    if qat and mode in ("int8", "qat"):
        return "qat"
    if qat and mode != "savedmodel":
        raise InvalidArgumentError(
            f"export: model {model.name!r} was trained with quantization-aware training (tfmot quantize "
            f"wrappers); export it with quantization='int8' (its learnt ranges give the int8 file), not "
            f"{mode!r}.")
    if mode == "qat":
        raise InvalidArgumentError(
            f"export: quantization='qat' needs a quantization-aware-trained model and {model.name!r} has no "
            "quantize wrappers; train one with zoo.compress(model, 'qat_int8') or use quantization='int8' "
            "(post-training, calibrated on representative data).")
    return mode


def _float_op_warnings(ops, mode, strict):
    floats = [dict(o, layer=_ops.layer_of(o["name"])) for o in _ops.float_ops(ops)]
    if mode not in ("int8", "qat") or not floats:
        return floats, []
    layers = sorted({f"{o['layer']} ({o['op']})" for o in floats})
    text = (f"the {mode} file still computes {len(floats)} op(s) in float: {', '.join(layers[:8])}"
            f"{' ...' if len(layers) > 8 else ''}; LiteRT runs them in float between (de)quantize ops, "
            "integer-only accelerators cannot")
    if strict:
        raise UncoveredLayerError(f"export (strict=True): {text}. Replace those layers, or export with "
                                  f"quantization='float16' (or strict=False to accept the float ops).")
    return floats, [text]


def _resolution_warnings(content, verification, mode):
    """An integer output grid coarser than the Keras outputs' spread cannot follow them (an
    untrained generator's tanh outputs within +-0.01 on int8 TANH's fixed 1/128 step)."""
    step = _ops.output_step(content) if mode in ("int8", "qat", "int16x8") else None
    spread = verification["metrics"]["output_scale"]
    if not step or spread >= 4 * step:
        return []
    return [f"the {mode} output step is {step:.3g} but the Keras outputs on the verification inputs "
            f"reach only {spread:.3g} ({spread / step:.1f} steps): the file cannot resolve them. Some "
            "int8 kernels fix the step (TANH 1/128, LOGISTIC 1/256); an untrained model's outputs "
            "are often this small, a trained one's span the range. Export a trained model, or use "
            "quantization='float16'"]


def export(model, info, path, *, quantization="float32", representative_data=None, input_shape=None,
           data_options=None, calibration_samples=32, verify_samples=8, verify=True, strict=False,
           overwrite=False, int8_io=False, sparse=None, latency_runs=10, num_threads=None, seed=0):
    """Export ``model`` to ``path`` and verify the file against the Keras model.

    Args:
        model: the ``keras.Model``. Models with auxiliary heads export their main output; a GAN
            its generator.
        info: its record (:class:`zoo.record.ModelInfo`: its task, the patch size and
            preprocessing it was trained with, its classes and data).
        path: the ``.tflite`` file (its folder must exist), or a folder for ``"savedmodel"``.
        quantization: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"``, ``"int16x8"``,
            ``"qat"`` (a tfmot QAT model; ``"int8"`` on such a model means this too) or
            ``"savedmodel"`` (TF Serving). See :mod:`zoo.export.convert`.
        representative_data: calibration and verification inputs: a folder, .npz,
            ``"tfds:NAME"``, ``"phantoms"``, (x, y), an array or a tf.data.Dataset. Default: the
            model's training data (an error when it was a path that no longer exists), phantoms
            for a model trained on phantoms or of unknown data.
        input_shape: the spatial size (+ channels) to export at, for a model of dynamic size
            (default: the patch size it was trained at, else 64 px (2D) / 32 voxels (3D)). Batch is 1.
        data_options: keywords of the data source (window=..., normalize=..., spacing=...; the
            model's recorded preprocessing is the default).
        calibration_samples: the first inputs, which calibrate (int8, int16x8).
        verify_samples: the next inputs, which verify.
        verify: True (a failed verification raises VerificationError and writes nothing; a
            quantized file verified on fewer than 4 inputs warns instead: too few to judge its
            decisions on),
            ``"warn"`` (write the file, warn) or False (skip). Thresholds:
            ``zoo.export.verify.THRESHOLDS``.
        strict: an int8/qat file that still holds float ops is an error (default: a warning).
        overwrite: replace an existing file.
        int8_io: int8 input/output tensors (int8/qat).
        sparse: the sparse flatbuffer encoding: None = when the kernels are >= 50% zeros
            (pruned) and it gives a smaller file that runs; True/False to force.
        latency_runs: timed runs per runtime; 0 skips timing.
        num_threads: LiteRT interpreter threads (default: the CPU count).
        seed: the phantoms' seed and the choice of samples.

    Returns:
        An :class:`ExportResult` (``print(result)``, ``result.to_dict()``); the sidecar
        ``<path>.json`` records the entry, input spec, preprocessing, classes and the numbers.

    Raises:
        InvalidArgumentError: a bad option, a path of the wrong suffix, an existing target
            without ``overwrite``, an input shape the model cannot take, or no usable
            representative data.
        UncoveredLayerError: the file needs ops LiteRT has no builtin for (or, with ``strict``,
            an int8 file keeps float ops).
        VerificationError: the file disagrees with the Keras model and ``verify=True``; nothing
            is written.
        ExportError: the converter or LiteRT fails on the model.
    """
    if verify not in (True, False, "warn"):
        raise InvalidArgumentError(f"export: verify={verify!r} must be True, 'warn' or False.")
    for arg, value, low in (("calibration_samples", calibration_samples, 1), ("verify_samples", verify_samples, 1),
                            ("latency_runs", latency_runs, 0)):
        check_positive_int(arg, value, "export", minimum=low)
    check_choice("quantization", quantization, ALL_MODES, "export")
    target = _target(path, quantization, overwrite)  # before any work: a refusal costs nothing
    model, notes = _main_network(model, info)
    mode = _mode(quantization, model)
    if mode == "qat" and quantization == "int8":
        notes.append("a quantization-aware model: its fake-quant ranges give the int8 parameters")
    task = info.task
    shape = _shape(model, input_shape, info, notes)
    prep = {**info.preprocessing, **{k: v for k, v in (data_options or {}).items() if k in PREPROCESSING}}
    if representative_data is None:
        representative_data = _run_data(info, notes)
    n_cal = calibration_samples if mode in CALIBRATED else 0
    n_ver = verify_samples if verify else 0
    xs = representative(representative_data, model, info, n=max(n_cal + n_ver, 1), shape=shape,
                        options=data_options, seed=seed)
    cal, ver, held_out = split(xs, n_cal, n_ver)
    meta = dict(entry=info.name, task=task, params=int(model.count_params()), notes=notes)
    if mode == "savedmodel":
        return export_savedmodel(model, target, shape, ver if verify else None, verify, overwrite,
                                 meta, info, prep, held_out)
    net = model
    rewrite = None
    if has_3d_layers(model) and not is_qat(model):
        try:
            net = rewrite_3d(model, input_shape=shape, batch_size=1)
        except (ValueError, TypeError) as e:
            if isinstance(e, InvalidArgumentError):
                raise
            raise InvalidArgumentError(f"export: model {model.name!r} cannot take input_shape {shape} "
                                       f"({' '.join(str(e).split())[:200]}); pass an input_shape it "
                                       "accepts.") from None
        rewrite = {k: list(v) for k, v in net.zoo_rewrite.items()}
    sparsity = weight_sparsity(model)
    content, runner, used_sparse = _convert_checked(net, shape, mode, cal, int8_io, sparse, sparsity,
                                                    num_threads, notes)
    ops = _ops.read_ops(content)
    flex = _ops.unsupported_ops(ops)
    if flex:  # never expected: Flex ops are not enabled
        raise UncoveredLayerError(f"export: the file needs non-builtin ops {sorted({o['op'] for o in flex})}; "
                                  "quantization='savedmodel' exports such models.")
    floats, warns = _float_op_warnings(ops, mode, strict)
    if rewrite and rewrite["kept"]:
        notes.append(f"3D layers without a rewrite, kept as TFLite 3D ops: {', '.join(rewrite['kept'])}")
    verification = None
    if verify:
        verification = run_verification(model, runner.predict_on_batch, ver, mode, task)
        verification["held_out"] = held_out
        warns += _resolution_warnings(content, verification, mode)
    probe = ver[0] if len(ver) else (cal[0] if len(cal) else xs[0])
    timing = latency(model, runner, probe, latency_runs) if latency_runs else None
    result = ExportResult(
        path=str(target), mode=mode, entry=meta["entry"], task=task, input_shape=[1, *shape],
        output_shape=[1, *runner.output_shape[1:]], bytes=len(content),
        zipped_bytes=len(zlib.compress(content, 6)), params=meta["params"],
        input_dtype=np.dtype(runner._in["dtype"]).name, ops=_ops.summarize(ops),
        float_ops=[{k: o[k] for k in ("op", "layer", "name")} for o in floats], verification=verification,
        latency=timing, rewrite=rewrite, sparse=used_sparse, weight_sparsity=sparsity, notes=notes,
        warnings=warns)
    if verification and not verification["passed"]:
        n = verification["samples"]
        text = (f"export: the {mode} file disagrees with the Keras model on {n} input{'s' if n != 1 else ''}: "
                f"{verification['summary']}.")
        if verify is True and n < MIN_VERIFY and mode not in FLOAT_TOL:  # a decision's agreement needs inputs
            text += (f" Only {n} verification input{'s' if n != 1 else ''}: too few to refuse the file on; it was "
                     f"written. Pass more representative data (at least {MIN_VERIFY + 32} samples for int8: "
                     "calibration first, then verification) to have it judged.")
        elif verify is True:
            raise VerificationError(f"{text} Nothing was written. Use a higher-precision mode (float16), "
                                    "representative data of the task (a trained model and its data), or "
                                    "verify='warn' (zoo export --verify warn) to write the file anyway.", result)
        result.warnings.append(text)
    for text in result.warnings:
        warnings.warn(text, stacklevel=3)  # the caller of zoo.export(...)
    _write(target, content, result, runner, prep, info, shape, cal)
    return result


def _convert_checked(net, shape, mode, cal, int8_io, sparse, sparsity, num_threads, notes):
    """Convert; with the sparse encoding where asked (or where it helps: pruned kernels, a
    smaller file that the interpreter runs)."""
    dense = None
    if sparse is not True:
        dense = convert(net, (1,) + tuple(shape), mode, cal, int8_io=int8_io)
        if sparse is False or sparsity < 0.5:
            return dense, TFLiteModel(content=dense, num_threads=num_threads), False
    content = convert(net, (1,) + tuple(shape), mode, cal, int8_io=int8_io, sparse=True)
    try:
        runner = TFLiteModel(content=content, num_threads=num_threads)
    except ExportError as e:
        if sparse is True:
            raise ExportError(f"{e}. The sparse flatbuffer does not run in this mode ({mode}); export with "
                              "sparse=False.") from None
        notes.append(f"the sparse encoding of this {mode} file does not run in LiteRT; kept the dense one")
        return dense, TFLiteModel(content=dense, num_threads=num_threads), False
    if dense is not None and len(content) >= len(dense):
        notes.append(f"kernels {sparsity:.0%} zeros, but the sparse encoding is not smaller; kept the dense one")
        return dense, TFLiteModel(content=dense, num_threads=num_threads), False
    if dense is not None:
        notes.append(f"kernels {sparsity:.0%} zeros: sparse flatbuffer, {len(content) / len(dense):.2f}x the "
                     "dense file")
    return content, runner, True


def _write(target, content, result, runner, prep, info, shape, cal):
    """The .tflite (atomically), then its sidecar (atomically), which records the file's hash."""
    _io.atomic_write_bytes(target, lambda tmp: Path(tmp).write_bytes(content))
    side = sidecar_path(target)
    inp = runner._in
    scale, zero = inp.get("quantization", (0.0, 0))
    write_sidecar(side, {
        "file": target.name, "sha256": sha256_bytes(content), "bytes": len(content), "mode": result.mode,
        "entry": result.entry, "task": result.task, "spatial_dims": len(shape) - 1 if len(shape) > 1 else 0,
        "num_classes": int(runner.output_shape[-1]),
        "class_names": None if info.class_names is None else list(info.class_names),
        "input": {"shape": result.input_shape, "dtype": result.input_dtype,
                  "quantization": [float(scale), int(zero)] if scale else None},
        "output": {"shape": result.output_shape},
        "patch_size": list(shape[:-1]) if len(shape) > 1 else None, "preprocessing": prep,
        "verification": result.verification, "ops": result.ops, "float_ops": result.float_ops,
        "rewrite": result.rewrite, "notes": result.notes, "zoo_version": __version__,
        "calibration_range": [float(cal.min()), float(cal.max())] if len(cal) else None,
        "tensorflow": tf.__version__})
    result.sidecar = str(side)


__all__ = ["export", "ALL_MODES", "has_3d_layers", "is_qat", "weight_sparsity"]
