"""Draws detections on a copy of the frame: boxes in a colour per class, 'label score' tags kept
inside the picture, an FPS / inference-time line and an optional timestamp.

Sizes scale with the picture height so the text is readable on a 1080p monitor and on 640x480.
The frame the detector used is never written to: `draw` copies it into a reused buffer (MJPEG,
snapshots, window), `draw_on` draws onto a picture that already holds the frame scaled, such as
the framebuffer's screen-sized canvas (no frame-sized copy, and text drawn at screen resolution).
"""

from __future__ import annotations

import colorsys
import time
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .frames import Detection, Result
from .letterbox import Rect

FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(class_id: int) -> Tuple[int, int, int]:
    """A stable, saturated BGR colour per class id (golden-ratio hue steps keep neighbours apart)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


class Overlay:
    def __init__(self, show_timestamp: bool = True):
        self.show_timestamp = show_timestamp
        self._buffer: Optional[np.ndarray] = None

    def _sizes(self, height: int) -> Tuple[float, int, int]:
        scale = max(0.4, height / 720 * 0.7)
        thickness = max(1, round(height / 360))
        pad = max(2, round(height / 240))
        return scale, thickness, pad

    def _tag(self, canvas: np.ndarray, text: str, x: int, y: int, colour, scale: float, thickness: int,
             pad: int, above: bool = True) -> None:
        """A filled label box with text, placed above (x, y) when it fits, else below, and inside the frame."""
        height, width = canvas.shape[:2]
        (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
        box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
        x = min(max(0, x), max(0, width - box_w))
        top = y - box_h if above and y - box_h >= 0 else y
        top = min(max(0, top), max(0, height - box_h))
        cv2.rectangle(canvas, (x, top), (x + box_w, top + box_h), colour, cv2.FILLED)
        luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
        ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
        cv2.putText(canvas, text, (x + pad, top + pad + th), FONT, scale, ink, thickness, cv2.LINE_AA)

    def draw_detections(self, canvas: np.ndarray, detections: Sequence[Detection],
                        frame_size: Optional[Tuple[int, int]] = None, rect: Optional[Rect] = None) -> None:
        """Boxes and tags; `rect` (x, y, w, h) is where a `frame_size` (w, h) frame sits in the canvas."""
        scale, thickness, pad = self._sizes(canvas.shape[0])
        x0, y0, sx, sy = 0, 0, 1.0, 1.0
        if rect is not None and frame_size is not None:
            x0, y0 = rect[0], rect[1]
            sx, sy = rect[2] / frame_size[0], rect[3] / frame_size[1]
        for d in detections:
            colour = class_colour(d.class_id)
            x1, y1, x2, y2 = (round(x0 + d.box[0] * sx), round(y0 + d.box[1] * sy),
                              round(x0 + d.box[2] * sx), round(y0 + d.box[3] * sy))
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness + 1)
            self._tag(canvas, f"{d.label} {d.score:.2f}", x1, y1, colour, scale, thickness, pad)

    def draw(self, result: Result, fps: Optional[float] = None) -> np.ndarray:
        """The overlaid frame, in a buffer this Overlay reuses (valid until the next call)."""
        image = result.frame.image
        if self._buffer is None or self._buffer.shape != image.shape:
            self._buffer = np.empty_like(image)
        np.copyto(self._buffer, image)
        self.draw_on(self._buffer, result, fps)
        return self._buffer

    def draw_on(self, canvas: np.ndarray, result: Result, fps: Optional[float] = None,
                rect: Optional[Rect] = None) -> None:
        """Draw onto `canvas`, which holds the frame scaled into `rect` (default: the whole canvas)."""
        height, width = result.frame.image.shape[:2]
        self.draw_detections(canvas, result.detections, (width, height), rect)
        scale, thickness, pad = self._sizes(canvas.shape[0])
        status = f"{result.inference_ms:.0f} ms"
        if fps is not None:
            status = f"{fps:.1f} fps  " + status
        self._tag(canvas, status, canvas.shape[1], 0, (32, 32, 32), scale, thickness, pad, above=False)
        if self.show_timestamp:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.frame.ts))
            self._tag(canvas, stamp, 0, canvas.shape[0], (32, 32, 32), scale * 0.8, thickness, pad)
