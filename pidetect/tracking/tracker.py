"""Turns per-frame detections into 'entered' / 'left' events, so a person standing in view for a
minute is two records, not 1800.

A light tracker: detections are matched to tracks of the same label by box overlap (IoU, greedy,
best pair first). A track must be seen in `enter_frames` consecutive frames before it is
'entered' (one-frame flickers never reach the log), and is 'left' after `leave_frames` frames
without a match.

A label with a `threshold` (`[filters.LABEL]`) asks more: the median of the track's last
SCORE_HISTORY looks, a miss counting as 0, must reach it before the track is 'entered'. Such a
candidate survives misses (up to `leave_frames`, like an entered track) so that a flicker's misses
pull its median down: an object seen at 0.55 in every other frame never becomes an event at 0.6,
one seen at 0.7 in nine frames of ten does.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Sequence, Tuple

from ..frames import Box, Detection


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


SCORE_HISTORY = 10  # looks a track's median score is taken over (Frigate's choice too)


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
    scores: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=SCORE_HISTORY))
    best: float = 0.0  # the best score of any look

    @property
    def top_score(self) -> float:
        return max(self.best, self.score)

    @property
    def seen(self) -> bool:
        """Matched in the latest frame (its box is fresh)."""
        return self.misses == 0

    @property
    def median_score(self) -> float:
        """The median of the recent looks (not statistics.median: that module imports decimal and fractions,
        a megabyte of resident memory for ten numbers)."""
        if not self.scores:
            return self.score
        ordered = sorted(self.scores)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class Event:
    state: str  # "entered" | "left"
    track: Track
    frame_seq: int


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, enter_frames: int = 2, leave_frames: int = 5,
                 threshold: Callable[[str], float] = lambda label: 0.0):
        self.iou_threshold, self.enter_frames, self.leave_frames = iou_threshold, enter_frames, leave_frames
        self.threshold = threshold  # per label: the median score a track must reach to be 'entered' (0: none)
        self.tracks: List[Track] = []
        self._ids = itertools.count(1)

    def _ready(self, track: Track) -> bool:
        if track.hits < self.enter_frames:
            return False
        threshold = self.threshold(track.label)
        return threshold <= 0 or track.median_score >= threshold

    def update(self, detections: Sequence[Detection], frame_seq: int) -> List[Event]:
        events: List[Event] = []
        unmatched = list(range(len(detections)))
        matched_tracks = set()
        pairs: List[Tuple[float, int, int]] = []
        by_label: Dict[str, List[Tuple[int, Detection]]] = {}
        for d_index, det in enumerate(detections):
            by_label.setdefault(det.label, []).append((d_index, det))
        for t_index, track in enumerate(self.tracks):
            tx1, ty1, tx2, ty2 = track.box
            for d_index, det in by_label.get(track.label, ()):
                bx1, by1, bx2, by2 = det.box
                if self.iou_threshold > 0 and (bx1 >= tx2 or bx2 <= tx1 or by1 >= ty2 or by2 <= ty1):
                    continue  # no overlap at all: most pairs, skipped without the division
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
            track.scores.append(det.score)
            track.best = max(track.best, det.score)
            if not track.entered and self._ready(track):
                track.entered = True
                events.append(Event("entered", track, frame_seq))
        kept: List[Track] = []
        for t_index, track in enumerate(self.tracks):
            if t_index not in matched_tracks:
                track.misses += 1
                track.scores.append(0.0)
                if not track.entered and self.threshold(track.label) <= 0:
                    continue  # a candidate must be seen in consecutive frames
                if track.misses >= self.leave_frames:
                    if track.entered:
                        events.append(Event("left", track, frame_seq))
                    continue
            kept.append(track)
        for d_index in unmatched:
            det = detections[d_index]
            track = Track(next(self._ids), det.label, det.class_id, det.box, det.score)
            track.scores.append(det.score)
            if self._ready(track):
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
