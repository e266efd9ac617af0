"""SSD models with the TFLite_Detection_PostProcess op (TF1 and TF2 Object Detection API, Coral).

Trained on frames stretched to the input (no letterbox), pixels as (p - 128) / 128. The op already
did anchors, score threshold and NMS inside the model: decoding is reading four outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from ..errors import ModelError
from .family import Candidates, ModelFacts, OutputReader, Placement, dequantize
from .tflite_file import POSTPROCESS_OP

EXPECTS = ("SSD: 4 outputs of TFLite_Detection_PostProcess: boxes [1,N,4], classes [1,N], scores [1,N], "
           "count [1]")


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


class SsdFamily:
    name = "ssd"
    pixel_mean = 128.0  # Coral's uint8 input: real = (q - 128) / 128; the float rebuild expects the same
    pixel_std = 128.0

    def __init__(self, layout: OutputLayout, outputs: Dict[int, dict], num_classes: Optional[int]):
        self.layout, self.outputs, self.num_classes = layout, outputs, num_classes

    def place(self, image: np.ndarray, target: np.ndarray) -> Placement:
        height, width = target.shape[:2]
        cv2.resize(image, (width, height), dst=target, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(target, cv2.COLOR_BGR2RGB, dst=target)
        frame_height, frame_width = image.shape[:2]
        return Placement(width / frame_width, height / frame_height, 0.0, 0.0, frame_width, frame_height)

    def decode(self, read: OutputReader, placement: Placement, threshold: float, nms_iou: float,
               max_results: int) -> Candidates:
        """The op's boxes are normalised ymin, xmin, ymax, xmax of the stretched frame; NMS is done."""
        layout = self.layout
        value = {i: dequantize(read(i), self.outputs[i]) for i in (layout.boxes, layout.classes, layout.scores,
                                                                   layout.count)}
        scores = value[layout.scores][0]
        count = value[layout.count].reshape(-1)[0]
        count = int(min(count, len(scores))) if np.isfinite(count) and count > 0 else 0
        boxes, classes, scores = value[layout.boxes][0][:count], value[layout.classes][0][:count], scores[:count]
        keep = (scores >= threshold) & np.isfinite(scores) & np.isfinite(boxes).all(axis=1) & np.isfinite(classes)
        boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
        frame_boxes = np.empty_like(boxes)
        frame_boxes[:, 0] = boxes[:, 1] * placement.frame_width
        frame_boxes[:, 1] = boxes[:, 0] * placement.frame_height
        frame_boxes[:, 2] = boxes[:, 3] * placement.frame_width
        frame_boxes[:, 3] = boxes[:, 2] * placement.frame_height
        # a dequantized class id of 60.98 is class 61: round, never truncate
        return Candidates(frame_boxes.astype(np.float32), scores.astype(np.float32),
                          np.rint(classes).astype(np.int64))


def recognise(facts: ModelFacts) -> Optional[SsdFamily]:
    """An SSD with post-processing: four outputs whose shapes fit boxes/classes/scores/count."""
    if len(facts.outputs) != 4:
        return None
    layout = resolve_output_layout(facts.outputs, facts.signature_outputs)
    return SsdFamily(layout, {o["index"]: o for o in facts.outputs}, facts.postprocess_classes)
