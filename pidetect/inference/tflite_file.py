"""Facts read straight from a .tflite file (a FlatBuffer), without an interpreter.

Why: an interpreter cannot tell us how many classes the SSD post-processing op emits (it is in
the op's custom options), yet a labels file that is too short must be caught at start-up, not
an hour later when a rare class shows up. Only the few fields we need are decoded, with the
`flatbuffers` runtime that LiteRT already depends on.
"""

from __future__ import annotations

from typing import Optional

TFLITE_IDENTIFIER = b"TFL3"  # FlatBuffer file identifier at bytes 4..8 of every TFLite model
POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def looks_like_tflite(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


def _field(table, slot: int) -> int:
    """Offset of field number `slot` in a FlatBuffer table (0 when absent)."""
    return table.Offset(4 + 2 * slot)


def postprocess_num_classes(model) -> Optional[int]:
    """`num_classes` of the model's TFLite_Detection_PostProcess op, or None if there is none.

    `model` is any buffer of the file's bytes (bytes, or a read-only mmap: nothing is copied)."""
    from flatbuffers import encode, flexbuffers, number_types, packer
    from flatbuffers.table import Table

    def child_table(table: Table, offset: int) -> Table:
        return Table(table.Bytes, table.Indirect(offset))

    def vector_tables(table: Table, slot: int):
        offset = _field(table, slot)
        if not offset:
            return []
        start = table.Vector(offset)
        return [child_table(table, start + 4 * i) for i in range(table.VectorLen(offset))]

    buf = model
    root = Table(buf, encode.Get(packer.uoffset, buf, 0))
    opcodes = vector_tables(root, 1)  # Model.operator_codes
    custom_names = []
    for code in opcodes:
        offset = _field(code, 1)  # OperatorCode.custom_code
        custom_names.append(code.String(offset + code.Pos).decode() if offset else "")
    for subgraph in vector_tables(root, 2):  # Model.subgraphs
        for op in vector_tables(subgraph, 3):  # SubGraph.operators
            offset = _field(op, 0)
            opcode_index = op.Get(number_types.Uint32Flags, offset + op.Pos) if offset else 0
            if custom_names[opcode_index] != POSTPROCESS_OP:
                continue
            offset = _field(op, 5)  # Operator.custom_options
            if not offset:
                return None
            start, length = op.Vector(offset), op.VectorLen(offset)
            options = flexbuffers.GetRoot(bytes(buf[start:start + length])).AsMap
            return int(options["num_classes"].AsInt)
    return None


def numeric_format(tensors, model_input: dict) -> str:
    """The model's numeric format as a user would name it, from the interpreter's tensor details.

    uint8 per-tensor (TF1/Coral quantization-aware models), int8 per-channel or per-tensor (full
    integer), dynamic-range int8 (int8 weights, float activations), float16 or float32; "float I/O"
    when the inside is integer but the input is float (Ultralytics' `_integer_quant`).
    """
    import numpy as np

    kinds = {"int8": 0, "uint8": 0, "float16": 0, "float32": 0}
    per_channel = False
    for tensor in tensors:
        name = np.dtype(tensor["dtype"]).name
        if name in kinds:
            kinds[name] += 1
        scales = tensor.get("quantization_parameters", {}).get("scales")
        if name == "int8" and scales is not None and len(scales) > 1:
            per_channel = True
    float_input = np.dtype(model_input["dtype"]) == np.float32
    integer = kinds["int8"] + kinds["uint8"]
    if kinds["uint8"] > kinds["int8"] and kinds["uint8"] >= kinds["float32"]:
        text = "uint8 per-tensor"
    elif integer and integer >= kinds["float32"]:
        text = "int8 per-channel" if per_channel else "int8 per-tensor"
    elif kinds["int8"]:
        return "dynamic-range int8"
    elif kinds["float16"]:
        return "float16"
    else:
        return "float32"
    return text + (", float I/O" if float_input else "")
