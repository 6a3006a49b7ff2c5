"""The keras.applications mirrors (resnet50/101/152, resnet50v2/101v2/152v2) compute exactly
what keras.applications computes, once the weights are copied by layer name.

For each: build the keras.applications model (``weights=None``, 224x224x3, softmax head), give
its BN layers non-trivial statistics, build the zoo entry with ``classifier_activation=
"softmax"``, copy every weighted layer by name (each one must exist in the zoo model with the
same weight shapes, and every zoo weight must be covered), and compare on a random 224x224
image: the class probabilities within 1e-5 and the pooled features within 1e-5 relative.
"""
import time

import numpy as np
import pytest

try:  # pytest's default 'prepend' import mode puts tests/ (no __init__.py) on sys.path
    from _equivalence import copy_weights_by_name, randomize_batchnorm
except ImportError:  # tests/ made a package, or the repository root on sys.path
    from tests._equivalence import copy_weights_by_name, randomize_batchnorm

import zoo

CASES = [
    ("resnet50", "ResNet50"),
    ("resnet101", "ResNet101"),
    ("resnet152", "ResNet152"),
    ("resnet50v2", "ResNet50V2"),
    ("resnet101v2", "ResNet101V2"),
    ("resnet152v2", "ResNet152V2"),
]
SLOW = {"resnet101", "resnet152", "resnet101v2", "resnet152v2"}


def _named(layers):
    """Layer names keras.applications chose on purpose (not auto-named pools, not the input)."""
    return {l.name for l in layers
            if l.__class__.__name__ != "InputLayer" and not l.name.startswith("max_pooling")}


@pytest.mark.parametrize("name,app", [pytest.param(n, a, marks=[pytest.mark.slow] if n in SLOW else [])
                                      for n, a in CASES])
def test_matches_keras_applications(name, app):
    from zoo._keras import keras
    start = time.time()
    ref = getattr(keras.applications, app)(weights=None)
    randomize_batchnorm(ref, seed=1)
    model = zoo.load(name, classifier_activation="softmax", input_shape=(224, 224, 3))

    # names: every named keras.applications layer exists in the zoo model
    assert _named(ref.layers) - {l.name for l in model.layers} == set()
    # weighted layers in the same order, so also an order-based h5 load lines up
    assert [l.name for l in ref.layers if l.weights] == [l.name for l in model.layers if l.weights]
    copied = copy_weights_by_name(ref, model, strict=True)
    assert len(copied) == len([l for l in ref.layers if l.weights])
    assert model.count_params() == ref.count_params()

    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype("float32")
    want = np.asarray(ref(x, training=False))
    got = np.asarray(model(x, training=False))
    assert got.shape == want.shape == (1, 1000)
    prob_diff = float(np.max(np.abs(got - want)))
    assert prob_diff <= 1e-5
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-5)

    # the pooled features too (softmax of 1000 classes could hide differences)
    feats = [np.asarray(keras.Model(m.input, m.get_layer("avg_pool").output)(x, training=False))
             for m in (ref, model)]
    scale = float(np.max(np.abs(feats[0])))
    assert scale > 0
    feat_diff = float(np.max(np.abs(feats[1] - feats[0])))
    assert feat_diff <= 1e-5 * max(1.0, scale)
    print(f"{name}: {len(copied)} layers copied; max |diff| probabilities {prob_diff:.2e}, "
          f"features {feat_diff:.2e} (scale {scale:.3g}); {time.time() - start:.1f}s")
