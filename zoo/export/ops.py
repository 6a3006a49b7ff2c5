"""What a ``.tflite`` file holds: its operators with their tensor dtypes, read from the flatbuffer.

The schema is LiteRT's own (``ai_edge_litert.schema_py_generated``), so the list is the file's,
not what an interpreter made of it after delegation.
"""
from collections import Counter

# Operators that only convert between float and integer at a model's float boundary.
_BOUNDARY = {"QUANTIZE", "DEQUANTIZE"}
_FLOAT = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}


def _schema():
    from ai_edge_litert import schema_py_generated as schema  # heavy: LiteRT's schema (~0.1 s); read on use
    return schema


def _names(enum):
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def read_ops(content):
    """``[{"op", "inputs": [dtype...], "outputs": [dtype...], "name"}]`` for every operator of
    every subgraph (``name``: the first of its output, then input, tensor names that carries a
    layer name, e.g. ``model/stem_conv/Conv2D``)."""
    schema = _schema()
    model = schema.Model.GetRootAs(content, 0)
    ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
    out = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = [graph.Tensors(t) for t in range(graph.TensorsLength())]
        dtype = [types.get(t.Type(), "?") for t in tensors]
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = ops.get(builtin, str(builtin))
            if name == "CUSTOM":
                custom = (code.CustomCode() or b"").decode()
                name = custom if custom.startswith("Flex") else f"CUSTOM:{custom}"
            ins = [dtype[j] for j in op.InputsAsNumpy() if j >= 0] if op.InputsLength() else []
            out_ids = op.OutputsAsNumpy() if op.OutputsLength() else []
            outs = [dtype[j] for j in out_ids]
            in_ids = [j for j in op.InputsAsNumpy() if j >= 0] if op.InputsLength() else []
            out.append({"op": name, "inputs": ins, "outputs": outs,
                        "name": _telling_name([tensors[j] for j in list(out_ids) + in_ids])})
    return out


def _telling_name(tensors):
    """The first tensor name that points at a layer (a model output is just ``Identity``)."""
    names = [t.Name().decode() for t in tensors]
    return next((n for n in names if "/" in n.split(";")[0]), names[0] if names else "")


def output_step(content):
    """The quantization step of the first output of an integer file: the output tensor's own
    scale (int8/int16 outputs) or that of the tensor its final DEQUANTIZE reads; None in float.
    Some integer kernels fix it (TANH int8: 1/128, LOGISTIC int8: 1/256)."""
    schema = _schema()
    graph = schema.Model.GetRootAs(content, 0).Subgraphs(0)
    if not graph.OutputsLength():
        return None
    index = int(graph.Outputs(0))
    model = schema.Model.GetRootAs(content, 0)
    dequantize = schema.BuiltinOperator.DEQUANTIZE
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if op.OutputsLength() and index in op.OutputsAsNumpy():
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == dequantize:
                index = int(op.InputsAsNumpy()[0])
            break
    q = graph.Tensors(index).Quantization()
    scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
    return float(scale[0]) if scale is not None and len(scale) == 1 else None


def summarize(ops):
    """``[{"op", "dtypes", "count"}]``: each operator kind with the dtypes it computes in,
    e.g. ``CONV_2D int8,int32->int8 x 14`` (each input dtype once), most frequent first."""
    def kinds(types):
        return ",".join(dict.fromkeys(t.lower() for t in types))
    counts = Counter((o["op"], f"{kinds(o['inputs'])}->{kinds(o['outputs'])}") for o in ops)
    return [{"op": op, "dtypes": dt, "count": n} for (op, dt), n in counts.most_common()]


def float_ops(ops):
    """Operators that compute in floating point (the QUANTIZE/DEQUANTIZE at a float boundary
    excepted), with the tensor name that tells which layer they come from."""
    return [o for o in ops if o["op"] not in _BOUNDARY
            and any(t in _FLOAT for t in o["inputs"] + o["outputs"])]


def unsupported_ops(ops):
    """Flex (TensorFlow) and custom operators: a plain LiteRT interpreter cannot run them."""
    return [o for o in ops if o["op"].startswith(("Flex", "CUSTOM:"))]


def layer_of(tensor_name):
    """The Keras layer a TFLite tensor name points at (``model/stem_conv/Conv2D`` -> stem_conv)."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) > 2 else parts[0]


__all__ = ["read_ops", "output_step", "summarize", "float_ops", "unsupported_ops", "layer_of"]
