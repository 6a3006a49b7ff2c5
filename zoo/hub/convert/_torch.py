"""Reading PyTorch checkpoints safely and putting their tensors into Keras layers.

``torch`` is imported only here and only when a PyTorch file is read (the ``torch`` extra);
files are read with ``torch.load(path, map_location="cpu", weights_only=True)``, which refuses
anything but tensors and plain containers (no code is unpickled).

:class:`Tensors` hands out the tensors of a state dict by key and remembers which were taken, so
a converter can check at the end that the file held exactly the network: every message names the
tensor, its shape in the file and what the model expected.
"""
import numpy as np

from zoo.errors import MissingDependencyError, WeightsError

PIP = 'pip install "medzoo[torch]"'


def import_torch(feature):
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"{feature} reads PyTorch files and needs the package 'torch', which is not "
                                     f"installed. Install it with: {PIP}") from None
    return torch


def load(path, feature):
    """The object stored in the PyTorch file ``path`` (tensors and containers only)."""
    torch = import_torch(feature)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{feature}: {path} does not exist; check the path.") from None
    except Exception as e:  # UnpicklingError (not weights-only data), RuntimeError (not a torch file), EOFError
        text = " ".join(str(e).split())[:300]
        raise WeightsError(f"{feature}: cannot read {path} as a PyTorch weights file with weights_only=True "
                           f"({type(e).__name__}: {text}). It is damaged, truncated, not a PyTorch file, or holds "
                           "Python objects besides tensors (re-save its state_dict with torch.save).") from None


def as_arrays(state, where):
    """``{key: float numpy array}`` from a state dict of tensors (or numpy arrays). Integer bookkeeping
    tensors (``num_batches_tracked``) are dropped."""
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{where}: expected a state dict (a mapping of tensor names to tensors); got "
                           f"{type(state).__name__}{' (empty)' if isinstance(state, dict) else ''}.")
    out = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"{where}: state dict key {key!r} is not a string.")
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            if getattr(value, "is_floating_point", lambda: True)():
                value = value.float()
            value = value.numpy()
        if not isinstance(value, np.ndarray):
            raise WeightsError(f"{where}: {key!r} is a {type(value).__name__}, not a tensor.")
        if key.endswith("num_batches_tracked"):
            continue
        if value.dtype.kind != "f":
            raise WeightsError(f"{where}: tensor {key!r} has dtype {value.dtype}, not floating point.")
        out[key] = value
    return out


class Tensors:
    """The tensors of one file, handed out by key (see the module docstring)."""

    def __init__(self, arrays, source):
        self.arrays, self.source, self.used = dict(arrays), source, set()

    def take(self, key, layer, shape=None):
        if key not in self.arrays:
            near = [k for k in self.arrays if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0]]
            hint = f" (the file has {', '.join(near[:4])} there)" if near else ""
            raise WeightsError(f"{self.source} has no tensor {key!r} (for the model's layer {layer!r}){hint}: the "
                               "file does not hold this network - check the network configuration (channels, "
                               "strides, num_res_units, blocks ...) against the one the file was saved from.")
        self.used.add(key)
        value = self.arrays[key]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise WeightsError(f"{self.source}: tensor {key!r} has shape {tuple(value.shape)} but the model's layer "
                               f"{layer!r} needs {tuple(shape)}: the file was saved from another configuration "
                               "(widths, classes, input channels or kernel sizes differ).")
        return value

    def has(self, key):
        return key in self.arrays

    def finish(self, ignore=()):
        """Every tensor must have been used (``ignore``: key prefixes a converter leaves out on purpose)."""
        left = sorted(k for k in self.arrays if k not in self.used and not k.startswith(tuple(ignore)))
        if left:
            raise WeightsError(f"{self.source} holds {len(left)} tensor(s) the model has no place for, e.g. "
                               f"{', '.join(repr(k) for k in left[:5])}: the file holds a larger or different "
                               "network - check the configuration it was saved from.")


def _kernel(w, transposed):
    """PyTorch ``(out, in, *k)`` (conv) / ``(in, out, *k)`` (transposed) -> Keras ``(*k, in, out)`` /
    ``(*k, out, in)``: the same axis permutation for both."""
    rank = w.ndim
    return np.transpose(w, tuple(range(2, rank)) + (1, 0))


def assign(layer, tensors, prefix, values=None):
    """Set ``layer``'s variables from the tensors ``prefix.weight``, ``prefix.bias`` ... (by the Keras
    layer type). ``values`` collects ``(variable, array)`` pairs instead of assigning at once."""
    from zoo._keras import keras  # heavy: importing zoo.hub (zoo list) must not start TensorFlow
    L = keras.layers
    name = layer.name
    pairs = []

    def var(short):
        return next(v for v in layer.weights if v.name.split("/")[-1].split(":")[0] == short)

    def put(short, key, convert=None):
        v = var(short)
        arr = tensors.take(key, name)
        arr = convert(arr) if convert is not None else arr
        if tuple(arr.shape) != tuple(v.shape):
            raise WeightsError(f"{tensors.source}: tensor {key!r} has shape {tuple(tensors.arrays[key].shape)}, which "
                               f"does not fit the model's layer {name!r} ({short} {tuple(v.shape)}): the file was "
                               "saved from another configuration (widths, classes, input channels, kernel sizes).")
        pairs.append((v, arr.astype(np.float32)))

    transposed = isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose))
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        put("kernel", f"{prefix}.weight", lambda w: _kernel(w, transposed))
        if layer.use_bias:
            put("bias", f"{prefix}.bias")
    elif isinstance(layer, L.Dense):
        put("kernel", f"{prefix}.weight", lambda w: w.T)
        if layer.use_bias:
            put("bias", f"{prefix}.bias")
    elif isinstance(layer, L.BatchNormalization):
        if layer.scale:
            put("gamma", f"{prefix}.weight")
        if layer.center:
            put("beta", f"{prefix}.bias")
        put("moving_mean", f"{prefix}.running_mean")
        put("moving_variance", f"{prefix}.running_var")
    elif isinstance(layer, L.GroupNormalization):
        if layer.scale:
            put("gamma", f"{prefix}.weight")
        if layer.center:
            put("beta", f"{prefix}.bias")
    elif isinstance(layer, L.PReLU):
        alpha = var("alpha")
        put("alpha", f"{prefix}.weight", lambda w: w.reshape(alpha.shape) if w.size == int(np.prod(alpha.shape)) else w)
    else:
        raise WeightsError(f"no PyTorch conversion for layer {name!r} ({type(layer).__name__}).")
    if values is None:
        for v, arr in pairs:
            v.assign(arr)
    else:
        values.extend(pairs)
    return pairs


def tensors_of(layer, prefix):
    """The inverse of :func:`assign`: ``{key: numpy array}`` of ``layer``'s variables in PyTorch's layout and
    names (``prefix.weight``, ``prefix.running_mean`` ...; a batch norm's ``num_batches_tracked`` is 0)."""
    from zoo._keras import keras  # heavy: importing zoo.hub (zoo list) must not start TensorFlow
    L = keras.layers
    values = {v.name.split("/")[-1].split(":")[0]: np.asarray(v.numpy()) for v in layer.weights}
    out = {}
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):  # the transposed ones too: the same permutation
        w = values["kernel"]
        out[f"{prefix}.weight"] = np.transpose(w, (w.ndim - 1, w.ndim - 2) + tuple(range(w.ndim - 2)))
        if layer.use_bias:
            out[f"{prefix}.bias"] = values["bias"]
    elif isinstance(layer, L.Dense):
        out[f"{prefix}.weight"] = values["kernel"].T
        if layer.use_bias:
            out[f"{prefix}.bias"] = values["bias"]
    elif isinstance(layer, (L.BatchNormalization, L.GroupNormalization)):
        if layer.scale:
            out[f"{prefix}.weight"] = values["gamma"]
        if layer.center:
            out[f"{prefix}.bias"] = values["beta"]
        if isinstance(layer, L.BatchNormalization):
            out[f"{prefix}.running_mean"] = values["moving_mean"]
            out[f"{prefix}.running_var"] = values["moving_variance"]
            out[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
    elif isinstance(layer, L.PReLU):
        out[f"{prefix}.weight"] = values["alpha"].reshape(-1)
    else:
        raise WeightsError(f"no PyTorch conversion for layer {layer.name!r} ({type(layer).__name__}).")
    return {k: np.ascontiguousarray(v) for k, v in out.items()}
