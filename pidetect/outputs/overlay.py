"""Draws detections: boxes in a colour per class, 'label score' tags kept inside the picture, an
FPS / inference-time line and an optional timestamp.

Drawing is two steps. `layout` turns a Result into Shapes in the coordinates of the picture
(sizes scale with its height, so text is readable on a 1080p monitor and on 640x480); `render`
draws Shapes onto a canvas, or onto a band of rows of it. The framebuffer display uses the split to
draw at screen resolution one band at a time (see letterbox.BandedLetterbox); MJPEG, snapshots and
the window use `draw`, which copies the frame into a reused buffer first. The frame the detector
used is never written to.
"""

from __future__ import annotations

import colorsys
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np

from ..frames import Result
from .letterbox import Rect

FONT = cv2.FONT_HERSHEY_SIMPLEX
Colour = Tuple[int, int, int]
MOTION_COLOUR: Tuple[int, int, int] = (170, 170, 170)
Point = Tuple[int, int]


def class_colour(class_id: int) -> Colour:
    """A stable, saturated BGR colour per class id (golden-ratio hue steps keep neighbours apart)."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


@dataclass(frozen=True)
class Box:
    """A rectangle outline, or a filled one when thickness is cv2.FILLED."""

    top_left: Point
    bottom_right: Point
    colour: Colour
    thickness: int

    def rows(self) -> Tuple[int, int]:
        reach = max(self.thickness, 0)
        return self.top_left[1] - reach, self.bottom_right[1] + reach + 1


@dataclass(frozen=True)
class Text:
    text: str
    origin: Point  # bottom-left of the text, as cv2.putText takes it
    scale: float
    colour: Colour
    thickness: int
    height: int  # rows above the origin
    depth: int  # rows below the origin (baseline)

    def rows(self) -> Tuple[int, int]:
        return self.origin[1] - self.height - self.thickness, self.origin[1] + self.depth + self.thickness + 1


Shape = Union[Box, Text]


class Overlay:
    def __init__(self, show_timestamp: bool = True):
        self.show_timestamp = show_timestamp
        self._buffer: Optional[np.ndarray] = None

    @staticmethod
    def _sizes(height: int) -> Tuple[float, int, int]:
        scale = max(0.4, height / 720 * 0.7)
        thickness = max(1, round(height / 360))
        pad = max(2, round(height / 240))
        return scale, thickness, pad

    @staticmethod
    def _tag(shapes: List[Shape], size: Tuple[int, int], text: str, x: int, y: int, colour: Colour, scale: float,
             thickness: int, pad: int, above: bool = True) -> None:
        """A filled label box with text, placed above (x, y) when it fits, else below, and inside the picture."""
        width, height = size
        (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
        box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
        x = min(max(0, x), max(0, width - box_w))
        top = y - box_h if above and y - box_h >= 0 else y
        top = min(max(0, top), max(0, height - box_h))
        shapes.append(Box((x, top), (x + box_w, top + box_h), colour, cv2.FILLED))
        luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
        ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
        shapes.append(Text(text, (x + pad, top + pad + th), scale, ink, thickness, th, baseline))

    def layout(self, result: Result, fps: Optional[float], size: Tuple[int, int],
               rect: Optional[Rect] = None) -> List[Shape]:
        """The shapes for `result` on a picture of `size` (w, h) where the frame fills `rect` (default: all)."""
        frame_h, frame_w = result.frame.image.shape[:2]
        x0, y0, rect_w, rect_h = rect if rect is not None else (0, 0, size[0], size[1])
        sx, sy = rect_w / frame_w, rect_h / frame_h
        scale, thickness, pad = self._sizes(size[1])
        shapes: List[Shape] = []
        for mx1, my1, mx2, my2 in result.frame.motion:  # the motion gate's blobs, thin grey, under the boxes
            shapes.append(Box((round(x0 + mx1 * sx), round(y0 + my1 * sy)), (round(x0 + mx2 * sx), round(y0 + my2 * sy)),
                              MOTION_COLOUR, 1))
        for d in result.detections:
            colour = class_colour(d.class_id)
            x1, y1 = round(x0 + d.box[0] * sx), round(y0 + d.box[1] * sy)
            x2, y2 = round(x0 + d.box[2] * sx), round(y0 + d.box[3] * sy)
            shapes.append(Box((x1, y1), (x2, y2), colour, thickness + 1))
            self._tag(shapes, size, f"{d.label} {d.score:.2f}", x1, y1, colour, scale, thickness, pad)
        status = f"{result.inference_ms:.0f} ms"
        if fps is not None:
            status = f"{fps:.1f} fps  " + status
        self._tag(shapes, size, status, size[0], 0, (32, 32, 32), scale, thickness, pad, above=False)
        if self.show_timestamp:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.frame.ts))
            self._tag(shapes, size, stamp, 0, size[1], (32, 32, 32), scale * 0.8, thickness, pad)
        return shapes

    @staticmethod
    def render(shapes: List[Shape], canvas: np.ndarray, top: int = 0) -> None:
        """Draw `shapes` onto `canvas`, which holds the picture's rows from `top` on (a band, or all of it)."""
        bottom = top + canvas.shape[0]
        for shape in shapes:
            first, last = shape.rows()
            if last <= top or first >= bottom:
                continue  # not in this band: skip the call rather than let OpenCV clip it
            if isinstance(shape, Box):
                (x1, y1), (x2, y2) = shape.top_left, shape.bottom_right
                cv2.rectangle(canvas, (x1, y1 - top), (x2, y2 - top), shape.colour, shape.thickness)
            else:
                x, y = shape.origin
                cv2.putText(canvas, shape.text, (x, y - top), FONT, shape.scale, shape.colour, shape.thickness,
                            cv2.LINE_AA)

    def draw(self, result: Result, fps: Optional[float] = None) -> np.ndarray:
        """The overlaid frame, in a buffer this Overlay reuses (valid until the next call)."""
        image = result.frame.image
        if self._buffer is None or self._buffer.shape != image.shape:
            self._buffer = np.empty_like(image)
        np.copyto(self._buffer, image)
        self.render(self.layout(result, fps, (image.shape[1], image.shape[0])), self._buffer)
        return self._buffer
