"""What a compression achieved, measured: per-layer sparsity / distinct values / int8, sizes
before and after (float32 weights file, zipped), validation metrics before and after, time.

Sizes: ``float32`` is the input model's Keras HDF5 weights file; ``zipped`` is a file deflated
with zipfile (level 9, as tfmot's guides measure compression); the compressed model is stored
as it would ship: a pruned or clustered model as its float32 weights file (zeros and repeated
values deflate), a QAT model as int8 kernels (quantized with its trained per-channel or
per-tensor ranges) plus float32 biases, norms and ranges (an .npz; about the payload of the
int8 TFLite file, which the export writes).
"""
import io
import os
import tempfile
import zipfile

import numpy as np

from zoo._keras import tf
from zoo.compress._quantize import _wrappers


def zipped_size(data, name="weights"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
    return len(buf.getvalue())


def h5_bytes(model):
    """The bytes of ``model.save_weights(file.h5)`` (Keras 2 HDF5 weights)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.h5")
        model.save_weights(path)
        with open(path, "rb") as f:
            return f.read()


def _int8(values, lo, hi, per_axis):
    """Symmetric narrow-range int8 of ``values`` with tfmot's range (the TFLite weight tensor)."""
    scale = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1e-12) / 127.0
    return np.clip(np.round(values / scale), -127, 127).astype(np.int8)


def int8_payload(qat_model):
    """``{name: array}``: every quantized kernel as int8, everything else float32."""
    out, done = {}, set()
    for wrapper in _wrappers(qat_model):
        for weight, quantizer, qvars in wrapper._weight_vars:
            if "min_var" in qvars:
                values = tf.convert_to_tensor(weight).numpy()
                lo, hi = qvars["min_var"].numpy(), qvars["max_var"].numpy()
                if type(wrapper.layer).__name__ == "Conv2DTranspose":  # per tensor, (h, w, out, in)
                    out[weight.name] = _int8(values, lo, hi, False)
                else:
                    out[weight.name] = _int8(values, lo, hi, getattr(quantizer, "per_axis", False))
                done.add(id(weight))
    for w in qat_model.weights:
        if id(w) not in done and w.dtype != tf.int32:
            out[w.name] = w.numpy().astype(np.float32)
    return out


def npz_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": a for i, a in enumerate(arrays.values())})
    return buf.getvalue()


def model_sizes(model, quantized=False):
    """``{"bytes", "zipped"}`` of ``model`` stored as described in the module doc."""
    data = npz_bytes(int8_payload(model)) if quantized else h5_bytes(model)
    return {"bytes": len(data), "zipped": zipped_size(data)}


def _mb(n):
    return f"{n / 1e6:.3g} MB" if n >= 1e5 else f"{n / 1e3:.3g} kB"


class Report:
    """The result of ``zoo.compress``: prints as a table, ``to_dict()`` for JSON."""

    def __init__(self, data):
        self.data = data

    def __getitem__(self, key):
        return self.data[key]

    def to_dict(self):
        return dict(self.data)

    @property
    def ratio_zipped(self):
        s = self.data.get("size") or {}
        return s["float32_zipped"] / s["compressed_zipped"] if s.get("compressed_zipped") else None

    @property
    def ratio_file(self):
        s = self.data.get("size") or {}
        return s["float32_bytes"] / s["compressed_zipped"] if s.get("compressed_zipped") else None

    def __repr__(self):
        return str(self)

    def __str__(self):
        d = self.data
        lines = [f"zoo.compress {d['model']} ({d['spatial_dims']}D): {d['recipe']} - {len(d['steps'])} step(s), "
                 f"{d['time_s']:.1f} s, out_dir {d['out_dir']}"]
        for i, s in enumerate(d["steps"], 1):
            lines.append(f"  step {i} {s['name']} ({s['kind']}): {s['summary']}")
        layers = d.get("layers") or {}
        if layers:
            cols = [c for c in ("sparsity", "unique", "int8") if any(c in v for v in layers.values())]
            width = max(len(n) for n in layers)
            lines.append(f"  {'layer':<{width}}  {'params':>10}  " + "  ".join(f"{c:>8}" for c in cols))
            for name, v in layers.items():
                cells = []
                for c in cols:
                    x = v.get(c)
                    cells.append(f"{'-' if x is None else (f'{x:.3f}' if c == 'sparsity' else str(x)):>8}")
                lines.append(f"  {name:<{width}}  {v['params']:>10,}  " + "  ".join(cells))
        size = d.get("size")
        if size:
            lines.append(f"  size: float32 weights {_mb(size['float32_bytes'])} ({_mb(size['float32_zipped'])} "
                         f"zipped) -> {size['stored_as']} {_mb(size['compressed_bytes'])} "
                         f"({_mb(size['compressed_zipped'])} zipped): {self.ratio_zipped:.2f}x smaller than the "
                         f"zipped float32, {self.ratio_file:.2f}x smaller than the float32 file")
        before, after = d.get("metrics_before") or {}, d.get("metrics_after") or {}
        if after:
            lines.append("  validation: " + ", ".join(
                f"{k} {before[k]:.4g} -> {after[k]:.4g}" if k in before else f"{k} {after[k]:.4g}" for k in after))
        else:
            lines.append("  validation: no val_data given (metrics before/after not measured)")
        return "\n".join(lines)
