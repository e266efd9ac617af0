"""Builds tiny, real .tflite files for the error tests (a classifier is not an SSD detector).

Written with the FlatBuffer schema bindings of the `tflite` package, so the file is a genuine
model that LiteRT loads and runs; only its outputs are not what pidetect expects.
"""

import flatbuffers
import numpy as np
import tflite


def _vector(builder, start_fn, values, prepend):
    start_fn(builder, len(values))
    for value in reversed(values):
        prepend(value)
    return builder.EndVector()


def _int_vector(builder, start_fn, values):
    return _vector(builder, start_fn, values, builder.PrependInt32)


def _buffer(b, data: bytes):
    vector = b.CreateByteVector(data) if data else None
    tflite.BufferStart(b)
    if vector is not None:
        tflite.BufferAddData(b, vector)
    return tflite.BufferEnd(b)


def _tensor(b, name, shape, ttype, buffer_index, quantization=None):
    name_off = b.CreateString(name)
    shape_off = _int_vector(b, tflite.TensorStartShapeVector, shape)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape_off)
    tflite.TensorAddType(b, ttype)
    tflite.TensorAddBuffer(b, buffer_index)
    tflite.TensorAddName(b, name_off)
    if quantization is not None:
        tflite.TensorAddQuantization(b, quantization)
    return tflite.TensorEnd(b)


def _operator(b, opcode_index, inputs, outputs, options_type=0, options=None):
    ins = _int_vector(b, tflite.OperatorStartInputsVector, inputs)
    outs = _int_vector(b, tflite.OperatorStartOutputsVector, outputs)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, opcode_index)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    if options is not None:
        tflite.OperatorAddBuiltinOptionsType(b, options_type)
        tflite.OperatorAddBuiltinOptions(b, options)
    return tflite.OperatorEnd(b)


def _opcode(b, code):
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, code)
    tflite.OperatorCodeAddBuiltinCode(b, code)
    tflite.OperatorCodeAddVersion(b, 1)
    return tflite.OperatorCodeEnd(b)


def _offsets_vector(b, start_fn, offsets):
    start_fn(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _finish(b, tensors, operators, opcodes, buffers, inputs, outputs, description=None) -> bytes:
    """One subgraph, the model around it, and the FlatBuffer's bytes."""
    tensors_vec = _offsets_vector(b, tflite.SubGraphStartTensorsVector, tensors)
    ops_vec = _offsets_vector(b, tflite.SubGraphStartOperatorsVector, operators)
    inputs_vec = _int_vector(b, tflite.SubGraphStartInputsVector, inputs)
    outputs_vec = _int_vector(b, tflite.SubGraphStartOutputsVector, outputs)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    subgraph = tflite.SubGraphEnd(b)
    subgraphs_vec = _offsets_vector(b, tflite.ModelStartSubgraphsVector, [subgraph])
    opcodes_vec = _offsets_vector(b, tflite.ModelStartOperatorCodesVector, opcodes)
    buffers_vec = _offsets_vector(b, tflite.ModelStartBuffersVector, buffers)
    text = b.CreateString(description) if description else None
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, opcodes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    if text is not None:
        tflite.ModelAddDescription(b, text)
    tflite.ModelAddBuffers(b, buffers_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def classifier_model(side: int = 8, classes_out_name: str = "MobilenetV2/Predictions/Softmax") -> bytes:
    """input float32 [1, side, side, 3] -> RESHAPE [1, side*side*3] -> SOFTMAX: a classifier's outputs."""
    b = flatbuffers.Builder(1024)
    flat = side * side * 3
    buffers = [_buffer(b, b""), _buffer(b, np.array([1, flat], np.int32).tobytes())]
    tensors = [
        _tensor(b, "input", [1, side, side, 3], tflite.TensorType.FLOAT32, 0),
        _tensor(b, "shape", [2], tflite.TensorType.INT32, 1),
        _tensor(b, "logits", [1, flat], tflite.TensorType.FLOAT32, 0),
        _tensor(b, classes_out_name, [1, flat], tflite.TensorType.FLOAT32, 0),
    ]
    tflite.SoftmaxOptionsStart(b)
    tflite.SoftmaxOptionsAddBeta(b, 1.0)
    softmax_options = tflite.SoftmaxOptionsEnd(b)
    operators = [_operator(b, 0, [0, 1], [2]),
                 _operator(b, 1, [2], [3], tflite.BuiltinOptions.SoftmaxOptions, softmax_options)]
    opcodes = [_opcode(b, tflite.BuiltinOperator.RESHAPE), _opcode(b, tflite.BuiltinOperator.SOFTMAX)]
    return _finish(b, tensors, operators, opcodes, buffers, [0], [3], "pidetect test classifier")


def constant_outputs_model(outputs, input_side: int = 64, float16: bool = False,
                           input_type=tflite.TensorType.FLOAT32) -> bytes:
    """A real model whose outputs are fixed arrays: input [1, side, side, 3] (unused) -> each output.

    `outputs`: arrays, or (name, array) pairs to name an output as a converter would.
    Each output is RESHAPE(constant, its shape); with float16=True the constant is stored as float16
    and DEQUANTIZE turns it into float32 first, the op pattern of a float16 export.
    It lets a test give a model family exactly the raw head it decodes (a YOLOv5 layout, say).
    """
    b = flatbuffers.Builder(4096)
    buffers_data = [b""]
    tensors_spec = [("input", [1, input_side, input_side, 3], input_type, 0)]
    operators_spec = []
    output_indices = []
    for number, value in enumerate(outputs):
        output_name = f"output_{number}"
        if isinstance(value, tuple):
            output_name, value = value
        value = np.asarray(value, np.float32)
        shape = list(value.shape)
        source = len(tensors_spec)
        if float16:
            buffers_data.append(value.astype(np.float16).tobytes())
            tensors_spec.append((f"const_{number}", shape, tflite.TensorType.FLOAT16, len(buffers_data) - 1))
            tensors_spec.append((f"dequantized_{number}", shape, tflite.TensorType.FLOAT32, 0))
            operators_spec.append((1, [source], [source + 1]))
            source += 1
        else:
            buffers_data.append(value.tobytes())
            tensors_spec.append((f"const_{number}", shape, tflite.TensorType.FLOAT32, len(buffers_data) - 1))
        buffers_data.append(np.array(shape, np.int32).tobytes())
        tensors_spec.append((f"shape_{number}", [len(shape)], tflite.TensorType.INT32, len(buffers_data) - 1))
        tensors_spec.append((output_name, shape, tflite.TensorType.FLOAT32, 0))
        operators_spec.append((0, [source, len(tensors_spec) - 2], [len(tensors_spec) - 1]))
        output_indices.append(len(tensors_spec) - 1)
    buffers = [_buffer(b, data) for data in buffers_data]
    tensors = []
    for name, shape, ttype, buffer_index in tensors_spec:
        quantization = None
        if ttype == tflite.TensorType.INT8 and name == "input":
            scale = _float_vector(b, tflite.QuantizationParametersStartScaleVector, [1 / 255])
            zero = _long_vector(b, tflite.QuantizationParametersStartZeroPointVector, [-128])
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zero)
            quantization = tflite.QuantizationParametersEnd(b)
        tensors.append(_tensor(b, name, shape, ttype, buffer_index, quantization))
    operators = [_operator(b, opcode, inputs, outs) for opcode, inputs, outs in operators_spec]
    opcodes = [_opcode(b, code) for code in (tflite.BuiltinOperator.RESHAPE, tflite.BuiltinOperator.DEQUANTIZE)]
    return _finish(b, tensors, operators, opcodes, buffers, [0], output_indices)


def _float_vector(builder, start_fn, values):
    return _vector(builder, start_fn, values, builder.PrependFloat32)


def _long_vector(builder, start_fn, values):
    return _vector(builder, start_fn, values, builder.PrependInt64)


def with_ultralytics_metadata(model: bytes, meta: dict) -> bytes:
    """The model with a zip holding temp_meta.txt appended, as Ultralytics' TFLite export writes it."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("temp_meta.txt", repr(meta))
    return model + archive.getvalue()


def dense_chain_model(weights, biases, names) -> bytes:
    """float32 [1, n] -> FULLY_CONNECTED (+ RELU but for the last) ... : a chain of dense layers.

    `weights[i]` is (out, in) as TFLite stores it, `names[i]` the output tensor's name (the op's scope)."""
    b = flatbuffers.Builder(4096)
    buffers = [_buffer(b, b"")]
    tensors = [_tensor(b, "input", [1, weights[0].shape[1]], tflite.TensorType.FLOAT32, 0)]
    operators = []
    previous = 0
    for index, (weight, bias, name) in enumerate(zip(weights, biases, names)):
        buffers.append(_buffer(b, np.ascontiguousarray(weight, np.float32).tobytes()))
        tensors.append(_tensor(b, f"{name}/weights", list(weight.shape), tflite.TensorType.FLOAT32, len(buffers) - 1))
        weight_index = len(tensors) - 1
        buffers.append(_buffer(b, np.ascontiguousarray(bias, np.float32).tobytes()))
        tensors.append(_tensor(b, f"{name}/bias", [len(bias)], tflite.TensorType.FLOAT32, len(buffers) - 1))
        bias_index = len(tensors) - 1
        tensors.append(_tensor(b, name, [1, weight.shape[0]], tflite.TensorType.FLOAT32, 0))
        output = len(tensors) - 1
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(
            b, tflite.ActivationFunctionType.RELU if index < len(weights) - 1 else tflite.ActivationFunctionType.NONE)
        options = tflite.FullyConnectedOptionsEnd(b)
        operators.append(_operator(b, 0, [previous, weight_index, bias_index], [output],
                                   tflite.BuiltinOptions.FullyConnectedOptions, options))
        previous = output
    opcodes = [_opcode(b, tflite.BuiltinOperator.FULLY_CONNECTED)]
    return _finish(b, tensors, operators, opcodes, buffers, [0], [previous], "pidetect test dense chain")


def one_sensitive_layer_model(width: int = 32, seed: int = 0) -> bytes:
    """Three dense layers, the middle one ruined by int8 and nothing else.

    The first layer's unit 0 is always 0 (a bias of -100 under its ReLU), and every row of the middle layer gives that
    dead input a weight of 1000: in float it multiplies 0 and changes nothing; in int8 per-channel it sets each
    row's scale (1000/127), so the row's real weights (about 0.25) all round to 0 and the layer's output loses
    everything that depends on the input. Kept float, the middle layer is exact. Each layer also has anchor
    units, constant at 4 (and -4 in the last, which has no ReLU): every input's activations then span the same
    range, so ranges calibrated as averages of each sample's min and max (as the quantizer does) fit every input
    and the other layers lose only their rounding (about 1 % of the output's variation each)."""
    rng = np.random.default_rng(seed)

    def layer(rows, cols, spread):
        return rng.normal(0, spread, (rows, cols)).astype(np.float32), rng.uniform(0.5, 1.0, rows).astype(np.float32)

    first, first_bias = layer(width, width, 0.15)
    first_bias[0] = -100  # the dead unit: its ReLU is always 0 (no row is all zeros: a zero row has no int8 scale)
    first[1], first_bias[1] = first[1] * 0.01, 4  # the anchor: 4, give or take 0.01
    middle, middle_bias = layer(width, width, 0.25)
    middle[1], middle_bias[1] = middle[1] * 0.01, 4
    middle[:, 0] = 1000.0
    last, last_bias = layer(8, width, 0.25)
    last[:2] *= 0.01
    last_bias[:2] = (4, -4)
    return dense_chain_model([first, middle, last], [first_bias, middle_bias, last_bias],
                             ["dense_first", "dense_middle", "dense_last"])
