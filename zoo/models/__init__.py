"""The model families: one module per family, one public builder each (DESIGN.md section 4).

A registry entry's ``builder:`` may name only a function registered here with
:func:`register_builder`; "somewhere inside the zoo package" is not a boundary (a registry
file could otherwise make ``zoo.load`` call any helper with arguments of its choosing).
Importing this package does not import TensorFlow; the family modules do.
"""
import importlib
import pkgutil

BUILDERS = {}  # "zoo.models.<module>:<function>" -> the builder


def register_builder(fn):
    """Decorator: allow registry entries to name ``fn`` as ``<its module>:<its name>``."""
    BUILDERS[f"{fn.__module__}:{fn.__name__}"] = fn
    return fn


def registered_builders():
    """Every registered builder (imports all family modules, hence TensorFlow)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(BUILDERS)
