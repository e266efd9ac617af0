"""What the scenes built from real photos share: a crop of a COCO photo, and pasting it partly off the edge."""

from pathlib import Path

import cv2
import numpy as np


def crop(coco_images: Path, name: str, box, height: int) -> np.ndarray:
    """The box (x, y, w, h) of a COCO photo, scaled to `height` pixels."""
    image = cv2.imread(str(coco_images / name))
    x, y, w, h = box
    part = image[y:y + h, x:x + w]
    return cv2.resize(part, None, fx=height / part.shape[0], fy=height / part.shape[0], interpolation=cv2.INTER_CUBIC)


def paste(canvas: np.ndarray, image: np.ndarray, left: int, top: int) -> None:
    """`image` onto `canvas` with its top-left corner at (left, top); what falls outside is cut off."""
    height, width = canvas.shape[:2]
    x1, y1 = max(0, left), max(0, top)
    x2, y2 = min(width, left + image.shape[1]), min(height, top + image.shape[0])
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = image[y1 - top:y2 - top, x1 - left:x2 - left]
