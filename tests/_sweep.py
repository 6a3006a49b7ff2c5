"""The registry sweep's cases, shared by hub/test_registry_sweep.py and export/test_export_sweep.py:
every registry entry x each spatial dimension its sweep covers (``sweep: dims``, else its
``spatial_dims``), built at the entry's small sweep size (``entry.sweep_kwargs(dims)``)."""
from zoo.hub.registry import get_registry

REG = get_registry()
CASES = [(name, d) for name in REG.names() for d in REG.models[name].sweep.get("dims", REG.models[name].spatial_dims)]


def sweep_kwargs(entry, dims):
    return entry.sweep_kwargs(dims)
