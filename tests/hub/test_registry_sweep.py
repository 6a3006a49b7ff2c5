"""The generic sweep: every registry entry x each of its spatial_dims.

Adding an entry to registry.yaml adds its tests here; no new test code is needed.
For each: build at a small size through ``zoo.load``, forward pass, output shape, the
layer-name contract (first conv, stage outputs, class heads, encoder), gradients reach every
trainable weight, ``get_config``/``from_config`` round trip, and ``.keras`` save/load giving
identical outputs (``.h5`` too, once per family: the legacy format's code path depends on the
layer types, which a family shares). Separately, the exact parameter count at the entry's
reference config. Cases that take over ~20 s, or ~5 s in the quick tier, are marked slow (``SLOW_CASES``,
``SLOW_COUNTS``).
"""
import numpy as np
import pytest
from _sweep import CASES, REG, sweep_kwargs

import zoo


def _h5_cases():
    """Per builder (family), its first entry in registry order, in 2D where the sweep has it."""
    cases = {}
    for name, entry in REG.models.items():
        dims = list(entry.sweep.get("dims", entry.spatial_dims))
        cases.setdefault(entry.builder, (name, 2 if 2 in dims else dims[0]))
    return set(cases.values())


H5_CASES = _h5_cases()
# over ~20 s each on one core of the 2-core CI machine (measured with --durations): the slow tier
SLOW_CASES = {"resnet152v2-3d", "resnet152_tv-3d", "resnet152-3d", "resnet101_tv-3d", "resnet101v2-3d",
              "resnet101-3d", "resnet50v2-3d", "resnet34-3d", "deeplabv3_resnet101-3d", "deeplabv3_resnet101-2d",
              "deeplabv3_resnet50-3d", "deeplabv3_resnet50-2d", "deeplabv2-3d", "deeplabv2-2d", "deeplabv3-3d",
              "deeplabv3plus-3d",
              # 7-11 s each in the quick tier (two workers on the 2-core machine)
              "deeplabv3plus-2d", "deeplabv3-2d", "googlenet-2d", "googlenet-3d", "googlenet_bn-2d", "googlenet_bn-3d",
              "resnet34-2d", "resnet50-2d", "resnet50-3d", "resnet50_tv-2d", "resnet50_tv-3d", "resnet50v2-2d",
              "fcdensenet56-2d"}
SWEEP = [pytest.param(n, d, id=f"{n}-{d}d", marks=[pytest.mark.slow] if f"{n}-{d}d" in SLOW_CASES else [])
         for n, d in CASES]


def random_input(model, batch=2):
    shape = (batch,) + tuple(model.input_shape[1:])
    return np.random.default_rng(0).standard_normal(shape).astype("float32")


def outputs_of(model, x):
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def check_output_shape(entry, model, x, outs, kwargs):
    batch = x.shape[0]
    main = outs[0]
    assert main.shape[0] == batch
    assert np.all(np.isfinite(main))
    num_classes = kwargs.get("num_classes", entry.config.get("num_classes"))
    if entry.task == "classification" and num_classes:
        assert main.shape == (batch, num_classes)
    elif entry.task == "segmentation":
        padding = kwargs.get("padding", entry.config.get("padding", "same"))
        if padding == "same":
            assert main.shape[1:-1] == x.shape[1:-1], "segmentation output must keep the input size"
        if num_classes:
            assert main.shape[-1] == num_classes


def keras_clone(net):
    from zoo._keras import keras
    return keras.models.clone_model(net)


def check_contract(entry, model, dims):
    """The layer-name contract holds, for each network of the entry (a GAN has two)."""
    from zoo.hub.contract import ancestors, kernel_of
    nets = [model.generator, model.critic] if entry.task == "generation" else [model]
    for net in nets:
        parts = zoo.contract(net, entry)
        found = zoo.contract(keras_clone(net))  # no registry name: the family spec is found by layer names
        assert (found.as_dict(), found.encoder) == (parts.as_dict(), parts.encoder)
        names = [layer.name for layer in net.layers]
        stem = kernel_of(net.get_layer(parts.first_conv))
        assert stem is not None and len(stem.shape) == dims + 2
        if net is not getattr(model, "generator", None):  # the first conv reads the input channels
            assert net.get_layer(parts.first_conv) is next(
                layer for layer in net.layers if kernel_of(layer) is not None
            )
            assert stem.shape[-2] == net.input_shape[-1]
        # stage outputs: in model order, each one resolution stage, shrinking (a generator grows)
        index = [names.index(n) for n in parts.stage_outputs]
        assert len(index) >= 2 and index == sorted(index), parts.stage_outputs
        sizes = [net.get_layer(n).output_shape[1:-1] for n in parts.stage_outputs]
        grows = net is getattr(model, "generator", None)
        for a, b in zip(sizes, sizes[1:]):
            assert all((y >= x) if grows else (y <= x) for x, y in zip(a, b) if None not in (x, y)), sizes
        if None not in sizes[0] + sizes[-1]:
            assert (sizes[-1] > sizes[0]) if grows else (sizes[-1] < sizes[0]), sizes
        # class heads feed an output and produce the classes
        if entry.task != "generation" and net.output_shape[-1] and len(net.outputs) >= 1:
            assert parts.classifiers, "no class head found"
            feeding = set().union(*(ancestors(net, t._keras_history.layer.name) for t in net.outputs))
            for head in parts.classifiers:
                assert head in feeding and kernel_of(net.get_layer(head)).shape[-1] == net.outputs[0].shape[-1]
        # the encoder: layers with weights the deepest stage depends on; no head, no aux branch
        assert parts.first_conv in parts.encoder
        assert not set(parts.encoder) & (set(parts.classifiers) | set(parts.aux))
        assert all(net.get_layer(n).weights for n in parts.encoder)
        assert all(a in names for a in parts.aux)


@pytest.mark.parametrize("name,dims", SWEEP)
def test_sweep(name, dims, tmp_path):
    from zoo._keras import keras, tf
    entry = REG.get(name)
    kwargs = sweep_kwargs(entry, dims)
    model = zoo.load(name, **kwargs)
    assert isinstance(model, keras.Model)
    x = random_input(model, batch=2 if dims == 2 else 1)
    outs = outputs_of(model, x)
    check_output_shape(entry, model, x, outs, kwargs)
    check_contract(entry, model, dims)

    # gradients reach every trainable weight
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        loss = tf.add_n([tf.reduce_sum(o * tf.random.normal(tf.shape(o), seed=1)) for o in out])
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.name for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    assert all(np.all(np.isfinite(np.asarray(tf.convert_to_tensor(g)))) for g in grads)
    first = np.asarray(tf.convert_to_tensor(grads[0]))
    assert np.any(first != 0), f"gradient of {model.trainable_weights[0].name} is all zero"

    # config round trip
    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    for a, b in zip(outs, outputs_of(clone, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    # save/load: .keras for every entry, .h5 once per family
    for fname in ("model.keras", "model.h5") if (name, dims) in H5_CASES else ("model.keras",):
        path = tmp_path / fname
        model.save(path)
        loaded = keras.models.load_model(path, compile=False)
        for a, b in zip(outs, outputs_of(loaded, x)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=fname)
        del loaded
        keras.backend.clear_session()


NAMES = REG.names()
# the deepest networks at their reference size: 5.2-7.0 s each in the quick tier (two workers on the 2-core machine)
SLOW_COUNTS = {"resnet101_tv", "resnet152", "resnet152_tv", "resnet152v2", "deeplabv3_resnet101", "deeplabv3plus"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_COUNTS else []) for n in NAMES])
def test_reference_param_count(name):
    entry = REG.get(name)
    builder = entry.resolve_builder()
    model = builder(**entry.reference_kwargs())
    assert model.count_params() == entry.params, f"{name}: Keras total"
    if entry.trainable_params is not None:
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        assert trainable == entry.trainable_params, f"{name}: trainable"


def test_registry_has_entries():
    assert len(NAMES) > 0


def test_case_lists_name_real_cases():
    """SLOW_CASES and SLOW_COUNTS name cases that exist; every family gets its .h5 round trip."""
    ids = {f"{n}-{d}d" for n, d in CASES}
    assert SLOW_CASES <= ids, sorted(SLOW_CASES - ids)
    assert SLOW_COUNTS <= set(NAMES), sorted(SLOW_COUNTS - set(NAMES))
    assert {REG.models[n].builder for n, _ in H5_CASES} == {e.builder for e in REG.models.values()}
