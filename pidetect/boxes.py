"""Box maths shared by the tracker, the regions' merger and the scoring: overlaps of many boxes at once.

Boxes are x1, y1, x2, y2 in pixels (frames.Box); arrays are (N, 4). Numpy only, so every stage may use it.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def _intersections(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a as (N, 4), b as (M, 4), their (N, M) intersection areas)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return a, b, ix * iy


def areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    a, b, inter = _intersections(a, b)
    union = areas(a)[:, None] + areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def cover_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) share of each box of `a` that lies inside each box of `b` (1.0: a is within b)."""
    a, _b, inter = _intersections(a, b)
    return inter / np.maximum(areas(a), 1e-9)[:, None]
