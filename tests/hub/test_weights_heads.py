"""zoo.hub.weights with several class heads and auxiliary heads (DeepLab, DeepLab-v2, GoogLeNet)."""
import numpy as np
import pytest
from test_weights import randomize, snapshot

import zoo
from zoo._keras import keras
from zoo.errors import WeightsError
from zoo.hub import weights as W

DEEPLAB = dict(width=8, filters=16, input_shape=(32, 32, 3))  # narrow deeplabv3_resnet50
GOOGLENET = dict(width=0.25, aux_heads=True, input_shape=(64, 64, 3))


def _save(model, path):
    return zoo.save_weights(randomize(model), path, verbose=False).path


def _features(model, name):
    return keras.Model(model.input, model.get_layer(name).output)


@pytest.mark.slow  # measured 10.0 s in the quick tier
def test_class_heads_follow_the_outputs_back_to_their_kernels():
    names = lambda m: sorted(layer.name for layer in W.class_heads(m))  # noqa: E731
    assert names(zoo.load("deeplabv3_resnet50", num_classes=3, **DEEPLAB)) == ["aux_classifier", "classifier"]
    keras.backend.clear_session()
    v2 = zoo.load("deeplabv2", backbone_depth=50, width=8, num_classes=3, input_shape=(32, 32, 3))
    assert names(v2) == [f"aspp_conv{i}" for i in range(4)]  # out <- resize <- Add <- 4 branches
    keras.backend.clear_session()
    assert names(zoo.load("googlenet_bn", num_classes=3, **GOOGLENET)) == ["aux1", "aux2", "classifier"]
    keras.backend.clear_session()
    assert names(zoo.load("resnet18", num_classes=0, input_shape=(32, 32, 3))) == []  # ends in BN/ReLU
    keras.backend.clear_session()
    assert names(zoo.load("vgg11", num_classes=0, input_shape=(32, 32, 3))) == []  # ends in a max pool


@pytest.mark.slow  # measured 7.7 s in the quick tier
def test_deeplab_main_and_aux_classifiers_both_reinitialised(tmp_path):
    path = _save(zoo.load("deeplabv3_resnet50", num_classes=5, **DEEPLAB), tmp_path / "voc.weights.h5")
    src = zoo.load("deeplabv3_resnet50", num_classes=5, weights=path, **DEEPLAB)
    model = zoo.load("deeplabv3_resnet50", num_classes=3, **DEEPLAB)
    before = {n: snapshot(model.get_layer(n)) for n in ("classifier", "aux_classifier")}
    report = W.load_weights_into(model, weights=path)
    assert report.reinitialised == {"classifier": "5 outputs in the file, 3 in the model",
                                    "aux_classifier": "5 outputs in the file, 3 in the model"}
    assert not report.skipped and not report.adapted
    for name, arrays in before.items():  # left as the builder made them
        for a, b in zip(arrays, model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    for name in ("head_relu", "aux_relu"):  # everything before the heads is the file's
        np.testing.assert_allclose(_features(model, name)(x), _features(src, name)(x), atol=1e-6)


@pytest.mark.slow  # measured 11.8 s in the quick tier
def test_deeplab_aux_branch_skipped_or_left_initialised(tmp_path):
    with_aux = _save(zoo.load("deeplabv3_resnet50", num_classes=4, **DEEPLAB), tmp_path / "aux.npz")
    report = zoo.load("deeplabv3_resnet50", num_classes=4, aux_head=False, weights=with_aux,
                      **DEEPLAB).zoo_load_report
    assert sorted(report.skipped) == ["aux_bn", "aux_classifier", "aux_conv"]
    assert all("auxiliary head" in why for why in report.skipped.values())
    assert "classifier" in report.loaded and not report.reinitialised
    keras.backend.clear_session()
    no_aux = _save(zoo.load("deeplabv3_resnet50", num_classes=4, aux_head=False, **DEEPLAB),
                   tmp_path / "noaux.npz")
    # the file records aux_head=False: built from it alone, the model has no aux branch
    keras.backend.clear_session()
    plain = zoo.load("deeplabv3_resnet50", weights=no_aux, **DEEPLAB)
    assert len(plain.outputs) == 1 and plain.zoo_load_report.file_config == {"aux_head": False, "num_classes": 4}
    assert not plain.zoo_load_report.reinitialised
    # asked for explicitly, the aux branch is left as the builder initialised it
    keras.backend.clear_session()
    report = zoo.load("deeplabv3_resnet50", num_classes=4, aux_head=True, weights=no_aux, **DEEPLAB).zoo_load_report
    assert report.reinitialised == {n: "auxiliary head, not in the file" for n in ("aux_conv", "aux_bn")} | {
        "aux_classifier": "not in the file (headless weights)"}
    assert report.config_differs == {"aux_head": (False, True)}


def test_deeplabv2_four_class_branches_reinitialised(tmp_path):
    kw = dict(backbone_depth=50, width=8, input_shape=(32, 32, 3))
    path = _save(zoo.load("deeplabv2", num_classes=21, **kw), tmp_path / "v2.h5")
    report = zoo.load("deeplabv2", num_classes=2, weights=path, **kw).zoo_load_report
    assert report.reinitialised == {f"aspp_conv{i}": "21 outputs in the file, 2 in the model" for i in range(4)}
    assert "stage4_block3_conv3" in report.loaded and not report.skipped


@pytest.mark.slow  # measured 5.5 s in the quick tier
def test_googlenet_three_classifiers_and_dropped_aux_heads(tmp_path):
    path = _save(zoo.load("googlenet_bn", num_classes=10, **GOOGLENET), tmp_path / "g.npz")
    report = zoo.load("googlenet_bn", num_classes=3, weights=path, **GOOGLENET).zoo_load_report
    assert sorted(report.reinitialised) == ["aux1", "aux2", "classifier"]
    assert {"aux1_fc", "aux1_conv", "aux2_fc"} <= set(report.loaded)
    keras.backend.clear_session()
    plain = dict(GOOGLENET, aux_heads=False)
    report = zoo.load("googlenet_bn", num_classes=10, weights=path, **plain).zoo_load_report
    assert {"aux1", "aux1_fc", "aux2", "aux2_fc"} <= set(report.skipped) and "classifier" in report.loaded


@pytest.mark.slow  # over 20 s on the 2-core CI machine
def test_other_layers_still_strict(tmp_path):
    """Only heads may differ: an ASPP of another width (`filters`) is still refused."""
    path = _save(zoo.load("deeplabv3_resnet50", num_classes=3, **DEEPLAB), tmp_path / "d.npz")
    model = zoo.load("deeplabv3_resnet50", num_classes=3, **dict(DEEPLAB, filters=8))
    before = snapshot(model)
    with pytest.raises(WeightsError, match=r"layer aspp_\w+ has shapes \[\(1, 1, 256, 16\)\] in the file"):
        W.load_weights_into(model, weights=path)
    for a, b in zip(before, snapshot(model)):
        np.testing.assert_array_equal(a, b)  # nothing assigned
