"""The result of ``zoo.export``: sizes, ops with their dtypes, verification and latency."""
import json
from dataclasses import asdict, dataclass, field


def _mb(n):
    return f"{n / 2 ** 20:.2f} MiB" if n >= 2 ** 20 else f"{n / 1024:.1f} KiB"


def _shape(s):
    return "x".join(str(v) for v in s)


@dataclass
class ExportResult:
    """What an export wrote and how it compares with the Keras model.

    ``verification`` holds the numbers (``metrics``), the one that decides (``decides``, with
    its ``bound``) and ``passed``; ``latency`` the median batch-1 milliseconds of Keras
    ``predict_on_batch`` and of the LiteRT interpreter; ``ops`` each operator kind with the
    dtypes it computes in; ``float_ops`` the float operators left in a quantized file.
    """

    path: str
    mode: str
    entry: str
    task: str
    input_shape: list
    output_shape: list
    bytes: int
    zipped_bytes: int = 0
    params: int = 0
    sidecar: str = None
    input_dtype: str = "float32"
    ops: list = field(default_factory=list)
    float_ops: list = field(default_factory=list)
    verification: dict = None
    latency: dict = None
    rewrite: dict = None
    sparse: bool = False
    weight_sparsity: float = 0.0
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def passed(self):
        """True when verification ran and passed (None when it did not run)."""
        return None if not self.verification else bool(self.verification["passed"])

    @property
    def size_vs_float32_weights(self):
        """File size / (4 bytes x parameters): ~1 for float32, ~0.5 float16, ~0.25 int8."""
        return self.bytes / max(4 * self.params, 1)

    def to_dict(self):
        d = asdict(self)
        d["passed"] = self.passed
        d["size_vs_float32_weights"] = self.size_vs_float32_weights
        return json.loads(json.dumps(d, default=float))

    def __str__(self):
        lines = [f"zoo export: {self.entry} -> {self.path} ({self.mode}, {_mb(self.bytes)}; zipped "
                 f"{_mb(self.zipped_bytes)}; {self.size_vs_float32_weights:.2f}x the float32 weights of "
                 f"{self.params:,} parameters{'; sparse flatbuffer' if self.sparse else ''})"]
        io = f"  input  {_shape(self.input_shape)} {self.input_dtype}    output {_shape(self.output_shape)}"
        if self.rewrite and self.rewrite.get("rewritten"):
            io += f"    (3D rewrite: {len(self.rewrite['rewritten'])} layers as 2D ops)"
        lines.append(io)
        if self.ops:
            shown = ", ".join(f"{o['op']} {o['dtypes']} x{o['count']}" for o in self.ops[:8])
            more = f", ... ({len(self.ops) - 8} more kinds)" if len(self.ops) > 8 else ""
            lines.append(f"  ops    {shown}{more}")
        if self.mode in ("int8", "qat", "int16x8"):
            lines.append("  float  " + (f"{len(self.float_ops)} float op(s): " + ", ".join(
                f"{o['op']} ({o['layer']})" for o in self.float_ops[:6]) if self.float_ops
                else "no float ops (integer only, besides the input QUANTIZE / output DEQUANTIZE)"))
        v = self.verification
        if v:
            m = v["metrics"]
            extra = [f"max abs diff {m['max_abs_diff']:.3g} (outputs up to {m['output_scale']:.3g})"]
            if "top1_agreement" in m:
                extra.append(f"top-1 agreement {m['top1_agreement']:.1%}")
            if "dice" in m:
                extra.append("Dice per class " + " ".join("-" if d is None else f"{d:.3f}" for d in m["dice"]))
            held = "held-out" if v.get("held_out", True) else "calibration (too few samples to hold out)"
            lines.append(f"  verify {v['samples']} {held} input{'s' if v['samples'] != 1 else ''}: {v['summary']} "
                         f"{'PASSED' if v['passed'] else 'FAILED'}; " + "; ".join(extra))
        else:
            lines.append("  verify not run (verify=False)")
        if self.latency:
            t = self.latency
            lines.append(f"  speed  batch 1: Keras predict_on_batch {t['keras_ms']:.2f} ms, LiteRT "
                         f"{t['litert_ms']:.2f} ms ({t['speedup']:.2f}x; {t['threads']} threads, median of "
                         f"{t['runs']})")
        for note in self.notes:
            lines.append(f"  note   {note}")
        for warning in self.warnings:
            lines.append(f"  WARNING {warning}")
        if self.sidecar:
            lines.append(f"  sidecar {self.sidecar}")
        return "\n".join(lines)


__all__ = ["ExportResult"]
