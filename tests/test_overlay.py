"""Overlay drawing: on a copy, colour per class, tags kept inside the frame at any size."""

import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from pidetect.frames import Detection, Frame, Result
from pidetect.outputs.overlay import Overlay, class_colour


def result_for(image, detections):
    return Result(Frame(image, 1, time.time()), tuple(detections), 12.0)


@pytest.mark.parametrize("size", [(480, 640), (1080, 1920)])
def test_draws_on_a_copy_with_class_colours_and_tags_inside(size):
    height, width = size
    image = np.full((height, width, 3), 114, np.uint8)
    original = image.copy()
    corner = Detection("person", 0, 0.9, (0, 0, width // 3, height // 3))  # tag cannot go above the box
    edge = Detection("cat", 16, 0.8, (width - 60, height - 60, width - 1, height - 1))  # tag would run off
    out = Overlay().draw(result_for(image, [corner, edge]), fps=9.5)
    assert np.array_equal(image, original), "the detector's frame must not be drawn on"
    assert out is not image and out.shape == image.shape
    mid = height // 6
    assert tuple(out[mid, 0]) == class_colour(0)  # left edge of the person box
    cat_tag = (out[height - 200:, width - 200:] == class_colour(16)).all(axis=2)
    assert cat_tag.sum() > 100  # the cat's tag is drawn, pulled back inside the frame


def test_text_grows_with_the_frame():
    def tag_height(height, width):
        image = np.zeros((height, width, 3), np.uint8)
        out = Overlay(show_timestamp=False).draw(result_for(image, [Detection("dog", 17, 0.7, (10, 100, 200, 300))]))
        rows = np.where((out[:, 10:30] == class_colour(17)).all(axis=2).any(axis=1))[0]
        return rows[rows < 100].size  # tag rows above the box top

    assert tag_height(1080, 1920) > 1.5 * tag_height(480, 640) > 0


def test_colours_differ_between_neighbouring_classes():
    colours = [class_colour(i) for i in range(90)]
    assert len(set(colours)) == 90


def test_a_display_that_breaks_is_dropped_and_the_others_go_on():
    from pidetect.outputs.display_sink import DisplaySink

    class Screen:
        def __init__(self, name, broken=False):
            self.name, self.broken, self.shown, self.closed = name, broken, 0, False

        def show(self, result, fps=None):
            if self.broken:
                raise OSError("device vanished")
            self.shown += 1

        def close(self):
            self.closed = True

    broken, good = Screen("fb", broken=True), Screen("mjpeg")
    records = []
    sink = DisplaySink([broken, good], lambda record, priority: records.append((record, priority)))
    image = np.full((120, 160, 3), 114, np.uint8)
    for seq in range(3):
        sink.handle(Result(Frame(image, seq + 1, time.time()), (), 5.0))
        deadline = time.monotonic() + 5
        while sink.shown <= seq and time.monotonic() < deadline:
            time.sleep(0.01)
    sink.close()
    assert good.shown == 3 and broken.closed and sink.displays == [good]
    assert [(r["message"], p) for r, p in records] == [
        ("display fb failed and was disabled: OSError: device vanished", 3)]


def test_layout_maps_boxes_into_the_letterboxed_frame():
    """The framebuffer draws at screen size: a 640x480 frame sits at x=240, scale 2.25, on 1920x1080."""
    from pidetect.outputs.letterbox import letterbox

    frame = np.full((480, 640, 3), 114, np.uint8)
    canvas, rect = letterbox(frame, 1920, 1080)
    assert rect == (240, 0, 1440, 1080)
    cat = Detection("cat", 16, 0.8, (100, 200, 300, 400))
    overlay = Overlay(show_timestamp=False)
    overlay.render(overlay.layout(result_for(frame, [cat]), None, (1920, 1080), rect), canvas)
    left, middle = 240 + round(100 * 2.25), round(300 * 2.25)
    assert tuple(canvas[middle, left]) == class_colour(16)  # the box edge, in screen pixels
    assert tuple(canvas[middle, left + 20]) == (114, 114, 114)  # inside the box: the frame itself
    assert tuple(canvas[middle, 100]) == (0, 0, 0)  # the letterbox bar is left alone
    assert (frame == 114).all(), "the detector's frame must not be drawn on"


def test_display_thread_runs_at_its_nice_value_and_keeps_no_result_while_busy():
    """The screen must neither slow detection (lower priority) nor hold frames it has no time to draw."""
    import gc
    import threading
    import weakref

    from pidetect.outputs.display_sink import DisplaySink

    release = threading.Event()

    class SlowScreen:
        name = "fb"

        def __init__(self):
            self.shown = []

        def show(self, result, fps=None):
            self.shown.append(result.frame.seq)
            release.wait(5)

        def close(self):
            pass

    screen = SlowScreen()
    sink = DisplaySink([screen], lambda record, priority: None, nice=7)
    image = np.zeros((48, 64, 3), np.uint8)
    sink.handle(result_for(image, []))
    deadline = time.monotonic() + 5
    while not screen.shown and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(f"/proc/self/task/{sink.thread.native_id}/stat") as stat:
        nice = int(stat.read().rsplit(")", 1)[1].split()[16])  # field 19 of proc_pid_stat(5)
    assert nice == 7
    late = [Result(Frame(image, seq, time.time()), (), 5.0) for seq in (2, 3, 4)]
    refs = [weakref.ref(r) for r in late]
    for result in late:
        sink.handle(result)
    del late, result
    gc.collect()
    assert sink.skipped == 3 and all(ref() is None for ref in refs), "results that came while drawing were kept"
    release.set()
    deadline = time.monotonic() + 5
    while sink._drawing and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.handle(result_for(image, []))  # the next result after the screen is free is drawn
    while len(screen.shown) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.close()
    assert screen.shown == [1, 1]


def test_snapshots_are_drawn_on_the_display_thread_when_there_is_one(tmp_path):
    """One thread draws all text (OpenCV 5 keeps a text renderer per drawing thread, 5.8 MB each): the
    snapshot's picture is drawn by the display thread, its file written by the caller; a job that raises
    raises in the caller; after close the caller draws itself."""
    import threading

    from pidetect.outputs.display_sink import DisplaySink
    from pidetect.outputs.snapshots import Snapshots

    class Screen:
        name = "fb"

        def show(self, result, fps=None):
            pass

        def close(self):
            pass

    sink = DisplaySink([Screen()], lambda record, priority: None, nice=0)
    snapshots = Snapshots(tmp_path, 10, 10, draw_on=sink.draw_here)
    drawn_by = []
    original = snapshots.overlay.draw
    snapshots.overlay.draw = lambda result: (drawn_by.append(threading.current_thread().name), original(result))[1]
    image = np.zeros((48, 64, 3), np.uint8)
    result = result_for(image, [])
    track = types.SimpleNamespace(label="cat", track_id=3)
    path = snapshots.save(result, track)
    assert drawn_by == ["pidetect-display"] and Path(path).is_file()
    assert cv2.imread(path).shape == image.shape
    with pytest.raises(ZeroDivisionError):
        sink.draw_here(lambda: 1 / 0)
    sink.close()
    assert snapshots.save(result_for(image, []), types.SimpleNamespace(label="dog", track_id=4))
    assert drawn_by == ["pidetect-display", threading.current_thread().name]


def test_the_regions_the_model_looked_at_are_drawn_when_present():
    from pidetect.outputs.overlay import REGION_COLOUR

    image = np.full((480, 640, 3), 114, np.uint8)
    looked = Result(Frame(image, 1, 0.0), (), 1.0, regions=((100, 50, 400, 350),))
    out = Overlay().draw(looked, fps=None)
    assert tuple(out[200, 100]) == REGION_COLOUR and tuple(out[50, 250]) == REGION_COLOUR  # its left and top edges
    plain = Overlay().draw(Result(Frame(image, 1, 0.0), (), 1.0), fps=None)
    assert not (plain == np.array(REGION_COLOUR, np.uint8)).all(axis=2).any()
