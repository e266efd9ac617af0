"""A Kalman filter on boxes, in seconds: where each followed object should be now, and how sure that is.

Each box is four independent coordinates — centre x, centre y, width, height — each with its own velocity
(SORT/ByteTrack keep the same state; they count time in frames, this counts it in seconds, so a Pi at 5 fps
and a PC at 30 fps predict the same box for the same moment). Because the coordinates do not interact, the
filter is sixteen 2x2 problems per object, written out element-wise on arrays of every object at once: 50
objects cost a few numpy operations, not 50 matrix products.

Noise scales with the object's height (a near person jitters by more pixels than a far one), translated from
ByteTrack's per-frame weights at 30 fps into continuous time:
- measurement: 1/20 of the height per coordinate (a detector's box jitter);
- process: the velocity wanders by about one height per second each second (people turn and stop), the
  position by about 0.27 heights per square-root second (boxes change shape as limbs move).
Velocity is constant between looks, as SORT and ByteTrack keep it (measured on PETS09-S2L1: letting it decay
while an object is unseen cost IDF1). An object lost behind another is found again by the tracker's own passes
(where it was last seen, then by distance), OC-SORT's answer to a linear model drifting during occlusion.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..frames import Box

MEASUREMENT_STD = 1 / 20  # of the box height, per coordinate
VELOCITY_WANDER = 1.0  # heights per second, per square-root second
POSITION_WANDER = 0.27  # heights per square-root second
INITIAL_VELOCITY_STD = 1.5  # heights per second: a new object may move either way


def to_state(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) centre x, centre y, width, height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


def to_boxes(state: np.ndarray) -> np.ndarray:
    """(N, 4) centre x, centre y, width, height -> (N, 4) x1, y1, x2, y2 (width and height at least 1)."""
    w = np.maximum(state[:, 2], 1.0)
    h = np.maximum(state[:, 3], 1.0)
    return np.stack([state[:, 0] - w / 2, state[:, 1] - h / 2, state[:, 0] + w / 2, state[:, 1] + h / 2], axis=1)


class BoxFilters:
    """The filters of every followed object, one row each, in the tracker's order of objects.

    Per coordinate: position p, velocity v, and the covariance [[a, b], [b, c]]."""

    def __init__(self) -> None:
        empty = np.zeros((0, 4))
        self.p, self.v, self.a, self.b, self.c = (empty.copy() for _ in range(5))

    def __len__(self) -> int:
        return len(self.p)

    def boxes(self) -> np.ndarray:
        """Every object's current estimate as (N, 4) x1, y1, x2, y2."""
        return to_boxes(self.p)

    def add(self, box: Box) -> None:
        state = to_state(np.array([box]))
        h = max(state[0, 3], 1.0)
        self.p = np.vstack([self.p, state])
        self.v = np.vstack([self.v, np.zeros((1, 4))])
        self.a = np.vstack([self.a, np.full((1, 4), (2 * MEASUREMENT_STD * h) ** 2)])
        self.b = np.vstack([self.b, np.zeros((1, 4))])
        self.c = np.vstack([self.c, np.full((1, 4), (INITIAL_VELOCITY_STD * h) ** 2)])

    def keep(self, rows: Sequence[int]) -> None:
        """Only these rows remain, in this order (objects that left are dropped)."""
        index = np.asarray(rows, dtype=np.intp)
        self.p, self.v, self.a, self.b, self.c = (m[index] for m in (self.p, self.v, self.a, self.b, self.c))

    def predict(self, dt: np.ndarray) -> None:
        """Move every estimate forward by its own dt seconds (objects last predicted at different times)."""
        if not len(self.p):
            return
        dt = np.maximum(np.asarray(dt, dtype=np.float64).reshape(-1, 1), 0.0)
        h2 = np.maximum(self.p[:, 3:4], 1.0) ** 2
        q_v = (VELOCITY_WANDER ** 2) * h2
        q_p = (POSITION_WANDER ** 2) * h2
        a, b, c = self.a, self.b, self.c
        self.p = self.p + dt * self.v
        self.a = a + 2 * dt * b + dt * dt * c + q_v * dt ** 3 / 3 + q_p * dt
        self.b = b + dt * c + q_v * dt ** 2 / 2
        self.c = c + q_v * dt

    def update(self, rows: Sequence[int], boxes: Sequence[Box]) -> None:
        """Correct these rows with the boxes the detector saw for them."""
        if not len(rows):
            return
        index = np.asarray(rows, dtype=np.intp)
        z = to_state(np.array(boxes))
        h = np.maximum(z[:, 3:4], 1.0)
        r = (MEASUREMENT_STD * h) ** 2
        a, b, c = self.a[index], self.b[index], self.c[index]
        s = a + r
        residual = z - self.p[index]
        self.p[index] = self.p[index] + a / s * residual
        self.v[index] = self.v[index] + b / s * residual
        self.a[index] = a * r / s
        self.b[index] = b * r / s
        self.c[index] = c - b * b / s

    def speed(self, row: int) -> float:
        """How fast the object's centre moves, in its own heights per second."""
        return math.hypot(self.v[row, 0], self.v[row, 1]) / max(self.p[row, 3], 1.0)
