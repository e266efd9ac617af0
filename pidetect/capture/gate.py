"""The motion gate: which captured frames the model must look at.

    wants_frame(now)?  --no--> the frame is skipped undecoded (nothing moved at the last look, and the
                               next idle look is not due: `idle_motion_fps`)
    decide(frame, now) --MotionDetector--> motion?                                         -> infer
                                           objects in view, `stationary_interval` passed?  -> infer
                                           nothing looked at for `detect_interval`?        -> infer
                                           otherwise                                       -> skip

A parked car is re-checked once a second (it neither vanishes nor keeps the cores busy); an empty
scene costs one inference every `detect_interval` seconds, so nothing that arrived unseen (or
stands perfectly still) stays unseen for long. An object that stops is motion for about a second
more (the background learns it: motion.py), then a stationary one. The tracker's enter/leave
hysteresis counts the frames the model saw, so skipped frames never make an object "leave".

Time (`now`) is the caller's: wall-clock seconds for a camera, video time for a file, so a file
run is gated the same whether it is paced (--realtime) or processed as fast as possible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from ..frames import Box
from ..slots import InView
from .motion import MotionDetector, MotionSettings


@dataclass(frozen=True)
class GateSettings:
    detect_interval: float = 10.0  # seconds: keep-alive inference with no motion and nothing in view
    stationary_interval: float = 1.0  # seconds: re-check of objects in view that do not move
    idle_motion_fps: float = 5.0  # frames a second the motion detector looks at while nothing moves (0: all)
    motion: MotionSettings = MotionSettings()


@dataclass
class GateCounters:
    """Totals since start; the service turns them into per-interval metrics."""

    skipped: int = 0  # frames not even looked at by the motion detector (idle sampling)
    looked: int = 0  # frames looked at by the motion detector
    motion_frames: int = 0  # of those looked at, with motion
    passed: int = 0  # of those looked at, handed to the model
    keepalive: int = 0
    lighting_changes: int = 0

    @property
    def frames(self) -> int:
        """Every frame the source delivered."""
        return self.skipped + self.looked

    @property
    def gated(self) -> int:
        """Frames not handed to the model, skipped ones included."""
        return self.frames - self.passed

    def totals(self) -> dict:
        """Every count, the derived ones too, for the metrics."""
        return {**dataclasses.asdict(self), "frames": self.frames, "gated": self.gated}


class MotionGate:
    def __init__(self, settings: GateSettings, in_view: InView):
        self.settings, self.in_view = settings, in_view
        self.detector = MotionDetector(settings.motion)
        self.counters = GateCounters()
        self._last_passed = float("-inf")
        self._last_looked = float("-inf")
        self._moving = False  # the last look saw motion: look at every frame

    def reset(self) -> None:
        """The stream broke: learn the background anew and look at the next frame."""
        self.detector.reset()
        self._last_passed = self._last_looked = float("-inf")
        self._moving = False

    def wants_frame(self, now: float) -> bool:
        """Should the next frame be decoded and looked at? False: skip it (and it counts as gated).

        While the last look saw no motion, the motion detector samples `idle_motion_fps` frames a
        second: a camera delivers 15-30, and an entering object is still caught within 1/idle_motion_fps
        s. Skipped frames are not even decoded where the source allows (V4L2, pipes).
        """
        rate = self.settings.idle_motion_fps
        if self._moving or rate <= 0 or now - self._last_looked >= 1.0 / rate - 1e-6:
            return True
        self.counters.skipped += 1
        return False

    def decide(self, image: np.ndarray, now: float) -> Tuple[bool, Tuple[Box, ...]]:
        """(infer this frame?, motion boxes in frame pixels)."""
        motion = self.detector.update(image, now - self._last_looked)
        counters = self.counters
        counters.looked += 1
        counters.motion_frames += motion.moving
        counters.lighting_changes += motion.lighting_change
        self._last_looked, self._moving = now, motion.moving
        since = now - self._last_passed
        if motion.moving:
            infer = True
        elif self.in_view.occupied:
            infer = since >= self.settings.stationary_interval
        else:
            infer = since >= self.settings.detect_interval
            counters.keepalive += infer
        if infer:
            self._last_passed = now
            counters.passed += 1
        return infer, motion.boxes
