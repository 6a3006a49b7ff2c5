"""Typed checks for registry files: every field has a type, a range and a one-line meaning.

A checker is called as ``checker(where, value)`` and returns the value (unchanged) or raises a
:class:`~zoo.errors.RegistryError` that names the file, the entry, the field, the value received
and what is expected, e.g. ``reg.yaml: entry 'mynet': input.size is -32; expected an integer
from 1 to 16384 (reference input size per spatial axis)``. Booleans are never integers here
(YAML's ``true`` is not ``1``), floats must be finite, strings carry no control characters, and
names follow :data:`NAME_PATTERN`. The tables at the bottom are the registry schema (DESIGN.md
section 3); ``zoo/hub/registry.py`` turns the checked data into frozen dataclasses.
"""
import math
import re
import unicodedata

from zoo.errors import RegistryError, did_you_mean

# Names of entries, weight tags, recipes and contracts: plain ASCII, no path separators, no
# whitespace or invisible characters, so a name prints, sorts and lands in a file name as typed.
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?")
INT32_MAX = 2 ** 31 - 1          # larger integers cannot be tensor sizes (they overflow TensorFlow's int32)
MAX_TEXT = 20_000                # characters of one prose field (paper, notes, licence ...)
MAX_ITEMS = 10_000               # items of one list or mapping of builder/preprocessing data
MAX_CHANNELS = 4096
MAX_SIZE = 16384
MAX_PARAMS = 10 ** 12


def show(value):
    """A value as the message shows it: YAML spelling for scalars, the kind for containers."""
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        text = repr(value)
        return f"the string {text[:60] + '...' if len(text) > 60 else text}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    text = text[:60] + "..." if len(text) > 60 else text
    return text if isinstance(value, (int, float)) else f"{text} (a {type(value).__name__})"


def fail(where, value, expected):
    raise RegistryError(f"{where} is {show(value)}; expected {expected}.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


_CONTROL_NAMES = {"\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\t": "TAB", "\x00": "NUL"}


def _bad_char(text, prose):
    """The first character a registry string may not hold (control, invisible, bidi), or None."""
    for ch in text:
        if prose and ch in "\n\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return ch
    return None


class Check:
    """Base of the checkers; ``expected`` is the text after 'expected' in a message."""
    expected = "a value"

    def __call__(self, where, value):
        raise NotImplementedError


class Int(Check):
    def __init__(self, lo=0, hi=INT32_MAX):
        self.lo, self.hi = lo, hi
        self.expected = f"an integer from {lo} to {hi}"

    def __call__(self, where, value):
        if not _is_int(value) or not self.lo <= value <= self.hi:
            fail(where, value, self.expected)
        return value


class Choice(Check):
    def __init__(self, *choices):
        self.choices = choices
        self.expected = "one of " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)

    def __call__(self, where, value):
        # exact types: "2" is not 2 and true is not 1
        if not any(type(value) is type(c) and value == c for c in self.choices):
            quoted = [c for c in self.choices if not isinstance(c, str) and str(value) == str(c).lower()]
            near = (f" Write {quoted[0]} without quotes." if quoted else
                    did_you_mean(value, [str(c) for c in self.choices]) if isinstance(value, str) else "")
            raise RegistryError(f"{where} is {show(value)}; expected {self.expected}.{near}")
        return value


class Text(Check):
    """A string; ``prose`` allows newlines and tabs; ``pattern`` must match all of it."""

    def __init__(self, max_len=MAX_TEXT, *, prose=True, pattern=None, expected=None, empty=False):
        self.max_len, self.prose, self.pattern, self.empty = max_len, prose, pattern, empty
        self.expected = expected or f"a {'' if empty else 'non-empty '}string of at most {max_len} characters"

    def __call__(self, where, value):
        if not isinstance(value, str) or not (value or self.empty) or len(value) > self.max_len:
            fail(where, value, self.expected)
        bad = _bad_char(value, self.prose)
        if bad is not None:
            name = unicodedata.name(bad, None) or _CONTROL_NAMES.get(bad, "a control character")
            raise RegistryError(f"{where} holds the invisible or control character U+{ord(bad):04X} "
                                f"({name}) in {value[:60]!r}; remove it.")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            fail(where, value, self.expected)
        return value


NAME = Text(64, prose=False, pattern=NAME_PATTERN,
            expected="a name of 1-64 ASCII letters, digits, '_', '-' or '.' starting with a letter or "
                     "digit (no spaces, slashes or invisible characters), e.g. 'resnet50' or 'imagenet-notop'")
# a recipe is a name, or a chain of names joined by '+' (prune_80+qat_int8: one step after the other)
RECIPE_NAME = Text(200, prose=False, pattern=re.compile(rf"{NAME_PATTERN.pattern}(?:\+{NAME_PATTERN.pattern})*"),
                   expected="a recipe name (letters, digits, '_', '-', '.'), or names joined by '+' for a "
                            "chain, e.g. 'prune_80' or 'prune_80+qat_int8'")
KEYWORD = Text(64, prose=False, pattern=re.compile(r"[a-z][a-z0-9_]*"),
               expected="a builder keyword argument (a lower-case Python identifier, e.g. num_classes)")


class ListOf(Check):
    def __init__(self, item, min_len=0, max_len=MAX_ITEMS, unique=False, what=None):
        self.item, self.min_len, self.max_len, self.unique = item, min_len, max_len, unique
        self.expected = what or f"a list of {min_len}-{max_len} items, each {item.expected}"

    def __call__(self, where, value):
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            fail(where, value, self.expected)
        for i, v in enumerate(value):
            self.item(f"{where}[{i}]", v)
        if self.unique and len({repr(v) for v in value}) != len(value):
            raise RegistryError(f"{where} lists a value twice ({value!r}); list each value once.")
        return value


class AnyOf(Check):
    def __init__(self, *checks, expected):
        self.checks, self.expected = checks, expected

    def __call__(self, where, value):
        for check in self.checks:
            try:
                return check(where, value)
            except RegistryError:
                continue
        fail(where, value, self.expected)


class Plain(Check):
    """Builder keyword values and other free-form data: scalars, lists and string-keyed mappings."""
    expected = ("plain data: null, a boolean, an integer within +-2**31, a finite number, a string, or a "
                "list/mapping of these")

    def __call__(self, where, value):
        if value is None or isinstance(value, bool):
            return value
        if _is_int(value):
            if abs(value) > INT32_MAX:
                raise RegistryError(f"{where} is {show(value)}, beyond +-{INT32_MAX} (2**31 - 1): no "
                                    "layer size or count can be that large (TensorFlow sizes are int32).")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                fail(where, value, "a finite number (not .nan or .inf)")
            return value
        if isinstance(value, str):
            return Text(MAX_TEXT, empty=True)(where, value)
        if isinstance(value, list):
            if len(value) > MAX_ITEMS:
                fail(where, value, f"at most {MAX_ITEMS} items")
            for i, v in enumerate(value):
                self(f"{where}[{i}]", v)
            return value
        if isinstance(value, dict):
            if len(value) > MAX_ITEMS:
                fail(where, value, f"at most {MAX_ITEMS} keys")
            for k, v in value.items():
                self(f"{where}.{k}", v)
            return value
        fail(where, value, self.expected)


PLAIN = Plain()


class Anything(Check):
    expected = "any value"

    def __call__(self, where, value):
        return value


ANY = Anything()


class Optional(Check):
    """``null`` (the key written with no value) or what ``check`` accepts."""

    def __init__(self, check):
        self.check = check
        self.expected = f"null or {check.expected}"

    def __call__(self, where, value):
        return None if value is None else self.check(where, value)


class DictOf(Check):
    """A mapping whose keys pass ``key`` and whose values pass ``value``."""

    def __init__(self, key, value, max_items=MAX_ITEMS, what="a mapping"):
        self.key, self.value, self.max_items = key, value, max_items
        self.expected = what

    def __call__(self, where, data):
        if not isinstance(data, dict) or len(data) > self.max_items:
            fail(where, data, self.expected)
        for k, v in data.items():
            self.key(f"{where}: key {k!r}", k)
            self.value(f"{where}.{k}", v)
        return data


class Fields(Check):
    """A mapping with a fixed set of keys: ``{key: (checker, meaning)}``; ``required`` keys,
    checked in the order of ``first`` before any other key (so the most telling error comes first)."""

    def __init__(self, fields, required=(), first=(), what="a mapping"):
        self.fields, self.required, self.first = fields, tuple(required), tuple(first)
        self.expected = f"{what} with keys {', '.join(fields)}"

    def __call__(self, where, data):
        if not isinstance(data, dict):
            fail(where, data, self.expected)
        unknown = [k for k in data if k not in self.fields]
        if unknown:
            raise RegistryError(
                f"{where}: unknown key(s) {', '.join(repr(u) for u in unknown)}; allowed keys: "
                f"{', '.join(sorted(self.fields))}.{did_you_mean(unknown[0], self.fields)}")
        for key in self.first:
            if key in data:
                self._one(where, key, data[key])
        for key in self.required:
            if key not in data:
                raise RegistryError(f"{where}: missing required key {key!r} ({self.fields[key][1]}).")
        for key, value in data.items():
            if key not in self.first:
                self._one(where, key, value)
        return data

    def _one(self, where, key, value):
        check, meaning = self.fields[key]
        meaning = meaning.replace(" (required)", "")
        try:
            check(f"{where}: {key}", value)
        except RegistryError as e:  # a failure of this very field (not a nested one): say what it means
            text, head = str(e), f"{where}: {key} is "
            if not text.startswith(head):
                raise
            raise RegistryError(f"{where}: {key} ({meaning}) is {text[len(head):]}") from None


# --------------------------------------------------------------------------- the registry schema
DIMS = Choice(1, 2, 3)
COUNT = Int(0, MAX_PARAMS)
KWARGS = DictOf(KEYWORD, PLAIN, 200, "a mapping of builder keyword arguments (keyword: value)")
NOTES = AnyOf(Text(), ListOf(Text(), 1), expected="a string or a list of strings")
HASH = Text(80, prose=False, pattern=re.compile(r"(sha256:[0-9A-Fa-f]{64}|md5:[0-9A-Fa-f]{32})"),
            expected="'sha256:<64 hex digits>' or 'md5:<32 hex digits>'")


def builder_string():
    module = r"zoo\.models\.[a-z][a-z0-9_]*"
    return Text(200, prose=False, pattern=re.compile(module + r":[a-z][A-Za-z0-9_]*"),
                expected="'zoo.models.<family>:<builder>', a builder registered in the zoo's model "
                         "package (e.g. 'zoo.models.resnet:resnet'); a registry cannot name other code")


class Number(Check):
    expected = "a finite number"

    def __call__(self, where, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(where, value, self.expected)
        return value


NUMBERS = ListOf(Number(), 1, MAX_CHANNELS, what="a list of finite numbers, one per channel")


class Positive(Number):
    expected = "a finite number > 0"

    def __call__(self, where, value):
        super().__call__(where, value)
        if value <= 0:
            fail(where, value, self.expected)
        return value


PAIR = ListOf(Number(), 2, 2, what="[low, high], two finite numbers")
SIZES = ListOf(Int(1, MAX_SIZE), 1, 3, what="a list of 1-3 sizes (integers from 1 to 16384), one per spatial axis")


class Preprocessing(Check):
    """A mapping of string keys; the keys the zoo reads are typed, others (new ones) are plain data."""
    expected = "a mapping such as {mode: caffe, size: 224}"
    known = {"size": Int(1, MAX_SIZE), "mode": Text(64, prose=False), "channel_order": Choice("RGB", "BGR"),
             "mean": Optional(NUMBERS), "std": Optional(NUMBERS), "input_range": PAIR,
             # volumes (MONAI bundles, Models Genesis, MedicalNet): data the zoo's readers and predict apply
             "orientation": Text(3, prose=False, pattern=re.compile(r"[LRAPSI]{3}"),
                                 expected="three axis codes such as 'RAS' (MONAI's Orientationd axcodes)"),
             "spacing": ListOf(Positive(), 2, 3, what="voxel spacing in mm, 2-3 numbers > 0 (MONAI's Spacingd pixdim)"),
             "intensity_window": PAIR, "scale_to": PAIR, "clip": Choice(True, False),
             "roi_size": SIZES, "sw_overlap": Number(), "sw_batch_size": Int(1, 4096),
             "modality": Text(64, prose=False), "normalize": Text(200, prose=False)}

    def __call__(self, where, value):
        DictOf(KEYWORD, PLAIN, 200, self.expected)(where, value)
        for key, check in self.known.items():
            if key in value:
                check(f"{where}.{key}", value[key])
        return value


def weight_fields(formats):
    return {
        "url": (Text(4096, prose=False), "https://, file:// or a path relative to the registry file"),
        "hash": (HASH, "'sha256:<hex>' or 'md5:<hex>' (required unless manual_download says why there is none)"),
        "manual_download": (Text(), "no hash is known: how to fetch the file by hand (the zoo never downloads it)"),
        "size": (Int(1, 2 ** 50), "file size in bytes"),
        "format": (Choice(*formats), "the file format: keras (default: h5, weights.h5, npz or safetensors by the "
                                     "URL's suffix), one of those by name, or a file converted on first use "
                                     "(monai, medicalnet, genesis)"),
        "in_channels": (Int(1, MAX_CHANNELS), "input channels the weights were trained with"),
        "num_classes": (Int(0, INT32_MAX), "classes of the classifier in the file (0 = headless)"),
        "spatial_dims": (DIMS, "2 or 3: the dimensionality the weights were trained in"),
        "config": (KWARGS, "builder keyword arguments the file was saved from"),
        "preprocessing": (Preprocessing(), "how inputs must be prepared: {mode | mean/std, size, channel_order}"),
        "labels": (AnyOf(Text(), ListOf(Text(1000), 1, 1_000_000), expected="a string or a list of class names"),
                   "class names, or where to find them"),
        "license": (Text(), "licence of the weights"),
        "code_license": (Text(), "licence of the code the weights come with"),
        "commercial_use": (Choice(True, False), "whether the licences allow commercial use (true/false)"),
        "source": (Text(), "where the weights come from"),
        "upstream_version": (Text(200, prose=False), "the publisher's version of the weights or bundle"),
        "upstream_metric": (DictOf(Text(200, prose=False), PLAIN, 200, "a mapping of metric names to values"),
                            "the publisher's reported results (theirs, not measured by the zoo)"),
        "network_def": (DictOf(Text(200, prose=False), PLAIN, 200, "a mapping such as {_target_: UNet, ...}"),
                        "the publisher's network definition (a MONAI bundle's network_def)"),
        "notes": (NOTES, "anything else a user must know"),
    }


def model_fields(weight_checker, contract_checker, tasks):
    return {
        "builder": (builder_string(), "module:function of a registered builder (required)"),
        "config": (KWARGS, "builder keyword arguments of this variant"),
        "task": (Choice(*tasks), f"one of {', '.join(tasks)} (required)"),
        "spatial_dims": (ListOf(DIMS, 1, 3, unique=True, what="a list of 1-3 of the integers 1, 2, 3, e.g. [2, 3]"),
                         "the spatial dims the entry supports (required)"),
        "input": (Fields({"channels": (Int(1, MAX_CHANNELS), "input channels"),
                          "size": (Int(1, MAX_SIZE), "reference input size per spatial axis"),
                          "min_size": (Int(1, MAX_SIZE), "smallest usable size per axis")},
                         what="a mapping"),
                  "{channels, size, min_size}: reference input and smallest usable size"),
        "params": (COUNT, "Keras total parameter count at the reference config (required in the zoo's registry, "
                          "optional in a user's file)"),
        "trainable_params": (COUNT, "Keras trainable parameter count at the reference config"),
        "reference": (KWARGS, "builder keyword overrides that define the reference config"),
        "sweep": (Fields({"size": (Int(1, MAX_SIZE), "spatial size the sweep builds"),
                          "config": (KWARGS, "builder overrides of the sweep"),
                          "dims": (ListOf(DIMS, 1, 3, unique=True), "spatial dims the sweep builds")}),
                  "{size, config, dims}: what the generic test sweep builds"),
        "paper": (Text(), "citation of the architecture's paper"),
        "notes": (NOTES, "how the entry deviates from the paper and why"),
        "mirrors": (Text(200, prose=False), "the model of another library this entry matches"),
        "weights": (DictOf(NAME, weight_checker, what="a mapping of weight tags to weight specs"),
                    "{tag: weight spec}"),
        "recipes": (ListOf(RECIPE_NAME, 0, 1000, unique=True), "names of compression recipes that apply"),
        "contract": (contract_checker, "the layer-name contract: a name from contracts: or {base, "
                                       "first_conv, classifier, stage_outputs, aux} (zoo/hub/contract.py)"),
    }


class Recipe(Check):
    """A compression recipe: a mapping with a string ``kind`` (its options are checked by zoo.compress)."""

    def __init__(self, kinds):
        self.kinds = kinds
        self.expected = f"a mapping with kind: {' | '.join(kinds)} and the recipe's options"

    def __call__(self, where, data):
        if not isinstance(data, dict):
            fail(where, data, self.expected)
        if "kind" not in data:
            raise RegistryError(f"{where}: missing required key 'kind' (one of {', '.join(self.kinds)}).")
        Choice(*self.kinds)(f"{where}: kind", data["kind"])
        for key, value in data.items():
            KEYWORD(f"{where}: key {key!r}", key)
            PLAIN(f"{where}.{key}", value)
        return data


class Contract(Check):
    """What zoo.hub.contract.check_spec cannot take: a spec that is neither a name nor a mapping, and
    a ``base`` that is not a name (check_spec validates the rest and explains it)."""
    expected = "the name of a contracts: entry, or a mapping {base, first_conv, classifier, stage_outputs, aux}"

    def __call__(self, where, value):
        if isinstance(value, str):
            return NAME(where, value)
        if not isinstance(value, dict):
            fail(where, value, self.expected)
        if "base" in value:
            NAME(f"{where}: base", value["base"])
        for key, item in value.items():  # layer names and patterns: no invisible characters
            for i, text in enumerate(item if isinstance(item, list) else [item]):
                if isinstance(text, str) and _bad_char(text, prose=False) is not None:
                    Text(prose=False)(f"{where}.{key}" + (f"[{i}]" if isinstance(item, list) else ""), text)
        return value
