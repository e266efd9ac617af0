"""Accuracy and speed of a model on a labelled dataset, scored by pycocotools (never a hand-written mAP).

For the mAP the model runs as Ultralytics' validator runs it: score floor 0.001, class-aware NMS at
IoU 0.7 (YOLO; SSD does its own inside the model), up to 300 boxes per image, independent of the
daemon's `threshold` and `max_results`. COCOeval keeps the best 100 per image *and class*, so a cap
of 100 per image across classes would lose boxes it counts (YOLOv8n on coco-train128: 0.435 with
100, 0.452 with 300). What a daemon user lives with — precision and recall at
their threshold — is read from the same COCOeval matching (IoU 0.5), so both come from one library
run. Latency is measured on the same images: the whole detect (preprocess, invoke, decode) and the
interpreter's invoke alone.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..capture.image_files import read_image
from ..errors import UnavailableError
from ..inference.accelerator import AcceleratorSettings, open_detector
from ..inference.detector import Detector, DetectorOptions
from .class_match import ClassMatch, match_classes
from .datasets import Dataset, DatasetError, GroundTruth, LabelledImage

EVAL_SCORE_FLOOR = 0.001
EVAL_NMS_IOU = 0.7
EVAL_MAX_DETECTIONS = 300  # per image, all classes, as Ultralytics' validator; COCOeval then keeps 100 per class
COCO_MAX_DETECTIONS = 100
Progress = Callable[[int, int], None]


@dataclass
class ModelReport:
    model: str
    family: str
    format: str
    backend: str
    size_bytes: int
    input_size: Tuple[int, int]  # width, height
    images: int
    map: float
    map50: float
    precision: float
    recall: float
    threshold: float
    latency_ms_p50: float
    latency_ms_p95: float
    invoke_ms_p50: float
    invoke_ms_p95: float
    per_class: Dict[str, float]
    classes_left_out: Tuple[str, ...]
    classes_merged: Dict[str, str] = field(default_factory=dict)  # dataset class -> the class it is scored as
    accelerator: str = "cpu"  # what ran it: cpu, or edgetpu (device)
    pr_recall: List[float] = field(default_factory=list)  # IoU 0.5 precision-recall curve, classes pooled
    pr_precision: List[float] = field(default_factory=list)
    map_small: float = float("nan")  # COCO APs: objects under 32x32 pixels (-1 from pycocotools: none there)
    tiled: bool = False  # run on tiles at the model's scale (eval --tiles)

    def as_json(self) -> dict:
        return {"model": self.model, "family": self.family, "format": self.format, "backend": self.backend,
                "accelerator": self.accelerator,
                "size_bytes": self.size_bytes, "input_size": list(self.input_size), "images": self.images,
                "map": _round(self.map), "map50": _round(self.map50), "map_small": _round(self.map_small),
                "tiled": self.tiled, "precision": _round(self.precision),
                "recall": _round(self.recall), "threshold": self.threshold,
                "latency_ms_p50": round(self.latency_ms_p50, 2), "latency_ms_p95": round(self.latency_ms_p95, 2),
                "invoke_ms_p50": round(self.invoke_ms_p50, 2), "invoke_ms_p95": round(self.invoke_ms_p95, 2),
                "per_class": {k: _round(v) for k, v in self.per_class.items()},
                "classes_left_out": list(self.classes_left_out), "classes_merged": dict(self.classes_merged)}


def _round(value: float) -> Optional[float]:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def coco_library():
    """pycocotools' COCO and COCOeval (the reference implementation; see README "Accuracy")."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UnavailableError("pidetect eval needs pycocotools: pip install \"pidetect[eval]\"") from None
    return COCO, COCOeval


def ground_truth(dataset: Dataset) -> dict:
    """The dataset as a COCO ground-truth dict; category ids are 1 + the index in dataset.class_names."""
    category = {name: number + 1 for number, name in enumerate(dataset.class_names)}
    images, annotations = [], []
    for image_id, image in enumerate(dataset.images, 1):
        images.append({"id": image_id, "width": image.width, "height": image.height, "file_name": image.path.name})
        for box in image.boxes:
            x1, y1, x2, y2 = box.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category[box.class_name], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": box.area if box.area is not None else (x2 - x1) * (y2 - y1),
                                "iscrowd": int(box.crowd)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": number, "name": name} for name, number in category.items()]}


def detect_dataset(dataset: Dataset, detector: Detector, match: ClassMatch,
                   progress: Optional[Progress] = None, tiled: bool = False
                   ) -> Tuple[List[dict], List[float], List[float]]:
    """COCO result records for every image, and the per-image detect and invoke times (ms).

    Boxes stay in float pixels: the daemon's integer boxes would cost small objects IoU at the
    strict thresholds (measured on coco-train128: YOLOv8n 0.452 with float boxes, 0.432 rounded).
    """
    category = {name: number + 1 for number, name in enumerate(dataset.class_names)}
    records: List[dict] = []
    detect_ms: List[float] = []
    invoke_ms: List[float] = []
    detector.detect_image(read_image(dataset.images[0].path))  # the first invoke packs XNNPACK's weights
    for image_id, item in enumerate(dataset.images, 1):
        image = read_image(item.path)
        started = time.perf_counter()
        if tiled:
            found, invoked = detector.candidates_tiled(image)
            invoke_ms.append(invoked)
        else:
            placement = detector.prepare(image)
            invoke_start = time.perf_counter()
            detector.invoke()
            invoke_ms.append((time.perf_counter() - invoke_start) * 1000)
            found = detector.candidates(placement)
        detect_ms.append((time.perf_counter() - started) * 1000)
        for box, score, class_id in zip(found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist()):
            name = match.model_to_dataset.get(detector.labels.get(class_id, ""))
            if name is not None:
                x1, y1, x2, y2 = box
                records.append({"image_id": image_id, "category_id": category[name],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        if progress:
            progress(image_id, len(dataset.images))
    return records, detect_ms, invoke_ms


def score(dataset: Dataset, records: List[dict], match: ClassMatch, threshold: float) -> dict:
    """mAP, mAP50, per-class AP, the IoU 0.5 PR curve and precision/recall at `threshold`, all from COCOeval."""
    COCO, COCOeval = coco_library()
    truth = COCO()
    truth.dataset = ground_truth(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
    category = {name: number + 1 for number, name in enumerate(dataset.class_names)}
    evaluated = [category[name] for name in match.dataset_classes]
    if not records:
        return {"map": 0.0, "map50": 0.0, "per_class": {name: 0.0 for name in match.dataset_classes},
                "precision": float("nan"), "recall": 0.0, "pr_recall": [], "pr_precision": []}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        found = truth.loadRes(records)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.params.catIds = evaluated
        evaluation.params.maxDets = [1, 10, COCO_MAX_DETECTIONS]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [IoU thresholds, recall points, classes, areas, max dets]
    per_class = {}
    for k, category_id in enumerate(evaluation.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        name = dataset.class_names[category_id - 1]
        per_class[name] = float(values.mean()) if values.size else float("nan")
    scores, matched, positives = _pooled_matches(evaluation)
    above = scores >= threshold
    true_positives, detections = int(matched[above].sum()), int(above.sum())
    curve_recall, curve_precision = _pooled_curve(scores, matched, positives)
    return {"map": float(evaluation.stats[0]), "map50": float(evaluation.stats[1]),
            "map_small": float(evaluation.stats[3]), "per_class": per_class,
            "precision": true_positives / detections if detections else float("nan"),
            "recall": true_positives / positives if positives else float("nan"),
            "pr_recall": curve_recall, "pr_precision": curve_precision}


def _pooled_matches(evaluation) -> Tuple[np.ndarray, np.ndarray, int]:
    """Every counted detection's score and whether it matched, at IoU 0.5, and the ground-truth count.

    Read from COCOeval's own per-image matching (area 'all', up to 100 detections a class). COCO
    matches the highest-scoring detections first, so the matches of those above any threshold are
    exactly the matches a run at that threshold would make: precision and recall at the daemon's
    threshold, and the precision-recall curve over all thresholds, come from one library run.
    Crowd and ignored boxes count for neither side.
    """
    scores: List[np.ndarray] = []
    matched: List[np.ndarray] = []
    positives = 0
    all_area = evaluation.params.areaRng[0]
    for item in evaluation.evalImgs:
        if item is None or item["aRng"] != all_area:
            continue
        positives += int((~np.asarray(item["gtIgnore"]).astype(bool)).sum())
        if not len(item["dtScores"]):
            continue
        counted = ~np.asarray(item["dtIgnore"])[0].astype(bool)
        scores.append(np.asarray(item["dtScores"], np.float64)[counted])
        matched.append((np.asarray(item["dtMatches"])[0] > 0)[counted])
    if not scores:
        return np.zeros(0), np.zeros(0, bool), positives
    return np.concatenate(scores), np.concatenate(matched), positives


def _pooled_curve(scores: np.ndarray, matched: np.ndarray, positives: int, points: int = 200):
    """Precision and recall of all classes pooled, as the score threshold falls (for the plot)."""
    if not len(scores) or not positives:
        return [], []
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(matched[order])
    precision = true_positives / np.arange(1, len(order) + 1)
    recall = true_positives / positives
    keep = np.unique(np.linspace(0, len(order) - 1, min(points, len(order))).astype(int))
    return recall[keep].tolist(), precision[keep].tolist()


def evaluate_model(dataset: Dataset, model: Optional[Path], labels: Optional[Path], threshold: float,
                   threads: Optional[int] = None, by_hand: Mapping[str, str] = {},
                   progress: Optional[Progress] = None,
                   accelerator: AcceleratorSettings = AcceleratorSettings("cpu"), tiled: bool = False) -> ModelReport:
    """`model` None: the default model (its Edge TPU build where `accelerator` picks the Edge TPU)."""
    options = DetectorOptions(threshold=EVAL_SCORE_FLOOR, max_results=EVAL_MAX_DETECTIONS, nms_iou=EVAL_NMS_IOU,
                              num_threads=threads)
    detector = open_detector(model, labels, options, accelerator)
    model = detector.model_path
    match = match_classes(dataset.class_names, detector.labels.values(), by_hand)
    dataset = merged_classes(dataset, match.merged)
    scored = sum(1 for image in dataset.images for box in image.boxes if box.class_name in match.dataset_classes)
    if not scored:
        raise DatasetError(f"nothing to score: the {len(dataset.images)} image(s) hold no box of the "
                           f"{len(match.dataset_classes)} class(es) the model and the dataset share "
                           f"({', '.join(match.dataset_classes[:6])}{'…' if len(match.dataset_classes) > 6 else ''}); "
                           "give images with labelled objects")
    records, detect_ms, invoke_ms = detect_dataset(dataset, detector, match, progress, tiled)
    scores = score(dataset, records, match, threshold)
    return ModelReport(
        model=str(model), family=detector.family.name, format=detector.numeric_format, accelerator=detector.accelerator,
        backend=f"{detector.backend.name} {detector.backend.version}", size_bytes=Path(model).stat().st_size,
        input_size=(detector.input_width, detector.input_height), images=len(dataset.images),
        map=scores["map"], map50=scores["map50"], precision=scores["precision"], recall=scores["recall"],
        threshold=threshold, latency_ms_p50=float(np.percentile(detect_ms, 50)),
        latency_ms_p95=float(np.percentile(detect_ms, 95)), invoke_ms_p50=float(np.percentile(invoke_ms, 50)),
        invoke_ms_p95=float(np.percentile(invoke_ms, 95)), per_class=scores["per_class"],
        classes_left_out=match.left_out, classes_merged=dict(match.merged), pr_recall=scores["pr_recall"], pr_precision=scores["pr_precision"],
        map_small=scores["map_small"], tiled=tiled)


def merged_classes(dataset: Dataset, merged: Mapping[str, str]) -> Dataset:
    """The dataset with the boxes of each merged class renamed to the class it is scored as."""
    if not merged:
        return dataset
    images = tuple(LabelledImage(image.path, image.width, image.height,
                                 tuple(GroundTruth(merged.get(box.class_name, box.class_name), box.box, box.crowd,
                                                   box.area) for box in image.boxes))
                   for image in dataset.images)
    return Dataset(dataset.format, dataset.source, dataset.class_names, images, dataset.missing)
