"""The sink that turns the tracking stage's events into records: `detection` and `zone` entered/left, the
per-frame record on request, and the snapshot of an object worth notifying about.

With `required_zones` a snapshot is taken when an object starts counting in one of those zones (the
`zone` record carries it), once per object; without, when it enters the picture (the `detection`
record carries it). Either way one snapshot per object, never one per frame.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Optional, Set

from ..frames import TrackEvent
from ..records import DEBUG, ERR, INFO, log_record


def event_record(event: TrackEvent, ts: float) -> dict:
    """The record of one event, as the journal, the JSON log and MQTT get it."""
    if event.kind == "zone":
        return {"event": "zone", "state": event.state, "zone": event.zone, "label": event.label,
                "class_id": event.class_id, "track_id": event.track_id, "score": round(event.score, 4),
                "box": list(event.box), "frame_seq": event.frame_seq, "ts": round(ts, 3)}
    record = {"event": "detection", "state": event.state, "label": event.label, "class_id": event.class_id,
              "score": round(event.score, 4), "box": list(event.box), "track_id": event.track_id,
              "zones": list(event.zones), "frame_seq": event.frame_seq, "ts": round(ts, 3)}
    if event.state == "left":
        record["top_score"] = round(event.top_score, 4)  # the event store keeps the best look
        record["stationary"] = event.stationary  # it had stood still (a parked car that drove off)
    return record


class EventLogSink:
    """Writes the records of every Result's events (and per-frame records with `per_frame`)."""

    name = "events"

    def __init__(self, emit: Callable, per_frame: bool = False, snapshots=None, required_zones: Iterable[str] = ()):
        self.emit, self.per_frame, self.snapshots = emit, per_frame, snapshots
        self.required_zones = frozenset(required_zones)
        self.last_seq = 0
        self.last_entered: Optional[str] = None  # "cat 0.91 at 12:01:02", for the systemd STATUS line
        self._snapshotted: Set[int] = set()  # track ids with their snapshot taken (required_zones)
        self._test_raise = bool(os.environ.get("PIDETECT_TEST_EVENTS_RAISE"))  # the tests' way to break this sink

    def handle(self, result) -> None:
        if self._test_raise:
            raise RuntimeError("injected by PIDETECT_TEST_EVENTS_RAISE")
        frame = result.frame
        self.last_seq = frame.seq
        if self.per_frame:
            self.emit({"event": "frame", "frame_seq": frame.seq, "inference_ms": round(result.inference_ms, 2),
                       "model_calls": result.model_calls,
                       "detections": [d.as_dict() for d in result.detections],
                       "continued": [d.as_dict() for d in result.weak], "ts": round(frame.ts, 3)}, DEBUG)
        for event in result.events:
            record = event_record(event, frame.ts)
            if event.kind == "detection" and event.state == "entered":
                self.last_entered = f"{event.label} {event.score:.2f} at " + \
                    time.strftime("%H:%M:%S", time.localtime(frame.ts))
            if self.snapshots is not None and self._wants_snapshot(event):
                record["snapshot"] = self._snapshot(result, event)
            self.emit(record, INFO)

    def _wants_snapshot(self, event: TrackEvent) -> bool:
        if event.state != "entered":
            if event.kind == "detection" and event.state == "left":
                self._snapshotted.discard(event.track_id)
            return False
        if not self.required_zones:
            return event.kind == "detection"
        if event.kind != "zone" or event.zone not in self.required_zones or event.track_id in self._snapshotted:
            return False
        self._snapshotted.add(event.track_id)
        return True

    def _snapshot(self, result, event: TrackEvent) -> Optional[str]:
        """A snapshot that cannot be made is said, and the event is logged without it: a broken snapshot
        must never cost the events that follow."""
        try:
            return self.snapshots.save(result, event)
        except Exception as exc:
            self.emit(log_record("error", "pidetect.snapshots", f"snapshot of {event.label} {event.track_id} "
                                 f"failed: {type(exc).__name__}: {exc}"), ERR)
            return None

    def write(self, events: Iterable[TrackEvent], ts: float) -> None:
        """Events without a frame: the stream broke (a SourceGap's), or the service stops (the flush)."""
        for event in events:
            if event.kind == "detection" and event.state == "left":
                self._snapshotted.discard(event.track_id)
            self.emit(event_record(event, ts), INFO)

    def source_gap(self, gap) -> None:
        """The camera was lost (or a looping file starts over): every object in view has left."""
        self.write(gap.events, gap.ts)

    def close(self) -> None:
        """Nothing held: the service writes the stage's final flush with write()."""
