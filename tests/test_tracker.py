"""The tracker on synthetic motion: identities through crossings and occlusions, duplicates, parked cars, and
the same events whatever the frame rate. Pure functions of detections and capture times: no model, no clock."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from pidetect.config import build_config, tracking_lifetimes, weak_floor
from pidetect.errors import ConfigError
from pidetect.frames import Detection
from pidetect.boxes import cover_matrix, iou_matrix
from pidetect.tracking.association import assign
from pidetect.tracking.kalman import BoxFilters
from pidetect.tracking.tracker import Tracker, TrackerSettings

Scene = Callable[[float], List[Tuple[str, Tuple[int, int, int, int], float]]]  # t -> (label, box, score)


def person_at(cx: float, cy: float, h: float = 100.0, label: str = "person", score: float = 0.9):
    w = h * 0.4
    return label, (int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)), score


def play(scene: Scene, fps: float, seconds: float, settings: TrackerSettings = TrackerSettings(),
         motion: Optional[Callable[[float], Sequence]] = None):
    """Run the tracker over the scene sampled at fps: (events as (time, state, label, id), ids by frame)."""
    tracker = Tracker(settings)
    events, ids = [], []
    frames = int(round(seconds * fps))
    for n in range(frames + 1):
        t = n / fps
        detections = [Detection(label, 0 if label == "person" else 2, score, box) for label, box, score in scene(t)
                      if score >= 0.5]
        weak = [Detection(label, 0 if label == "person" else 2, score, box) for label, box, score in scene(t)
                if 0.25 <= score < 0.5]
        step = tracker.update(detections, t, n + 1, weak=weak, motion=motion(t) if motion else None)
        events += [(t, e.state, e.track.label, e.track.track_id) for e in step.events]
        ids.append(step.detection_ids)
    events += [(frames / fps, e.state, e.track.label, e.track.track_id) for e in tracker.flush(frames + 2)]
    return events, ids


def entered(events) -> List[Tuple[str, int]]:
    return [(label, ident) for _t, state, label, ident in events if state == "entered"]


def crossing(t: float):
    """Two people walking towards each other along the same line, crossing at t = 2 s (1 height a second)."""
    return [person_at(100 + 100 * t, 300), person_at(500 - 100 * t, 300)]


# --- identities ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [5, 10, 30])
def test_two_people_crossing_keep_their_ids(fps):
    tracker = Tracker()
    sides: Dict[int, List[float]] = {}
    for n in range(int(4 * fps) + 1):
        t = n / fps
        dets = [Detection(label, 0, score, box) for label, box, score in crossing(t)]
        step = tracker.update(dets, t, n + 1)
        for det, ident in zip(dets, step.detection_ids):
            if ident:
                sides.setdefault(ident, []).append(det.box[0] + det.box[2])
    assert len(sides) == 2, sides
    directions = sorted(np.sign(np.diff(xs)).mean() for xs in sides.values())
    assert directions[0] == -1 and directions[1] == 1  # one walks left, one right: neither took the other's path


def test_an_occlusion_of_two_seconds_keeps_the_id():
    def scene(t):
        return [] if 2.0 <= t < 4.0 else [person_at(100 + 40 * t, 300)]

    events, _ids = play(scene, 10, 8)
    assert [(s, l) for _t, s, l, _i in events] == [("entered", "person"), ("left", "person")]
    assert events[-1][0] == 8.0  # left at the end (flush), not during the occlusion


def test_a_person_behind_a_pillar_is_kept_by_weak_detections():
    """Half hidden, the model scores the person 0.3: below threshold, yet the object goes on."""
    def scene(t):
        label, box, _ = person_at(100 + 60 * t, 300)
        return [(label, box, 0.3 if 1.0 <= t < 6.0 else 0.9)]

    settings = TrackerSettings(max_disappeared=1.0)
    events, ids = play(scene, 10, 8, settings)
    assert len(entered(events)) == 1
    without_weak, _ = play(lambda t: [s for s in scene(t) if s[2] >= 0.5], 10, 8, settings)
    assert len(entered(without_weak)) == 2  # without the weak ones: it leaves, and enters again


def test_a_weak_detection_never_starts_an_object():
    events, _ = play(lambda t: [person_at(300, 300, score=0.3)], 10, 5)
    assert events == []


def test_a_duplicate_box_makes_no_second_object():
    def scene(t):
        label, (x1, y1, x2, y2), score = person_at(100 + 50 * t, 300)
        torso = (x1 + 2, y1 + 5, x2 - 2, y1 + 55)  # a second, smaller box on the same person
        return [(label, (x1, y1, x2, y2), score), (label, torso, 0.7)]

    events, _ = play(scene, 10, 5)
    assert len(entered(events)) == 1


def test_a_person_never_continues_a_car():
    def scene(t):
        if t < 2:
            return [person_at(300, 300, label="car")]
        return [person_at(300, 300, label="person")]

    events, _ = play(scene, 10, 4)
    assert sorted(label for label, _ in entered(events)) == ["car", "person"]
    assert len({ident for _l, ident in entered(events)}) == 2


def test_a_one_look_flicker_is_never_an_event():
    events, _ = play(lambda t: [person_at(300, 300)] if abs(t - 1.0) < 1e-9 else [], 10, 3)
    assert events == []


# --- stationary objects -------------------------------------------------------------------------------------
def parked_car(missing: Tuple[float, float], gone_at: float = 1e9):
    def scene(t):
        if missing[0] <= t < missing[1] or t >= gone_at:
            return []
        return [person_at(600, 120, h=60, label="car")]
    return scene


def test_a_parked_car_missed_for_20_seconds_stays_one_object():
    events, _ = play(parked_car((20.0, 40.0)), 5, 60)
    assert [(s, l) for _t, s, l, _i in events] == [("entered", "car"), ("stationary", "car"), ("left", "car")]
    assert events[-1][0] == 60.0


def test_a_parked_car_that_drives_away_leaves_when_motion_covers_its_place():
    box = person_at(600, 120, h=60, label="car")[1]
    events, _ = play(parked_car((1e9, 1e9), gone_at=30.0), 5, 60,
                     motion=lambda t: [box] if 30.0 <= t < 31.0 else [])
    left = [t for t, s, _l, _i in events if s == "left"]
    assert left and 32.7 <= left[0] <= 33.1  # motion where it stood: gone max_disappeared (3 s) after last seen


def test_without_motion_evidence_a_stationary_object_leaves_after_its_own_limit():
    settings = TrackerSettings(stationary_max_disappeared=20.0)
    events, _ = play(parked_car((1e9, 1e9), gone_at=30.0), 5, 80, settings, motion=lambda t: [])
    left = [t for t, s, _l, _i in events if s == "left"]
    assert left and abs(left[0] - 50.0) <= 0.21


def test_a_walking_person_is_never_stationary_and_a_standing_one_becomes_so():
    tracker = Tracker()
    for n in range(150):
        t = n / 10
        walker = person_at(50 + 30 * t, 300)
        stander = person_at(600, 300)
        tracker.update([Detection(l, 0, s, b) for l, b, s in (walker, stander)], t, n + 1)
    still = {t.box[0] > 550: t.stationary for t in tracker.tracks}
    assert still == {True: True, False: False}


# --- time, not frames -----------------------------------------------------------------------------------------
def visitors(t: float):
    """A person crossing from 1 s to 7 s, missed by the detector from 3 s to 4 s; a second from 11 s to 14 s."""
    seen = []
    if 1.0 <= t < 7.0 and not 3.0 <= t < 4.0:
        seen.append(person_at(60 + 80 * (t - 1), 300))
    if 11.0 <= t < 14.0:
        seen.append(person_at(700 - 80 * (t - 11), 200))
    return seen


def test_5_fps_and_30_fps_give_the_same_events():
    rates = {}
    for fps in (5, 10, 30):
        events, _ = play(visitors, fps, 20)
        rates[fps] = [(round(t, 1), s, l) for t, s, l, _i in events]
    states = {fps: [(s, l) for _t, s, l in events] for fps, events in rates.items()}
    assert states[5] == states[10] == states[30] == [("entered", "person"), ("left", "person"),
                                                    ("entered", "person"), ("left", "person")]
    for fps in (5, 30):  # the times agree within one frame of the slower rate
        assert all(abs(a[0] - b[0]) <= 0.21 for a, b in zip(rates[fps], rates[10])), (rates[fps], rates[10])


def test_an_object_leaves_after_max_disappeared_seconds():
    settings = TrackerSettings(max_disappeared=2.0)
    events, _ = play(lambda t: [person_at(300, 300)] if t < 5.0 else [], 10, 10, settings)
    left = [t for t, s, _l, _i in events if s == "left"]
    assert left and abs(left[0] - (4.9 + 2.0)) <= 0.11


def test_a_person_enters_after_enter_seconds():
    settings = TrackerSettings(enter_seconds=0.5)
    for fps in (5, 30):
        events, _ = play(lambda t: [person_at(300, 300)] if t >= 1.0 else [], fps, 4, settings)
        assert abs(events[0][0] - 1.5) <= 1 / fps + 1e-9, (fps, events[0])


# --- the parts -------------------------------------------------------------------------------------------------
def test_assignment_is_optimal_not_greedy():
    # greedy would take the 0.9 pair first and leave row 1 with nothing under the limit
    cost = np.array([[0.1, 0.2], [0.15, 0.9]])
    assert sorted(assign(cost, 0.5)) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 3)), 0.5) == []
    assert assign(np.array([[0.7]]), 0.5) == []  # at or over the limit: never matched


def test_iou_and_cover_matrices():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [2, 2, 4, 4]])
    assert np.allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 4 / 100]])
    assert np.allclose(cover_matrix(b, a)[:, 0], [1.0, 0.5, 0.0, 1.0])


def test_the_kalman_filter_learns_a_velocity_and_predicts_by_seconds():
    filters = BoxFilters()
    filters.add((0, 0, 40, 100))
    for n in range(1, 20):  # 100 px a second to the right, 10 looks a second
        filters.predict(np.array([0.1]))
        filters.update([0], [(10 * n, 0, 10 * n + 40, 100)])
    filters.predict(np.array([1.0]))  # one second later, unseen
    x1 = filters.boxes()[0, 0]
    assert abs(x1 - 290) < 10, x1


# --- config -------------------------------------------------------------------------------------------------------
def test_old_frame_keys_are_read_as_seconds_with_a_warning(tmp_path):
    path = tmp_path / "pidetect.toml"
    path.write_text("enter_frames = 3\nleave_frames = 15\n")
    config = build_config(path, {})
    enter, gone, warnings = tracking_lifetimes(config)
    assert (enter, gone) == (0.4, 3.0)
    assert len(warnings) == 2 and "enter_seconds = 0.4" in warnings[0] and "max_disappeared = 3" in warnings[1]
    assert tracking_lifetimes(build_config(None, {}))[2] == []  # new keys: nothing to say


def test_tracking_keys_are_checked(tmp_path):
    path = tmp_path / "pidetect.toml"
    path.write_text("max_disappeared = 0\n")
    with pytest.raises(ConfigError, match="max_disappeared = 0.0: must be more than 0"):
        build_config(path, {})
    path.write_text("threshold = 0.4\nweak_threshold = 0.5\n")
    with pytest.raises(ConfigError, match="weak_threshold = 0.5: must be at most threshold"):
        build_config(path, {})
    assert weak_floor(build_config(None, {"threshold": "0.6"})) == 0.3


def test_the_daemon_logs_the_old_key_warning_once(tmp_path, caplog):
    from pidetect.daemon.service import make_tracking

    path = tmp_path / "pidetect.toml"
    path.write_text("leave_frames = 10\n")
    with caplog.at_level("WARNING"):
        stage = make_tracking(build_config(path, {}), warn=True)
    assert stage.tracker.settings.max_disappeared == 2.0
    assert [r.getMessage() for r in caplog.records if "leave_frames" in r.getMessage()] == [
        "leave_frames = 10 counts frames, which run at different rates on different machines: read as "
        "max_disappeared = 2; write max_disappeared instead"]


def test_a_stationary_object_is_said_once_and_kept_in_the_store(tmp_path):
    """'stationary' reaches the records, the event store (the review page's field) and keeps the event open."""
    from pidetect.daemon.events import event_record
    from pidetect.frames import Frame, Result
    from pidetect.store.events import EventStore
    from pidetect.store.sink import StoreSink
    from pidetect.tracking.stage import TrackingStage

    stage = TrackingStage(Tracker())
    image = np.zeros((480, 640, 3), np.uint8)
    records = []
    for n in range(150):
        det = Detection("car", 2, 0.9, person_at(300, 200, h=60, label="car")[1])
        done = stage.update(Result(Frame(image, n + 1, 1000.0 + n, clock=n / 10), (det,), 1.0))
        records += [event_record(e, 1000.0 + n / 10) for e in done.events]
        if n == 149:
            assert done.detections[0].stationary and done.detections[0].track_id == 1
    assert [r["state"] for r in records] == ["entered", "stationary"]
    # entered after enter_seconds (0.5 s), stationary stationary_after (10 s) after it was first seen
    assert abs(records[1]["ts"] - records[0]["ts"] - 9.5) <= 0.11
    store = EventStore(tmp_path / "events.db")
    sink = StoreSink(store, lambda *args: None, None, 0.0)
    for record in records:
        sink._apply(record)
    [stored] = store.list()
    assert stored.stationary and stored.end is None  # stationary: still open, not closed as if it had left
    assert stored.as_dict()["stationary"] is True
    sink.close()


def test_a_version_1_event_store_gets_the_stationary_column_and_keeps_its_events(tmp_path):
    import sqlite3

    from pidetect.store.events import APPLICATION_ID, EventStore

    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.executescript(f"""PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL, class_id INTEGER NOT NULL,
        track_id INTEGER NOT NULL, start REAL NOT NULL, end REAL, score REAL NOT NULL,
        zones TEXT NOT NULL DEFAULT '[]', snapshot TEXT, clip TEXT);
        INSERT INTO events (label, class_id, track_id, start, end, score) VALUES ('car', 2, 7, 1.0, 2.0, 0.8);""")
    db.commit()
    db.close()
    [old] = EventStore(path).list()
    assert (old.label, old.track_id, old.stationary) == ("car", 7, False)


def test_a_person_walking_past_in_front_of_a_parked_car_does_not_make_it_leave():
    box = person_at(600, 120, h=60, label="car")[1]
    x1, y1, x2, y2 = box
    passer_by = (x1 - 10, y1 + 10, x1 + (x2 - x1) // 4, y2 + 40)  # motion over a quarter of the car's box

    events, _ = play(parked_car((20.0, 40.0)), 5, 60, motion=lambda t: [passer_by] if 20.0 <= t < 40.0 else [])
    assert [(s, l) for _t, s, l, _i in events] == [("entered", "car"), ("stationary", "car"), ("left", "car")]
    assert events[-1][0] == 60.0
