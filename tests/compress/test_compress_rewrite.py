"""zoo.compress._rewrite: the exact rewrites before QAT annotation. Here the atrous conv with a bias
(DeepLab-v2's ASPP-L branches): TensorFlow adds its bias after the conv's BatchToSpaceND, so with a
dynamic batch the int8 conversion of the QAT model kept the conv, the BatchToSpaceND and the bias
ADD float. And a QAT model holding a zoo layer reloads through zoo.load_model."""
import numpy as np
import pytest

import zoo
from zoo._keras import keras, tf
from zoo.compress._quantize import quantize
from zoo.compress._rewrite import rewrite
from zoo.export import ops as export_ops
from zoo.export.convert import convert
from zoo.models.layers import ResizeLike

L = keras.layers


def aspp_l(rates=(2, 4, 6, 8), size=8, classes=3):
    """DeepLab-v2's head in small: conv-BN-ReLU, then one biased 3x3 atrous conv per rate straight
    to the classes, summed by an Add named classifier, resized to the input."""
    inputs = keras.Input((size, size, 4))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    branches = [L.Conv2D(classes, 3, padding="same", dilation_rate=r, name=f"aspp_conv{i}")(x)
                for i, r in enumerate(rates)]
    y = L.Add(name="classifier")(branches)
    return keras.Model(inputs, ResizeLike(name="out")([y, inputs]), name="aspp_l")


def randomize(model, seed=0):
    """Non-zero weights everywhere (a zero bias would be constant-folded away and hide the case)."""
    rng = np.random.default_rng(seed)
    model.set_weights([np.abs(rng.normal(size=w.shape)).astype("float32") + 0.5 if "variance" in w.name
                       else rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.weights])
    return model


def float_op_names(content):
    return sorted({o["op"] for o in export_ops.float_ops(export_ops.read_ops(content))})


def qat_of(model, x):
    qat = quantize(model)
    qat(x, training=True)  # moves the activation ranges off their initial values
    return qat


@pytest.mark.slow  # measured 11.4 s in the quick tier
def test_a_qat_aspp_l_converts_to_int8_with_a_dynamic_and_a_fixed_batch():
    model = randomize(aspp_l())
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32")
    qat = qat_of(model, x)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)  # batch None, as tfmot's guide converts
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    dynamic = converter.convert()
    assert float_op_names(dynamic) == []  # was CONV_2D, BATCH_TO_SPACE_ND, ADD (the bias) per branch
    ops = [o["op"] for o in export_ops.read_ops(dynamic)]
    assert ops.count("BATCH_TO_SPACE_ND") == 4 and ops.count("CONV_2D") == 5  # the atrous convs, in int8
    assert float_op_names(convert(qat, (1, 8, 8, 4), "qat")) == []  # zoo.export's path (batch 1)
    # the int8 file computes what the float model computes, up to int8 rounding
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=dynamic)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x[:1])
    interpreter.invoke()
    lite, ref = interpreter.get_tensor(out["index"]), np.asarray(qat(x[:1]))
    assert np.abs(lite - ref).max() <= 0.05 * np.abs(ref).max()


def test_the_bias_moves_into_a_depthwise_conv_or_the_norm_after_it_and_outputs_stay_equal():
    inputs = keras.Input((8, 8, 4))
    a = L.Conv2D(3, 3, padding="same", dilation_rate=2, activation="relu", name="a")(inputs)
    b = L.Conv2D(3, 3, padding="same", dilation_rate=2, name="b")(inputs)
    b = L.BatchNormalization(name="b_bn")(b)
    c = L.DepthwiseConv2D(3, padding="same", dilation_rate=3, name="c")(inputs)  # also a model output
    d = L.Conv2D(3, 3, padding="same", name="d")(inputs)  # not dilated: no STB/BTS, left alone
    model = randomize(keras.Model(inputs, [L.Add(name="sum")([a, b, d]), c]))
    new, done = rewrite(model)
    assert done["a"] == "Conv (no bias) + DepthwiseConv2D a_bias"
    assert done["b"] == "Conv (no bias; bias in b_bn)" and done["b_bn"] == "DepthwiseConv2D"
    assert done["c"] == "Conv (no bias) + DepthwiseConv2D c_bias" and "d" not in done
    for name in ("a", "b", "c"):
        assert not new.get_layer(name).use_bias and new.get_layer(name).get_config()["activation"] == "linear"
    assert new.get_layer("a_bias").get_config()["activation"] == "relu" and new.get_layer("d").use_bias
    assert new.output_names[1] == "c_bias"
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 4)).astype("float32")
    for want, got in zip(model(x), new(x)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    kept, done = rewrite(model, exclude=("a",))  # an excluded conv stays float, bias and all
    assert kept.get_layer("a").use_bias and "a" not in done and "a_bias" not in [l.name for l in kept.layers]


def test_a_qat_model_with_a_zoo_layer_reloads_through_zoo_load_model(tmp_path):
    model = randomize(aspp_l(rates=(2, 3)))
    x = np.random.default_rng(3).normal(size=(1, 8, 8, 4)).astype("float32")
    qat = qat_of(model, x)
    qat.save(tmp_path / "qat.h5")
    loaded = zoo.load_model(str(tmp_path / "qat.h5"))  # was: Unknown layer: 'ResizeLike'
    assert type(loaded.get_layer("quant_out").layer) is ResizeLike
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(qat(x)), atol=1e-5)

