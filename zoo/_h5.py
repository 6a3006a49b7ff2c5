"""The one writer of Keras 2 HDF5 weight files (what tf_keras ``model.save_weights("x.h5")`` writes).

Used by ``zoo.save_weights`` (zoo/hub/_weightfile.py) and by the run folder's checkpoints
(zoo/train/_runs.py, which reads every value in one compiled call first and passes them in).
The files load with ``model.load_weights`` and by layer name with ``zoo.load(name, weights=...)``.
"""
import numpy as np

HEADER_LIMIT = 64512  # bytes of one HDF5 attribute; Keras splits longer name lists


def weight_layout(model):
    """``([(layer name, [weight names])], variables)`` in Keras 2 HDF5 order: each layer's
    trainable then non-trainable weights (sub-layers included), layers in model order."""
    layout, variables = [], []
    for layer in model.layers:
        weights = layer.trainable_weights + layer.non_trainable_weights
        layout.append((layer.name, [w.name for w in weights]))
        variables += weights
    return layout, variables


def set_list_attr(group, name, values):
    """A list-of-names attribute, split as Keras does beyond the HDF5 header limit
    (``name0``, ``name1``, ...)."""
    data = np.asarray([v.encode("utf8") for v in values]) if values else np.asarray([])
    chunks = [data]
    while any(c.nbytes > HEADER_LIMIT for c in chunks):
        chunks = np.array_split(data, len(chunks) + 1)
    if len(chunks) == 1:
        group.attrs[name] = data
    else:
        for i, chunk in enumerate(chunks):
            group.attrs[f"{name}{i}"] = chunk


def write_weights(target, layout, values, attrs=None):
    """Write ``values`` (arrays in ``layout``'s order, see :func:`weight_layout`) to ``target``,
    a path or a binary file object opened for reading and writing. ``attrs``: extra root
    attributes (e.g. ``{"zoo_epoch": 3}``); Keras ignores them."""
    import h5py  # heavy: h5py (~30 ms); zoo.hub imports this module and import zoo must not pay for it

    from zoo._keras import keras  # heavy: TensorFlow; zoo.hub imports this module and must stay TF-free

    values = iter(values)
    with h5py.File(target, "w") as f:
        set_list_attr(f, "layer_names", [name for name, _ in layout])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = str(keras.__version__).encode("utf8")
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, weight_names in layout:
            group = f.create_group(name)
            set_list_attr(group, "weight_names", weight_names)
            for weight_name in weight_names:
                group.create_dataset(weight_name, data=np.asarray(next(values)))


def write_model_weights(target, model, attrs=None):
    """:func:`write_weights` of ``model``'s current values (``attrs``: extra root attributes)."""
    layout, variables = weight_layout(model)
    write_weights(target, layout, [v.numpy() for v in variables], attrs)
