"""Recipes: registry data -> validated steps.

A recipe is an entry of ``registry.yaml``'s ``recipes:`` section (``kind`` + options), a chain of
them written ``"prune_80+qat_int8"``, a ``kind: chain`` recipe (``deep_compression``), or a dict
with the same keys. :func:`resolve` turns any of these into :class:`Step` objects whose options
are checked here (the registry loader only checks the kind), in the order a chain must follow:
distill -> prune -> cluster -> qat, each kind at most once. A step learns what earlier steps
left (:attr:`Step.preserve`): clustering after pruning keeps the zeros, QAT after pruning and/or
clustering uses tfmot's prune-/cluster-preserving scheme.
"""
import dataclasses
import re

from zoo.compress._cluster import INITS
from zoo.errors import InvalidArgumentError, did_you_mean
from zoo.hub.registry import get_registry, thaw

KINDS = ("prune", "cluster", "qat", "distill", "chain", "ptq")
ORDER = ("distill", "prune", "cluster", "qat")
_COMMON = {"exclude": "layers left alone: contract roles (first_conv, classifier, aux, encoder) or name globs",
           "learning_rate": "fine-tuning learning rate of this step (default: the call's, else 1e-4)",
           "description": "one line shown by zoo info and zoo.list_recipes"}
OPTIONS = {
    "prune": {"final_sparsity": "target fraction of zero weights per pruned kernel, 0 < s < 1",
              "initial_sparsity": "sparsity at the first mask update (default 0)",
              "power": "exponent of tfmot's polynomial decay (default 3)",
              "begin": "fraction of the step's training at which pruning starts (default 0)",
              "end": "fraction of the step's training at which the target is reached (default 0.5)",
              "updates": "number of mask updates between begin and end (default 16)",
              "m_by_n": "[m, n]: structured sparsity, m zeros in every n input channels (e.g. [2, 4])"},
    "cluster": {"clusters": "values per clustered kernel (k >= 2)",
                "init": "centroid initialisation: kmeans++ (default), linear, density, random",
                "preserve_sparsity": "keep the zeros (default: true after a prune step, else false)"},
    "qat": {"scheme": "default_8bit (tfmot's 8-bit scheme, per-channel conv weights)"},
    "distill": {"student": "registry name of the student (or pass student= to zoo.compress)",
                "student_config": "builder keyword overrides of the student, e.g. {filters: 16}",
                "temperature": "softmax temperature T > 0 (default 4)",
                "alpha": "weight of the distillation term, 0 < alpha < 1: (1 - alpha) task + alpha T^2 KL "
                         "(default 0.5)"},
    "chain": {"steps": "list of recipe names run in order (distill, prune, cluster, qat)"},
    "ptq": {"quantization": "post-training quantization of the export"},
}


class RecipeNotApplicableError(InvalidArgumentError):
    """A recipe cannot be applied to this model (the message lists every layer and the fix)."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One training step of a recipe: ``kind``, validated ``options`` and ``preserve`` (the kinds
    of the earlier steps whose result it must keep)."""
    name: str
    kind: str
    options: dict
    preserve: tuple = ()

    def get(self, key, default=None):
        return self.options.get(key, default)


def _fail(where, message):
    raise InvalidArgumentError(f"recipe {where}: {message}")


def _number(where, key, value, low=None, high=None, integer=False, inclusive=(False, False)):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not integer or isinstance(value, int))
    if ok and low is not None:
        ok = value >= low if inclusive[0] else value > low
    if ok and high is not None:
        ok = value <= high if inclusive[1] else value < high
    if not ok:
        lo = "" if low is None else f"{low} {'<=' if inclusive[0] else '<'} "
        hi = "" if high is None else f" {'<=' if inclusive[1] else '<'} {high}"
        _fail(where, f"{key}={value!r} must be {'an integer' if integer else 'a number'} with {lo}{key}{hi}.")
    return value


def check_options(name, kind, options):
    """Validate one recipe's options (a RegistryError-free InvalidArgumentError naming the fix)."""
    where = repr(name)
    if kind not in KINDS:
        _fail(where, f"kind {kind!r} is not one of {', '.join(KINDS)}.{did_you_mean(kind, KINDS)}")
    allowed = {**_COMMON, **OPTIONS[kind]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        _fail(where, f"unknown option(s) {', '.join(map(repr, unknown))} for kind {kind!r}; allowed: "
                     f"{', '.join(sorted(allowed))}.{did_you_mean(unknown[0], allowed)}")
    exclude = options.get("exclude", [])
    if not isinstance(exclude, (list, tuple)) or not all(isinstance(e, str) for e in exclude):
        _fail(where, f"exclude={exclude!r} must be a list of contract roles or layer-name globs.")
    if "learning_rate" in options:
        _number(where, "learning_rate", options["learning_rate"], 0)
    if kind == "prune":
        if "m_by_n" in options and options["m_by_n"] is not None:
            mn = options["m_by_n"]
            if not (isinstance(mn, (list, tuple)) and len(mn) == 2 and all(isinstance(v, int) for v in mn)
                    and 0 < mn[0] < mn[1]):
                _fail(where, f"m_by_n={mn!r} must be [m, n] with 0 < m < n, e.g. [2, 4].")
        elif "final_sparsity" not in options:
            _fail(where, "a prune recipe needs final_sparsity (e.g. 0.8) or m_by_n (e.g. [2, 4]).")
        else:
            _number(where, "final_sparsity", options["final_sparsity"], 0, 1)
        _number(where, "initial_sparsity", options.get("initial_sparsity", 0.0), 0, options.get("final_sparsity", 1),
                inclusive=(True, False))
        _number(where, "power", options.get("power", 3), 0)
        begin = _number(where, "begin", options.get("begin", 0.0), 0, 1, inclusive=(True, False))
        _number(where, "end", options.get("end", 0.5), begin, 1, inclusive=(False, True))
        _number(where, "updates", options.get("updates", 16), 1, integer=True, inclusive=(True, False))
    elif kind == "cluster":
        if "clusters" not in options:
            _fail(where, "a cluster recipe needs clusters (values per kernel, e.g. 16).")
        _number(where, "clusters", options["clusters"], 2, integer=True, inclusive=(True, False))
        if options.get("init", "kmeans++") not in INITS:
            _fail(where, f"init={options['init']!r} must be one of {', '.join(INITS)}.")
        if not isinstance(options.get("preserve_sparsity", False), bool):
            _fail(where, "preserve_sparsity must be true or false.")
    elif kind == "qat":
        if options.get("scheme", "default_8bit") != "default_8bit":
            _fail(where, f"scheme={options['scheme']!r}: only default_8bit (tfmot's 8-bit scheme) is supported.")
    elif kind == "distill":
        _number(where, "temperature", options.get("temperature", 4.0), 0)
        _number(where, "alpha", options.get("alpha", 0.5), 0, 1)
        if "student_config" in options and not isinstance(options["student_config"], dict):
            _fail(where, "student_config must be a mapping of builder keywords, e.g. {filters: 16}.")
        if "student" in options and not isinstance(options["student"], str):
            _fail(where, "student must be a registry name (pass a model as zoo.compress(..., student=model)).")
    elif kind == "chain":
        steps = options.get("steps")
        if not isinstance(steps, (list, tuple)) or not steps or not all(isinstance(s, str) for s in steps):
            _fail(where, "a chain needs steps: a non-empty list of recipe names, e.g. [prune_80, qat_int8].")
    return dict(options)


def _registry_recipes():
    return {name: (r.kind, thaw(r.options)) for name, r in get_registry().recipes.items()}


def resolve(recipe, recipes=None):
    """``(display name, [Step])`` for a recipe name, a ``"+"``-chain, a chain recipe or a dict."""
    recipes = _registry_recipes() if recipes is None else recipes
    if isinstance(recipe, dict):
        spec = dict(recipe)
        kind = spec.pop("kind", None)
        name = spec.pop("name", f"custom_{kind}")
        return name, _order(name, _expand(name, kind, spec, recipes))
    if not isinstance(recipe, str) or not recipe.strip():
        raise InvalidArgumentError(f"compress: recipe must be a recipe name, a chain such as 'prune_80+qat_int8' "
                                   f"or a dict with a kind; got {recipe!r}. See zoo.list_recipes(name).")
    if recipe in recipes:  # a defined recipe, also one named like a chain ("prune_80+qat_int8")
        return recipe, _order(recipe, _expand(recipe, *recipes[recipe], recipes))
    steps = []
    for part in [p.strip() for p in recipe.split("+")]:
        if part not in recipes:
            raise InvalidArgumentError(
                f"compress: no recipe named {part!r}.{did_you_mean(part, recipes)} Defined recipes: "
                f"{', '.join(sorted(recipes))} (registry.yaml recipes:, or a ZOO_REGISTRY file).")
        kind, options = recipes[part]
        steps += _expand(part, kind, options, recipes)
    return recipe, _order(recipe, steps)


def _expand(name, kind, options, recipes, depth=0):
    options = check_options(name, kind, options)
    if kind == "ptq":
        raise InvalidArgumentError(
            f"recipe {name!r} is post-training quantization: there is nothing to train. Use the export: "
            "zoo.export(model, ..., quantization='int8').")
    if kind != "chain":
        return [Step(name, kind, options)]
    if depth > 4:
        _fail(repr(name), "chains nest too deep (a chain names itself?).")
    out = []
    for part in options["steps"]:
        if part not in recipes:
            _fail(repr(name), f"step {part!r} is not a defined recipe.{did_you_mean(part, recipes)}")
        out += _expand(part, *recipes[part], recipes, depth + 1)
    return out


def _order(name, steps):
    kinds = [s.kind for s in steps]
    if sorted(kinds, key=ORDER.index) != kinds or len(set(kinds)) != len(kinds):
        raise InvalidArgumentError(
            f"compress: recipe {name!r} runs {' -> '.join(kinds)}; a chain runs each kind at most once, in "
            f"the order {' -> '.join(ORDER)} (e.g. prune_80+cluster_16+qat_int8).")
    out, seen = [], []
    for step in steps:
        preserve = tuple(k for k in seen if k in ("prune", "cluster"))
        out.append(dataclasses.replace(step, preserve=preserve))
        seen.append(step.kind)
    return out


def slug(name):
    """A folder-safe form of a recipe name (``prune_80+qat_int8`` -> ``prune_80+qat_int8``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name))
