"""Runs an SSD TFLite model on a frame and returns Detections in pixels of that frame.

Backend resolution: ai_edge_litert (LiteRT) -> tflite_runtime -> tensorflow.lite. One interpreter per
Detector, created once. The input tensor is written in place (resize straight into the
interpreter's own buffer, colour conversion in place), so the hot path allocates nothing per frame
beyond the small output arrays.
"""

from __future__ import annotations

import importlib
import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, ModelError, UnavailableError
from ..frames import Detection, Frame, Result
from .labels import load_labels
from .tflite_file import POSTPROCESS_OP, looks_like_tflite, postprocess_num_classes

log = logging.getLogger(__name__)

BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow.lite", "tensorflow.lite"),
)
INSTALL_HINT = ("no TFLite backend is installed: run 'pip install ai-edge-litert' (recommended), "
                "or 'pip install \"pidetect[tflite]\"' for tflite-runtime 2.14 (numpy<2)")


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter_class: type


def resolve_backend(preferred: str = "auto", import_module: Callable = importlib.import_module) -> Backend:
    """The first importable backend (or exactly `preferred`), with its version for logs and bench."""
    candidates = [b for b in BACKENDS if preferred in ("auto", b[0])]
    if not candidates:
        raise UnavailableError(f"unknown backend {preferred!r}; choose auto, "
                               + ", ".join(b[0] for b in BACKENDS))
    errors = []
    for name, module_name in candidates:
        try:
            module = import_module(module_name)
        except Exception as exc:  # a broken install (e.g. numpy ABI mismatch) is as unusable as a missing one
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        top = import_module(name.split(".")[0])
        version = getattr(top, "__version__", None) or _dist_version(name)
        return Backend(name, version, module.Interpreter)
    detail = "; ".join(errors)
    if preferred != "auto":
        others = [name for name, module_name in BACKENDS if name != preferred and _importable(module_name,
                                                                                               import_module)]
        also = (f"; installed: {', '.join(others)} (use --backend auto or --backend {others[0]})" if others
                else f". {INSTALL_HINT}")
        raise UnavailableError(f"backend {preferred} is not installed or not usable ({detail}){also}")
    raise UnavailableError(f"{INSTALL_HINT} (tried: {detail})")


def _importable(module_name: str, import_module: Callable) -> bool:
    try:
        import_module(module_name)
    except Exception:
        return False
    return True


def check_label_names(known, wanted_by_key: Dict[str, FrozenSet[str]]) -> None:
    """Names in only/ignore must be labels the model has: a typo would silently filter nothing (or all)."""
    import difflib

    known = sorted(set(known))
    problems = []
    for key, wanted in wanted_by_key.items():
        hints = []
        for name in sorted(set(wanted) - set(known)):
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hints.append(f"'{name}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if hints:
            problems.append(f"{key}: the model has no label " + ", ".join(hints))
    if problems:
        raise ConfigError("; ".join(problems) + "; write labels as the labels file does, e.g. person, car, cat, "
                          "dog, tv")


def _dist_version(module: str) -> str:
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
            "tensorflow.lite": "tensorflow"}[module]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DetectorOptions:
    threshold: float = 0.5
    max_results: int = 10
    allow: FrozenSet[str] = frozenset()  # empty: every label
    deny: FrozenSet[str] = frozenset()
    num_threads: Optional[int] = None  # None: all cores
    backend: str = "auto"
    float_mean: float = 127.5  # float32 models: (pixel - mean) / std
    float_std: float = 127.5


@dataclass(frozen=True)
class OutputLayout:
    """Which output tensor index holds boxes, classes, scores and the count."""

    boxes: int
    classes: int
    scores: int
    count: int


def resolve_output_layout(outputs: Sequence[dict], signature_outputs: Optional[Dict[str, int]] = None) -> OutputLayout:
    """Map the four SSD post-processing outputs to their roles, by name and shape, never by position.

    TF1 exports name them TFLite_Detection_PostProcess, :1, :2, :3 (boxes, classes, scores,
    count). TF2 exports name them StatefulPartitionedCall:N in another order, but carry a
    signature whose output keys say detection_boxes / _classes / _scores / num_detections.
    """
    found = ", ".join(f"{o['name']} {[int(d) for d in o['shape']]}" for o in outputs) or "none"
    expected = ("4 outputs of TFLite_Detection_PostProcess: boxes [1,N,4], classes [1,N], scores [1,N], "
                "count [1]")
    if len(outputs) != 4:
        raise ModelError(f"this model is not an SSD detector with post-processing: it has {len(outputs)} "
                         f"output(s) ({found}); expected {expected}. Classifiers and raw SSD heads are not supported.")
    shapes = {o["index"]: tuple(int(d) for d in o["shape"]) for o in outputs}
    boxes = [i for i, s in shapes.items() if len(s) == 3 and s[-1] == 4]
    counts = [i for i, s in shapes.items() if len(s) == 1 or int(np.prod(s)) == 1]
    pairs = [i for i, s in shapes.items() if len(s) == 2 and s[0] == 1 and s[1] > 1]
    if len(boxes) != 1 or len(counts) != 1 or len(pairs) != 2:
        raise ModelError(f"the model's outputs do not have SSD post-processing shapes: found {found}; "
                         f"expected {expected}")
    if signature_outputs:
        roles = {"detection_classes": None, "detection_scores": None}
        for key, index in signature_outputs.items():
            for role in roles:
                if key.endswith(role) or key == role.replace("detection_", ""):
                    roles[role] = index
        if roles["detection_classes"] in pairs and roles["detection_scores"] in pairs:
            return OutputLayout(boxes[0], roles["detection_classes"], roles["detection_scores"], counts[0])
    by_name = {o["index"]: o["name"] for o in outputs}
    if all(by_name[i].startswith(POSTPROCESS_OP) for i in pairs):
        suffix = {i: by_name[i].rpartition(":")[2] for i in pairs}
        classes = [i for i in pairs if suffix[i] == "1"]
        scores = [i for i in pairs if suffix[i] == "2"]
        if classes and scores:
            return OutputLayout(boxes[0], classes[0], scores[0], counts[0])
    raise ModelError(f"cannot tell the classes output from the scores output: found {found} and no "
                     "signature naming detection_classes/detection_scores; re-export the model with a "
                     "serving signature or TF1 post-processing names")


def release_cold_model_pages(model_path: Path) -> int:
    """Drop the model file's pages from this process's resident set; return how many bytes were released.

    Why: XNNPACK repacks every weight it runs into its own buffers when the interpreter is built, so
    the mapped original (5.9 MB for the default model) is never read again, yet it would count in
    the service's memory for its whole life. MADV_DONTNEED on a read-only file mapping only unmaps
    the pages: they stay in the page cache (reclaimable) and fault back in if an op ever reads them
    (the few non-delegated ops, such as the SSD post-processing reading its anchors, do so cheaply).
    Linux only; anywhere else, or on any failure, it does nothing.
    """
    try:
        import ctypes

        stat = os.stat(model_path)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}"
        ranges = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[3] == device and fields[4] == str(stat.st_ino) and "w" not in fields[1]:
                    start, end = (int(value, 16) for value in fields[0].split("-"))
                    ranges.append((start, end - start))
        if not ranges:
            return 0
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        released = 0
        for start, length in ranges:
            if libc.madvise(start, length, mmap.MADV_DONTNEED) == 0:
                released += length
            else:
                log.debug("madvise on the model's pages refused: %s", os.strerror(ctypes.get_errno()))
        return released
    except (OSError, AttributeError, ValueError) as exc:
        log.debug("could not release the model's pages: %s", exc)
        return 0


class Detector:
    """Owns one interpreter. Not thread-safe: use one Detector per thread."""

    def __init__(self, model_path: Path, labels_path: Path, options: DetectorOptions = DetectorOptions(),
                 backend: Optional[Backend] = None):
        self.model_path = Path(model_path)
        self.options = options
        self._check_model_file(self.model_path)
        self.backend = backend or resolve_backend(options.backend)
        self.num_threads = options.num_threads or os.cpu_count() or 1
        try:
            # From the path, not from bytes: the interpreter maps the file, so the weights it no longer
            # reads once XNNPACK has packed them can be handed back to the kernel (release_cold_model_pages).
            self.interpreter = self.backend.interpreter_class(model_path=str(self.model_path),
                                                              num_threads=self.num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = ""
            if "edgetpu-custom-op" in str(exc):
                hint = (" This is an Edge TPU build: it needs a Coral accelerator and the libedgetpu delegate; "
                        "use the CPU model mobilenet_ssd_v2_coco_quant_postprocess.tflite instead.")
            raise ModelError(f"{self.model_path}: the {self.backend.name} interpreter cannot load this model: "
                             f"{message}.{hint}") from None
        log.info("backend %s %s, %d thread(s), model %s", self.backend.name, self.backend.version,
                 self.num_threads, self.model_path)
        release_cold_model_pages(self.model_path)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            shapes = ", ".join(str(list(i["shape"])) for i in inputs)
            raise ModelError(f"{self.model_path}: expected one image input [1, H, W, 3], found {shapes}")
        self.input = inputs[0]
        self.input_height, self.input_width = int(self.input["shape"][1]), int(self.input["shape"][2])
        self.input_dtype = np.dtype(self.input["dtype"])
        if self.input_dtype not in (np.uint8, np.int8, np.float32):
            raise ModelError(f"{self.model_path}: input type {self.input_dtype} is not supported "
                             "(uint8, int8 or float32)")
        self.layout = resolve_output_layout(self.interpreter.get_output_details(), self._signature_outputs())
        self.outputs = {o["index"]: o for o in self.interpreter.get_output_details()}
        self.labels = load_labels(labels_path)
        self._check_labels_cover(self._num_classes(self.model_path), labels_path)
        check_label_names(self.labels.values(), {"only": options.allow, "ignore": options.deny})
        self._input_view = self.interpreter.tensor(self.input["index"])
        self._rgb = np.empty((self.input_height, self.input_width, 3), np.uint8)
        self._warned_ids: set = set()

    # --- loading ---------------------------------------------------------------------------
    @staticmethod
    def _check_model_file(path: Path) -> None:
        """Clear errors for what the interpreter would report obscurely: missing, a folder, not TFLite."""
        if not path.exists():
            raise ModelError(f"model file not found: {path} (run 'pidetect models fetch' for the default model, "
                             "or pass --model PATH)")
        if path.is_dir():
            raise ModelError(f"model path is a folder, not a .tflite file: {path}")
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
                size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise ModelError(f"cannot read model file {path}: {exc}") from None
        if not looks_like_tflite(head):
            raise ModelError(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier; "
                             f"{size} bytes starting {head!r}). Point --model at a .tflite file.")

    @staticmethod
    def _num_classes(path: Path) -> Optional[int]:
        """Read through a read-only mapping: the file's pages are shared with the interpreter's own mapping."""
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return postprocess_num_classes(mapped)

    def _signature_outputs(self) -> Optional[Dict[str, int]]:
        try:
            signatures = self.interpreter.get_signature_list()
            if not signatures:
                return None
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            return {name: detail["index"] for name, detail in runner.get_output_details().items()}
        except Exception:  # older backends without signature support: fall back to names
            return None

    def _check_labels_cover(self, num_classes: Optional[int], labels_path: Path) -> None:
        if num_classes is None:
            return
        highest = max(self.labels)
        if highest + 1 < num_classes:
            raise ModelError(f"labels file {labels_path} has {len(self.labels)} entries (ids up to {highest}) "
                             f"but the model can return class ids up to {num_classes - 1}; "
                             "use the labels file that belongs to this model")

    # --- per frame -------------------------------------------------------------------------
    def _fill_input(self, image: np.ndarray) -> None:
        """Resize the BGR frame into the interpreter's input buffer as RGB, in the model's dtype."""
        size = (self.input_width, self.input_height)
        if image.ndim == 2 or image.shape[2] != 3:  # grey or BGRA frames from some cameras/files
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
        tensor = self._input_view()[0]
        if self.input_dtype == np.uint8:
            cv2.resize(image, size, dst=tensor, interpolation=cv2.INTER_LINEAR)
            cv2.cvtColor(tensor, cv2.COLOR_BGR2RGB, dst=tensor)
        else:
            cv2.resize(image, size, dst=self._rgb, interpolation=cv2.INTER_LINEAR)
            cv2.cvtColor(self._rgb, cv2.COLOR_BGR2RGB, dst=self._rgb)
            if self.input_dtype == np.int8:
                scale, zero = self.input["quantization"]
                if scale and abs(scale * 128 - 1) > 1e-3 or zero not in (0, -128):
                    real = (self._rgb.astype(np.float32) - self.options.float_mean) / self.options.float_std
                    tensor[...] = np.clip(np.round(real / scale + zero), -128, 127)
                else:  # the common int8 quantization (pixel - 128): flip the top bit
                    np.bitwise_xor(self._rgb, 0x80, out=tensor.view(np.uint8))
            else:
                np.subtract(self._rgb, self.options.float_mean, out=tensor, casting="unsafe")
                tensor /= self.options.float_std
        del tensor  # the interpreter refuses to run while a view of its buffers is alive

    def _output(self, index: int) -> np.ndarray:
        detail = self.outputs[index]
        value = self.interpreter.get_tensor(index)
        scale, zero = detail.get("quantization", (0.0, 0))
        if np.dtype(detail["dtype"]) != np.float32 and scale:
            value = (value.astype(np.float32) - zero) * scale
        return value

    def _parse(self, width: int, height: int) -> Tuple[Detection, ...]:
        layout, opts = self.layout, self.options
        boxes = self._output(layout.boxes)[0]
        classes = self._output(layout.classes)[0]
        scores = self._output(layout.scores)[0]
        count = min(int(self._output(layout.count).reshape(-1)[0]), len(scores))
        found: List[Detection] = []
        for i in range(count):
            score = float(scores[i])
            if score < opts.threshold:
                continue
            class_id = int(classes[i])
            label = self.labels.get(class_id)
            if label is None:
                label = f"class_{class_id}"
                if class_id not in self._warned_ids:
                    self._warned_ids.add(class_id)
                    log.warning("model returned class id %d, which the labels file does not name", class_id)
            if (opts.allow and label not in opts.allow) or label in opts.deny:
                continue
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            x1 = min(max(int(round(xmin * width)), 0), width - 1)
            y1 = min(max(int(round(ymin * height)), 0), height - 1)
            x2 = min(max(int(round(xmax * width)), 0), width - 1)
            y2 = min(max(int(round(ymax * height)), 0), height - 1)
            if x2 <= x1 or y2 <= y1:
                continue
            found.append(Detection(label, class_id, score, (x1, y1, x2, y2)))
        found.sort(key=lambda d: d.score, reverse=True)
        return tuple(found[:opts.max_results])

    def detect(self, frame: Frame) -> Result:
        started = time.perf_counter()
        height, width = frame.image.shape[:2]
        self._fill_input(frame.image)
        invoke_start = time.perf_counter()
        self.interpreter.invoke()
        invoke_ms = (time.perf_counter() - invoke_start) * 1000
        detections = self._parse(width, height)
        return Result(frame, detections, (time.perf_counter() - started) * 1000, invoke_ms)

    def detect_image(self, image: np.ndarray) -> Result:
        return self.detect(Frame(image, 0, time.time()))
