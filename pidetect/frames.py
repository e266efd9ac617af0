"""The shared vocabulary: what flows from a source, through the detector, to the sinks.

Kept free of behaviour so every module can import it without pulling in OpenCV or an interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the original frame
PixelPoint = Tuple[float, float]


@dataclass(frozen=True)
class Frame:
    """One captured image (BGR, as OpenCV delivers it) and where/when it came from."""

    image: np.ndarray
    seq: int  # per-source counter of delivered frames, starting at 1
    ts: float  # wall-clock capture time (time.time())
    source: str = ""
    motion: Tuple[Box, ...] = ()  # where the motion gate saw movement (kept only with show_motion)
    clock: float = 0.0  # seconds on the capture's clock: video time for a file, monotonic for a camera (loiter)
    # where the motion detector saw movement in this frame, for the tracker (a stationary object leaves only
    # where something moved); None when no motion detector looked at it
    moving: Optional[Tuple[Box, ...]] = None


@dataclass(frozen=True)
class TrackEvent:
    """What the tracking stage says about one object: it entered or left the picture (kind 'detection'),
    or started or stopped counting in a zone (kind 'zone'). A copy of the track's values at that frame."""

    kind: str  # "detection" | "zone"
    state: str  # "entered" | "left"; kind detection also "stationary" (the object stopped moving)
    track_id: int
    label: str
    class_id: int
    score: float
    box: Box
    frame_seq: int
    zone: str = ""  # kind zone: which one
    zones: Tuple[str, ...] = ()  # kind detection: the zones the object counts in
    top_score: float = 0.0  # the best score of any look so far
    stationary: bool = False  # kind detection: the object had stood still (a parked car) when this was said


@dataclass(frozen=True)
class Area:
    """A zone or a mask as the overlay draws it: its outline in the frame's pixels and, for a zone, how many
    objects count in it now."""

    kind: str  # "zone" | "object_mask" | "motion_mask"
    name: str
    polygon: Tuple[PixelPoint, ...]
    occupied: int = 0


@dataclass(frozen=True)
class SourceGap:
    """Where the stream broke (camera lost, or a looping file starting over): what was in view before
    it can no longer be seen, so the tracker lets every object leave (`events`, set by the tracking stage)."""

    after_seq: int
    ts: float
    events: Tuple[TrackEvent, ...] = ()


@dataclass(frozen=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box
    track_id: int = 0  # set by the tracking stage: the object this detection was given to (0: none yet)
    stationary: bool = False  # set by the tracking stage: that object stands still

    def as_dict(self) -> dict:
        found = {"label": self.label, "class_id": self.class_id, "score": round(self.score, 4),
                 "box": list(self.box)}
        if self.track_id:
            found.update(track_id=self.track_id, stationary=self.stationary)
        return found


@dataclass(frozen=True)
class Result:
    """The detector's answer for one frame."""

    frame: Frame
    detections: Tuple[Detection, ...]
    inference_ms: float  # preprocess + invoke + parse
    invoke_ms: float = 0.0  # interpreter.invoke() alone
    # set by the tracking stage: detections are then those that passed the filters and masks
    events: Tuple[TrackEvent, ...] = ()
    areas: Tuple[Area, ...] = ()  # zones (with their occupancy) and, with show_motion, the masks
    # detections under `threshold` but above the tracker's weak floor: they only keep followed objects alive
    # (ByteTrack's second association); after the tracking stage, only those that did, with their track_id
    weak: Tuple[Detection, ...] = ()
    model_calls: int = 1  # interpreter runs for this frame: one per region (inference/regions.py)
    regions: Tuple[Box, ...] = ()  # where the model looked, when it looked at regions (the overlay can show them)
