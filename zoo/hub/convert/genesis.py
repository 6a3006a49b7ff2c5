"""Models Genesis' Keras ``.h5`` -> ``zoo.models.genesis`` models, by layer name.

The authors saved their network ``channels_first`` with Keras 2 (``Genesis_Chest_CT.h5``). A
convolution kernel has the shape ``(k, k, k, in, out)`` in either data format and a batch norm's
arrays are per channel, so the arrays go unchanged into the channels-last rebuild; only the
activations' layout differs. The file is read by the zoo's own HDF5 reader (no code is loaded,
hostile files are refused: ``zoo.hub._weightread``).

Names: the convolutions and batch norms are ``depth_{n}_conv``/``depth_{n}_bn`` in both; the
file's 1x1x1 output convolution has an automatic Keras name (``conv3d_<n>``) and becomes the zoo's
``classifier``. A classifier of another size (``num_classes`` other than the file's 1) keeps its
initial weights, as does a classification head; a model without a decoder
(``head="classification"``) skips the file's decoder layers. Everything else must match.
"""
import re

from zoo.errors import WeightsError
from zoo.hub import _weightread

_GENESIS = re.compile(r"depth_(\d+)_(conv|bn)")


def _file_head(wf):
    """The file's output convolution: its one layer with weights not named ``depth_*``."""
    others = [k for k, arrays in wf.layers.items() if arrays and not _GENESIS.fullmatch(k)]
    if len(others) > 1:
        raise WeightsError(f"{wf.path}: layers {others} are not Models Genesis layers (depth_<n>_conv/_bn) and "
                           "there is more than one of them; this is not a Models Genesis U-Net file.")
    return others[0] if others else None


def load_file(model, path):
    """Read the Genesis ``.h5`` ``path`` into ``model``; returns ``{"loaded", "reinitialised", "skipped"}``."""
    with _weightread.read(path, "h5") as wf:
        head = _file_head(wf)
        genesis_layers = {k for k, arrays in wf.layers.items() if arrays and _GENESIS.fullmatch(k)}
        if not genesis_layers:
            raise WeightsError(f"{path} has no depth_<n>_conv / depth_<n>_bn layers: not a Models Genesis weights "
                               "file (layers: " + ", ".join(list(wf.layers)[:6]) + ").")
        plan, report = [], {"loaded": [], "reinitialised": {}, "skipped": []}
        for layer in model.layers:
            if not layer.weights:
                continue
            key = head if layer.name == "classifier" else layer.name
            dense_head = layer.name == "classifier" and len(layer.weights[0].shape) == 2
            if layer.name == "head_fc" or (layer.name == "classifier" and head is None) or dense_head:
                report["reinitialised"][layer.name] = "not in the file (a classification head)" if head else \
                    "not in the file"
                continue
            if key not in wf.layers or not wf.layers[key]:
                raise WeightsError(f"{path} has no layer {key!r} (a {type(layer).__name__} of the model): the file "
                                   "holds another network (depth, batch norm) than the model.")
            arrays = dict(wf.layers[key])
            want = [(v, v.name.split("/")[-1].split(":")[0]) for v in layer.weights]
            if set(arrays) != {short for _, short in want}:
                raise WeightsError(f"{path}: layer {key!r} holds {sorted(arrays)} but the model's layer "
                                   f"{layer.name!r} has {[s for _, s in want]}.")
            shapes_fit = all(tuple(arrays[s].shape) == tuple(v.shape) for v, s in want)
            if not shapes_fit:
                if layer.name == "classifier":
                    report["reinitialised"][layer.name] = (f"{arrays['kernel'].shape[-1]} outputs in the file, "
                                                           f"{layer.weights[0].shape[-1]} in the model")
                    continue
                bad = next((s, tuple(arrays[s].shape), tuple(v.shape)) for v, s in want
                           if tuple(arrays[s].shape) != tuple(v.shape))
                raise WeightsError(f"{path}: tensor '{key}/{bad[0]}' has shape {bad[1]} in the file but the model's "
                                   f"layer {layer.name!r} needs {bad[2]}: the file was saved from another width "
                                   "(filters) or input channels.")
            plan.append((layer, [(v, arrays[s].read()) for v, s in want]))
            report["loaded"].append(layer.name)
        used = {layer.name for layer, _ in plan} | ({head} if "classifier" in report["loaded"] else set())
        report["skipped"] = sorted(k for k in genesis_layers | ({head} if head else set()) if k not in used)
        file_convs = sum(1 for k in genesis_layers if k.endswith("_conv"))
        encoder_convs = (file_convs + 2) // 2  # depth d: 2d encoder + 2(d - 1) decoder convolutions
        deeper = [k for k in report["skipped"] if _GENESIS.fullmatch(k) and
                  int(_GENESIS.fullmatch(k).group(1)) < encoder_convs]
        if deeper:
            raise WeightsError(f"{path}: encoder layers {deeper[:4]} of the file have no place in the model: the file "
                               "holds a deeper network than the model (depth).")
    for _, pairs in plan:
        for variable, value in pairs:
            variable.assign(value.astype("float32"))
    return report

