"""The tracking stage: filters and masks -> tracker -> zones, once per inferred frame, in capture order.

    Result (the model's detections, confident and weak) --ObjectFilters--> kept detections --Tracker--> tracks
        --Zones--> TrackEvents (detection entered/left, zone entered/left) + every zone's occupancy

It returns the Result with the kept detections (each with the object it was given to), the weak detections
that continued an object, the frame's events and the zones' states, so every
sink downstream (the event log, snapshots, MQTT, the overlay) sees the same answer and none of them
reaches back into the tracker. Pure: no threads, no I/O, no clock of its own (loiter uses the frame's).

Event order within a frame: objects that entered (each with the zones it already counts in), then
zone entries and exits of objects in view, then for each object that left: its zone exits, then its
'left'. So a feed of one zone always sees 'entered' before 'left', and a 'left' object is in no zone.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from ..frames import Area, Detection, Result, TrackEvent
from ..geometry import Polygon
from ..slots import FollowedBoxes, InView
from .filters import ObjectFilters
from .tracker import Track, Tracker
from .zones import ZoneChange, Zones


def object_event(state: str, track: Track, frame_seq: int, zones: Tuple[str, ...]) -> TrackEvent:
    return TrackEvent("detection", state, track.track_id, track.label, track.class_id, track.score, track.box,
                      frame_seq, zones=zones, top_score=track.top_score, stationary=track.stationary)


def with_ids(detections: Sequence[Detection], ids: Sequence[int], tracks: Dict[int, Track]) -> Tuple[Detection, ...]:
    """The detections with the object each was given to (and whether it stands still)."""
    return tuple(dataclasses.replace(d, track_id=i, stationary=tracks[i].stationary) if i in tracks else d
                 for d, i in zip(detections, ids))


def zone_event(change: ZoneChange, frame_seq: int) -> TrackEvent:
    track = change.track
    return TrackEvent("zone", change.state, track.track_id, track.label, track.class_id, track.score, track.box,
                      frame_seq, zone=change.zone)


class TrackingStage:
    def __init__(self, tracker: Tracker, filters: Optional[ObjectFilters] = None, zones: Optional[Zones] = None,
                 in_view: Optional[InView] = None, drawn_masks: Sequence[Tuple[str, Polygon]] = (),
                 followed: Optional[FollowedBoxes] = None):
        self.tracker = tracker
        self.filters = filters or ObjectFilters()
        self.zones = zones or Zones()
        self.in_view = in_view  # tells the motion gate whether anything is being followed
        self.followed = followed  # tells the inference workers where the followed objects are (regions)
        self.drawn_masks = tuple(drawn_masks)  # (kind, polygon) the overlay shows (show_motion)
        self._size = (0, 0)
        self._masks: Tuple[Area, ...] = ()

    def update(self, result: Result) -> Result:
        frame = result.frame
        height, width = frame.image.shape[:2]
        detections = self.filters.keep(result.detections, width, height) if self.filters else result.detections
        weak = self.filters.keep(result.weak, width, height) if self.filters and result.weak else result.weak
        step = self.tracker.update(detections, frame.clock, frame.seq, weak=weak, motion=frame.moving)
        tracked = step.events
        known = {t.track_id: t for t in self.tracker.tracks}
        known.update({event.track.track_id: event.track for event in tracked})  # those that left in this look
        detections = with_ids(detections, step.detection_ids, known)
        weak = tuple(d for d in with_ids(weak, step.weak_ids, known) if d.track_id)
        events: List[TrackEvent] = []
        if self.zones:
            leaving = [left for event in tracked if event.state == "left" for left in self._leave(event.track,
                                                                                                  frame.seq)]
            changes = self.zones.update(self.tracker.tracks, width, height, frame.clock)
            for event in tracked:
                if event.state in ("entered", "stationary"):
                    events.append(object_event(event.state, event.track, frame.seq,
                                               self.zones.counting_in(event.track)))
            events.extend(zone_event(change, frame.seq) for change in changes)
            events.extend(leaving)  # computed first: update() forgets the presences of tracks no longer followed
        else:
            events = [object_event(event.state, event.track, frame.seq, ()) for event in tracked]
        if self.in_view is not None:
            self.in_view.set(len(self.tracker.tracks))
        if self.followed is not None:
            self.followed.set(self.tracker.expected_boxes())
        areas = self.zones.areas(width, height) if self.zones else ()
        if self.drawn_masks:
            areas = self._mask_areas(width, height) + areas
        return dataclasses.replace(result, detections=detections, events=tuple(events), areas=areas, weak=weak)

    def _mask_areas(self, width: int, height: int) -> Tuple[Area, ...]:
        if self._size != (width, height) or not self._masks:
            self._size = (width, height)
            self._masks = tuple(Area(kind, kind.replace("_", " "), polygon.to_pixels(width, height))
                                for kind, polygon in self.drawn_masks)
        return self._masks

    def _leave(self, track: Track, frame_seq: int) -> List[TrackEvent]:
        zones = self.zones.counting_in(track)
        return [*(zone_event(change, frame_seq) for change in self.zones.leave(track)),
                object_event("left", track, frame_seq, zones)]

    def flush(self, frame_seq: int) -> Tuple[TrackEvent, ...]:
        """Every object in view has left (the camera was lost, a looping file starts over, shutdown)."""
        events: List[TrackEvent] = []
        for event in self.tracker.flush(frame_seq):
            events.extend(self._leave(event.track, frame_seq))
        self.zones.reset()
        if self.in_view is not None:
            self.in_view.set(0)
        if self.followed is not None:
            self.followed.set(())
        return tuple(events)
