"""Zones, object filters, masks and the median-score threshold, on synthetic boxes: the pure tracking stage.

The geometry is checked against OpenCV's pointPolygonTest on random star-shaped (hence simple)
polygons; zone entry and exit against the frame at which the bottom centre crosses the edge.
"""

import math
import time
from pathlib import Path

import numpy as np
import pytest

from hypothesis import given, settings, strategies as st

from pidetect.config import build_config
from pidetect.config_tables import FilterSpec, ZoneSpec
from pidetect.errors import ConfigError
from pidetect.frames import Detection, Frame, Result
from pidetect.geometry import Polygon, bottom_centre, contains, polygon_problem
from pidetect.tracking.filters import ObjectFilters
from pidetect.tracking.stage import TrackingStage
from pidetect.tracking.tracker import Tracker, TrackerSettings
from pidetect.tracking.zones import Zones

W, H = 640, 480
IMAGE = np.zeros((H, W, 3), np.uint8)


def frame(seq, clock=None, image=IMAGE):
    return Frame(image, seq, 1000.0 + seq, "test", clock=seq / 10 if clock is None else clock)


def result(seq, *detections, clock=None, image=IMAGE):
    return Result(frame(seq, clock, image), tuple(detections), 1.0)


def person(box, score=0.9, label="person"):
    return Detection(label, {"person": 0, "car": 2, "cat": 16}.get(label, 5), score, box)


def standing_at(x, y, label="person", score=0.9, w=40, h=100):
    """A box whose bottom centre is (x, y)."""
    return person((x - w // 2, y - h, x + w // 2, y), score, label)


def kinds(events):
    return [(e.kind, e.state, e.zone or e.label) for e in events]


# --- geometry ------------------------------------------------------------------------------------------------
SQUARE = ((100.0, 100.0), (200.0, 100.0), (200.0, 200.0), (100.0, 200.0))
U_SHAPE = ((0.0, 0.0), (30.0, 0.0), (30.0, 100.0), (70.0, 100.0), (70.0, 0.0), (100.0, 0.0), (100.0, 130.0),
           (0.0, 130.0))  # concave: the notch (30..70, 0..100) is outside


@pytest.mark.parametrize("x, y, inside", [
    (150, 150, True), (100, 150, True), (200, 150, True), (150, 100, True), (150, 200, True),  # edges count
    (100, 100, True), (200, 200, True),  # corners
    (99.9, 150, False), (200.1, 150, False), (150, 99.9, False), (150, 200.1, False), (0, 0, False)])
def test_inside_a_square_edges_and_corners_count(x, y, inside):
    assert contains(SQUARE, x, y) is inside


@pytest.mark.parametrize("x, y, inside", [
    (15, 50, True), (85, 50, True), (50, 50, False), (50, 99, False), (50, 100, True), (50, 115, True),
    (30, 50, True), (70, 50, True), (50, 131, False)])
def test_inside_a_concave_polygon(x, y, inside):
    assert contains(U_SHAPE, x, y) is inside


star = st.integers(3, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n),
    st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None)
@given(star, st.floats(-10, 310), st.floats(-10, 310))
def test_inside_agrees_with_opencv_on_random_simple_polygons(shape, x, y):
    import cv2

    radii, jitter = shape
    n = len(radii)
    angles = [2 * math.pi * (i + 0.8 * j) / n for i, j in enumerate(jitter)]  # increasing: a star polygon is simple
    points = [(150 + 150 * r * math.cos(a), 150 + 150 * r * math.sin(a)) for r, a in zip(radii, angles)]
    reference = cv2.pointPolygonTest(np.array(points, np.float32), (x, y), True)
    if abs(reference) < 1e-3:
        return  # on the outline within float error: either answer is right
    assert contains(points, x, y) is (reference > 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=3, max_size=7), min_size=1,
                max_size=4),
       st.lists(st.tuples(st.integers(-2, 22), st.integers(-2, 22)), min_size=1, max_size=30))
def test_the_vectorised_inside_test_agrees_with_contains(polygons, points):
    # integer corners and integer points: many points lie exactly on edges and corners, where rules differ most
    from pidetect.geometry import PolygonSet

    tester = PolygonSet([[tuple(map(float, p)) for p in polygon] for polygon in polygons])
    got = tester.inside([p[0] for p in points], [p[1] for p in points])
    for row, (x, y) in enumerate(points):
        for column, polygon in enumerate(polygons):
            assert bool(got[row, column]) is contains([tuple(map(float, p)) for p in polygon], x, y), (polygon, x, y)


@pytest.mark.parametrize("points, problem", [
    ([[0, 0], [1, 1]], "at least 3 points"),
    ([[0, 0], [1, 1], [1, 0], [0, 1]], "cross"),  # a bow tie
    ([[0, 0], [0.5, 0], [1, 0]], "one line"),
    ([[0, 0], [0, 0], [1, 0], [1, 1]], "repeats"),
    ([[0, 0], [1, 0], [-0.1, 1]], "out of range"),
    ([[0, 0], [1, 0], [float("nan"), 1]], "out of range"),
    ([[0, 0], [1, 0], [1]], "two numbers"),
    ([[0, 0], [1, 0], ["a", 1]], "two numbers"),
    ([[0, 0], [4, 0], [4, 4], [2, 1], [0, 4], [3, 2]], "cross"),
])
def test_unusable_polygons_say_why(points, problem):
    assert problem in polygon_problem(points)


def test_usable_polygons_have_no_problem():
    assert polygon_problem([list(p) for p in U_SHAPE]) is None
    assert polygon_problem([[0.1, 0.55], [0.62, 0.5], [0.7, 1.0], [0.05, 1.0]]) is None


def test_fractions_follow_the_frame_size_and_pixels_stay():
    relative = Polygon(((0.25, 0.5), (0.75, 0.5), (0.75, 1.0)))
    assert relative.relative and relative.to_pixels(640, 480) == ((160, 240), (480, 240), (480, 480))
    assert relative.to_pixels(1920, 1080) == ((480, 540), (1440, 540), (1440, 1080))
    pixels = Polygon(((10.0, 10.0), (300.0, 10.0), (300.0, 1.0)))  # one value above 1: all pixels
    assert not pixels.relative and pixels.to_pixels(1920, 1080) == pixels.points


def test_bottom_centre_is_where_an_object_stands():
    assert bottom_centre((10, 20, 30, 120)) == (20.0, 120.0)


# --- filters and masks ---------------------------------------------------------------------------------------
def test_min_and_max_area_as_fractions_of_the_frame_or_pixels():
    frame_area = W * H  # 307200
    small, large = person((0, 0, 50, 60)), person((0, 0, 400, 400))  # 3000 px, 160000 px
    by_fraction = ObjectFilters([FilterSpec("person", min_area=0.01, max_area=0.5)])  # 3072 .. 153600 px
    assert not by_fraction.passes(small, W, H) and not by_fraction.passes(large, W, H)
    assert by_fraction.passes(person((0, 0, 100, 100)), W, H)
    by_pixels = ObjectFilters([FilterSpec("person", min_area=2999, max_area=160000)])
    assert by_pixels.passes(small, W, H) and by_pixels.passes(large, W, H)
    assert frame_area == 307200
    # the same fraction on a bigger frame is more pixels: measured in the frame's own pixels
    assert not ObjectFilters([FilterSpec("person", min_area=0.002)]).passes(person((0, 0, 50, 60)), 1920, 1080)
    assert ObjectFilters([FilterSpec("person", min_area=0.002)]).passes(person((0, 0, 50, 60)), 640, 480)


def test_ratio_and_min_score_and_other_labels_untouched():
    filters = ObjectFilters([FilterSpec("person", min_ratio=0.2, max_ratio=1.0, min_score=0.6)])
    assert filters.passes(person((0, 0, 50, 100), 0.7), W, H)
    assert not filters.passes(person((0, 0, 150, 100), 0.7), W, H)  # wider than tall
    assert not filters.passes(person((0, 0, 10, 100), 0.7), W, H)  # a pole
    assert not filters.passes(person((0, 0, 50, 100), 0.59), W, H)
    assert filters.passes(person((0, 0, 150, 100), 0.3, label="car"), W, H)  # no filter for cars


def test_object_mask_drops_what_stands_inside_it():
    mask = Polygon(((0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.5)))  # top-right quarter
    filters = ObjectFilters(object_mask=[mask])
    assert not filters.passes(standing_at(400, 200), W, H)  # bottom centre (400, 200) inside
    assert filters.passes(standing_at(400, 300), W, H)  # its top is in the mask, its feet are not
    assert filters.passes(standing_at(100, 200), W, H)
    kept = filters.keep([standing_at(400, 200), standing_at(100, 200)], W, H)
    assert [bottom_centre(d.box) for d in kept] == [(100.0, 200.0)]


# --- the tracker's median score --------------------------------------------------------------------------
LOOK = 0.1  # seconds between looks in these tests: 10 looks a second


def looks_tracker(enter=2, leave=5, threshold=lambda label: 0.0, iou=0.3):
    """A tracker whose lifetimes are `enter` and `leave` looks at 10 looks a second."""
    return Tracker(TrackerSettings(iou, (enter - 1) * LOOK, leave * LOOK), threshold=threshold)


def looked(tracker, detections, seq):
    return list(tracker.update(detections, seq * LOOK, seq).events)


def test_threshold_keeps_a_flickering_low_score_object_from_becoming_an_event():
    tracker = looks_tracker(2, 5, threshold=lambda label: 0.6 if label == "person" else 0.0)
    events = []
    for seq in range(1, 40):
        seen = seq % 3 != 0  # two looks on, one off, at 0.58
        events += looked(tracker, [person((10, 10, 60, 90), 0.58)] if seen else [], seq)
    assert not events
    # the same object at 0.7 becomes an event, as soon as two looks are in and the median is above 0.6
    tracker = looks_tracker(2, 5, threshold=lambda label: 0.6)
    entered = [seq for seq in range(1, 10) for e in looked(tracker, [person((10, 10, 60, 90), 0.7)], seq)
               if e.state == "entered"]
    assert entered == [2]


def test_threshold_counts_misses_as_zero():
    tracker = looks_tracker(2, 20, threshold=lambda label: 0.6)
    # seen at 0.9 one look in three: at its second hit the median of [0.9, 0, 0, 0.9] is 0.45, later 0
    events = [e for seq in range(1, 31) for e in looked(tracker, [person((10, 10, 60, 90), 0.9)]
                                                        if seq % 3 == 1 else [], seq)]
    assert not events, [e.state for e in events]
    # seen in 9 looks of 10 at 0.7: the median stays 0.7
    tracker = looks_tracker(2, 20, threshold=lambda label: 0.6)
    events = [e for seq in range(1, 11) for e in looked(tracker, [person((10, 10, 60, 90), 0.7)]
                                                        if seq != 3 else [], seq)]
    assert [e.state for e in events] == ["entered"]


def test_without_a_threshold_a_candidate_still_needs_consecutive_looks():
    tracker = looks_tracker(2, 5)
    events = [e for seq in range(1, 30) for e in looked(tracker, [person((10, 10, 60, 90))] if seq % 2 else [], seq)]
    assert not events


# --- zones ---------------------------------------------------------------------------------------------------
PORCH = ZoneSpec("porch", Polygon(((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0))), ("person",), inertia=3)


def walk(stage, xs, y=400, label="person", start=1, clock_step=0.1, w=40):
    """One detection per frame with its bottom centre at (x, y) (none for None); returns {seq: Result}."""
    out = {}
    for offset, x in enumerate(xs):
        seq = start + offset
        done = stage.update(result(seq, standing_at(x, y, label, w=w), clock=seq * clock_step)
                            if x is not None else result(seq, clock=seq * clock_step))
        out[seq] = done
    return out


def make_stage(*zones, enter=2, leave=3, filters=None):
    return TrackingStage(looks_tracker(enter, leave), filters, Zones(zones))


def first(results, kind, state, zone=""):
    for seq, done in results.items():
        for event in done.events:
            if event.kind == kind and event.state == state and (not zone or event.zone == zone):
                return seq
    return None


def test_zone_entry_and_exit_follow_the_edge_crossing_by_inertia_looks():
    stage = make_stage(PORCH)
    xs = list(range(200, 500, 10)) + list(range(500, 190, -10))  # the edge is x = 320
    results = walk(stage, xs)
    crossing_in = 1 + xs.index(320)  # the first look on the edge (it counts as inside)
    crossing_out = 1 + len(xs) - 1 - xs[::-1].index(320) + 1  # the first look outside after
    assert first(results, "zone", "entered", "porch") == crossing_in + PORCH.inertia - 1
    assert first(results, "zone", "left", "porch") == crossing_out + PORCH.inertia - 1
    zone_events = [e for done in results.values() for e in done.events if e.kind == "zone"]
    assert [(e.state, e.track_id) for e in zone_events] == [("entered", 1), ("left", 1)]


def test_zone_edge_jitter_does_not_flap():
    stage = make_stage(PORCH)
    xs = [330] * 5 + [315, 325] * 10  # in, then one look out and one in, alternating
    results = walk(stage, xs, start=1)
    zone_events = [e for done in results.values() for e in done.events if e.kind == "zone"]
    assert [e.state for e in zone_events] == ["entered"]


def test_only_the_zones_objects_count_and_detections_list_their_zones():
    everything = ZoneSpec("yard", Polygon(((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0))), (), inertia=1)
    stage = make_stage(PORCH, everything, enter=1)
    done = stage.update(result(1, standing_at(400, 400, "car"), standing_at(100, 400, "car"),
                               standing_at(420, 300, "person")))
    assert kinds(done.events) == [("detection", "entered", "car"), ("detection", "entered", "car"),
                                  ("detection", "entered", "person"), ("zone", "entered", "yard")]
    entered = {e.box: e.zones for e in done.events if e.kind == "detection"}
    assert entered[standing_at(100, 400).box] == ("yard",)  # inertia 1: in the yard from its first look
    assert entered[standing_at(400, 400).box] == ()  # a car on the porch: the porch counts only people


def test_loiter_seconds_use_the_frames_clock():
    loiter = ZoneSpec("door", PORCH.polygon, (), inertia=1, loiter_seconds=2.0)
    stage = make_stage(loiter, enter=1)
    results = walk(stage, [400] * 40, clock_step=0.1)  # 10 looks a second
    assert first(results, "zone", "entered", "door") == 1 + 20  # 2 s after its first look inside
    # a step out before the time is up starts the clock over
    stage = make_stage(loiter, enter=1)
    results = walk(stage, [400] * 15 + [300] + [400] * 30, clock_step=0.1, w=200)  # one look outside
    assert [t.track_id for t in stage.tracker.tracks] == [1]  # the same object all along
    assert first(results, "zone", "entered", "door") == 17 + 20


def test_an_object_that_leaves_the_picture_leaves_its_zones_first():
    stage = make_stage(PORCH, leave=2)
    results = walk(stage, [400] * 5 + [None] * 3)
    gone = [kinds(done.events) for done in results.values() if done.events][-1]
    assert gone == [("zone", "left", "porch"), ("detection", "left", "person")]
    left = [e for done in results.values() for e in done.events if e.kind == "detection" and e.state == "left"]
    assert left[0].zones == ("porch",)  # the zones it was in when it left


def test_flush_lets_every_object_leave_its_zones():
    stage = make_stage(PORCH)
    walk(stage, [400] * 5)
    assert kinds(stage.flush(6)) == [("zone", "left", "porch"), ("detection", "left", "person")]
    assert stage.zones.areas(W, H)[0].occupied == 0
    assert not stage.flush(7)


def test_a_candidate_in_a_zone_counts_from_the_frame_it_enters():
    stage = make_stage(ZoneSpec("porch", PORCH.polygon, (), inertia=2), enter=4)
    results = walk(stage, [400] * 6)
    assert kinds(results[4].events) == [("detection", "entered", "person"), ("zone", "entered", "porch")]
    assert [e.zones for e in results[4].events if e.kind == "detection"] == [("porch",)]


def test_areas_report_occupancy_for_the_overlay():
    stage = make_stage(PORCH, enter=1)
    results = walk(stage, [400] * 4)
    areas = results[4].areas
    assert [(a.kind, a.name, a.occupied) for a in areas] == [("zone", "porch", 1)]
    assert areas[0].polygon == ((320, 240), (640, 240), (640, 480), (320, 480))


def test_a_frame_size_change_moves_fractional_zones_and_keeps_pixel_ones():
    pixels = ZoneSpec("box", Polygon(((300.0, 200.0), (500.0, 200.0), (500.0, 400.0), (300.0, 400.0))), (), 1)
    porch = ZoneSpec("porch", PORCH.polygon, (), inertia=1)
    stage = make_stage(porch, pixels, enter=1)
    small = stage.update(result(1, standing_at(450, 350)))
    assert [e.zone for e in small.events if e.kind == "zone"] == ["porch", "box"]
    big = np.zeros((960, 1280, 3), np.uint8)
    # on a 1280x960 frame the porch starts at x = 640: (450, 350) is in the pixel zone only
    stage = make_stage(porch, pixels, enter=1)
    done = stage.update(result(1, standing_at(450, 350), image=big))
    assert [e.zone for e in done.events if e.kind == "zone"] == ["box"]
    assert done.areas[0].polygon == ((640, 480), (1280, 480), (1280, 960), (640, 960))


def test_filters_apply_before_tracking_and_the_stage_passes_only_what_was_kept():
    filters = ObjectFilters([FilterSpec("person", min_area=0.02)], [Polygon(((0.0, 0.0), (0.2, 0.0), (0.2, 0.2)))])
    stage = make_stage(filters=filters, enter=1)
    done = stage.update(result(1, person((10, 10, 40, 40)), person((300, 100, 400, 300)), person((5, 5, 200, 60))))
    assert [d.box for d in done.detections] == [(300, 100, 400, 300)]
    assert kinds(done.events) == [("detection", "entered", "person")]


def test_ten_zones_and_twenty_objects_are_cheap_enough_to_run_every_frame():
    # not a timing test (bench measures the cost): the work must be done and right with many zones and objects
    zones = [ZoneSpec(f"z{i}", Polygon(((i / 10, 0.0), ((i + 1) / 10, 0.0), ((i + 1) / 10, 1.0), (i / 10, 1.0))),
                      (), inertia=1) for i in range(10)]
    stage = make_stage(*zones, enter=1)
    detections = [standing_at(16 + 32 * i, 200 + 10 * (i % 5)) for i in range(20)]
    done = stage.update(result(1, *detections))
    zone_events = [e for e in done.events if e.kind == "zone"]
    assert len(zone_events) == 20 and sorted({e.zone for e in zone_events}) == sorted(z.name for z in zones)


# --- config ------------------------------------------------------------------------------------------------
def write(tmp_path, text):
    path = tmp_path / "pidetect.toml"
    path.write_text(text)
    return path


def test_the_issue_example_parses(tmp_path):
    path = write(tmp_path, '''threshold = 0.5
object_mask = [[[0.80, 0.10], [0.95, 0.10], [0.95, 0.35], [0.80, 0.35]]]
motion_mask = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [0.0, 0.2]]]
required_zones = ["porch"]

[zones.porch]
points = [[0.10, 0.55], [0.62, 0.50], [0.70, 1.0], [0.05, 1.0]]
objects = ["person"]
inertia = 3
loiter_seconds = 0

[filters.car]
min_area = 0.02
threshold = 0.6

[filters."traffic light"]
min_score = 0.7
''')
    config = build_config(path, {}, path_required=True)
    assert [z.name for z in config.zones] == ["porch"] and config.zones[0].objects == ("person",)
    assert config.zones[0].where == f"{path}:8"  # its objects line: where a label error points
    assert {f.label: (f.min_area, f.threshold, f.min_score) for f in config.filters} == {
        "car": (0.02, 0.6, 0.0), "traffic light": (0.0, 0.0, 0.7)}
    assert len(config.object_mask) == 1 and len(config.motion_mask) == 1 and config.required_zones == ("porch",)


@pytest.mark.parametrize("body, line, words", [
    ("[zones.a]\npoints = [[0, 0], [1, 1]]\n", 2, "at least 3 points"),
    ("[zones.a]\ninertia = 2\npoints = [[0, 0], [1, 1], [1, 0], [0, 1]]\n", 3, "self-crossing"),
    ("[zones.a]\npoints = [[0, 0], [2000000, 0], [0, 1]]\n", 2, "out of range"),
    ("[zones.a]\npoints = [[0, 0], [1, 0], [0, 1]]\nloiter = 3\n", 3, "unknown key 'loiter'"),
    ("[zones.a]\npoints = [[0, 0], [1, 0], [0, 1]]\ninertia = 0\n", 3, "inertia = 0: must be between 1"),
    ("[zones.a]\npoints = [[0, 0], [1, 0], [0, 1]]\nobjects = \"person\"\n", 3, "list of labels"),
    ("[zones.\"front door\"]\npoints = [[0, 0], [1, 0], [0, 1]]\n", 1, "letters, digits"),
    ("[zones.a]\ninertia = 3\n", 1, "has no points"),
    ("threshold = 0.5\n\n[filters.car]\nmin_area = 0.1\nmin_ares = 2\n", 5, "unknown key 'min_ares'"),
    ("[filters.car]\nmin_score = 1.5\n", 2, "between 0 and 1"),
    ("[filters.car]\nmin_area = 0.5\nmax_area = 0.1\n", 3, "below min_area"),
    ("[filters.car]\nthreshold = true\n", 2, "must be a number"),
    ("object_mask = [[[0, 0], [1, 0]]]\n", 1, "object_mask polygon 1: a polygon needs at least 3"),
    ("motion_mask = 3\n", 1, "list of polygons"),
    ("[zones.a]\npoints = [[0, 0], [1, 0], [0, 1]]\nmotion_mask = [[[0, 0], [1, 0], [0, 1]]]\n", 3,
     "move it above the first"),
    ("required_zones = [\"porch\"]\n", 1, "not configured"),
])
def test_every_bad_table_is_one_error_with_file_and_line(tmp_path, body, line, words):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        build_config(path, {}, path_required=True)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message, message


def test_tables_are_not_flags():
    from pidetect.errors import UsageError

    with pytest.raises(UsageError, match="config file only"):
        build_config(None, {"zones": "porch"})
    with pytest.raises(UsageError, match="not configured"):
        build_config(None, {"required_zones": "porch"})


def test_labels_in_zones_and_filters_must_be_the_models():
    from pidetect.config_tables import check_table_labels

    zone = ZoneSpec("porch", PORCH.polygon, ("persn",), where="/etc/pidetect/pidetect.toml:7")
    with pytest.raises(ConfigError, match=r"^/etc/pidetect/pidetect.toml:7: zones.porch objects: the model has no "
                                          r"label 'persn' \(did you mean person\?\)"):
        check_table_labels((zone,), (), ["person", "car"])
    spec = FilterSpec("cars", where="/etc/pidetect/pidetect.toml:12")
    with pytest.raises(ConfigError, match=r"^/etc/pidetect/pidetect.toml:12: \[filters.cars\].*did you mean car"):
        check_table_labels((), (spec,), ["person", "car"])
    check_table_labels((PORCH,), (FilterSpec("car"),), ["person", "car"])


def test_show_motion_puts_both_masks_on_the_overlay(tmp_path):
    from pidetect.daemon.service import make_tracking

    path = write(tmp_path, "object_mask = [[[0.5, 0.0], [1.0, 0.0], [1.0, 0.5]]]\n"
                           "motion_mask = [[[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]]\n")
    config = build_config(path, {"show_motion": True}, path_required=True)
    done = make_tracking(config).update(result(1))
    assert [(a.kind, a.polygon) for a in done.areas] == [("motion_mask", ((0.0, 0.0), (320.0, 0.0), (0.0, 240.0))),
                                                        ("object_mask", ((320.0, 0.0), (640.0, 0.0), (640.0, 240.0)))]
    hidden = build_config(path, {}, path_required=True)
    assert make_tracking(hidden).update(result(1)).areas == ()
