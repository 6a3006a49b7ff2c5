"""``zoo.list_recipes(name)``: which recipes apply to a registry entry, and why the others do not."""
from zoo._keras import keras
from zoo.compress._check import plan
from zoo.compress.recipes import resolve
from zoo.errors import InvalidArgumentError
from zoo.hub import load
from zoo.hub.registry import get_registry


def sweep_kwargs(entry, dims):
    """The builder keywords of an entry's small sweep build (:meth:`ModelEntry.sweep_kwargs`)."""
    return entry.sweep_kwargs(dims)


def check_entry(name, recipe, spatial_dims=None, model=None):
    """None when ``recipe`` passes the pre-training check on entry ``name`` built small, else the
    reason (the check's message)."""
    entry = get_registry().get(name)
    if model is None:
        model = load(name, **sweep_kwargs(entry, spatial_dims or entry.spatial_dims[0]))
    try:
        plan(model, resolve(recipe)[1], entry=entry.name, sweep=True)
    except InvalidArgumentError as e:
        return str(e)
    return None


def list_recipes(name, spatial_dims=None):
    """Which compression recipes apply to registry entry ``name``, and why the others do not.

    Every registry recipe is checked (:func:`zoo.compress._check.plan`) on the entry built at its
    small sweep size; nothing is trained.

    Args:
        name: a registry name.
        spatial_dims: the 2D or 3D variant (default: the entry's first).

    Returns:
        A list of dicts, the entry's listed recipes first: ``recipe``, ``kind``, ``listed``,
        ``default`` (the entry's first), ``applies``, ``reason`` (why not, or None), ``note``,
        ``description`` and ``steps``.

    Raises:
        UnknownModelError: no entry has this name.
        InvalidArgumentError: ``spatial_dims`` the entry does not support.
    """
    registry = get_registry()
    entry = registry.get(name)
    dims = spatial_dims or entry.spatial_dims[0]
    model = load(entry.name, **sweep_kwargs(entry, dims))
    out = []
    names = list(entry.recipes) + sorted(r for r in registry.recipes if r not in entry.recipes)
    for rname in names:
        recipe = registry.recipes[rname]
        if recipe.kind == "ptq":
            reason = "post-training quantization is the export's: zoo.export(model, ..., quantization='int8')"
        else:
            reason = check_entry(entry.name, rname, dims, model)
        listed = rname in entry.recipes
        out.append({"recipe": rname, "kind": recipe.kind, "listed": listed,
                    "default": bool(entry.recipes) and rname == entry.recipes[0],
                    "applies": reason is None, "reason": reason,
                    "note": None if listed or reason else "passes the check; not listed for this entry (not measured)",
                    "description": recipe.options.get("description"),
                    "steps": [s.name for s in resolve(rname)[1]] if recipe.kind == "chain" else [rname]})
    keras.backend.clear_session()
    return out
