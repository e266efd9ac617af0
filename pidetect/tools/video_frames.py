"""The first frames of a video file, decoded: what the stage benchmarks time their stages on."""

from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np


def read_frames(path: Path, limit: int) -> List[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames
