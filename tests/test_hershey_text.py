"""The overlay's own text (Hershey Simplex strokes through cv2.polylines): inside its tag, the same in bands as
whole, '?' for what the font lacks, and never through cv2's text renderer (9 MB a thread under OpenCV 5)."""

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from pidetect.frames import Area, Detection, Frame, Result
from pidetect.outputs.hershey_text import TextPainter, text_rows, text_size
from pidetect.outputs.overlay import Overlay

TEXTS = ["person 0.93", "Agpy{}|~?\\ (j) [Q]", "12.3 fps  25 ms", "2026-12-07 10:19:40", "porch 2", "i", " "]


@pytest.mark.parametrize("scale,thickness", [(0.4, 1), (0.7, 2), (1.05, 3), (2.5, 4)])
def test_every_drawn_pixel_is_within_the_size_it_says_and_the_rows_it_claims(scale, thickness):
    painter = TextPainter()
    for text in TEXTS:
        canvas = np.zeros((400, 1400, 3), np.uint8)
        origin = (300, 200)
        painter.draw(canvas, text, origin, scale, (255, 255, 255), thickness)
        ys, xs = np.nonzero(canvas[:, :, 0])
        (width, height), baseline = text_size(text, scale, thickness)
        if text.strip():
            assert xs.size, text
            # as with cv2.getTextSize: the ink spans the width; rows from `height` above the baseline to
            # `baseline` below, give or take the pen's reach (anti-aliased edges, brackets above capitals)
            assert origin[0] - thickness - 1 <= xs.min() and xs.max() <= origin[0] + width + thickness + 1, text
            assert origin[1] - height - 4 * scale - thickness <= ys.min(), text
            assert ys.max() <= origin[1] + baseline + thickness + 1, text
            first, last = text_rows(origin[1], scale, thickness)
            assert first <= ys.min() and ys.max() < last
        else:
            assert not xs.size and width > 0


def test_a_capital_i_is_a_vertical_stroke_from_the_cap_line_to_the_baseline():
    canvas = np.zeros((100, 100, 3), np.uint8)
    TextPainter().draw(canvas, "I", (40, 80), 2.0, (0, 0, 255), 1)
    ink = canvas[:, :, 2] > 128
    columns = np.nonzero(ink.any(axis=0))[0]
    rows = np.nonzero(ink.any(axis=1))[0]
    assert columns.max() - columns.min() <= 2  # one line wide
    assert columns.min() == 40 + 4 * 2 - 1 or columns.min() == 40 + 4 * 2  # the glyph's left edge is 4 units in
    assert abs(rows.min() - (80 - 21 * 2)) <= 1 and abs(rows.max() - 80) <= 1  # 12 + 9 units tall, on the baseline
    assert (canvas[:, :, :2] == 0).all()  # only the colour asked for


def test_characters_the_font_lacks_are_drawn_as_question_marks():
    painter = TextPainter()
    a, b = np.zeros((60, 300, 3), np.uint8), np.zeros((60, 300, 3), np.uint8)
    painter.draw(a, "猫 🐈 é", (10, 40), 1.0, (255, 255, 255), 2)
    painter.draw(b, "? ? ?", (10, 40), 1.0, (255, 255, 255), 2)
    assert np.array_equal(a, b) and a.any()
    assert text_size("猫 🐈 é", 1.0, 2) == text_size("? ? ?", 1.0, 2)


@pytest.mark.parametrize("band", [1, 7, 64, 96])
def test_text_drawn_band_by_band_equals_text_drawn_whole(band):
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 256, (300, 900, 3), dtype=np.uint8)
    whole, banded = picture.copy(), picture.copy()
    painter = TextPainter()
    spots = [("person 0.93", (5, 30), 0.9, 2), ("Agpy{}|", (600, 295), 1.4, 3), ("cut off at the edge", (780, 150), 1.0, 2),
             ("above the top", (100, 8), 1.2, 2)]
    for text, origin, scale, thickness in spots:
        painter.draw(whole, text, origin, scale, (20, 200, 250), thickness)
    for top in range(0, 300, band):
        rows = banded[top:top + band]
        for text, origin, scale, thickness in spots:
            first, last = text_rows(origin[1], scale, thickness)
            if last > top and first < top + rows.shape[0]:
                painter.draw(rows, text, origin, scale, (20, 200, 250), thickness, top)
    assert np.array_equal(whole, banded)


def test_tags_hold_their_text_whole():
    image = np.full((720, 1280, 3), 114, np.uint8)
    result = Result(Frame(image, 1, time.time()), (Detection("person", 0, 0.93, (100, 300, 400, 700)),
                                                   Detection("traffic light", 9, 0.51, (1150, 5, 1279, 200))), 12.0,
                    areas=(Area("zone", "front door", ((0.0, 0.0), (200.0, 0.0), (200.0, 100.0)), 1),))
    overlay = Overlay()
    shapes = overlay.layout(result, 9.5, (1280, 720))
    boxes = [s for s in shapes if type(s).__name__ == "Box" and s.thickness == cv2.FILLED]
    texts = [s for s in shapes if type(s).__name__ == "Text"]
    assert len(texts) == len(boxes) == 5  # zone, two detections, status, timestamp
    for box, text in zip(boxes, texts):
        canvas = np.zeros((720, 1280, 3), np.uint8)
        overlay._text.draw(canvas, text.text, text.origin, text.scale, (255, 255, 255), text.thickness)
        ys, xs = np.nonzero(canvas[:, :, 0] > 64)
        (x1, y1), (x2, y2) = box.top_left, box.bottom_right
        assert x1 <= xs.min() and xs.max() <= x2 and y1 <= ys.min() and ys.max() <= y2, text.text


def test_the_overlay_never_calls_opencvs_text_renderer():
    """OpenCV 5 gives each thread that writes text its own renderer (about 6 MB private + 2.7 MB of font pages):
    in a fresh interpreter, draw every kind of overlay with putText and getTextSize made to fail."""
    script = """
import time, numpy as np, cv2
def refuse(*args, **kwargs):
    raise AssertionError("cv2 text renderer used")
cv2.putText = cv2.getTextSize = refuse
from pidetect.frames import Area, Detection, Frame, Result
from pidetect.outputs.overlay import Overlay
image = np.full((480, 640, 3), 90, np.uint8)
result = Result(Frame(image, 1, time.time(), motion=((1, 1, 50, 50),)), (Detection("cat", 16, 0.8, (10, 10, 200, 200)),),
                11.0, areas=(Area("zone", "porch", ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5)), 1),
                             Area("motion_mask", "tree", ((0.6, 0.6), (0.9, 0.6), (0.9, 0.9)), 0)))
out = Overlay().draw(result, fps=9.5)
assert (out != image).any()
print("drawn")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "drawn" in done.stdout, done.stderr


def test_a_full_stop_sits_on_the_baseline_and_a_comma_hangs_below_it():
    """Roman Simplex's punctuation (another Hershey set of the same collection draws '.' at mid-height)."""
    def ink_rows(text):
        canvas = np.zeros((100, 60, 3), np.uint8)
        TextPainter().draw(canvas, text, (20, 70), 2.0, (255, 255, 255), 1)
        rows = np.nonzero((canvas[:, :, 0] > 128).any(axis=1))[0]
        return rows.min(), rows.max()

    top, bottom = ink_rows(".")
    assert abs(bottom - 70) <= 1 and bottom - top <= 5
    assert ink_rows(",")[1] > 70 + 4
    assert ink_rows(":")[0] < 70 - 10 and abs(ink_rows(":")[1] - 70) <= 1
