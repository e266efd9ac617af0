"""Scale an image to fit a target size without distorting it, padding the rest (letterboxing).

Used by the framebuffer display (camera frame -> screen) and by the demo clip builder.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

Rect = Tuple[int, int, int, int]  # x, y, width, height of the image inside the canvas


def fit_rect(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Rect:
    scale = min(dst_w / src_w, dst_h / src_h)
    width, height = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return (dst_w - width) // 2, (dst_h - height) // 2, width, height


def letterbox(image: np.ndarray, width: int, height: int, out: Optional[np.ndarray] = None,
              pad_value: int = 0) -> Tuple[np.ndarray, Rect]:
    """`image` scaled into a `width`x`height` canvas (reused when `out` is given), and where it landed."""
    if out is None:
        out = np.empty((height, width) + image.shape[2:], image.dtype)
    x, y, w, h = rect = fit_rect(image.shape[1], image.shape[0], width, height)
    if (w, h) != (width, height):
        out[:y] = pad_value
        out[y + h:] = pad_value
        out[y:y + h, :x] = pad_value
        out[y:y + h, x + w:] = pad_value
    interpolation = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
    cv2.resize(image, (w, h), dst=out[y:y + h, x:x + w], interpolation=interpolation)
    return out, rect
