"""Turns per-frame detections into 'entered' / 'left' events, so a person standing in view for a
minute is two records, not 1800.

A light tracker: detections are matched to tracks of the same label by box overlap (IoU, greedy,
best pair first). A track must be seen in `enter_frames` consecutive frames before it is
'entered' (one-frame flickers never reach the log), and is 'left' after `leave_frames` frames
without a match.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..frames import Box, Detection
from ..records import DEBUG, ERR, INFO, log_record


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    label: str
    class_id: int
    box: Box
    score: float
    hits: int = 1
    misses: int = 0
    entered: bool = False


@dataclass(frozen=True)
class Event:
    state: str  # "entered" | "left"
    track: Track
    frame_seq: int


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, enter_frames: int = 2, leave_frames: int = 5):
        self.iou_threshold, self.enter_frames, self.leave_frames = iou_threshold, enter_frames, leave_frames
        self.tracks: List[Track] = []
        self._ids = itertools.count(1)

    def update(self, detections: Sequence[Detection], frame_seq: int) -> List[Event]:
        events: List[Event] = []
        unmatched = list(range(len(detections)))
        matched_tracks = set()
        pairs: List[Tuple[float, int, int]] = []
        for t_index, track in enumerate(self.tracks):
            for d_index, det in enumerate(detections):
                if det.label == track.label:
                    overlap = iou(track.box, det.box)
                    if overlap >= self.iou_threshold:
                        pairs.append((overlap, t_index, d_index))
        for _overlap, t_index, d_index in sorted(pairs, reverse=True):
            if t_index in matched_tracks or d_index not in unmatched:
                continue
            matched_tracks.add(t_index)
            unmatched.remove(d_index)
            track, det = self.tracks[t_index], detections[d_index]
            track.box, track.score, track.hits, track.misses = det.box, det.score, track.hits + 1, 0
            if not track.entered and track.hits >= self.enter_frames:
                track.entered = True
                events.append(Event("entered", track, frame_seq))
        kept: List[Track] = []
        for t_index, track in enumerate(self.tracks):
            if t_index not in matched_tracks:
                track.misses += 1
                if not track.entered:
                    continue  # a candidate must be seen in consecutive frames
                if track.misses >= self.leave_frames:
                    events.append(Event("left", track, frame_seq))
                    continue
            kept.append(track)
        for d_index in unmatched:
            det = detections[d_index]
            track = Track(next(self._ids), det.label, det.class_id, det.box, det.score)
            if self.enter_frames <= 1:
                track.entered = True
                events.append(Event("entered", track, frame_seq))
            kept.append(track)
        self.tracks = kept
        return events

    def flush(self, frame_seq: int) -> List[Event]:
        """'left' for every object still in view (end of stream, shutdown)."""
        events = [Event("left", t, frame_seq) for t in self.tracks if t.entered]
        self.tracks = []
        return events

    def active(self) -> Dict[int, Track]:
        return {t.track_id: t for t in self.tracks if t.entered}


def event_record(event: Event, ts: float) -> dict:
    track = event.track
    return {"event": "detection", "state": event.state, "label": track.label, "class_id": track.class_id,
            "score": round(track.score, 4), "box": list(track.box), "track_id": track.track_id,
            "frame_seq": event.frame_seq, "ts": round(ts, 3)}


class EventLogSink:
    """The sink that writes detection records: entered/left events, and per-frame ones on request."""

    name = "events"

    def __init__(self, tracker: Tracker, emit, per_frame: bool = False, snapshots=None, in_view=None):
        self.tracker, self.emit, self.per_frame, self.snapshots = tracker, emit, per_frame, snapshots
        self.in_view = in_view  # tells the motion gate whether anything is being followed
        self.last_seq = 0
        self.last_entered: Optional[str] = None  # "cat 0.91 at 12:01:02", for the systemd STATUS line
        self._test_raise = bool(os.environ.get("PIDETECT_TEST_EVENTS_RAISE"))  # the tests' way to break this sink

    def handle(self, result) -> None:
        if self._test_raise:
            raise RuntimeError("injected by PIDETECT_TEST_EVENTS_RAISE")
        frame = result.frame
        self.last_seq = frame.seq
        if self.per_frame:
            self.emit({"event": "frame", "frame_seq": frame.seq, "inference_ms": round(result.inference_ms, 2),
                       "detections": [d.as_dict() for d in result.detections], "ts": round(frame.ts, 3)}, DEBUG)
        for event in self.tracker.update(result.detections, frame.seq):
            record = event_record(event, frame.ts)
            if event.state == "entered":
                self.last_entered = f"{event.track.label} {event.track.score:.2f} at " + \
                    time.strftime("%H:%M:%S", time.localtime(frame.ts))
                if self.snapshots is not None:
                    record["snapshot"] = self._snapshot(result, event.track)
            self.emit(record, INFO)
        if self.in_view is not None:
            self.in_view.set(len(self.tracker.tracks))

    def _snapshot(self, result, track) -> Optional[str]:
        """A snapshot that cannot be made is said, and the event is logged without it: a broken snapshot
        must never cost the events that follow."""
        try:
            return self.snapshots.save(result, track)
        except Exception as exc:
            self.emit(log_record("error", "pidetect.snapshots", f"snapshot of {track.label} {track.track_id} "
                                 f"failed: {type(exc).__name__}: {exc}"), ERR)
            return None

    def source_gap(self, gap) -> None:
        """The camera was lost (or a looping file starts over): every object in view has left."""
        for event in self.tracker.flush(gap.after_seq):
            self.emit(event_record(event, gap.ts), INFO)
        if self.in_view is not None:
            self.in_view.set(0)

    def close(self) -> None:
        for event in self.tracker.flush(self.last_seq):
            self.emit(event_record(event, time.time()), INFO)
