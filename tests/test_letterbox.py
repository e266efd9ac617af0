"""Letterboxing, whole and in bands: the framebuffer's banded scaling must equal one cv2.resize exactly."""

import cv2
import numpy as np
import pytest

from pidetect.outputs.letterbox import BandedLetterbox, fit_rect, letterbox


def photo_like(width, height, seed=1):
    """Smooth noise: every row differs from its neighbours, so a wrong source row or weight shows."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 0)


@pytest.mark.parametrize("frame,screen", [
    ((1280, 720), (1920, 1080)),  # 720p camera on a 1080p monitor (upscale 1.5)
    ((640, 480), (1920, 1080)),  # 4:3 camera: bars left and right
    ((1920, 1080), (1280, 720)),  # downscale (INTER_AREA)
    ((1640, 1232), (1920, 1080)),  # a Pi camera mode: period of 135 screen rows
    ((1280, 720), (640, 480)),  # bars above and below
    ((1279, 719), (1920, 1080)),  # no usable period: one band
    ((300, 300), (1920, 1080)),
])
def test_bands_equal_a_whole_frame_letterbox(frame, screen):
    image = photo_like(*frame)
    expected, rect = letterbox(image, *screen)
    banded = BandedLetterbox(*screen)
    assert banded.rect(image) == rect
    picture = np.full((screen[1], screen[0], 3), 7, np.uint8)
    next_row, count = 0, 0
    for top, band in banded.bands(image):
        assert top == next_row, "bands must cover the screen top to bottom without gaps or overlaps"
        picture[top:top + band.shape[0]] = band
        next_row += band.shape[0]
        count += 1
    assert next_row == screen[1]
    assert np.array_equal(picture, expected)
    if frame != (1279, 719):
        assert count >= 6 and banded._scratch.nbytes < expected.nbytes / 2, "bands must save the canvas"


def test_fit_rect_centres_and_keeps_aspect():
    assert fit_rect(640, 480, 1920, 1080) == (240, 0, 1440, 1080)
    assert fit_rect(1280, 720, 640, 480) == (0, 60, 640, 360)
