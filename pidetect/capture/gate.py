"""The motion gate: which captured frames the model must look at.

    frame --MotionDetector--> motion?  --yes--> infer
                                       --no---> objects in view and `stationary_interval` passed?  -> infer
                                                nothing looked at for `detect_interval`?          -> infer
                                                otherwise                                           -> skip

A parked car is re-checked once a second (it neither vanishes nor keeps the cores busy); an empty
scene costs one inference every `detect_interval` seconds, so nothing that arrived unseen (or
stands perfectly still) stays unseen for long. The tracker's enter/leave hysteresis counts the
frames the model saw, so skipped frames never make an object "leave".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

from ..frames import Box
from ..slots import InView
from .motion import MotionDetector, MotionSettings


@dataclass(frozen=True)
class GateSettings:
    detect_interval: float = 10.0  # seconds: keep-alive inference with no motion and nothing in view
    stationary_interval: float = 1.0  # seconds: re-check of objects in view that do not move
    motion: MotionSettings = MotionSettings()


@dataclass
class GateCounters:
    """Totals since start; the service turns them into per-interval metrics."""

    frames: int = 0
    motion_frames: int = 0
    passed: int = 0
    gated: int = 0
    keepalive: int = 0
    lighting_changes: int = 0


class MotionGate:
    def __init__(self, settings: GateSettings, in_view: InView, clock: Callable[[], float] = time.monotonic):
        self.settings, self.in_view, self.clock = settings, in_view, clock
        self.detector = MotionDetector(settings.motion)
        self.counters = GateCounters()
        self._last_passed = float("-inf")

    def reset(self) -> None:
        """The stream broke: learn the background anew and look at the next frame."""
        self.detector.reset()
        self._last_passed = float("-inf")

    def decide(self, image: np.ndarray) -> Tuple[bool, Tuple[Box, ...]]:
        """(infer this frame?, motion boxes in frame pixels)."""
        motion = self.detector.update(image)
        now = self.clock()
        counters = self.counters
        counters.frames += 1
        counters.motion_frames += motion.moving
        counters.lighting_changes += motion.lighting_change
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
        else:
            counters.gated += 1
        return infer, motion.boxes
