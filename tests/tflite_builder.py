"""Builds tiny, real .tflite files for the error tests (a classifier is not an SSD detector).

Written with the FlatBuffer schema bindings of the `tflite` package, so the file is a genuine
model that LiteRT loads and runs; only its outputs are not what pidetect expects.
"""

import flatbuffers
import numpy as np
import tflite


def _int_vector(builder, start_fn, values):
    start_fn(builder, len(values))
    for value in reversed(values):
        builder.PrependInt32(value)
    return builder.EndVector()


def classifier_model(side: int = 8, classes_out_name: str = "MobilenetV2/Predictions/Softmax") -> bytes:
    """input float32 [1, side, side, 3] -> RESHAPE [1, side*side*3] -> SOFTMAX: a classifier's outputs."""
    b = flatbuffers.Builder(1024)
    flat = side * side * 3
    shape_bytes = np.array([1, flat], np.int32).tobytes()

    def buffer(data: bytes):
        vector = b.CreateByteVector(data) if data else None
        tflite.BufferStart(b)
        if vector is not None:
            tflite.BufferAddData(b, vector)
        return tflite.BufferEnd(b)

    buffers = [buffer(b""), buffer(shape_bytes)]

    def tensor(name, shape, ttype, buffer_index):
        name_off = b.CreateString(name)
        shape_off = _int_vector(b, tflite.TensorStartShapeVector, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, buffer_index)
        tflite.TensorAddName(b, name_off)
        return tflite.TensorEnd(b)

    tensors = [
        tensor("input", [1, side, side, 3], tflite.TensorType.FLOAT32, 0),
        tensor("shape", [2], tflite.TensorType.INT32, 1),
        tensor("logits", [1, flat], tflite.TensorType.FLOAT32, 0),
        tensor(classes_out_name, [1, flat], tflite.TensorType.FLOAT32, 0),
    ]
    tflite.SoftmaxOptionsStart(b)
    tflite.SoftmaxOptionsAddBeta(b, 1.0)
    softmax_options = tflite.SoftmaxOptionsEnd(b)

    def operator(opcode_index, inputs, outputs, options_type=0, options=None):
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

    operators = [operator(0, [0, 1], [2]),
                 operator(1, [2], [3], tflite.BuiltinOptions.SoftmaxOptions, softmax_options)]

    def opcode(code):
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, code)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        return tflite.OperatorCodeEnd(b)

    opcodes = [opcode(tflite.BuiltinOperator.RESHAPE), opcode(tflite.BuiltinOperator.SOFTMAX)]

    def offsets_vector(start_fn, offsets):
        start_fn(b, len(offsets))
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = offsets_vector(tflite.SubGraphStartTensorsVector, tensors)
    ops_vec = offsets_vector(tflite.SubGraphStartOperatorsVector, operators)
    inputs_vec = _int_vector(b, tflite.SubGraphStartInputsVector, [0])
    outputs_vec = _int_vector(b, tflite.SubGraphStartOutputsVector, [3])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddOperators(b, ops_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    subgraph = tflite.SubGraphEnd(b)

    subgraphs_vec = offsets_vector(tflite.ModelStartSubgraphsVector, [subgraph])
    opcodes_vec = offsets_vector(tflite.ModelStartOperatorCodesVector, opcodes)
    buffers_vec = offsets_vector(tflite.ModelStartBuffersVector, buffers)
    description = b.CreateString("pidetect test classifier")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, opcodes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, description)
    tflite.ModelAddBuffers(b, buffers_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())
