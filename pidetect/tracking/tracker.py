"""Turns per-frame detections into one object per real object, and its 'entered' / 'left' events.

How it works, in the order of one update (ByteTrack's association with OC-SORT's recovery, in seconds):

1. Every object's box is predicted to the frame's capture time by its Kalman filter (kalman.py).
2. Confident detections (at or above `threshold`) are matched to followed objects of the same label by the
   overlap of the predicted box, optimally (association.py), not best pair first.
3. Objects still unmatched that were seen at the previous look take a *weak* detection (between the weak
   floor and `threshold`): a person half hidden behind another keeps being followed. A weak detection never
   starts an object.
4. New candidates get the confident detections left; then objects still unmatched try the detections left
   against the box where they were last *seen* (an object that stopped behind an occlusion, or a box that
   jumped and came back: OC-SORT's observation-centric recovery), then lost ones by distance, within a radius
   that grows with the time unseen (an object that walked on behind what hid it).
5. A detection left over that lies on an object matched in this frame is a duplicate (a second box on one
   person), never a new object. The rest start candidates.

A candidate becomes an object ('entered') once it has been seen over `enter_seconds` (at least two looks),
and is dropped if unseen for that long before. An object 'leaves' when unseen for `max_disappeared` seconds
— the detector missing it, the motion gate not looking, or the object gone are the same to it, so a Pi at
5 fps and a PC at 30 fps give the same events. An object whose box has stayed put for `stationary_after`
seconds is `stationary` (a parked car, a sleeping cat): it leaves only on evidence — unseen for
`max_disappeared` once motion has covered most of its place (it drove off; a person walking past in front covers
less), else only after `stationary_max_disappeared`
(a detector missing a parked car for a minute is not the car leaving).

A label with a `threshold` (`[filters.LABEL]`) asks more: the median of the object's last SCORE_HISTORY
looks, a miss counting as 0, must reach it before it is 'entered'.

Pure: detections, capture times and motion boxes in; events out. No threads, no I/O, no frame counts.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..frames import Box, Detection
from ..boxes import cover_matrix, iou_matrix
from .association import assign, same_label
from .kalman import BoxFilters


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


SCORE_HISTORY = 10  # looks a track's median score is taken over (Frigate's choice too)
WEAK_IOU = 0.5  # a weak detection continues an object only where it clearly lies on its predicted box
DUPLICATE_IOU = 0.5  # a leftover detection overlapping a matched object this much is the same object
DUPLICATE_COVER = 0.8  # ... or lying this much inside it (a torso box inside the person's box)
DISTURBED_COVER = 0.5  # motion over this share of a stationary object's box: it may have left (a person walking
# past in front of a parked car covers less; a car driving off makes motion over all of its place)
STILL_IOU = 0.5  # a stationary object that moves: its box overlaps where it stood by less than this
REFIND_RADIUS = 0.5  # heights: how far a lost object may be found again at once ...
REFIND_SPEED = 1.0  # ... plus this many heights per second unseen (a walking person: ~1 height a second)
REFIND_MAX = 3.0  # heights: never further than this
CLOCK_SLACK = 1e-6  # seconds: frame clocks are sums of float steps (0.1 * 3 = 0.30000000000000004)
REFIND_SIZE = 1.5  # a lost object is found again only in a box no more than this much larger or smaller


@dataclass(frozen=True)
class TrackerSettings:
    """Every duration is in seconds of the capture's clock (video time for a file, monotonic for a camera)."""

    iou: float = 0.2  # overlap of a detection with an object's predicted box to continue it
    enter_seconds: float = 0.5  # seen this long (and at least twice) before an object is 'entered'
    max_disappeared: float = 3.0  # unseen this long and a moving object has 'left'
    stationary_after: float = 10.0  # still this long and an object is stationary
    stationary_max_disappeared: float = 60.0  # unseen this long and a stationary object has left, motion or not


@dataclass
class Track:
    track_id: int
    label: str
    class_id: int
    box: Box  # the last detection's box
    score: float
    first_seen: float  # seconds on the capture's clock
    last_seen: float
    hits: int = 1
    seen: bool = True  # matched at the latest look (its box is fresh)
    entered: bool = False
    stationary: bool = False
    still_since: float = 0.0  # when the object last moved clear of `still_box`
    still_box: Box = (0, 0, 0, 0)
    disturbed: bool = False  # motion covered its place since it was last seen (a stationary object)
    scores: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=SCORE_HISTORY))
    best: float = 0.0  # the best score of any look

    @property
    def top_score(self) -> float:
        return max(self.best, self.score)

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
    state: str  # "entered" | "stationary" (it stopped moving) | "left"
    track: Track
    frame_seq: int


@dataclass(frozen=True)
class TrackerStep:
    """What one update found: the events, and which object each detection was given to (0: none yet —
    a candidate's, or a duplicate's), in the order the detections came."""

    events: Tuple[Event, ...]
    detection_ids: Tuple[int, ...]
    weak_ids: Tuple[int, ...]


def _boxes(detections: Sequence[Detection]) -> np.ndarray:
    return np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)


class Tracker:
    def __init__(self, settings: TrackerSettings = TrackerSettings(),
                 threshold: Callable[[str], float] = lambda label: 0.0):
        self.settings = settings
        self.threshold = threshold  # per label: the median score a track must reach to be 'entered' (0: none)
        self.tracks: List[Track] = []
        self.filters = BoxFilters()  # row i is self.tracks[i]'s
        self._ids = itertools.count(1)
        self._now: Optional[float] = None

    # --- one look --------------------------------------------------------------------------------------
    def update(self, detections: Sequence[Detection], now: float, frame_seq: int,
               weak: Sequence[Detection] = (), motion: Optional[Sequence[Box]] = None) -> TrackerStep:
        """One look of the model at the frame captured at `now` (seconds). `weak`: detections under the
        reporting threshold (they only continue objects). `motion`: where the motion detector saw movement
        in this frame, or None when nothing looked for motion."""
        before = list(self.tracks)  # rows as they are now (new candidates are appended below)
        dt = 0.0 if self._now is None else max(now - self._now, 0.0)
        self._now = max(now, self._now if self._now is not None else now)
        self.filters.predict(np.full(len(self.tracks), dt))
        predicted = self.filters.boxes()
        strong_boxes, weak_boxes = _boxes(detections), _boxes(weak)
        strong_left = list(range(len(detections)))
        weak_left = list(range(len(weak)))
        strong_to: Dict[int, int] = {}  # detection index -> row of its object
        weak_to: Dict[int, int] = {}
        unmatched = list(range(len(self.tracks)))
        confirmed = [row for row in unmatched if self.tracks[row].entered]
        candidates = [row for row in unmatched if not self.tracks[row].entered]
        iou_limit = 1.0 - self.settings.iou

        def match(rows: List[int], dets: List[int], boxes: np.ndarray, pool: Sequence[Detection],
                  track_boxes: np.ndarray, limit: float, taken: Dict[int, int]) -> None:
            if not rows or not dets:
                return
            overlap = iou_matrix(track_boxes[rows], boxes[dets])
            allowed = same_label([self.tracks[r].label for r in rows], [pool[d].label for d in dets])
            cost = np.where(allowed, 1.0 - overlap, 2.0)
            pairs = assign(cost, limit)
            for i, j in pairs:
                taken[dets[j]] = rows[i]
            matched_rows = {rows[i] for i, _j in pairs}
            rows[:] = [r for r in rows if r not in matched_rows]
            dets[:] = [d for d in dets if d not in taken]

        # 2. confident detections to objects, by their predicted boxes
        match(confirmed, strong_left, strong_boxes, detections, predicted, iou_limit, strong_to)
        # 3. weak detections keep objects seen at the previous look
        recent = [row for row in confirmed if self.tracks[row].seen]
        match(recent, weak_left, weak_boxes, weak, predicted, 1.0 - WEAK_IOU, weak_to)
        confirmed = [row for row in confirmed if row not in weak_to.values()]
        # 4. candidates; then lost objects by where they were last seen, then by distance
        match(candidates, strong_left, strong_boxes, detections, predicted, iou_limit, strong_to)
        last_seen_boxes = np.array([t.box for t in self.tracks], dtype=np.float64).reshape(-1, 4)
        match(confirmed, strong_left, strong_boxes, detections, last_seen_boxes, iou_limit, strong_to)
        lost = [row for row in confirmed if not self.tracks[row].seen]
        self._refind(lost, strong_left, strong_boxes, detections, predicted, now, strong_to)

        events: List[Event] = []
        matched_rows = set(strong_to.values()) | set(weak_to.values())
        for index, row in strong_to.items():
            self._saw(self.tracks[row], detections[index], now, frame_seq, events)
        for index, row in weak_to.items():
            self._saw(self.tracks[row], weak[index], now, frame_seq, events)
        pairs = [(row, detections[i].box) for i, row in strong_to.items()] + \
            [(row, weak[i].box) for i, row in weak_to.items()]
        self.filters.update([row for row, _ in pairs], [box for _, box in pairs])

        kept_rows: List[int] = []
        for row, track in enumerate(self.tracks):
            if row not in matched_rows and self._gone(track, now, motion, frame_seq, events):
                continue
            kept_rows.append(row)

        # 5. leftovers: duplicates of an object matched now, else new candidates
        new_ids: Dict[int, int] = {}
        taken_boxes = [self.tracks[row].box for row in matched_rows]
        taken_labels = [self.tracks[row].label for row in matched_rows]
        for index in sorted(strong_left, key=lambda i: -detections[i].score):
            det = detections[index]
            if self._duplicate(det, taken_boxes, taken_labels):
                continue
            track = Track(next(self._ids), det.label, det.class_id, det.box, det.score, now, now,
                          still_since=now, still_box=det.box)
            track.scores.append(det.score)
            track.best = det.score
            self.tracks.append(track)
            self.filters.add(det.box)
            kept_rows.append(len(self.tracks) - 1)
            taken_boxes.append(det.box)
            taken_labels.append(det.label)
            if self._ready(track):
                track.entered = True
                new_ids[index] = track.track_id
                events.append(Event("entered", track, frame_seq))
        self.tracks = [self.tracks[row] for row in kept_rows]
        self.filters.keep(kept_rows)

        def shown(index: int, taken: Dict[int, int]) -> int:
            row = taken.get(index)
            if row is None:
                return new_ids.get(index, 0) if taken is strong_to else 0
            track = before[row]
            return track.track_id if track.entered else 0

        detection_ids = tuple(shown(i, strong_to) for i in range(len(detections)))
        weak_ids = tuple(shown(i, weak_to) for i in range(len(weak)))
        return TrackerStep(tuple(events), detection_ids, weak_ids)

    # --- the parts ---------------------------------------------------------------------------------------
    def _refind(self, lost: List[int], dets: List[int], boxes: np.ndarray, pool: Sequence[Detection],
                predicted: np.ndarray, now: float, taken: Dict[int, int]) -> None:
        """Lost objects against the detections left, by centre distance in the object's own heights, within a
        radius that grows with the time it has been unseen (it may have walked on behind what hid it)."""
        if not lost or not dets:
            return
        heights = np.array([max(self.tracks[r].box[3] - self.tracks[r].box[1], 1) for r in lost], dtype=np.float64)
        unseen = np.array([now - self.tracks[r].last_seen for r in lost])
        centres = (predicted[lost, :2] + predicted[lost, 2:]) / 2
        det_boxes = boxes[dets]
        det_centres = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2
        distance = np.linalg.norm(centres[:, None, :] - det_centres[None, :, :], axis=2) / heights[:, None]
        radius = np.minimum(REFIND_RADIUS + REFIND_SPEED * unseen, REFIND_MAX)
        size = (det_boxes[None, :, 3] - det_boxes[None, :, 1]) / heights[:, None]
        allowed = same_label([self.tracks[r].label for r in lost], [pool[d].label for d in dets])
        allowed &= (distance <= radius[:, None]) & (size <= REFIND_SIZE) & (size >= 1 / REFIND_SIZE)
        cost = np.where(allowed, distance / radius[:, None], 2.0)
        pairs = assign(cost, 1.0 + 1e-9)
        for i, j in pairs:
            taken[dets[j]] = lost[i]
        found = {lost[i] for i, _j in pairs}
        lost[:] = [r for r in lost if r not in found]
        dets[:] = [d for d in dets if d not in taken]

    def _saw(self, track: Track, det: Detection, now: float, frame_seq: int, events: List[Event]) -> None:
        track.box, track.score, track.hits, track.last_seen, track.seen = det.box, det.score, track.hits + 1, now, True
        track.class_id = det.class_id
        track.scores.append(det.score)
        track.best = max(track.best, det.score)
        track.disturbed = False
        if iou(det.box, track.still_box) < STILL_IOU:
            track.still_box, track.still_since, track.stationary = det.box, now, False
        elif not track.stationary and now - track.still_since >= self.settings.stationary_after - CLOCK_SLACK:
            track.stationary = True
            if track.entered:
                events.append(Event("stationary", track, frame_seq))
        if not track.entered and self._ready(track):
            track.entered = True
            events.append(Event("entered", track, frame_seq))

    def _gone(self, track: Track, now: float, motion: Optional[Sequence[Box]], frame_seq: int,
              events: List[Event]) -> bool:
        """An object not matched at this look: is it gone? ('left' is added to events for an entered one.)"""
        settings = self.settings
        track.seen = False
        track.scores.append(0.0)
        unseen = now - track.last_seen
        if not track.entered:
            # a candidate must be seen again within enter_seconds; one held to a median score survives misses
            # up to max_disappeared, so that a flicker's misses pull its median down
            patience = settings.max_disappeared if self.threshold(track.label) > 0 else settings.enter_seconds
            return unseen >= patience - CLOCK_SLACK
        if track.stationary:
            if motion and (cover_matrix(np.array([track.box], dtype=np.float64),
                                        np.array(motion, dtype=np.float64).reshape(-1, 4)) >= DISTURBED_COVER).any():
                track.disturbed = True  # motion over most of where it stood since it was last seen: it moved off
            limit = settings.max_disappeared if track.disturbed else settings.stationary_max_disappeared
            gone = unseen >= limit - CLOCK_SLACK
        else:
            gone = unseen >= settings.max_disappeared - CLOCK_SLACK
        if gone:
            events.append(Event("left", track, frame_seq))
        return gone

    def _ready(self, track: Track) -> bool:
        if track.last_seen - track.first_seen < self.settings.enter_seconds - CLOCK_SLACK:
            return False
        if self.settings.enter_seconds > 0 and track.hits < 2:
            return False
        threshold = self.threshold(track.label)
        return threshold <= 0 or track.median_score >= threshold

    @staticmethod
    def _duplicate(det: Detection, boxes: List[Box], labels: List[str]) -> bool:
        same = [box for box, label in zip(boxes, labels) if label == det.label]
        if not same:
            return False
        mine = np.array([det.box], dtype=np.float64)
        theirs = np.array(same, dtype=np.float64)
        return bool((iou_matrix(mine, theirs) >= DUPLICATE_IOU).any()
                    or (cover_matrix(mine, theirs) >= DUPLICATE_COVER).any())

    # --- the end -------------------------------------------------------------------------------------------
    def flush(self, frame_seq: int) -> List[Event]:
        """'left' for every object still in view (end of stream, shutdown)."""
        events = [Event("left", t, frame_seq) for t in self.tracks if t.entered]
        self.tracks = []
        self.filters = BoxFilters()
        self._now = None
        return events

    def expected_boxes(self) -> List[Box]:
        """Every followed object's box as its filter has it now (where to look next)."""
        return [tuple(int(round(v)) for v in row) for row in self.filters.boxes().tolist()]

    def active(self) -> Dict[int, Track]:
        return {t.track_id: t for t in self.tracks if t.entered}


