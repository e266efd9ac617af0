"""What every model family provides, and the values that pass between a family and the Detector.

A family knows how its models were trained to see a frame (stretched or letterboxed, which pixel
normalisation) and how to read its outputs back into boxes in pixels of the original frame. The
Detector owns the interpreter, the dtype of the input tensor, labels and filtering; it asks each
family in turn whether it recognises the model (inference/detector.py lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Protocol

import numpy as np


@dataclass(frozen=True)
class ModelFacts:
    """What recognising a family may look at: the file's outputs, signature and embedded metadata."""

    outputs: List[dict]  # interpreter.get_output_details()
    signature_outputs: Optional[Dict[str, int]]  # serving signature output key -> tensor index
    input_height: int
    input_width: int
    label_count: Optional[int]  # classes named by the labels (file or metadata), when known
    postprocess_classes: Optional[int]  # num_classes of a TFLite_Detection_PostProcess op, if any


@dataclass(frozen=True)
class Placement:
    """Where the frame landed in the model input: input = frame * scale + offset, per axis."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    frame_width: int
    frame_height: int


@dataclass(frozen=True)
class Candidates:
    """Decoded detections before labels and filtering: boxes x1, y1, x2, y2 in frame pixels (float)."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    @staticmethod
    def empty() -> "Candidates":
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


OutputReader = Callable[[int], np.ndarray]  # tensor index -> the raw output (quantized ones as stored)


class ModelFamily(Protocol):
    name: str
    pixel_mean: float  # the model's real input is (pixel - pixel_mean) / pixel_std, pixel 0..255 RGB
    pixel_std: float
    num_classes: Optional[int]

    def place(self, image: np.ndarray, target: np.ndarray) -> Placement:
        """Write the BGR frame into `target` (H x W x 3 uint8, RGB) as the model expects it."""

    def decode(self, read: OutputReader, placement: Placement, threshold: float, nms_iou: float,
               max_results: int) -> Candidates:
        """Outputs -> candidates in frame pixels, score >= threshold, non-finite values dropped."""


def dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """A quantized output as float32 (real = scale * (q - zero_point)); float outputs as they are."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]) != np.float32 and scale:
        return (value.astype(np.float32) - zero) * np.float32(scale)
    return value.astype(np.float32, copy=False)


def to_frame(boxes: np.ndarray, placement: Placement) -> np.ndarray:
    """Boxes in model-input pixels (x1, y1, x2, y2) -> pixels of the original frame, clipped to it."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0::2] = (boxes[:, 0::2] - placement.offset_x) / placement.scale_x
    out[:, 1::2] = (boxes[:, 1::2] - placement.offset_y) / placement.scale_y
    np.clip(out[:, 0::2], 0, placement.frame_width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, placement.frame_height, out=out[:, 1::2])
    return out
