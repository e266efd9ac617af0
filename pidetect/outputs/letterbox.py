"""Scale an image to fit a target size without distorting it, padding the rest (letterboxing).

Used by the framebuffer display (camera frame -> screen, in bands: BandedLetterbox) and by the demo
clip builder.
"""

from __future__ import annotations

from math import gcd
from typing import Iterator, Optional, Tuple

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


class BandedLetterbox:
    """Letterbox frames onto a screen a band of rows at a time, bit-identical to one `letterbox` call.

    Why: the framebuffer display must scale the frame to the screen in BGR before packing it into
    the screen's pixel format. A screen-sized BGR canvas is 6 MB at 1920x1080 that would sit in the
    service's memory for its whole life; one band of about 96 rows is 0.6 MB.

    How it stays exact: source row r and screen row r * h / src_h line up every src_h / gcd(src_h, h)
    source rows. Each band starts on such a row and is resized from a slice of the source with a
    margin of whole periods (at least two rows) on each side, so every output row sees the same
    neighbours and weights as in a whole-frame cv2.resize. When the period is too long for bands
    (rare sizes), the whole picture is one band.
    """

    def __init__(self, width: int, height: int, band_rows: int = 96):
        self.width, self.height, self.band_rows = width, height, band_rows
        self._scratch: Optional[np.ndarray] = None

    def _buffer(self, rows: int, channels: int) -> np.ndarray:
        if self._scratch is None or self._scratch.shape[0] < rows or self._scratch.shape[2] != channels:
            self._scratch = np.empty((rows, self.width, channels), np.uint8)
        return self._scratch

    def rect(self, image: np.ndarray) -> Rect:
        """Where `image` lands on the screen."""
        return fit_rect(image.shape[1], image.shape[0], self.width, self.height)

    def bands(self, image: np.ndarray, pad_value: int = 0) -> Iterator[Tuple[int, np.ndarray]]:
        """(first screen row, band pixels) for a BGR `image`, from the top of the screen to the bottom.
        A band is only valid until the next one is produced (they share one buffer)."""
        src_h, src_w = image.shape[:2]
        x, y, w, h = self.rect(image)
        period = gcd(src_h, h)
        q_src, q_dst = src_h // period, h // period  # q_src source rows <-> q_dst screen rows
        band = max(1, self.band_rows // q_dst) * q_dst if q_dst <= 4 * self.band_rows else h
        margin = -(-2 // q_src) * q_src if band < h else 0  # whole periods, at least 2 source rows
        margin_rows = margin // q_src * q_dst
        scratch = self._buffer(band + 2 * margin_rows, image.shape[2])
        interpolation = cv2.INTER_AREA if w < src_w else cv2.INTER_LINEAR
        yield from self._pad_rows(0, y, band, scratch, pad_value)
        for first in range(0, h, band):
            last = min(h, first + band)
            r0, r1 = first // q_dst * q_src, -(-last // q_dst) * q_src
            a, b = max(0, r0 - margin), min(src_h, r1 + margin)
            rows = (b - a) // q_src * q_dst
            out = scratch[:rows]
            cv2.resize(image[a:b], (w, rows), dst=out[:, x:x + w], interpolation=interpolation)
            out[:, :x] = pad_value
            out[:, x + w:] = pad_value
            skip = (r0 - a) // q_src * q_dst
            yield y + first, out[skip:skip + last - first]
        yield from self._pad_rows(y + h, self.height, band, scratch, pad_value)

    @staticmethod
    def _pad_rows(start: int, stop: int, band: int, scratch: np.ndarray, pad_value: int) -> Iterator[Tuple[int, np.ndarray]]:
        for first in range(start, stop, band):
            out = scratch[:min(band, stop - first)]
            out[...] = pad_value
            yield first, out
