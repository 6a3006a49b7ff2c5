"""zoo.bench: MACs counted layer by layer agree with the published counts of the architectures
(torchvision's documented GFLOPS, which are MACs, and the papers), on the zoo's entries and on
keras.applications' real models; every entry's recorded count (measured.json, the README table)
equals a count made here from the layers' configs."""
import json

import numpy as np
import pytest
from _proc import ROOT, run_zoo

from zoo._keras import keras
from zoo.bench import bench, flops
from zoo.hub import load
from zoo.hub.registry import get_registry

# torchvision's model docs ("GFLOPS" column, fvcore MACs) and the papers, in GMACs
PUBLISHED = {"resnet18": 1.81, "resnet50_tv": 4.09, "alexnet": 0.71}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_entries_match_published_macs(name):
    r = bench(name, runs=0)
    assert r["input_shape"] == [224, 224, 3]
    assert r["macs"] / 1e9 == pytest.approx(PUBLISHED[name], abs=0.006)
    assert r["flops"] == 2 * r["macs"]


def test_keras_applications_models_match_their_papers():
    from zoo._keras import keras
    # VGG16: 15.5 G multiply-adds (Simonyan & Zisserman); MobileNet: 569 M (Howard et al., table 8);
    # ResNet-50 v1: 3.8 G (He et al., table 1)
    for make, gmacs, tol in ((keras.applications.VGG16, 15.47, 0.01), (keras.applications.MobileNet, 0.569, 0.001),
                             (keras.applications.ResNet50, 3.86, 0.01)):
        assert flops(make(weights=None))["macs"] / 1e9 == pytest.approx(gmacs, abs=tol), make.__name__
        keras.backend.clear_session()


def test_layer_kinds_are_counted_by_hand():
    from zoo._keras import keras
    L = keras.layers
    x = keras.Input((8, 8, 4))
    a = L.Conv2D(6, 3, padding="same", name="conv")(x)             # 64 * 9 * 4 * 6
    b = L.DepthwiseConv2D(3, padding="same", name="dw")(a)          # 64 * 9 * 6
    c = L.SeparableConv2D(5, 3, padding="same", name="sep")(b)      # 64 * (9 * 6 + 6 * 5)
    d = L.Conv2DTranspose(2, 2, strides=2, name="up")(c)            # 64 * 4 * 5 * 2 (per input voxel)
    e = L.Conv2D(4, 3, groups=2, padding="same", name="grouped")(d)  # 256 * 9 * 1 * 4
    f = L.Dense(3, name="dense")(L.GlobalAveragePooling2D()(e))    # 4 * 3
    count = flops(keras.Model(x, f))
    assert count["by_layer"] == {"conv": 64 * 9 * 4 * 6, "dw": 64 * 9 * 6, "sep": 64 * (9 * 6 + 6 * 5),
                                 "up": 64 * 4 * 5 * 2, "grouped": 256 * 9 * 1 * 4, "dense": 4 * 3}


def test_dynamic_shapes_are_refused_with_the_fix():
    from zoo._keras import keras
    from zoo.errors import InvalidArgumentError
    x = keras.Input((None, None, 1))
    with pytest.raises(InvalidArgumentError, match="fixed input_shape"):
        flops(keras.Model(x, keras.layers.Conv2D(2, 3)(x)))


@pytest.mark.slow  # measured 7.7 s in the quick tier
def test_zoo_bench_command(tmp_path):
    res = run_zoo("bench", "unet3d", "--size", "16", "--set", "in_channels=1", "--set", "filters=4", "--runs", "2",
                  "--json", timeout=300)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["input_shape"] == [16, 16, 16, 1] and row["flops"] == 2 * row["macs"] > 0 and row["keras_ms"] > 0
    res = run_zoo("bench", "unet4d", timeout=300)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "unet4d" in res.stderr


# --------------------------------------------------------------------------- the recorded counts, recounted
# Every entry's MACs at its reference input, as docs/models/measured.json records them (and the README
# table and the cards render them), against a count made here from each layer's config alone: the
# output positions of a convolution from its input, kernel, strides, dilation and padding, not from
# zoo.bench or the kernel's shape.
NO_MACS = {"BatchNormalization", "GroupNormalization", "LayerNormalization", "PReLU"}  # per value, not counted
CONVS = {f"{pre}Conv{n}D{post}" for n in (1, 2, 3) for pre in ("", "Depthwise", "Separable")
         for post in ("", "Transpose") if not (pre and (post or n == 3))}
QUICK = ("resnet18", "unet3d", "wgan", "monai_spleen_ct")  # Conv2D, Dense; Conv3D(Transpose); Conv2DTranspose; PReLU


def _conv_out(size, kernel, stride, dilation, padding):
    if padding in ("same", "causal"):
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _spatial(shape):
    return [int(s) for s in shape[1:-1]]


def macs_by_hand(model):
    """``{layer name: MACs}`` at batch 1 of the layers with a kernel (nested models walked)."""
    out = {}
    for layer in model.layers:
        kind, cfg = type(layer).__name__, layer.get_config()
        if hasattr(layer, "layers") and layer.layers:
            out.update(macs_by_hand(layer))
            continue
        if not layer.weights or kind in NO_MACS:
            continue
        cin = int(layer.input_shape[-1])
        if kind == "Dense":  # every position of the input (all axes but the last)
            out[layer.name] = int(np.prod(_spatial(layer.input_shape) or [1])) * cin * cfg["units"]
            continue
        assert kind in CONVS, f"{layer.name}: a {kind} has weights and no MACs formula here; add one"
        k, s, d = (cfg["kernel_size"], cfg["strides"], cfg.get("dilation_rate", (1,) * len(cfg["kernel_size"])))
        window = int(np.prod(k))
        if kind.endswith("Transpose"):  # every input position scatters window x in x out
            out[layer.name] = int(np.prod(_spatial(layer.input_shape))) * window * cin * cfg["filters"]
            continue
        positions = [_conv_out(n, *args, cfg["padding"]) for n, *args in zip(_spatial(layer.input_shape), k, s, d)]
        assert positions == _spatial(layer.output_shape), (layer.name, positions, layer.output_shape)
        positions = int(np.prod(positions))
        if kind.startswith("Depthwise"):
            out[layer.name] = positions * window * cin * cfg["depth_multiplier"]
        elif kind.startswith("Separable"):
            mid = cin * cfg["depth_multiplier"]
            out[layer.name] = positions * (window * mid + mid * cfg["filters"])
        else:  # Conv1D/2D/3D
            out[layer.name] = positions * window * cin // cfg["groups"] * cfg["filters"]
    return out


def _reference_model(name):
    """The model zoo.bench counts: the entry at its reference config (a GAN: its generator)."""
    entry = get_registry().models[name]
    kw = entry.reference_kwargs()
    if entry.task == "generation":
        kw.pop("input_shape", None)
        return load(name, **kw).generator
    return load(name, **kw)


def recount(name, measured, readme):
    """What is wrong with ``name``'s recorded count, or with zoo.bench.flops on its reference model
(an empty list: nothing)."""
    record = (measured.get(name) or {}).get("flops")
    if not record:
        return [f"{name}: no flops record in measured.json (python tools/gen_cards.py --measure {name})"]
    model = _reference_model(name)
    by_hand = macs_by_hand(model)
    macs = sum(by_hand.values())
    problems = []
    counted = flops(model)["by_layer"]
    if counted != by_hand:
        problems.append(f"{name}: zoo.bench.flops counts {sum(counted.values())} MACs, by hand {macs}; layers: "
                        + ", ".join(f"{k} {counted.get(k)} != {by_hand.get(k)}"
                                    for k in sorted(set(counted) | set(by_hand)) if counted.get(k) != by_hand.get(k)))
    if record["input_shape"] != [int(s) for s in model.input_shape[1:]]:
        problems.append(f"{name}: recorded at {record['input_shape']}, reference input {model.input_shape[1:]}")
    if record["macs"] != macs or record["flops"] != 2 * macs:
        problems.append(f"{name}: recorded {record['macs']} MACs / {record['flops']} FLOPs, counted {macs} MACs")
    row = next((line for line in readme.splitlines() if line.startswith(f"| [`{name}`]")), "")
    if f" | {macs / 1e9:.2f} | " not in row:
        problems.append(f"{name}: the README table does not show {macs / 1e9:.2f} GMACs: {row!r}")
    keras.backend.clear_session()
    return problems


def _records():
    return json.loads((ROOT / "docs" / "models" / "measured.json").read_text()), (ROOT / "README.md").read_text()


def test_macs_by_hand_count_each_layer_kind():
    L = keras.layers
    x = keras.Input((9, 10, 4))
    a = L.Conv2D(6, 3, strides=2, padding="valid", name="valid_s2")(x)             # 4x4 out: 16 * 9 * 4 * 6
    b = L.Conv2D(6, 3, dilation_rate=2, padding="same", name="dilated")(a)         # 16 * 9 * 6 * 6
    c = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", name="sep")(b)  # 16 * (9 * 12 + 12 * 5)
    d = L.Conv2DTranspose(3, 3, strides=2, padding="same", name="up")(c)           # 16 input positions * 9 * 5 * 3
    e = L.DepthwiseConv2D(2, strides=2, name="dw")(d)                              # 4x4 out: 16 * 4 * 3
    f = L.Dense(7, name="dense")(e)                                                # 16 * 3 * 7
    v = keras.Input((6, 6, 6, 2))
    g = L.Conv3D(4, (3, 1, 2), groups=2, name="c3d")(v)                           # 4*6*5 * 6 * 1 * 4
    h = L.Conv3DTranspose(2, 2, strides=2, name="t3d")(g)                          # 120 * 8 * 4 * 2
    model = keras.Model([x, v], [f, h])
    want = {"valid_s2": 16 * 9 * 4 * 6, "dilated": 16 * 9 * 6 * 6, "sep": 16 * (9 * 12 + 12 * 5),
            "up": 16 * 9 * 5 * 3, "dw": 16 * 4 * 3, "dense": 16 * 3 * 7, "c3d": 120 * 6 * 4, "t3d": 120 * 8 * 4 * 2}
    assert macs_by_hand(model) == want == flops(model)["by_layer"]
    with pytest.raises(AssertionError, match="no MACs formula"):
        macs_by_hand(keras.Sequential([keras.Input((4, 3)), L.LSTM(2)]))


@pytest.mark.parametrize("name", QUICK)
def test_recorded_macs_equal_a_count_by_hand(name):
    assert recount(name, *_records()) == []


def test_a_wrong_recorded_count_fails():
    measured, readme = _records()
    measured["wgan"]["flops"]["macs"] += 1
    assert any("wgan: recorded" in p for p in recount("wgan", measured, readme))
    measured, readme = _records()
    assert any("README table" in p for p in recount("wgan", measured, readme.replace("| 0.10 |", "| 0.11 |")))


@pytest.mark.slow  # measured 92-111 s: every entry built at its reference config
def test_every_entry_s_recorded_macs_equal_a_count_by_hand():
    measured, readme = _records()
    problems = [p for name in get_registry().names() if name not in QUICK for p in recount(name, measured, readme)]
    assert not problems, "\n".join(problems)
