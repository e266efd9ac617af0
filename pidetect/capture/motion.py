"""A motion detector cheap enough to run on every frame, so the model runs only when something moves.

Each frame is shrunk to WORK_HEIGHT rows (the cost no longer depends on the camera's resolution),
made grey and blurred (sensor noise and JPEG blocks are smaller than the blur), and compared with a
learned background: a running average with a time constant of `learn_seconds` (0.5 s), so an
object that stops becomes background within about a second and its "ghost" does not keep the
model busy (the gate re-checks what stands still at its own, slower rate), while anything that
keeps moving keeps differing at its edges. Pixels that differ by more than `threshold` grey
levels are dilated into blobs; blobs smaller than `min_area` (a share of the frame) are ignored.
A change over most of the frame is not motion but light (a lamp switched on, the sun behind a
cloud, the camera's auto-exposure): the background is learned anew from that frame and no motion
is reported, so lighting never starts a detection storm.
Pixels under the `motion_mask` polygons (a tree in the wind, a clock, a busy road) never count as
motion: they are cleared from the changed-pixel mask before anything is measured, and shares are
of the unmasked area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from ..frames import Box
from ..geometry import Polygon

WORK_HEIGHT = 120


@dataclass(frozen=True)
class MotionSettings:
    threshold: int = 25  # grey levels (0..255) a pixel must change by
    min_area: float = 0.002  # smallest blob, as a share of the frame (0.2 %: a person far away at 720p)
    learn_seconds: float = 0.5  # background time constant: what stays still this long becomes background
    lighting_share: float = 0.5  # a change over more than this share of the frame is light, not motion
    mask: Tuple[Polygon, ...] = ()  # motion_mask: where motion never counts


@dataclass(frozen=True)
class MotionResult:
    moving: bool
    boxes: Tuple[Box, ...]  # blobs in pixels of the frame
    changed_share: float  # share of the frame that differs from the background
    lighting_change: bool = False


class MotionDetector:
    """Not thread-safe: one per capture thread."""

    def __init__(self, settings: MotionSettings = MotionSettings()):
        self.settings = settings
        self._background: Optional[np.ndarray] = None
        self._size: Optional[Tuple[int, int]] = None
        self._small: Optional[np.ndarray] = None
        self._grey: Optional[np.ndarray] = None
        self._counted: Optional[np.ndarray] = None  # 255 where motion counts, 0 under the motion mask
        self._counted_area = 0
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def reset(self) -> None:
        """Forget the background (the camera was lost, a looping file started over)."""
        self._background = None

    def update(self, frame: np.ndarray, elapsed: float) -> MotionResult:
        """Compare `frame` with the background; `elapsed`: seconds since the previous update."""
        height, width = frame.shape[:2]
        work_width = max(16, int(round(width * WORK_HEIGHT / height)))
        if self._size != (work_width, WORK_HEIGHT) or self._small is None:
            self._size = (work_width, WORK_HEIGHT)
            self._small = np.empty((WORK_HEIGHT, work_width, 3), np.uint8)
            self._grey = np.empty((WORK_HEIGHT, work_width), np.uint8)
            self._background = None
            self._counted = self._mask_raster(width, height, work_width) if self.settings.mask else None
            self._counted_area = int(cv2.countNonZero(self._counted)) if self._counted is not None \
                else work_width * WORK_HEIGHT
        # INTER_LINEAR samples (0.07 ms at 720p here); INTER_AREA averages every pixel (2.4 ms): the
        # blur below does the averaging that keeps sensor noise out, on 120 rows instead of 720
        cv2.resize(frame, self._size, dst=self._small, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2GRAY, dst=self._grey)
        cv2.GaussianBlur(self._grey, (5, 5), 0, dst=self._grey)
        if self._background is None:
            self._background = self._grey.astype(np.float32)
            return MotionResult(False, (), 0.0)
        difference = cv2.absdiff(self._grey, cv2.convertScaleAbs(self._background))
        _, mask = cv2.threshold(difference, self.settings.threshold, 255, cv2.THRESH_BINARY)
        if self._counted is not None:
            cv2.bitwise_and(mask, self._counted, dst=mask)
        changed = cv2.countNonZero(mask) / self._counted_area if self._counted_area else 0.0
        if changed > self.settings.lighting_share:
            self._background = self._grey.astype(np.float32)  # light changed: learn the new scene at once
            return MotionResult(False, (), changed, lighting_change=True)
        weight = 1.0 - math.exp(-min(max(elapsed, 0.0), 10.0) / self.settings.learn_seconds)
        cv2.accumulateWeighted(self._grey, self._background, weight)
        if not changed:
            return MotionResult(False, (), 0.0)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        scale_x, scale_y = width / work_width, height / WORK_HEIGHT
        least = self.settings.min_area * mask.size  # of the whole frame: a blob's size does not depend on the mask
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < least:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append((int(x * scale_x), int(y * scale_y), int(min(width - 1, (x + w) * scale_x)),
                          int(min(height - 1, (y + h) * scale_y))))
        return MotionResult(bool(boxes), tuple(boxes), changed)

    def _mask_raster(self, width: int, height: int, work_width: int) -> np.ndarray:
        """The motion mask at the detector's working size: 255 where motion counts."""
        counted = np.full((WORK_HEIGHT, work_width), 255, np.uint8)
        scale_x, scale_y = work_width / width, WORK_HEIGHT / height
        for polygon in self.settings.mask:
            points = np.array([[round(x * scale_x), round(y * scale_y)] for x, y in polygon.to_pixels(width, height)],
                              np.int32)
            cv2.fillPoly(counted, [points], 0)
        return counted
