"""Data-free requantization: a uint8 (or int8 per-tensor) TFLite model -> signed int8, per-channel weights.

Why: XNNPACK, LiteRT's CPU engine, has its fast kernels (ARM dot-product, x86 VNNI) only for signed
int8 with per-channel weights; Coral's uint8 SSD runs on the old generic ones. No calibration data
is needed, because the quantized file already carries every activation's range (it was trained
quantization-aware):
- activations: uint8 (scale s, zero point z) holds exactly the reals of int8 (s, z - 128), so
  they change type and zero point only — the ReLU6 the TOCO-era file keeps in its ranges stays;
- convolution and fully-connected weights: dequantized, then requantized symmetrically per output
  channel (scale = max |w| / 127 of that channel); each bias is requantized with its channel's new
  scale (input scale x weight scale), as TFLite's int8 spec requires;
- other uint8 constants move by 128; the SSD anchors become float32 (exact);
- the TOCO trap: operator codes that live only in `deprecated_builtin_code` are copied into
  `builtin_code`, so newer readers do not see every op as ADD.
Only the FlatBuffer schema bundled with ai-edge-litert is used: the Pi installs nothing more.
The transform is deterministic (numpy rounding half to even), so its result has one SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from ..errors import ModelError

POSTPROCESS = b"TFLite_Detection_PostProcess"


@dataclass
class RequantizeReport:
    weights: int = 0  # weight tensors made int8 per-channel
    biases: int = 0
    activations: int = 0  # uint8 activations turned int8
    constants: int = 0  # other constants shifted or made float
    requantized_inputs: int = 0  # QUANTIZE ops added before concatenations (int8 needs equal ranges)
    dequantized_inputs: int = 0  # DEQUANTIZE ops added before the SSD post-processing op (it stays float)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime ships no schema module
        raise ModelError("requantizing needs the TFLite FlatBuffer schema bundled with ai-edge-litert: "
                         "pip install ai-edge-litert") from None
    return schema


def _op_name(schema, code) -> str:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(code.builtinCode, str(code.builtinCode))


def describe_quantization(data: bytes) -> str:
    """'uint8', 'int8 per-tensor', 'int8 per-channel', 'float32', 'dynamic-range' or 'float16', from the file."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    kinds = {"uint8": 0, "int8": 0, "float32": 0, "float16": 0}
    per_channel = False
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            name = {schema.TensorType.UINT8: "uint8", schema.TensorType.INT8: "int8",
                    schema.TensorType.FLOAT32: "float32", schema.TensorType.FLOAT16: "float16"}.get(tensor.type)
            if name:
                kinds[name] += 1
            q = tensor.quantization
            if name == "int8" and q is not None and q.scale is not None and len(q.scale) > 1:
                per_channel = True
    first = model.subgraphs[0]
    input_type = first.tensors[first.inputs[0]].type
    if kinds["uint8"] > kinds["int8"]:
        return "uint8"
    if kinds["int8"] and input_type == schema.TensorType.FLOAT32 and kinds["float32"] > kinds["int8"]:
        return "dynamic-range"
    if kinds["int8"]:
        return "int8 per-channel" if per_channel else "int8 per-tensor"
    return "float16" if kinds["float16"] else "float32"


def float_ops(data: bytes) -> List[str]:
    """Ops of a model that still compute in float (besides DEQUANTIZE steps and the SSD post-processing op)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = _op_name(schema, code) if not code.customCode else code.customCode.decode()
            outputs = [graph.tensors[i] for i in op.outputs if i >= 0]
            if outputs and all(t.type == schema.TensorType.FLOAT32 for t in outputs) and \
                    name not in ("DEQUANTIZE", POSTPROCESS.decode()):
                found.append(name)
    return sorted(set(found))


def requantize_int8(data: bytes) -> Tuple[bytes, RequantizeReport]:
    """The model as signed int8 with per-channel weights; raises ModelError for what it cannot do."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for code in model.operatorCodes:  # the TOCO trap
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
    report = RequantizeReport()
    refs: Dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            refs[tensor.buffer] = refs.get(tensor.buffer, 0) + 1
    for graph in model.subgraphs:
        _requantize_graph(schema, model, graph, refs, report)
        report.requantized_inputs += _match_concatenation_inputs(schema, model, graph)
        report.dequantized_inputs += _float_postprocess_inputs(schema, model, graph)
    _raise_op_versions(schema, model)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), report


def _constant(model, tensor) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    return np.zeros(0, np.uint8) if data is None else np.asarray(data, np.uint8)


def _set_constant(model, tensor, refs: Dict[int, int], values: np.ndarray, schema) -> None:
    """Store new bytes for a constant; a buffer shared with another tensor is copied first."""
    raw = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
    if refs.get(tensor.buffer, 0) > 1:
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        refs[tensor.buffer] -= 1
        tensor.buffer = len(model.buffers) - 1
        refs[tensor.buffer] = 1
    model.buffers[tensor.buffer].data = raw


def _quant(schema, scales, zero_points, axis: int = 0):
    q = schema.QuantizationParametersT()
    q.scale = np.asarray(scales, np.float32)
    q.zeroPoint = np.asarray(zero_points, np.int64)
    q.quantizedDimension = axis
    return q


def _requantize_graph(schema, model, graph, refs: Dict[int, int], report: RequantizeReport) -> None:
    T = schema.TensorType
    weights: Dict[int, Tuple[int, int, int]] = {}  # weight tensor -> (axis, bias tensor, input tensor)
    anchors = set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = _op_name(schema, code)
        inputs = list(op.inputs)
        if name in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
            weight_at = 1
            axis = 3 if name == "DEPTHWISE_CONV_2D" else 0
            bias = inputs[2] if len(inputs) > 2 and name != "TRANSPOSE_CONV" else -1
            source = inputs[0] if name != "TRANSPOSE_CONV" else inputs[2]
            weights[inputs[weight_at]] = (axis, bias, source)
        if code.customCode == POSTPROCESS and len(inputs) > 2:
            anchors.add(inputs[2])
    # scales of the inputs before any change (they keep their scale; only zero points move)
    input_scale = {}
    for weight, (_axis, _bias, source) in weights.items():
        q = graph.tensors[source].quantization
        input_scale[weight] = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
    new_weight_scales: Dict[int, np.ndarray] = {}
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        quantized = q is not None and q.scale is not None and len(q.scale) > 0
        if tensor.type not in (T.UINT8, T.INT8) or not quantized:
            continue
        values = _constant(model, tensor)
        is_constant = values.size > 0
        scale = np.asarray(q.scale, np.float64)
        zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.int64)
        if index in weights and is_constant:
            axis = weights[index][0]
            shape = tuple(int(d) for d in tensor.shape)
            stored = values.view(np.int8 if tensor.type == T.INT8 else np.uint8).reshape(shape).astype(np.float64)
            if len(scale) > 1:  # already per-channel: broadcast its scales along its own axis
                view = [1] * len(shape)
                view[q.quantizedDimension] = -1
                real = (stored - zero.reshape(view)) * scale.reshape(view)
            else:
                real = (stored - zero[0]) * scale[0]
            moved = np.moveaxis(real, axis, 0)
            peak = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
            channel_scale = np.where(peak > 0, peak / 127.0, 1e-8)
            view = [1] * len(shape)
            view[axis] = -1
            q_values = np.clip(np.rint(real / channel_scale.reshape(view)), -127, 127).astype(np.int8)
            _set_constant(model, tensor, refs, q_values, schema)
            tensor.type = T.INT8
            tensor.quantization = _quant(schema, channel_scale, np.zeros(len(channel_scale)), axis)
            new_weight_scales[index] = channel_scale
            report.weights += 1
        elif index in anchors and is_constant and tensor.type == T.UINT8:
            real = (values.astype(np.float64) - zero[0]) * scale[0]
            _set_constant(model, tensor, refs, real.astype(np.float32), schema)
            tensor.type = T.FLOAT32
            tensor.quantization = None
            report.constants += 1
        elif tensor.type == T.UINT8:
            if is_constant:
                _set_constant(model, tensor, refs, (values.astype(np.int16) - 128).astype(np.int8), schema)
                report.constants += 1
            else:
                report.activations += 1
            tensor.type = T.INT8
            tensor.quantization = _quant(schema, scale, zero - 128, q.quantizedDimension)
    for weight, channel_scale in new_weight_scales.items():
        _axis, bias, _source = weights[weight]
        if bias < 0 or input_scale[weight] is None:
            continue
        tensor = graph.tensors[bias]
        values = _constant(model, tensor)
        q = tensor.quantization
        if tensor.type != T.INT32 or not values.size or q is None or q.scale is None:
            continue
        old_scale = np.asarray(q.scale, np.float64)
        real = values.view(np.int32).astype(np.float64) * (old_scale if len(old_scale) > 1 else old_scale[0])
        new_scale = input_scale[weight] * channel_scale
        q_values = np.clip(np.rint(real / new_scale), -2**31, 2**31 - 1).astype(np.int32)
        _set_constant(model, tensor, refs, q_values, schema)
        tensor.quantization = _quant(schema, new_scale, np.zeros(len(new_scale)), 0)
        report.biases += 1


def _convert_input(schema, graph, operators: list, op, position: int, opcode: int, suffix: bytes,
                   tensor_type: int, quantization=None) -> None:
    """Feed input `position` of `op` through a new one-input op (QUANTIZE or DEQUANTIZE) placed before it."""
    source = graph.tensors[op.inputs[position]]
    converted = schema.TensorT()
    converted.name = (source.name or b"") + suffix
    converted.shape = source.shape
    converted.type = tensor_type
    converted.buffer = 0
    converted.quantization = quantization
    graph.tensors.append(converted)
    step = schema.OperatorT()
    step.opcodeIndex = opcode
    step.inputs = np.asarray([op.inputs[position]], np.int32)
    step.outputs = np.asarray([len(graph.tensors) - 1], np.int32)
    operators.append(step)
    inputs = list(op.inputs)
    inputs[position] = len(graph.tensors) - 1
    op.inputs = np.asarray(inputs, np.int32)


def _match_concatenation_inputs(schema, model, graph) -> int:
    """int8 CONCATENATION needs every input in the output's scale and zero point (uint8 rescaled them).

    An input in another range goes through a QUANTIZE op (int8 -> int8 requantize) placed right before
    the concatenation, into a new tensor with the output's parameters.
    """
    T = schema.TensorType
    quantize = _opcode_index(schema, model, schema.BuiltinOperator.QUANTIZE)
    added, operators = 0, []
    for op in graph.operators:
        out = graph.tensors[op.outputs[0]]
        if _op_name(schema, model.operatorCodes[op.opcodeIndex]) == "CONCATENATION" and out.type == T.INT8 \
                and out.quantization is not None:
            target = (float(out.quantization.scale[0]), int(out.quantization.zeroPoint[0]))
            for position in range(len(op.inputs)):
                tensor = graph.tensors[op.inputs[position]]
                q = tensor.quantization
                if tensor.type == T.INT8 and q is not None and (float(q.scale[0]), int(q.zeroPoint[0])) != target:
                    _convert_input(schema, graph, operators, op, position, quantize, b"/requantized", T.INT8,
                                   _quant(schema, [target[0]], [target[1]]))
                    added += 1
        operators.append(op)
    graph.operators = operators
    return added


def _float_postprocess_inputs(schema, model, graph) -> int:
    """The SSD post-processing op reads its box encodings and scores in float, through DEQUANTIZE ops.

    It decodes anchors, thresholds and runs NMS: left in float, its result cannot change (its int8
    input path is not in every runtime), and dequantizing 1917 x 95 values costs microseconds.
    """
    T = schema.TensorType
    dequantize = _opcode_index(schema, model, schema.BuiltinOperator.DEQUANTIZE)
    added, operators = 0, []
    for op in graph.operators:
        if model.operatorCodes[op.opcodeIndex].customCode == POSTPROCESS:
            for position in range(min(2, len(op.inputs))):
                if graph.tensors[op.inputs[position]].type == T.INT8:
                    _convert_input(schema, graph, operators, op, position, dequantize, b"/dequantized", T.FLOAT32)
                    added += 1
        operators.append(op)
    graph.operators = operators
    return added


def _opcode_index(schema, model, builtin: int) -> int:
    for number, code in enumerate(model.operatorCodes):
        if code.builtinCode == builtin and not code.customCode:
            return number
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


# int8 per-channel kernels are registered from these op versions on (TFLite's op version table)
MIN_INT8_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "CONCATENATION": 2,
                     "LOGISTIC": 2, "RESHAPE": 1, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "MUL": 2, "SOFTMAX": 2,
                     "MEAN": 2, "PAD": 2, "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "TRANSPOSE_CONV": 2,
                     "HARD_SWISH": 1, "SUB": 2, "QUANTIZE": 2, "DEQUANTIZE": 2}


def _raise_op_versions(schema, model) -> None:
    for code in model.operatorCodes:
        wanted = MIN_INT8_VERSIONS.get(_op_name(schema, code))
        if wanted and (code.version or 1) < wanted:
            code.version = wanted
