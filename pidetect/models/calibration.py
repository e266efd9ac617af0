"""Images to calibrate (and verify) a quantized model on: a folder of photos, or frames from a camera.

Frames from a source are spread over time, not N consecutive frames (which would be one scene
N times): a file is read twice, once to count its frames and once to keep N evenly spaced ones;
a camera or stream gives one frame every `spacing` seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import List

import numpy as np

from ..capture.image_files import ImageFileError, read_image
from ..capture.sources import SourceError, make_source
from ..config import build_config
from ..errors import UsageError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def images_from_folder(folder: Path, limit: int = 0) -> List[np.ndarray]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--calibration {folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit:
        paths = paths[:limit]
    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageFileError as exc:
            log.warning("skipping calibration image %s", exc)
    if not images:
        raise UsageError(f"--calibration {folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images


def frames_from_source(spec: str, count: int, spacing: float = 1.0, width: int = 0, height: int = 0,
                       open_timeout: float = 10.0) -> List[np.ndarray]:
    """`count` frames spread over a file, or one every `spacing` s from a live source."""
    if count < 1:
        raise UsageError("--frames must be 1 or more")
    config = build_config(None, {"source": spec, "width": width or None, "height": height or None,
                                 "open_timeout": open_timeout})
    source = make_source(config)
    if not source.live:
        total = _count_frames(source, spec)
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        return _read_indices(source, spec, wanted)
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
                frames.append(image.copy())
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


def _read_indices(source, spec: str, wanted: set) -> List[np.ndarray]:
    return [frame for frame in _read_file(source, spec, lambda index: index in wanted) if frame is not None]


def _read_file(source, spec: str, keep) -> List:
    """One pass over a file source: a copy of each frame `keep(index)` accepts, None for the others."""
    frames: List = []
    try:
        source.open()
        while True:
            image = source.read()
            if image is None:
                break
            frames.append(image.copy() if keep(len(frames)) else None)
    except SourceError as exc:
        raise UsageError(f"--calibration-source {spec}: {exc}") from None
    finally:
        source.close()
    return frames
