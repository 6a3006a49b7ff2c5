"""Contract specs as registry data: their keys, the zoo's own convention, validation and merging
(read by :mod:`zoo.hub.registry` when it loads a file, used by :mod:`zoo.hub.contract`)."""
import re

from zoo.errors import RegistryError, did_you_mean

SPEC_KEYS = {
    "base": "name of a spec in the registry's contracts: section that this one extends",
    "first_conv": "name of the first convolution",
    "classifier": "list of names of the class-score layers",
    "stage_outputs": "list of regular expressions for the stage outputs (first group = the stage)",
    "aux": "regular expression for the layers of auxiliary heads",
}
# The zoo's own convention (DESIGN.md, section 4); every spec extends it.
ZOO_SPEC = {"first_conv": "stem_conv", "classifier": ("classifier",), "stage_outputs": (r"stage(\d+)_out",),
            "aux": r"aux\d*(_.*)?"}
ROLES = {
    "first_conv": "the first convolution",
    "classifier": "the class heads (every layer with a kernel that produces a class output)",
    "aux": "the layers of auxiliary heads",
    "encoder": "the layers with weights of the encoder (up to the deepest stage output)",
    "stage_outputs": "the last layer of each resolution stage",
}


def check_spec(where, spec, known=()):
    """Validate a contract spec from a registry file (a mapping, or the name of a known spec)."""
    if isinstance(spec, str):
        if spec not in known:
            raise RegistryError(f"{where}: contract {spec!r} is not defined in any contracts: section;"
                                f" defined: {', '.join(sorted(known)) or 'none'}.{did_you_mean(spec, known)}")
        return {"base": spec}
    if not isinstance(spec, dict):
        raise RegistryError(f"{where}: contract must be a mapping or the name of a contracts: entry; got "
                            f"{type(spec).__name__}.")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise RegistryError(f"{where}: contract has unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                            f"{', '.join(sorted(SPEC_KEYS))}.{did_you_mean(unknown[0], SPEC_KEYS)}")
    if "base" in spec and spec["base"] not in known:
        raise RegistryError(f"{where}: contract base {spec['base']!r} is not defined; defined: "
                            f"{', '.join(sorted(known)) or 'none'}.")
    if "first_conv" in spec and not isinstance(spec["first_conv"], str):
        raise RegistryError(f"{where}: contract first_conv must be a layer name (a string).")
    for key in ("classifier", "stage_outputs"):
        value = spec.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RegistryError(f"{where}: contract {key} must be a list of strings ({SPEC_KEYS[key]}).")
    for pattern in list(spec.get("stage_outputs", [])) + ([spec["aux"]] if "aux" in spec else []):
        if not isinstance(pattern, str):
            raise RegistryError(f"{where}: contract aux must be a regular expression (a string).")
        try:
            re.compile(pattern)
        except re.error as e:
            raise RegistryError(f"{where}: contract pattern {pattern!r} is not a valid regular expression "
                                f"({e}).") from None
    return dict(spec)


def merged_spec(spec, contracts):
    """A full spec: the zoo default, then the named base chain, then ``spec``'s own fields."""
    chain, seen = [], set()
    current = dict(spec or {})
    while current is not None:
        chain.append(current)
        base = current.get("base")
        if base is None or base in seen:
            break
        seen.add(base)
        current = dict(contracts[base])
    out = dict(ZOO_SPEC)
    for part in reversed(chain):
        out.update({k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in part.items() if k != "base"})
    return out
