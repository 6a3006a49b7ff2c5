"""Exceptions raised by the zoo.

Every message names the input, the value received, what is allowed and how to fix it.
All inherit from :class:`ZooError`; most also inherit from the matching builtin
(``KeyError``/``ValueError``/``TypeError``) so generic handlers keep working.
"""
import difflib


class ZooError(Exception):
    """Base class of every error the zoo raises on purpose."""

    def __str__(self):  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class RegistryError(ZooError, ValueError):
    """registry.yaml (or a user registry file) is malformed."""


class UnknownModelError(ZooError, KeyError):
    """No registry entry has this name."""


class InvalidArgumentError(ZooError, ValueError):
    """A builder or API argument has a value that cannot work."""


class UnknownArgumentError(ZooError, TypeError):
    """A keyword is not accepted by the builder."""


class WeightsError(ZooError, RuntimeError):
    """Weights could not be fetched, verified or transferred."""


class MissingDependencyError(ZooError, ImportError):
    """An optional dependency is needed for this feature."""


def closest(name, candidates, n=3):
    """Names from ``candidates`` that look like ``name`` (best first)."""
    return difflib.get_close_matches(str(name), list(candidates), n=n, cutoff=0.5)


def did_you_mean(name, candidates):
    near = closest(name, candidates)
    return f" Did you mean {' or '.join(repr(c) for c in near)}?" if near else ""


def check_choice(arg, value, allowed, where=""):
    """Raise InvalidArgumentError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        loc = f"{where}: " if where else ""
        raise InvalidArgumentError(
            f"{loc}{arg}={value!r} is not supported; allowed: "
            f"{', '.join(repr(a) for a in allowed)}.{did_you_mean(value, [str(a) for a in allowed])}")
    return value


def check_positive_int(arg, value, where="", minimum=1, maximum=None):
    """``value`` must be an int in [minimum, maximum]; a builder passes ``maximum`` so that a
    registry or caller cannot make it build for ever (``depth=1000000``) or exhaust memory."""
    loc = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or \
            (maximum is not None and value > maximum):
        bound = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
        shown = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "a huge integer"
        raise InvalidArgumentError(
            f"{loc}{arg}={shown} must be an integer {bound}; pass e.g. {arg}={max(minimum, 1)}.")
    return value
