"""Meeting the model's labels and the dataset's class names by name.

COCO's 90-id label map and the 80-name YOLO list name the same classes, Pascal VOC spells some of
them differently ("tvmonitor", "motorbike"), and users write "traffic_light" or "Traffic Light".
Names are compared after folding case, `_` and `-`, and through a short alias table; what still does
not meet is listed, and `--map dataset_name=model_name` joins the rest by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from typing import Dict, Iterable, Mapping, Tuple

from .datasets import DatasetError

# Pascal VOC and older COCO spellings -> the COCO names the default and YOLO models use
ALIASES = {
    "tvmonitor": "tv", "tv monitor": "tv", "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
    "diningtable": "dining table", "pottedplant": "potted plant", "hair dryer": "hair drier",
    "cellphone": "cell phone", "mobile phone": "cell phone", "ball": "sports ball", "trafficlight": "traffic light",
    "firehydrant": "fire hydrant", "stopsign": "stop sign", "wineglass": "wine glass", "hotdog": "hot dog",
    "teddybear": "teddy bear", "baseballbat": "baseball bat", "baseballglove": "baseball glove",
}


def fold(name: str) -> str:
    text = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    return ALIASES.get(text, ALIASES.get(text.replace(" ", ""), text))


@dataclass(frozen=True)
class ClassMatch:
    model_to_dataset: Mapping[str, str]  # model label -> dataset class name
    left_out: Tuple[str, ...]  # dataset classes the model cannot predict (not in the mean)
    # dataset class -> the dataset class it is scored as, when both meet the same model label
    # (--map pedestrian=person where the dataset also has person): their boxes are one class
    merged: Mapping[str, str] = field(default_factory=dict)

    @property
    def dataset_classes(self) -> Tuple[str, ...]:
        return tuple(sorted(set(self.model_to_dataset.values())))


def match_classes(dataset_names: Iterable[str], model_labels: Iterable[str],
                  by_hand: Mapping[str, str] = {}) -> ClassMatch:
    dataset_names, model_labels = list(dict.fromkeys(dataset_names)), list(dict.fromkeys(model_labels))
    for dataset_name, model_name in by_hand.items():
        if dataset_name not in dataset_names:
            raise DatasetError(f"--map {dataset_name}={model_name}: the dataset has no class '{dataset_name}'")
        if model_name not in model_labels:
            raise DatasetError(f"--map {dataset_name}={model_name}: the model has no label '{model_name}'")
    folded_model: Dict[str, str] = {}
    for label in model_labels:
        folded_model.setdefault(fold(label), label)
    model_to_dataset: Dict[str, str] = {}
    left_out, merged = [], {}
    for name in dataset_names:
        label = by_hand.get(name) or folded_model.get(fold(name))
        if label is None:
            left_out.append(name)
        elif label not in model_to_dataset:
            model_to_dataset[label] = name
        else:
            merged[name] = model_to_dataset[label]
    if not model_to_dataset:
        raise DatasetError("the model's labels share no name with the dataset's classes (dataset: "
                           + ", ".join(dataset_names[:8]) + ("…" if len(dataset_names) > 8 else "")
                           + "; model: " + ", ".join(model_labels[:8]) + ("…" if len(model_labels) > 8 else "")
                           + "); join them with --map dataset_name=model_name, or pass the model's --labels")
    return ClassMatch(model_to_dataset, tuple(left_out), merged)
