"""Ultralytics YOLO exports: YOLOv8 / YOLO11 (`[1, 4+C, N]`, no objectness) and YOLOv5 (`[1, N, 5+C]`).

Trained on letterboxed frames (aspect kept, grey 114 padding, centred), pixels as p / 255. The raw
head holds N candidate boxes (cx, cy, w, h) and per-class scores; decoding thresholds first (on the
quantized values when the output is int8, so only the survivors are converted to float), then runs
class-aware NMS (OpenCV's NMSBoxesBatched) and keeps `max_results`. Ultralytics' TFLite exports
write boxes normalised to 0..1; other converters write input pixels: which one is read off the
first output (anchor centres span the whole input, so their largest value tells), never assumed.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from .family import Candidates, ModelFacts, OutputReader, Placement, to_frame

EXPECTS = ("YOLO: one output [1, 4+C, N] (YOLOv8/YOLO11) or [1, N, 5+C] (YOLOv5), C classes, N candidates")
PAD = 114
MAX_NMS_CANDIDATES = 30000  # as Ultralytics' validator: the highest scores go to NMS, the rest are dropped


class YoloFamily:
    pixel_mean = 0.0
    pixel_std = 255.0

    def __init__(self, name: str, output: dict, num_classes: int, features_first: bool, objectness: bool,
                 input_size: tuple):
        self.name, self.output, self.num_classes = name, output, num_classes
        self.features_first, self.objectness = features_first, objectness
        self.input_height, self.input_width = input_size
        scale, zero = output.get("quantization", (0.0, 0))
        self.quantized = np.dtype(output["dtype"]) != np.float32 and bool(scale)
        self.scale, self.zero = (float(scale), int(zero)) if self.quantized else (1.0, 0)
        self.normalised: Optional[bool] = None  # decided on the first output seen

    # --- input ------------------------------------------------------------------------------------
    def place(self, image: np.ndarray, target: np.ndarray) -> Placement:
        """Letterbox as Ultralytics does: scale to fit, round the size, centre, pad with grey 114."""
        height, width = target.shape[:2]
        frame_height, frame_width = image.shape[:2]
        ratio = min(height / frame_height, width / frame_width)
        new_width, new_height = int(round(frame_width * ratio)), int(round(frame_height * ratio))
        pad_x, pad_y = (width - new_width) / 2, (height - new_height) / 2
        left, top = int(round(pad_x - 0.1)), int(round(pad_y - 0.1))
        target[:top] = PAD
        target[top + new_height:] = PAD
        target[top:top + new_height, :left] = PAD
        target[top:top + new_height, left + new_width:] = PAD
        inside = target[top:top + new_height, left:left + new_width]
        if (new_width, new_height) == (frame_width, frame_height):
            inside[...] = image
        else:
            cv2.resize(image, (new_width, new_height), dst=inside, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(inside, cv2.COLOR_BGR2RGB, dst=inside)
        return Placement(new_width / frame_width, new_height / frame_height, float(left), float(top),
                         frame_width, frame_height)

    # --- output -----------------------------------------------------------------------------------
    def _quantized_threshold(self, threshold: float):
        if not self.quantized:
            return threshold
        limit = np.iinfo(np.dtype(self.output["dtype"]))
        return int(min(max(math.ceil(threshold / self.scale + self.zero), limit.min), limit.max))

    def _real(self, values: np.ndarray) -> np.ndarray:
        if self.quantized:
            return (values.astype(np.float32) - self.zero) * np.float32(self.scale)
        return values.astype(np.float32, copy=False)

    def decode(self, read: OutputReader, placement: Placement, threshold: float, nms_iou: float,
               max_results: int) -> Candidates:
        raw = read(self.output["index"])[0]
        rows = raw.T if self.features_first else raw  # (N, 4+C) or (N, 5+C), a view
        first_class = 5 if self.objectness else 4
        if self.normalised is None:
            centres = self._real(rows[:, :2])
            finite = centres[np.isfinite(centres)]
            self.normalised = bool(finite.size) and float(finite.max()) <= 2.0
        gate = self._quantized_threshold(threshold)
        if self.objectness:
            keep = np.flatnonzero(rows[:, 4] >= gate)
            chosen = self._real(rows[keep])
            class_scores = chosen[:, first_class:] * chosen[:, 4:5]
        else:
            keep = np.flatnonzero(rows[:, first_class:].max(axis=1) >= gate)
            chosen = self._real(rows[keep])
            class_scores = chosen[:, first_class:]
        class_ids = class_scores.argmax(axis=1) if len(chosen) else np.zeros(0, np.int64)
        scores = class_scores[np.arange(len(chosen)), class_ids] if len(chosen) else np.zeros(0, np.float32)
        xywh = chosen[:, :4].copy()
        if self.normalised:
            xywh[:, 0::2] *= self.input_width
            xywh[:, 1::2] *= self.input_height
        good = (scores >= threshold) & np.isfinite(scores) & np.isfinite(xywh).all(axis=1) & (xywh[:, 2] > 0) \
            & (xywh[:, 3] > 0)
        xywh, scores, class_ids = xywh[good], scores[good], class_ids[good]
        if len(scores) > MAX_NMS_CANDIDATES:
            top = np.argpartition(-scores, MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
            xywh, scores, class_ids = xywh[top], scores[top], class_ids[top]
        if not len(scores):
            return Candidates.empty()
        corner = xywh.copy()  # NMS takes x, y (top-left), w, h
        corner[:, 0] -= xywh[:, 2] / 2
        corner[:, 1] -= xywh[:, 3] / 2
        # top_k 0: OpenCV applies top_k to the candidates *before* suppression, so a cap there keeps the many
        # overlapping boxes of the first few objects and drops the next objects whole; cap after it instead
        kept = cv2.dnn.NMSBoxesBatched(corner.astype(np.float64).tolist(), scores.astype(np.float64).tolist(),
                                       class_ids.astype(np.int32).tolist(), float(threshold), float(nms_iou),
                                       1.0, 0)
        kept = np.asarray(kept, np.int64).reshape(-1)[:int(max_results)]
        boxes = np.column_stack([corner[kept, 0], corner[kept, 1], corner[kept, 0] + corner[kept, 2],
                                 corner[kept, 1] + corner[kept, 3]])
        return Candidates(to_frame(boxes, placement), scores[kept].astype(np.float32), class_ids[kept].astype(np.int64))


def grid_cells(height: int, width: int, strides=(8, 16, 32)) -> int:
    """Cells of the three detection scales at this input size (8400 at 640x640)."""
    return sum(math.ceil(height / stride) * math.ceil(width / stride) for stride in strides)


def recognise(facts: ModelFacts) -> Optional[YoloFamily]:
    """One 3-D output whose short side is 4+C (v8/11, either orientation) or 5+C (v5).

    Told apart by the head itself, never by the labels: an anchor-free v8/11 head has one box per grid
    cell (8400 at 640), a v5 head three anchors per cell (25200). A label list one line short must
    not turn a v8 model into a v5 one that finds nothing; it is an error the Detector reports.
    """
    if len(facts.outputs) != 1 or len(facts.outputs[0]["shape"]) != 3:
        return None
    output = facts.outputs[0]
    _batch, first, second = (int(d) for d in output["shape"])
    features, candidates = min(first, second), max(first, second)
    if features < 5 or candidates < features:
        return None
    features_first = first < second
    size = (facts.input_height, facts.input_width)
    cells = grid_cells(*size)
    if candidates == cells:
        return YoloFamily("yolov8", output, features - 4, features_first, False, size)
    if candidates == 3 * cells and features >= 6:
        return YoloFamily("yolov5", output, features - 5, features_first, True, size)
    # a head of another layout (other strides, a hand-made test head): the labels' count may tell
    # (4+C for v8, 5+C for v5); else features-first is how v8/11 export, rows how v5 does
    count = facts.label_count
    if count is not None and features == 5 + count:
        return YoloFamily("yolov5", output, count, features_first, True, size)
    if count is not None and features == 4 + count or features_first:
        return YoloFamily("yolov8", output, features - 4, features_first, False, size)
    return YoloFamily("yolov5", output, features - 5, False, True, size)
