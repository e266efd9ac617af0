"""Which detection is which object: box overlaps and the optimal one-to-one assignment.

Greedy matching (best pair first) steals: when two people cross, the first pair taken can leave the second
person's detection with nothing it overlaps enough, and a new object is born. The Hungarian method (here the
Jonker-Volgenant solver of `lap`, 0.2 MB of resident memory where `scipy.optimize` costs 50 MB) picks the
assignment with the best total overlap.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import lap
import numpy as np


def assign(cost: np.ndarray, limit: float) -> List[Tuple[int, int]]:
    """The (row, column) pairs of least total cost, each row and column at most once, every pair's cost
    below `limit` (a pair at or above it is never made, whatever the total)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    _total, rows, _cols = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    return [(r, int(c)) for r, c in enumerate(rows) if c >= 0 and cost[r, c] < limit]


def same_label(track_labels: Sequence[str], detection_labels: Sequence[str]) -> np.ndarray:
    """(tracks, detections) True where the labels agree: a person never continues a car."""
    return np.array([[t == d for d in detection_labels] for t in track_labels], dtype=bool).reshape(
        len(track_labels), len(detection_labels))
