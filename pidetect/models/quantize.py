"""`pidetect quantize`: an int8 model from the one the user has, checked before it is kept.

Which path a model takes is read from the file, not asked of the user:
- uint8, or int8 per-tensor (TF1/Coral era, quantization-aware): data-free requantization to int8
  with per-channel weights (models/requantize.py), no calibration images needed;
- float32 / float16: static int8 (int8 per-channel weights, int8 per-tensor activations)
  calibrated on images from a folder or frames from a camera, through ai-edge-quantizer (the
  optional extra `pidetect[quantize]`); the calibration images are placed in the input exactly as
  the detector places frames (stretched for SSD, letterboxed for YOLO);
- dynamic-range (int8 weights, float activations): its weights are dequantized to float first,
  then it takes the calibrated path;
- already int8 per-channel, or an Edge TPU build: nothing to do, said plainly.
Outputs stay float (the SSD post-processing op and what it returns, YOLO's head), the input becomes
int8 so the detector fills it through its lookup table. The result is written to a temporary file,
run beside the source on the verification images (label agreement and box IoU), and renamed into
place only if they agree; otherwise it is removed and the command fails (exit 1).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PidetectError, UsageError
from ..files import replaced_when_done
from ..inference.detector import Detector, DetectorOptions
from ..inference.tflite_file import looks_like_tflite
from .requantize import describe_quantization, float_ops, requantize_int8

MIN_AGREEMENT = 0.90
MIN_SOURCE_DETECTIONS = 5  # fewer objects than this in the verification images prove nothing
FEW_CALIBRATION_IMAGES = 10
Say = Callable[[str], None]


class VerificationFailed(PidetectError):
    """The quantized model disagrees with its source; it was not kept (exit 1)."""

    exit_code = 1


@dataclass
class Agreement:
    images: int
    source_detections: int
    matched: int
    mean_iou: float

    @property
    def label_agreement(self) -> float:
        return self.matched / self.source_detections if self.source_detections else 1.0

    def describe(self) -> str:
        return (f"{self.matched} of {self.source_detections} detections agree in label "
                f"({self.label_agreement:.0%}), mean box IoU {self.mean_iou:.3f}, on {self.images} images")


@dataclass
class QuantizeOutcome:
    source_format: str
    method: str
    output: Path
    agreement: Agreement
    notes: List[str] = field(default_factory=list)


def check_source(model: Path) -> bytes:
    if not model.is_file():
        raise UsageError(f"{model}: no such model file")
    data = model.read_bytes()
    if not looks_like_tflite(data[:8]):
        raise UsageError(f"{model} is not a TFLite model (no 'TFL3' FlatBuffer identifier); quantize takes a .tflite")
    if b"edgetpu-custom-op" in data:
        raise UsageError(f"{model} is an Edge TPU build: it is compiled for the Coral accelerator and cannot be "
                         "requantized; quantize the CPU model it was compiled from")
    return data


def model_input_size(model: Path) -> Tuple[int, int]:
    """The model's input (width, height), read by the interpreter: a damaged or truncated file is a UsageError."""
    from ..inference.backends import resolve_backend, without_litert_chatter

    try:
        with without_litert_chatter():
            interpreter = resolve_backend("auto").interpreter_class(model_path=str(model))
        shape = interpreter.get_input_details()[0]["shape"]
        return int(shape[2]), int(shape[1])
    except (ValueError, RuntimeError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{model}: the interpreter cannot read this model ({reason}); the file is damaged or "
                         "truncated — copy it again") from None


def check_output(source: Path, output: Path, force: bool) -> None:
    """-o must name a new (or, with --force, replaceable) file in a folder we can write: said before any work."""
    source, output = Path(source), Path(output)
    if output.exists() and (output.resolve() == source.resolve() or os.path.samefile(output, source)):
        raise UsageError(f"-o {output}: the output must not be the source model")
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder; give the .tflite file to write, e.g. -o {output / 'model_int8.tflite'}")
    if output.exists() and not force:
        raise UsageError(f"-o {output}: the file exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise UsageError(f"-o {output}: folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise UsageError(f"-o {output}: cannot write in {output.parent} (permission denied or read-only); "
                         "choose another folder")


def quantize_model(source: Path, output: Path, labels: Optional[Path], calibration: Sequence[np.ndarray],
                   verification: Sequence[np.ndarray], force: bool = False, say: Say = print) -> QuantizeOutcome:
    """Write OUT (temporary name, then rename) only once it runs and agrees with the source."""
    source, output = Path(source), Path(output)
    data = check_source(source)
    check_output(source, output, force)
    kind = describe_quantization(data)
    notes: List[str] = []
    if kind == "int8 per-channel":
        raise UsageError(f"{source} is already int8 with per-channel weights: XNNPACK's fast kernels run it "
                         "as it is; there is nothing to gain")
    if kind in ("uint8", "int8 per-tensor"):
        quantized, report = requantize_int8(data)
        method = "data-free requantization (the model's own activation ranges, no calibration data)"
        notes.append(f"{report.weights} weight tensors now int8 per-channel, {report.activations} activations "
                     f"int8, {report.requantized_inputs} requantize and {report.dequantized_inputs} dequantize "
                     "steps added where int8 kernels need them")
        if calibration:
            notes.append("calibration images were not needed (the source carries its ranges); used to verify")
    else:
        if kind == "dynamic-range":
            notes.append("the source is dynamic-range: int8 weights with float activations; its weights were "
                         "dequantized to float and the float model calibrated")
            data = dequantize_weights(data)
        if not calibration:
            raise UsageError(f"{source} is a {kind} model: static int8 needs calibration images; pass "
                             "--calibration DIR (photos like the camera's) or --calibration-source SPEC --frames N")
        if len(calibration) < FEW_CALIBRATION_IMAGES:
            say(f"warning: only {len(calibration)} calibration image(s); 50-200 from the camera that will run "
                "the model give better ranges")
        quantized = calibrate_static_int8(data, source, labels, calibration, say)
        method = f"static int8 calibrated on {len(calibration)} image(s) by ai-edge-quantizer (static_wi8_ai8)"
    still_float = float_ops(quantized)
    if still_float:
        notes.append("these ops stay float (no int8 kernel, or quantizing them would change the result): "
                     + ", ".join(still_float))
    quantized += appended_archive(source)
    with replaced_when_done(output) as temporary:
        temporary.write_bytes(quantized)
        agreement = compare(source, temporary, labels, verification)
        if agreement.source_detections < MIN_SOURCE_DETECTIONS:
            raise VerificationFailed(
                f"cannot verify the quantized model: {source.name} itself found only "
                f"{agreement.source_detections} object(s) in the {agreement.images} verification image(s) "
                f"(at least {MIN_SOURCE_DETECTIONS} needed to judge agreement); give --calibration a folder of "
                f"photos that show objects the model knows, or --eval DATASET (labelled images); nothing was "
                f"written to {output}")
        if agreement.label_agreement < MIN_AGREEMENT:
            raise VerificationFailed(f"the quantized model disagrees with {source.name}: {agreement.describe()} "
                                     f"(at least {MIN_AGREEMENT:.0%} needed); nothing was written to {output}")
    return QuantizeOutcome(kind, method, output, agreement, notes)


def calibration_samples(data: bytes, source: Path, labels: Optional[Path],
                        images: Sequence[np.ndarray]) -> Tuple[bytes, str, List[dict]]:
    """(the model with a signature, its key, the images as its input): placed exactly as the detector will
    place camera frames (stretched for SSD, letterboxed for YOLO)."""
    detector = Detector(source, labels, DetectorOptions())
    data, name, input_name = with_signature(data)
    samples = []
    for image in images:
        detector.prepare(image)
        samples.append({input_name: detector.interpreter.get_tensor(detector.input["index"]).copy()})
    return data, name, samples


def calibrate_static_int8(data: bytes, source: Path, labels: Optional[Path], images: Sequence[np.ndarray],
                          say: Say) -> bytes:
    from .quantizer_package import quantizer_api

    quantizer, recipe, _metric = quantizer_api()
    data, name, samples = calibration_samples(data, source, labels, images)
    with tempfile.TemporaryDirectory(prefix="pidetect-quantize-") as folder:
        float_path = Path(folder) / "float.tflite"
        float_path.write_bytes(data)
        say(f"calibrating on {len(samples)} image(s) ...")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            qt = quantizer.Quantizer(str(float_path))
            qt.load_quantization_recipe(recipe.static_wi8_ai8())
            result = qt.quantize(qt.calibrate({name: samples}))
        quantized = bytes(result.quantized_model)
    return keep_outputs_float(quantized)


def _load(data: bytes):
    """The model as objects: buffers stored past the FlatBuffer (offset/size) read back in, and every
    operator code in `builtin_code` (TOCO-era files keep it only in `deprecated_builtin_code`)."""
    from .requantize import _schema

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for code in model.operatorCodes:  # the TOCO trap: ai-edge-quantizer reads builtin_code only
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
    for buffer in model.buffers:
        if buffer.offset and buffer.offset > 1:
            buffer.data = np.frombuffer(data[buffer.offset:buffer.offset + buffer.size], np.uint8)
            buffer.offset = 0
            buffer.size = 0
    return schema, model


def _pack(model, size_hint: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def appended_archive(source: Path) -> bytes:
    """The zip appended to the source model (Ultralytics' names, TFLite label files), rebuilt to append to
    the result: the labels travel with the quantized model. Empty when the source carries none."""
    import io
    import zipfile

    from ..inference.model_metadata import read_archive, read_embedded_metadata

    if read_embedded_metadata(source).where == "":
        return b""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as new:
        for name, data in read_archive(source):  # the members as `detect` reads them: 1 MB each at most
            new.writestr(name, data)
    return archive.getvalue()


def with_signature(data: bytes) -> Tuple[bytes, str, str]:
    """The model with a serving signature (ai-edge-quantizer calibrates through one), its key and input key.

    Ultralytics' onnx2tf exports carry none; one is added naming the graph's own input and outputs.
    """
    schema, model = _load(data)
    if model.signatureDefs:
        signature = model.signatureDefs[0]
        key = signature.signatureKey.decode() if isinstance(signature.signatureKey, bytes) else signature.signatureKey
        name = signature.inputs[0].name
        return _pack(model, len(data)), key, name.decode() if isinstance(name, bytes) else name
    graph = model.subgraphs[0]

    def tensor_map(name: str, index: int):
        item = schema.TensorMapT()
        item.name = name
        item.tensorIndex = int(index)
        return item

    signature = schema.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(f"input_{n}", i) for n, i in enumerate(graph.inputs)]
    signature.outputs = [tensor_map(f"output_{n}", i) for n, i in enumerate(graph.outputs)]
    model.signatureDefs = [signature]
    return _pack(model, len(data)), "serving_default", "input_0"


def keep_outputs_float(data: bytes) -> bytes:
    """Drop QUANTIZE ops that turn float model outputs into int8 (class ids and boxes must stay exact)."""
    schema, model = _load(data)
    for graph in model.subgraphs:
        producer = {int(o): n for n, op in enumerate(graph.operators) for o in op.outputs}
        outputs, dropped = list(graph.outputs), set()
        for position, index in enumerate(outputs):
            number = producer.get(int(index))
            if number is None:
                continue
            op = graph.operators[number]
            code = model.operatorCodes[op.opcodeIndex]
            if code.builtinCode == schema.BuiltinOperator.QUANTIZE and \
                    graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32:
                outputs[position] = op.inputs[0]
                dropped.add(number)
                for signature in model.signatureDefs or []:
                    for tensor_map in signature.outputs or []:
                        if tensor_map.tensorIndex == index:
                            tensor_map.tensorIndex = int(op.inputs[0])
        graph.outputs = np.asarray(outputs, np.int32)
        graph.operators = [op for number, op in enumerate(graph.operators) if number not in dropped]
    return _pack(model, len(data))


def dequantize_weights(data: bytes) -> bytes:
    """A dynamic-range model as float32: int8 weights dequantized in place, DEQUANTIZE steps removed."""
    schema, model = _load(data)
    T = schema.TensorType
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            raw = model.buffers[tensor.buffer].data
            if tensor.type not in (T.INT8, T.FLOAT16) or raw is None or not len(raw):
                continue
            if tensor.type == T.FLOAT16:
                real = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), np.float16).astype(np.float32)
            else:
                values = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), np.int8).astype(np.float32)
                shape = [int(d) for d in tensor.shape]
                scale = np.asarray(q.scale, np.float32)
                zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float32)
                if len(scale) > 1:
                    view = [1] * len(shape)
                    view[q.quantizedDimension] = -1
                    real = (values.reshape(shape) - zero.reshape(view)) * scale.reshape(view)
                else:
                    real = (values - zero[0]) * scale[0]
            model.buffers[tensor.buffer].data = np.frombuffer(real.astype(np.float32).tobytes(), np.uint8)
            tensor.type = T.FLOAT32
            tensor.quantization = None
        # a DEQUANTIZE of what is now float is the identity: its readers read its input instead
        rename = {}
        kept = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if code.builtinCode == schema.BuiltinOperator.DEQUANTIZE and \
                    graph.tensors[op.inputs[0]].type == T.FLOAT32:
                rename[int(op.outputs[0])] = int(op.inputs[0])
                continue
            kept.append(op)
        for op in kept:
            op.inputs = np.asarray([rename.get(int(i), int(i)) for i in op.inputs], np.int32)
        graph.operators = kept
        graph.outputs = np.asarray([rename.get(int(i), int(i)) for i in graph.outputs], np.int32)
    return _pack(model, len(data) * 4)


def compare(source: Path, result: Path, labels: Optional[Path], images: Sequence[np.ndarray],
            threshold: float = 0.5, margin: float = 0.25) -> Agreement:
    """How far the result agrees with the source on the same images: same label and IoU >= 0.5.

    The source's detections at the daemon's threshold are looked for among the result's down to
    `threshold - margin`: a score of 0.51 that becomes 0.49 is the same detection, not a disagreement.
    """
    reference = Detector(source, labels, DetectorOptions(threshold=threshold, max_results=20))
    # the result is judged with the source's labels file (an SSD's coco_labels.txt beside the source)
    candidate = Detector(result, labels or reference.labels_path,
                         DetectorOptions(threshold=max(0.0, threshold - margin), max_results=50))
    total = matched = 0
    overlaps: List[float] = []
    for image in images:
        expected = reference.detect_image(image).detections
        found = list(candidate.detect_image(image).detections)
        total += len(expected)
        for detection in expected:
            best, best_iou = None, 0.0
            for other in found:
                if other.label == detection.label:
                    overlap = _iou(detection.box, other.box)
                    if overlap > best_iou:
                        best, best_iou = other, overlap
            if best is not None and best_iou >= 0.5:
                matched += 1
                overlaps.append(best_iou)
                found.remove(best)
    return Agreement(len(images), total, matched, float(np.mean(overlaps)) if overlaps else 0.0)


def _iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
