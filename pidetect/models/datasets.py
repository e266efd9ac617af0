"""Labelled images in the three formats users have: COCO JSON, YOLO text files, Pascal VOC XML.

Each reader turns a folder (or a file in it) into one `Dataset`: images with their size and
ground-truth boxes in pixels (x1, y1, x2, y2), and the dataset's class names. `load_dataset`
finds which format a folder holds and says so; anything it cannot read is a `DatasetError` naming
the file (and line) and what was expected, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..capture.image_files import ImageFileError, exif_orientation, read_header
from ..errors import UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
YOLO_NAME_FILES = ("data.yaml", "dataset.yaml", "classes.txt")


class DatasetError(UsageError):
    """A dataset that cannot be read as given (exit 2)."""


@dataclass(frozen=True)
class GroundTruth:
    class_name: str
    box: Tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    crowd: bool = False
    area: Optional[float] = None  # COCO's segmentation area when the dataset gives one


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    width: int
    height: int
    boxes: Tuple[GroundTruth, ...]


@dataclass(frozen=True)
class Dataset:
    format: str  # "COCO JSON", "YOLO", "Pascal VOC"
    source: Path  # the annotation file or folder read
    class_names: Tuple[str, ...]
    images: Tuple[LabelledImage, ...]
    missing: Tuple[Path, ...] = ()  # listed but not on disk (kept out with --skip-missing)

    @property
    def box_count(self) -> int:
        return sum(len(image.boxes) for image in self.images)

    def summary(self) -> str:
        used = {box.class_name for image in self.images for box in image.boxes}
        text = (f"{self.format} dataset {self.source}: {len(self.images)} images, {self.box_count} boxes, "
                f"{len(used)} of {len(self.class_names)} classes present")
        if self.missing:
            text += f"; {len(self.missing)} listed image(s) missing and skipped"
        return text

    def limited(self, count: int) -> "Dataset":
        return Dataset(self.format, self.source, self.class_names, self.images[:count], self.missing)

    def skipped(self, count: int) -> "Dataset":
        return Dataset(self.format, self.source, self.class_names, self.images[count:], self.missing)


def load_dataset(path: Path, skip_missing: bool = False, split: Optional[str] = None) -> Dataset:
    """The dataset at `path`: a COCO JSON file, or a folder holding one of the three formats."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return read_coco(path, skip_missing)
        if path.suffix.lower() in (".yaml", ".yml"):
            return read_yolo(path.parent, path, skip_missing, split)
        path = path.parent
    coco = sorted((path / "annotations").glob("instances_*.json")) + sorted(path.glob("instances_*.json"))
    if coco:
        return read_coco(coco[0], skip_missing)
    if (path / "labels").is_dir() or any((path / name).is_file() for name in YOLO_NAME_FILES):
        return read_yolo(path, None, skip_missing, split)
    if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
        return read_voc(path, skip_missing)
    raise DatasetError(f"dataset {path}: found no labels; looked for COCO JSON (annotations/instances_*.json), "
                       "YOLO (images/ and labels/*.txt with data.yaml or classes.txt) and Pascal VOC (.xml beside "
                       "the images or in Annotations/)")


# --- COCO --------------------------------------------------------------------------------------------
def read_coco(json_path: Path, skip_missing: bool = False) -> Dataset:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        entries = [(int(i["id"]), str(i["file_name"]), int(i["width"]), int(i["height"])) for i in data["images"]]
        annotations = data.get("annotations", [])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{json_path}: not a COCO detection JSON ({type(exc).__name__}: {exc}); it needs "
                           "'images' (id, file_name, width, height), 'annotations' and 'categories'") from None
    folder = _coco_images_folder(json_path, [name for _id, name, _w, _h in entries])
    by_image: Dict[int, List[GroundTruth]] = {image_id: [] for image_id, *_ in entries}
    for number, item in enumerate(annotations):
        try:
            bbox = item["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                raise ValueError(f"bbox must be a list of 4 numbers [x, y, width, height], not {_short(bbox)}")
            x, y, w, h = (float(v) for v in bbox)
            name = categories[int(item["category_id"])]
            image_id = int(item["image_id"])
            crowd = item.get("iscrowd", 0)
            if crowd not in (0, 1) or isinstance(crowd, float) and not crowd.is_integer():
                raise ValueError(f"iscrowd must be 0 or 1, not {_short(crowd)}")
            area = item.get("area")
            if area is not None and not _is_number(area):
                raise ValueError(f"area must be a number, not {_short(area)}")
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{json_path}: annotation {number} is not a box ({type(exc).__name__}: {exc})") from None
        if image_id in by_image and w > 0 and h > 0:
            by_image[image_id].append(GroundTruth(name, (x, y, x + w, y + h), bool(crowd),
                                                  float(area) if area is not None else None))
    images, missing = [], []
    for image_id, name, width, height in entries:
        path = folder / name
        if not path.is_file():
            missing.append(path)
            continue
        images.append(LabelledImage(path, width, height, tuple(by_image[image_id])))
    _refuse_missing(json_path, missing, skip_missing)
    names = tuple(categories[k] for k in sorted(categories))
    return _checked(Dataset("COCO JSON", json_path, names, tuple(images), tuple(missing)))


def _coco_images_folder(json_path: Path, names: Sequence[str]) -> Path:
    """COCO keeps images apart from annotations: try the usual places, take the one holding the first image."""
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    split = json_path.stem.replace("instances_", "")
    candidates = [root / "images", root / "images" / split, root / split, root, json_path.parent]
    for folder in candidates:
        if names and (folder / names[0]).is_file():
            return folder
    return candidates[0]


# --- YOLO --------------------------------------------------------------------------------------------
def read_yolo(root: Path, yaml_path: Optional[Path] = None, skip_missing: bool = False,
              split: Optional[str] = None) -> Dataset:
    """A YOLO dataset: the split data.yaml names (`split`, default val when it has one), or, without one,
    every image under images/. A label pairs only with the image at the same place under labels/ as the
    image under images/ (images/val/1.jpg <-> labels/val/1.txt), never with a namesake in another folder."""
    yaml_path = yaml_path or next((c for c in (root / "data.yaml", root / "dataset.yaml") if c.is_file()), None)
    data = _yolo_yaml(yaml_path) if yaml_path else None
    names = _yolo_names(root, yaml_path, data)
    folders = _yolo_split_folders(root, yaml_path, data, split)
    images: List[Path] = []
    for folder in folders:
        images += [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not images:
        raise DatasetError(f"YOLO dataset {root}: no images in {', '.join(str(f) for f in folders)}")
    labelled, labels_found = [], 0
    label_of = {image: _labels_path(image).with_suffix(".txt") for image in images}
    wanted = set(label_of.values())
    missing = []
    for folder in folders:  # label files in the split's labels folder whose image is not there
        labels_folder = _labels_path(folder)
        if labels_folder != folder:
            missing += [folder / (p.relative_to(labels_folder).with_suffix(".jpg")) for p in
                        sorted(labels_folder.rglob("*.txt")) if p not in wanted and p.name != "classes.txt"]
    for image, label_file in label_of.items():
        width, height = _image_size(image)
        if label_file.is_file():
            labels_found += 1
            boxes = tuple(_yolo_boxes(label_file, names, width, height))
        else:
            boxes = ()  # an image without a label file is an image with no objects
        labelled.append(LabelledImage(image, width, height, boxes))
    if not labels_found:
        raise DatasetError(f"YOLO dataset {root}: no label files for the {len(images)} images in "
                           f"{', '.join(str(f) for f in folders)} (expected labels/… beside images/…)")
    _refuse_missing(root / "labels", missing, skip_missing, "label files without an image")
    labelled.sort(key=lambda item: str(item.path))
    return _checked(Dataset("YOLO", root, tuple(names), tuple(labelled), tuple(missing)))


def _yolo_yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        raise DatasetError(f"reading {path} needs PyYAML: pip install \"pidetect[eval]\"") from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: not readable YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with names: and the splits (train:, val:)")
    return data


def _yolo_split_folders(root: Path, yaml_path: Optional[Path], data: Optional[dict],
                        split: Optional[str]) -> List[Path]:
    splits = {key: data[key] for key in ("train", "val", "test") if data and data.get(key)}
    if split is not None and split not in splits:
        where = f"{yaml_path} names {', '.join(splits) or 'no splits'}" if yaml_path else f"{root} has no data.yaml"
        raise DatasetError(f"--split {split}: {where}; give one of those, or leave --split out")
    chosen = split or ("val" if "val" in splits else None)
    images_folder = root / "images" if (root / "images").is_dir() else root
    if chosen is None:
        return [images_folder]
    base = Path(str(data.get("path") or ".")) if data else Path(".")
    base = base if base.is_absolute() else (yaml_path.parent / base)
    entries = splits[chosen] if isinstance(splits[chosen], list) else [splits[chosen]]
    folders = []
    for entry in entries:
        folder = Path(str(entry))
        folder = folder if folder.is_absolute() else base / folder
        if not folder.is_dir() and str(entry).startswith("../"):  # as Ultralytics: Roboflow's "../valid/images"
            folder = base / str(entry)[3:]
        if not folder.is_dir():
            raise DatasetError(f"{yaml_path}: {chosen}: {entry} is not a folder of images ({folder}); pidetect reads "
                               "split folders (not image lists)")
        folders.append(folder)
    return folders


def _labels_path(path: Path) -> Path:
    """Ultralytics' rule: the last 'images' in the path becomes 'labels' (an image's label file is that path
    with .txt; a split folder's labels folder is that path); with no 'images' the labels are beside them."""
    parts = list(path.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            return Path(*parts)
    return path


def _yolo_names(root: Path, yaml_path: Optional[Path], data: Optional[dict]) -> List[str]:
    if data is not None:
        names = data.get("names")
        if isinstance(names, dict):
            try:
                return [str(names[k]) for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                raise DatasetError(f"{yaml_path}: 'names' keys must be class numbers 0, 1, 2, …") from None
        if isinstance(names, list):
            return [str(n) for n in names]
        if names is not None:
            raise DatasetError(f"{yaml_path}: 'names' must be a list or a mapping of class numbers to names")
    classes = root / "classes.txt"
    if not classes.is_file():
        classes = root / "labels" / "classes.txt"
    if classes.is_file():
        return [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise DatasetError(f"YOLO dataset {root}: no class names; give data.yaml (names: …) or classes.txt")


def _yolo_boxes(path: Path, names: Sequence[str], width: int, height: int) -> List[GroundTruth]:
    boxes = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(f"{path}:{number}: expected 'class cx cy w h' (5 fields), found {len(fields)}: "
                               f"{line.strip()[:80]!r}")
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DatasetError(f"{path}:{number}: not numbers: {line.strip()[:80]!r}") from None
        if not 0 <= class_id < len(names):
            raise DatasetError(f"{path}:{number}: class id {class_id} is out of range (the names list has "
                               f"{len(names)} classes, 0..{len(names) - 1})")
        values = (cx, cy, w, h)
        # as Ultralytics: normalised xywh must be finite, within 0..1, with a positive size; else the line goes
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values) or w <= 0 or h <= 0:
            log.warning("%s:%d: ignoring an impossible box (coordinates must be 0..1 with a positive width "
                        "and height): %s", path, number, line.strip()[:80])
            continue
        boxes.append(GroundTruth(names[class_id], ((cx - w / 2) * width, (cy - h / 2) * height,
                                                   (cx + w / 2) * width, (cy + h / 2) * height)))
    return boxes


# --- Pascal VOC --------------------------------------------------------------------------------------
def read_voc(root: Path, skip_missing: bool = False) -> Dataset:
    xml_folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    images_folder = root / "JPEGImages" if (root / "JPEGImages").is_dir() else root
    files = sorted(xml_folder.glob("*.xml"))
    if not files:
        raise DatasetError(f"Pascal VOC dataset {root}: no .xml files")
    labelled, missing, names = [], [], []
    for xml_file in files:
        try:
            tree = ElementTree.parse(xml_file).getroot()
            filename = (tree.findtext("filename") or xml_file.with_suffix(".jpg").name).strip()
            boxes = []
            for item in tree.iter("object"):
                name = (item.findtext("name") or "").strip()
                box = item.find("bndbox")
                if not name or box is None:
                    raise ValueError("an <object> without <name> or <bndbox>")
                xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
                # VOC pixel indices start at 1 and xmax is inclusive: shift to 0-based edges
                boxes.append(GroundTruth(name, (xmin - 1, ymin - 1, xmax, ymax), item.findtext("difficult") == "1"))
                if name not in names:
                    names.append(name)
        except (ElementTree.ParseError, ValueError, TypeError) as exc:
            raise DatasetError(f"{xml_file}: not a Pascal VOC annotation ({exc})") from None
        image = images_folder / filename
        if not image.is_file():
            image = xml_file.parent / filename
        if not image.is_file():
            missing.append(images_folder / filename)
            continue
        size = tree.find("size")
        try:
            width, height = int(size.findtext("width")), int(size.findtext("height"))
        except (AttributeError, TypeError, ValueError):
            width, height = _image_size(image)
        if width <= 0 or height <= 0:
            width, height = _image_size(image)
        labelled.append(LabelledImage(image, width, height, tuple(boxes)))
    _refuse_missing(xml_folder, missing, skip_missing)
    return _checked(Dataset("Pascal VOC", root, tuple(sorted(names)), tuple(labelled), tuple(missing)))


# --- shared ------------------------------------------------------------------------------------------
def _image_size(path: Path) -> Tuple[int, int]:
    """The size of the picture as shown (and as OpenCV and Ultralytics read it): a photo stored sideways
    with an EXIF orientation of 5..8 is turned upright, so its width and height swap."""
    try:
        header = read_header(path)
    except ImageFileError as exc:
        raise DatasetError(str(exc)) from None
    if exif_orientation(path) in (5, 6, 7, 8):
        return header.height, header.width
    return header.width, header.height


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _refuse_missing(where: Path, missing: List[Path], skip_missing: bool,
                    what: str = "images listed but not on disk") -> None:
    if missing and not skip_missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DatasetError(f"{where}: {len(missing)} {what}: {shown}; pass --skip-missing to evaluate the rest")


def _checked(dataset: Dataset) -> Dataset:
    if not dataset.images:
        raise DatasetError(f"{dataset.format} dataset {dataset.source}: no images to evaluate")
    return dataset
