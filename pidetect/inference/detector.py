"""Runs a TFLite detection model on a frame and returns Detections in pixels of that frame.

One interpreter per Detector, created once. The model's family (SSD, YOLO, …: one module each,
listed in FAMILIES) is recognised from the file itself and decides how the frame is placed into
the input and how outputs become boxes; the Detector owns the interpreter, the input dtype, labels
and filtering. The input tensor is written in place (the family resizes straight into the
interpreter's own buffer when it holds plain RGB bytes, otherwise into one reused buffer that a
256-entry lookup table converts to int8 or float32), so the hot path allocates nothing per frame
beyond the small output arrays.
"""

from __future__ import annotations

import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, ModelError
from ..frames import Detection, Frame, Result
from ..pixels import as_bgr8
from . import ssd, yolo
from .backends import Backend, resolve_backend, without_litert_chatter
from .edgetpu import AcceleratorLost, EdgeTpuDelegate, explain_load_failure
from .family import Candidates, ModelFacts, ModelFamily, Placement
from .labels import load_labels, unknown_label
from .model_metadata import EmbeddedMetadata, MetadataError, read_embedded_metadata
from .regions import Region, merge, tiles, to_frame
from .tflite_file import looks_like_tflite, numeric_format, postprocess_num_classes

log = logging.getLogger(__name__)

# The model families pidetect reads, asked in this order. A new family is one module and one line here.
FAMILIES = (
    (ssd.recognise, ssd.EXPECTS),
    (yolo.recognise, yolo.EXPECTS),
)
DEFAULT_LABELS_NAME = "coco_labels.txt"  # beside the default model (manifest: default_labels)


def check_label_names(known, wanted_by_key: Dict[str, FrozenSet[str]]) -> None:
    """Names in only/ignore must be labels the model has: a typo would silently filter nothing (or all)."""
    known = set(known)
    problems = []
    for key, wanted in wanted_by_key.items():
        hints = [unknown_label(name, known) for name in sorted(set(wanted) - known)]
        if hints:
            problems.append(f"{key}: the model has no label " + ", ".join(hints))
    if problems:
        raise ConfigError("; ".join(problems) + "; write labels as the labels file does, e.g. person, car, cat, "
                          "dog, tv")


@dataclass(frozen=True)
class DetectorOptions:
    threshold: float = 0.5
    max_results: int = 10
    allow: FrozenSet[str] = frozenset()  # empty: every label
    deny: FrozenSet[str] = frozenset()
    num_threads: Optional[int] = None  # None: all cores
    backend: str = "auto"
    nms_iou: float = 0.45  # families that run NMS themselves (YOLO); SSD's is inside the model
    # detections from here up to `threshold` come back as weak ones (Result.weak): they only keep the tracker's
    # objects alive through partial occlusion; equal to threshold (the default): none
    weak_threshold: float = 1.0


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


def _ids(ids: List[int]) -> str:
    return ", ".join(map(str, ids[:8])) + (f" … ({len(ids)} in all)" if len(ids) > 8 else "")


class Detector:
    """Owns one interpreter. Not thread-safe: use one Detector per thread.

    `labels_path` is the file the user named; without one, labels come from the model itself
    (Ultralytics or TFLite metadata), else from coco_labels.txt beside the model. `delegate`: the
    Edge TPU's (inference/accelerator.py decides when); without one every op runs on the CPU.
    """

    def __init__(self, model_path: Path, labels_path: Optional[Path] = None,
                 options: DetectorOptions = DetectorOptions(), backend: Optional[Backend] = None,
                 delegate: Optional[EdgeTpuDelegate] = None):
        self.model_path = Path(model_path)
        self.options = options
        self.delegate = delegate
        self.accelerator = delegate.where if delegate is not None else "cpu"
        self.accelerator_note = ""  # why the CPU runs where an accelerator was wished for (accelerator.py)
        self.accelerator_missing_runtime = False  # that note is "no libedgetpu" (a Pi without a Coral)
        self._check_model_file(self.model_path)
        metadata = self._metadata(labels_path)
        if metadata.task and metadata.task != "detect":
            raise ModelError(f"{self.model_path} is not a detection model: its metadata says task "
                             f"'{metadata.task}' (pidetect runs detection exports: task 'detect')")
        self.backend = backend or resolve_backend(options.backend)
        self.num_threads = options.num_threads or os.cpu_count() or 1
        try:
            # From the path, not from bytes: the interpreter maps the file, so the weights it no longer
            # reads once XNNPACK has packed them can be handed back to the kernel (release_cold_model_pages).
            with without_litert_chatter():
                delegates = [delegate.native] if delegate is not None else None
                self.interpreter = self.backend.interpreter_class(model_path=str(self.model_path),
                                                                  num_threads=self.num_threads,
                                                                  experimental_delegates=delegates)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if delegate is not None:
                raise explain_load_failure(self.model_path, " ".join(str(exc).split())) from None
            hint = ""
            if "edgetpu-custom-op" in str(exc):
                hint = (" This is an Edge TPU build: it needs a Coral accelerator (accelerator = edgetpu or auto); "
                        "on the CPU use the model it was compiled from (without _edgetpu).")
            raise ModelError(f"{self.model_path}: the {self.backend.name} interpreter cannot load this model: "
                             f"{message}.{hint}") from None
        # said at debug only: the service's model_loaded record says the same (the start-up log says each fact once)
        log.debug("backend %s %s, %s, %d thread(s), model %s", self.backend.name, self.backend.version,
                  self.accelerator, self.num_threads, self.model_path)
        self.numeric_format = numeric_format(self.interpreter.get_tensor_details(),
                                             self.interpreter.get_input_details()[0])
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
        self.labels, labels_from = self._labels(labels_path, metadata)
        self.family: ModelFamily = self._recognise(len(self.labels) if self.labels else None)
        if self.labels is None:
            self.labels, labels_from = self._labels_beside_model()
        self.labels_from = labels_from
        self.labels_path: Optional[Path] = (Path(labels_from.removeprefix("labels file "))
                                            if labels_from.startswith("labels file ") else None)
        self._check_labels_cover(labels_from)
        check_label_names(self.labels.values(), {"only": options.allow, "ignore": options.deny})
        self._lut = self._input_lut()
        self._input_view = self.interpreter.tensor(self.input["index"])
        self._rgb = np.empty((self.input_height, self.input_width, 3), np.uint8)
        self._warned_ids: set = set()
        # last: every question to the interpreter above reads the mapped file and faults pages back in
        release_cold_model_pages(self.model_path)

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

    def _metadata(self, labels_path: Optional[Path]) -> EmbeddedMetadata:
        try:
            return read_embedded_metadata(self.model_path)
        except MetadataError as exc:
            if labels_path is None:
                raise
            log.warning("%s; using the labels in %s", exc, labels_path)
            return EmbeddedMetadata()

    def _labels(self, labels_path: Optional[Path], metadata: EmbeddedMetadata):
        """The user's labels file wins; then what the model carries; None: look beside the model later."""
        if labels_path is not None:
            return load_labels(labels_path), f"labels file {labels_path}"
        if metadata.names:
            return dict(metadata.names), f"the labels in {self.model_path} ({metadata.where})"
        return None, ""

    def _labels_beside_model(self):
        beside = self.model_path.parent / DEFAULT_LABELS_NAME
        if isinstance(self.family, ssd.SsdFamily) and beside.is_file():
            return load_labels(beside), f"labels file {beside}"
        raise ModelError(f"{self.model_path} carries no labels and none were given: pass --labels FILE (one class "
                         "name per line, in the order of the model's classes)")

    def _recognise(self, label_count: Optional[int]) -> ModelFamily:
        outputs = self.interpreter.get_output_details()
        facts = ModelFacts(outputs, self._signature_outputs(), self.input_height, self.input_width, label_count,
                           self._num_classes(self.model_path))
        for recognise, _expects in FAMILIES:
            family = recognise(facts)
            if family is not None:
                return family
        found = ", ".join(f"{o['name']} {[int(d) for d in o['shape']]}" for o in outputs) or "none"
        expected = "; ".join(expects for _recognise, expects in FAMILIES)
        raise ModelError(f"{self.model_path} is not a detection model pidetect can read: it has {len(outputs)} "
                         f"output(s) ({found}); expected {expected}. Classifiers, segmentation and pose "
                         "models are not supported.")

    def _check_labels_cover(self, labels_from: str) -> None:
        num_classes = self.family.num_classes
        if num_classes is None:
            return
        if isinstance(self.family, yolo.YoloFamily) and set(self.labels) != set(range(num_classes)):
            # a YOLO head has exactly C class scores: one name per class, ids 0..C-1, no more, no fewer
            missing = sorted(set(range(num_classes)) - set(self.labels))
            extra = sorted(set(self.labels) - set(range(num_classes)))
            detail = "; ".join(part for part in (
                f"no name for class id(s) {_ids(missing)}" if missing else "",
                f"ids {_ids(extra)} beyond the model's" if extra else "") if part)
            raise ModelError(f"{labels_from} names {len(self.labels)} classes but the model "
                             f"({self.family.name}) has {num_classes} (ids 0..{num_classes - 1}): {detail}; "
                             "use the labels that belong to this model, one name per class")
        highest = max(self.labels)
        if highest + 1 < num_classes:
            raise ModelError(f"{labels_from} has {len(self.labels)} entries (ids up to {highest}) "
                             f"but the model can return class ids up to {num_classes - 1}; "
                             "use the labels that belong to this model")

    def _input_lut(self) -> Optional[np.ndarray]:
        """pixel 0..255 -> the input tensor's value; None when the tensor takes the RGB bytes as they are."""
        real = (np.arange(256, dtype=np.float64) - self.family.pixel_mean) / self.family.pixel_std
        if self.input_dtype == np.float32:
            return real.astype(np.float32)
        scale, zero = self.input["quantization"]
        if not scale:
            raise ModelError(f"{self.model_path}: the {self.input_dtype} input has no quantization parameters")
        limits = np.iinfo(self.input_dtype)
        lut = np.clip(np.round(real / scale + zero), limits.min, limits.max).astype(self.input_dtype)
        if self.input_dtype == np.uint8 and np.array_equal(lut, np.arange(256)):
            return None
        return lut

    # --- per frame -------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> Placement:
        """Place the BGR frame into the interpreter's input as the model's family expects it."""
        image = as_bgr8(image)  # the daemon's frames already are; callers of the API may pass grey, 16-bit …
        tensor = self._input_view()[0]
        if self._lut is None:
            placement = self.family.place(image, tensor)
        else:
            placement = self.family.place(image, self._rgb)
            cv2.LUT(self._rgb, self._lut, dst=tensor)
        del tensor  # the interpreter refuses to run while a view of its buffers is alive
        return placement

    def invoke(self) -> None:
        """Run the model on the input placed; on the Edge TPU a failing invoke is AcceleratorLost."""
        if self.delegate is None:
            self.interpreter.invoke()
            return
        try:
            self.interpreter.invoke()
        except RuntimeError as exc:
            raise AcceleratorLost(f"the Edge TPU failed while running ({' '.join(str(exc).split())}): "
                                  "unplugged, reset or short of power?") from None

    @property
    def floor(self) -> float:
        """The lowest score decoded: the weak floor when there is one."""
        return min(self.options.threshold, self.options.weak_threshold)

    def candidates(self, placement: Placement, floor: Optional[float] = None) -> Candidates:
        opts = self.options
        cap = max(opts.max_results, 1) if not (opts.allow or opts.deny) else 10 ** 6
        if floor is not None and floor < opts.threshold:
            cap *= 2  # room for the weak ones beside max_results confident ones
        return self.family.decode(self.interpreter.get_tensor, placement,
                                  opts.threshold if floor is None else floor, opts.nms_iou, cap)

    def decode(self, placement: Placement) -> Tuple[Detection, ...]:
        """Candidates -> labelled Detections with integer pixel boxes, filtered, best first, capped."""
        return self.decode_with_weak(placement, weak=False)[0]

    def decode_with_weak(self, placement: Placement, weak: bool = True
                         ) -> Tuple[Tuple[Detection, ...], Tuple[Detection, ...]]:
        """(confident detections, weak ones): each best first and capped at max_results."""
        found = self.candidates(placement, self.floor if weak else None)
        opts = self.options
        width, height = placement.frame_width, placement.frame_height
        detections: List[Detection] = []
        for box, score, class_id in zip(found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist()):
            label = self.labels.get(class_id)
            if label is None:
                label = f"class_{class_id}"
                if class_id not in self._warned_ids:
                    self._warned_ids.add(class_id)
                    log.warning("model returned class id %d, which its labels do not name", class_id)
            if (opts.allow and label not in opts.allow) or label in opts.deny:
                continue
            x1 = min(max(int(round(box[0])), 0), width - 1)
            y1 = min(max(int(round(box[1])), 0), height - 1)
            x2 = min(max(int(round(box[2])), 0), width - 1)
            y2 = min(max(int(round(box[3])), 0), height - 1)
            if x2 <= x1 or y2 <= y1:
                continue
            detections.append(Detection(label, class_id, score, (x1, y1, x2, y2)))
        detections.sort(key=lambda d: d.score, reverse=True)
        confident = [d for d in detections if d.score >= opts.threshold]
        below = [d for d in detections if d.score < opts.threshold] if weak else []
        return tuple(confident[:opts.max_results]), tuple(below[:opts.max_results])

    def detect(self, frame: Frame) -> Result:
        started = time.perf_counter()
        placement = self.prepare(frame.image)
        invoke_start = time.perf_counter()
        self.invoke()
        invoke_ms = (time.perf_counter() - invoke_start) * 1000
        detections, weak = self.decode_with_weak(placement, weak=self.floor < self.options.threshold)
        return Result(frame, detections, (time.perf_counter() - started) * 1000, invoke_ms, weak=weak)

    def detect_regions(self, frame: Frame, regions: Sequence[Region]) -> Result:
        """The model run on each region of the frame (a crop at about its own scale), the detections mapped
        back to frame pixels and merged (inference/regions.py)."""
        started = time.perf_counter()
        invoke_ms = 0.0
        height, width = frame.image.shape[:2]
        strong_found, weak_found = [], []
        want_weak = self.floor < self.options.threshold
        for region in regions:
            crop = frame.image[region.y:region.y + region.height, region.x:region.x + region.width]
            placement = self.prepare(crop)
            invoke_start = time.perf_counter()
            self.invoke()
            invoke_ms += (time.perf_counter() - invoke_start) * 1000
            strong, weak = self.decode_with_weak(placement, weak=want_weak)
            strong_found.append((region, to_frame(strong, region)))
            weak_found.append((region, to_frame(weak, region)))
        max_results = self.options.max_results
        detections = merge(strong_found, width, height, max_results)
        weak = merge(weak_found, width, height, max_results)
        if weak:  # a weak box on an object the confident ones already have is the same object
            from ..boxes import iou_matrix

            strong_boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
            overlap = iou_matrix(np.array([d.box for d in weak], dtype=np.float64), strong_boxes)
            weak = tuple(d for d, row in zip(weak, overlap) if not (row >= 0.5).any())
        return Result(frame, detections, (time.perf_counter() - started) * 1000, invoke_ms, weak=weak,
                      model_calls=len(regions), regions=tuple(r.box for r in regions))

    def detect_image(self, image: np.ndarray, tiled: bool = False) -> Result:
        """One still image; `tiled`: also on overlapping tiles at the model's own scale (regions.tiles)."""
        frame = Frame(image, 0, time.time())
        if not tiled:
            return self.detect(frame)
        height, width = image.shape[:2]
        return self.detect_regions(frame, tiles(width, height, min(self.input_width, self.input_height)))

    def candidates_tiled(self, image: np.ndarray) -> Tuple[Candidates, float]:
        """eval's candidates (float boxes, eval's floor) of every tile, merged; and the invoke time (ms)."""
        height, width = image.shape[:2]
        found, invoke_ms = [], 0.0
        for region in tiles(width, height, min(self.input_width, self.input_height)):
            crop = image[region.y:region.y + region.height, region.x:region.x + region.width]
            placement = self.prepare(crop)
            started = time.perf_counter()
            self.invoke()
            invoke_ms += (time.perf_counter() - started) * 1000
            part = self.candidates(placement)
            boxes = part.boxes.astype(np.float64) + np.array([region.x, region.y, region.x, region.y])
            found.append((region, [Detection(str(c), c, s, tuple(b)) for b, s, c in
                                   zip(boxes.tolist(), part.scores.tolist(), part.class_ids.tolist())]))
        merged = merge(found, width, height, self.options.max_results, self.options.nms_iou)
        if not merged:
            return Candidates.empty(), invoke_ms
        return (Candidates(np.array([d.box for d in merged], np.float32), np.array([d.score for d in merged], np.float32),
                           np.array([d.class_id for d in merged], np.int64)), invoke_ms)
