"""The pre-training check: can each step of a recipe handle this architecture?

:func:`plan` runs before anything is trained or written. It resolves every step's exclusions
(contract roles and globs, ``zoo.contract(model).layers``), lists the layers each step will
touch, and collects *every* problem of *every* step into one :class:`RecipeNotApplicableError`
with the fix, instead of failing at the first layer deep inside tfmot.
"""
import dataclasses
import fnmatch

from zoo._keras import keras
from zoo.compress import _cluster, _prune, _quantize
from zoo.compress._distill import build_student
from zoo.compress.recipes import RecipeNotApplicableError
from zoo.errors import InvalidArgumentError
from zoo.hub.contract import ROLES, contract

PTQ_HINT = ("quantize after training with the export's post-training int8 path instead: "
            "zoo.export(model, ..., quantization='int8')")


@dataclasses.dataclass
class StepPlan:
    step: object
    layers: list            # layers the step wraps (pruned, clustered, quantized)
    excluded: list          # layers excluded by the recipe's exclude:
    model: object = None    # the architecture the step applies to (the student after distill)
    notes: list = dataclasses.field(default_factory=list)


def exclusions(model, selectors):
    """Layer names for ``exclude:`` selectors. A contract role this model does not have (no
    classifier in a headless model, no aux heads) excludes nothing; a glob or name that matches
    no layer is an error (a typo would silently compress a layer meant to be kept)."""
    cache = getattr(model, "_zoo_compress_contract", None)
    parts = cache if cache is not None else contract(model)
    object.__setattr__(model, "_zoo_compress_contract", parts)  # untracked by Keras
    names = [layer.name for layer in model.layers]
    out = []
    for sel in selectors or []:
        if sel in ROLES:
            value = getattr(parts, {"classifier": "classifiers"}.get(sel, sel))
            picked = [value] if isinstance(value, str) else list(value or ())
        elif any(c in sel for c in "*?[") or sel in names:
            picked = [n for n in names if fnmatch.fnmatchcase(n, sel)]
            if not picked:
                raise InvalidArgumentError(f"compress: exclude {sel!r} matches no layer of {model.name!r}; "
                                           "check the names with model.summary().")
        else:
            picked = parts.layers([sel], model)  # raises with the roles and a did-you-mean
        out += [n for n in picked if n and n not in out]
    return out


def _nested(model):
    return [layer.name for layer in model.layers if isinstance(layer, keras.Model)]


def plan(model, steps, *, mixed_precision=False, student=None, entry=None, sweep=False):
    """``[StepPlan]`` for ``steps`` on ``model``, or RecipeNotApplicableError listing every problem."""
    problems, plans = [], []
    dims = len(model.input_shape) - 2
    what = f"{entry or model.name} ({dims}D)"
    nested = _nested(model)
    if nested:
        raise RecipeNotApplicableError(
            f"compress: {what} holds nested models ({', '.join(nested)}); a recipe applies to one functional "
            "network trained by zoo.finetune. A WGAN's networks are model.generator and model.critic and need a "
            "GAN training step; compress a single network (e.g. a classifier or segmenter) instead.")
    current = model
    for step in steps:
        where = f"step {step.name!r} ({step.kind})"
        if step.kind == "distill":
            try:
                current = build_student(model, step, student, entry=entry, sweep=sweep)
            except InvalidArgumentError as e:
                problems.append(f"{where}: {e}")
                plans.append(StepPlan(step, [], [], None))
                continue
            plans.append(StepPlan(step, [layer.name for layer in current.layers if layer.weights], [], current,
                                  [f"student {current.name}: {current.count_params():,} parameters"]))
            continue
        excluded = exclusions(current, step.get("exclude", []))
        layers = []
        if step.kind == "prune":
            layers = [layer.name for layer in current.layers if _prune.prunable(layer) and layer.name not in excluded]
            mn = step.get("m_by_n")
            if mn:
                bad = [(n, _prune.m_by_n_problems(current.get_layer(n), mn)) for n in layers]
                bad = [(n, why) for n, why in bad if why]
                if bad:
                    problems.append(
                        f"{where}: {mn[0]}:{mn[1]} sparsity cannot hold on {len(bad)} layer(s): "
                        + "; ".join(f"{n}: {why}" for n, why in bad)
                        + ". Fix: exclude them (exclude: [...] in the recipe) or use unstructured pruning (prune_50).")
        elif step.kind == "cluster":
            if mixed_precision:
                problems.append(f"{where}: tfmot clustering fails under mixed precision. Fix: mixed_precision=False.")
            k = step.get("clusters")
            layers = [layer.name for layer in current.layers
                      if _cluster.clusterable(layer, k) and layer.name not in excluded]
        elif step.kind == "qat":
            if mixed_precision:
                problems.append(f"{where}: tfmot's quantization-aware training fails under mixed precision "
                                "(fake-quant ops are float32 only). Fix: mixed_precision=False.")
            bad = _quantize.unsupported_layers(current, excluded)
            if bad:
                kinds = sorted({k for _, k in bad})
                three_d = any(k.endswith("3D") or "3D maps" in k for k in kinds)
                problems.append(
                    f"{where}: tfmot has no quantize config for {len(bad)} layer(s) of {what}: "
                    + ", ".join(f"{n} ({k})" for n, k in bad)
                    + f". Layer types: {', '.join(kinds)}. Fix: "
                    + (f"3D layers cannot be quantization-aware trained; {PTQ_HINT}, or compress a 2D model."
                       if three_d else f"exclude them (exclude: [...]) or {PTQ_HINT}."))
            layers = [layer.name for layer in current.layers if layer.name not in excluded
                      and not isinstance(layer, keras.layers.InputLayer)]
        if step.kind in ("prune", "cluster") and not layers and not problems:
            problems.append(f"{where}: no layer of {what} has a kernel to {step.kind} (after exclude: "
                            f"{', '.join(excluded) or 'none'}). Fix: exclude fewer layers.")
        plans.append(StepPlan(step, layers, excluded, current))
    if problems:
        raise RecipeNotApplicableError(
            f"compress: the recipe cannot be applied to {what} - {len(problems)} problem(s), found before any "
            "training:\n  - " + "\n  - ".join(problems))
    return plans
