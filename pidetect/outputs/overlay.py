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
from typing import Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from ..frames import Result
from .hershey_text import TextPainter, text_rows, text_size
from .letterbox import Rect

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
    origin: Point  # the left end of the text's baseline, as cv2.putText takes it
    scale: float
    colour: Colour
    thickness: int

    def rows(self) -> Tuple[int, int]:
        return text_rows(self.origin[1], self.scale, self.thickness)


@dataclass(frozen=True)
class Poly:
    """A polygon's outline, and with `tint` > 0 its inside blended with `colour` (an occupied zone, a mask)."""

    points: Tuple[Point, ...]
    colour: Colour
    thickness: int
    tint: float = 0.0

    def rows(self) -> Tuple[int, int]:
        ys = [y for _x, y in self.points]
        return min(ys) - self.thickness, max(ys) + self.thickness + 1


Shape = Union[Box, Text, Poly]
ZONE_COLOUR: Colour = (0, 200, 255)  # amber: zones
REGION_COLOUR = (200, 160, 0)  # BGR: the regions the model looked at (show_motion)
AREA_COLOURS = {"zone": ZONE_COLOUR, "motion_mask": (150, 150, 150), "object_mask": (60, 60, 200)}
OCCUPIED_TINT = 0.28
MASK_TINT = 0.35


class Overlay:
    def __init__(self, show_timestamp: bool = True, reuse_buffer: bool = True):
        """`reuse_buffer`: keep the picture's buffer between calls (a display, every frame); False for a rare
        caller (snapshots: one per event), so that a frame-sized buffer (2.6 MB at 720p) is not held for it."""
        self.show_timestamp = show_timestamp
        self.reuse_buffer = reuse_buffer
        self._buffer: Optional[np.ndarray] = None
        self._rasters: Dict[tuple, tuple] = {}
        self._text = TextPainter()  # not cv2.putText: see hershey_text

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
        (tw, th), baseline = text_size(text, scale, thickness)
        box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
        x = min(max(0, x), max(0, width - box_w))
        top = y - box_h if above and y - box_h >= 0 else y
        top = min(max(0, top), max(0, height - box_h))
        shapes.append(Box((x, top), (x + box_w, top + box_h), colour, cv2.FILLED))
        luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
        ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)
        shapes.append(Text(text, (x + pad, top + pad + th), scale, ink, thickness))

    def layout(self, result: Result, fps: Optional[float], size: Tuple[int, int],
               rect: Optional[Rect] = None) -> List[Shape]:
        """The shapes for `result` on a picture of `size` (w, h) where the frame fills `rect` (default: all)."""
        frame_h, frame_w = result.frame.image.shape[:2]
        x0, y0, rect_w, rect_h = rect if rect is not None else (0, 0, size[0], size[1])
        sx, sy = rect_w / frame_w, rect_h / frame_h
        scale, thickness, pad = self._sizes(size[1])
        shapes: List[Shape] = []
        for area in result.areas:  # zones and masks first: everything else is drawn over them
            points = tuple((round(x0 + x * sx), round(y0 + y * sy)) for x, y in area.polygon)
            colour = AREA_COLOURS.get(area.kind, ZONE_COLOUR)
            if area.kind == "zone":
                tint = OCCUPIED_TINT if area.occupied else 0.0
                shapes.append(Poly(points, colour, thickness + (1 if area.occupied else 0), tint))
                name = f"{area.name} {area.occupied}" if area.occupied else area.name
            else:
                shapes.append(Poly(points, colour, 1, MASK_TINT))
                name = area.name
            top = min(points, key=lambda p: (p[1], p[0]))
            self._tag(shapes, size, name, top[0], top[1], colour, scale * 0.8, thickness, pad, above=False)
        for mx1, my1, mx2, my2 in result.frame.motion:  # the motion gate's blobs, thin grey, under the boxes
            shapes.append(Box((round(x0 + mx1 * sx), round(y0 + my1 * sy)), (round(x0 + mx2 * sx), round(y0 + my2 * sy)),
                              MOTION_COLOUR, 1))
        for rx1, ry1, rx2, ry2 in result.regions:  # where the model looked (regions), thin, under the boxes
            shapes.append(Box((round(x0 + rx1 * sx), round(y0 + ry1 * sy)), (round(x0 + rx2 * sx), round(y0 + ry2 * sy)),
                              REGION_COLOUR, 1))
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

    def render(self, shapes: List[Shape], canvas: np.ndarray, top: int = 0) -> None:
        """Draw `shapes` onto `canvas`, which holds the picture's rows from `top` on (a band, or all of it)."""
        bottom = top + canvas.shape[0]
        for shape in shapes:
            first, last = shape.rows()
            if last <= top or first >= bottom:
                continue  # not in this band: skip the call rather than let OpenCV clip it
            if isinstance(shape, Box):
                (x1, y1), (x2, y2) = shape.top_left, shape.bottom_right
                cv2.rectangle(canvas, (x1, y1 - top), (x2, y2 - top), shape.colour, shape.thickness)
            elif isinstance(shape, Poly):
                self._polygon(canvas, shape, top)
            else:
                self._text.draw(canvas, shape.text, shape.origin, shape.scale, shape.colour, shape.thickness, top)

    def _raster(self, shape: Poly) -> Tuple[int, int, Tuple[int, int], np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """The polygon rasterised once in its own bounding box: (left, top, size, inside bits, outline pixels).

        Why: OpenCV clips a diagonal edge to the canvas it draws on, and a clipped line (or fill) is
        rasterised from another starting point, so drawing band by band (the framebuffer) would give other
        pixels than drawing the whole picture. Zones do not move, so the cache hits on every frame. Kept
        small: the inside as packed bits (1/8 of a byte mask), the outline as its pixels' coordinates."""
        key = (shape.points, shape.thickness)
        cached = self._rasters.get(key)
        if cached is None:
            points = np.array(shape.points, np.int32)
            reach = shape.thickness + 1
            left, top = int(points[:, 0].min()) - reach, int(points[:, 1].min()) - reach
            width = int(points[:, 0].max()) - left + reach + 1
            height = int(points[:, 1].max()) - top + reach + 1
            local = points - (left, top)
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [local], 1)
            inside = np.packbits(mask, axis=1)
            mask[:] = 0
            cv2.polylines(mask, [local], True, 1, shape.thickness, cv2.LINE_8)
            outline = tuple(np.nonzero(mask))
            if len(self._rasters) > 64:  # zones and masks of a few layouts; never grows without bound
                self._rasters.clear()
            cached = self._rasters[key] = (left, top, (width, height), inside, outline)
        return cached

    def _polygon(self, canvas: np.ndarray, shape: Poly, band_top: int) -> None:
        left, top, (width, height), inside, (outline_y, outline_x) = self._raster(shape)
        rows, columns = canvas.shape[:2]
        y1, y2 = max(top, band_top), min(top + height, band_top + rows)
        x1, x2 = max(left, 0), min(left + width, columns)
        if y2 <= y1 or x2 <= x1:
            return
        if shape.tint > 0:
            # blend only what the polygon covers: a small zone costs a small blend
            region = canvas[y1 - band_top:y2 - band_top, x1:x2]
            bits = np.unpackbits(inside[y1 - top:y2 - top], axis=1, count=width)[:, x1 - left:x2 - left]
            tinted = cv2.addWeighted(region, 1.0 - shape.tint, np.full_like(region, shape.colour), shape.tint, 0)
            np.copyto(region, tinted, where=bits.astype(bool)[:, :, None])
        ys, xs = outline_y + top, outline_x + left
        keep = (ys >= band_top) & (ys < band_top + rows) & (xs >= 0) & (xs < columns)
        canvas[ys[keep] - band_top, xs[keep]] = shape.colour

    def draw(self, result: Result, fps: Optional[float] = None) -> np.ndarray:
        """The overlaid frame, in a buffer this Overlay reuses (valid until the next call) unless told not to."""
        image = result.frame.image
        if self.reuse_buffer:
            if self._buffer is None or self._buffer.shape != image.shape:
                self._buffer = np.empty_like(image)
            picture = self._buffer
            np.copyto(picture, image)
        else:
            picture = image.copy()
        self.render(self.layout(result, fps, (image.shape[1], image.shape[0])), picture)
        return picture
