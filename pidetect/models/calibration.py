"""Images to calibrate (and verify) a quantized model on: a folder of photos, or frames from a camera.

Frames from a source are spread over time, not N consecutive frames (which would be one scene
N times): a file is read twice, once to count its frames and once to keep N evenly spaced ones;
a camera or stream gives one frame every `spacing` seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..capture.image_files import ImageFileError, read_image
from ..capture.sources import SourceError, make_source
from ..config import build_config
from ..errors import UsageError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


Size = Optional[Tuple[int, int]]  # the model's input (width, height): images are kept only as large as it needs


def reduced(image: np.ndarray, input_size: Size) -> np.ndarray:
    """The image shrunk, aspect kept, to the smallest size that still covers the model's input on both axes.

    Why: the model sees the image at its input size anyway (stretched or letterboxed), so anything
    larger is memory only: 40 phone photos of 24 MP are 2.9 GB as read, about 40 MB reduced for a
    640x640 YOLO. The detector's own placement of the reduced image gives the same input up to
    resampling rounding. A copy is returned, so a camera's frame buffer is never kept.
    """
    if input_size is None:
        return image.copy()
    height, width = image.shape[:2]
    scale = max(input_size[0] / width, input_size[1] / height)
    # a panorama far wider than the input would still be large at that scale: cap at 4x the input area
    scale = min(scale, (4 * input_size[0] * input_size[1] / (width * height)) ** 0.5)
    if scale >= 1.0:
        return image.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def images_from_folder(folder: Path, limit: int = 0, input_size: Size = None) -> List[np.ndarray]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--calibration {folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit:
        paths = paths[:limit]
    images = []
    for path in paths:
        try:
            images.append(reduced(read_image(path), input_size))  # one full-size image at a time
        except ImageFileError as exc:
            log.warning("skipping calibration image %s", exc)
    if not images:
        raise UsageError(f"--calibration {folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images


def frames_from_source(spec: str, count: int, spacing: float = 1.0, width: int = 0, height: int = 0,
                       open_timeout: float = 10.0, input_size: Size = None) -> List[np.ndarray]:
    """`count` frames spread over a file, or one every `spacing` s from a live source."""
    if count < 1:
        raise UsageError("--frames must be 1 or more")
    config = build_config(None, {"source": spec, "width": width or None, "height": height or None,
                                 "open_timeout": open_timeout})
    source = make_source(config)
    if not source.live:
        total = _count_frames(source, spec)
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        return _read_indices(source, spec, wanted, input_size)
    frames: List[np.ndarray] = []
    try:
        source.open()
        deadline = time.monotonic() + count * spacing + open_timeout + 10
        next_at = time.monotonic()
        while len(frames) < count and time.monotonic() < deadline:
            image = source.read()
            if image is None:
                raise UsageError(f"--calibration-source {spec}: the source stopped after {len(frames)} frame(s)")
            if time.monotonic() >= next_at:
                frames.append(reduced(image, input_size))
                next_at += spacing
    except SourceError as exc:
        raise UsageError(f"--calibration-source {spec}: {exc}") from None
    finally:
        source.close()
    if not frames:
        raise UsageError(f"--calibration-source {spec}: no frame within {open_timeout:g} s")
    return frames


def _count_frames(source, spec: str) -> int:
    total = len(_read_file(source, spec, lambda index: False))
    if not total:
        raise UsageError(f"--calibration-source {spec}: no frames could be read")
    return total


def _read_indices(source, spec: str, wanted: set, input_size: Size = None) -> List[np.ndarray]:
    return [frame for frame in _read_file(source, spec, lambda index: index in wanted, input_size)
            if frame is not None]


def _read_file(source, spec: str, keep, input_size: Size = None) -> List:
    """One pass over a file source: a copy of each frame `keep(index)` accepts, None for the others."""
    frames: List = []
    try:
        source.open()
        while True:
            image = source.read()
            if image is None:
                break
            frames.append(reduced(image, input_size) if keep(len(frames)) else None)
    except SourceError as exc:
        raise UsageError(f"--calibration-source {spec}: {exc}") from None
    finally:
        source.close()
    return frames


def dataset_images(dataset, count: int, input_size: Size = None) -> List[np.ndarray]:
    """Up to `count` of a labelled dataset's images that hold objects, spread over it, reduced as above."""
    with_objects = [image for image in dataset.images if image.boxes]
    if not with_objects:
        return []
    picked = sorted(set(np.linspace(0, len(with_objects) - 1, min(count, len(with_objects))).round().astype(int)))
    images = []
    for index in picked:
        try:
            images.append(reduced(read_image(with_objects[index].path), input_size))
        except ImageFileError as exc:
            log.warning("skipping verification image %s", exc)
    return images
