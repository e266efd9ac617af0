"""Polygons on the picture: zones and masks, as the config writes them and as the frame's pixels need them.

Kept below every stage (like frames.py) because the motion gate (capture/), the tracker's zones and
filters (tracking/), the overlay (outputs/) and the zone editor (web/) all speak polygons.

A polygon in the config is a list of [x, y] points, either fractions of the frame (every value
within 0..1) or pixels (any value above 1). Fractions follow the camera when its resolution changes;
pixels are for people who measured them on a snapshot. `to_pixels` turns either into pixels of a
given frame size, once per frame size (a Zone caches it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .frames import Box

Point = Tuple[float, float]


@dataclass(frozen=True)
class Polygon:
    """Points as written in the config; `relative` when every value is a fraction of the frame."""

    points: Tuple[Point, ...]

    @property
    def relative(self) -> bool:
        return all(0.0 <= v <= 1.0 for point in self.points for v in point)

    def to_pixels(self, width: int, height: int) -> Tuple[Point, ...]:
        """The points in pixels of a width x height frame."""
        if self.relative:
            return tuple((x * width, y * height) for x, y in self.points)
        return self.points


MAX_POINTS = 200  # corners of one polygon: a zone drawn by hand has a handful


def mixes_fractions_and_pixels(points: Sequence[Sequence[float]]) -> bool:
    """Some values are fractions (below 1, not whole) and others pixels (above 1): the polygon is read as pixels,
    so its fractions mean the picture's first pixel — a mistake worth a warning."""
    values = [v for point in points for v in point]
    return any(v > 1.0 for v in values) and any(0.0 < v < 1.0 for v in values)


def polygon_problem(points: Sequence[Sequence[float]]) -> Optional[str]:
    """Why `points` is not a usable polygon (None if it is): fewer than 3 points, a value that is not a
    number or is negative, all points on one line, or two edges that cross."""
    if len(points) < 3:
        return f"a polygon needs at least 3 points, this one has {len(points)}"
    if len(points) > MAX_POINTS:  # the crossing test is quadratic: 3,000 points added 4.6 s to every start
        return f"a polygon may have at most {MAX_POINTS} points, this one has {len(points)}; simplify its outline"
    for index, point in enumerate(points):
        if not isinstance(point, (list, tuple)) or len(point) != 2 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point):
            return f"point {index + 1} is {point!r}; write each point as [x, y] with two numbers"
        if not all(0.0 <= v < 1e6 for v in point):  # written so NaN fails too
            return (f"point {index + 1} {list(point)} is out of range; use fractions of the frame (0..1) "
                    "or pixels (0 and up)")
    for index in range(len(points)):
        if list(points[index]) == list(points[index - 1]):
            return f"point {index + 1 if index else len(points)} repeats the point before it; remove one of them"
    if all(_orientation(points[0], points[1], point) == 0 for point in points[2:]):
        return "its points lie on one line (the polygon has no area)"
    crossing = first_crossing(points)
    if crossing is not None:
        a, b = crossing
        return (f"edges {a + 1} and {b + 1} cross (the polygon is self-crossing); list the points in order "
                "around its outline")
    return None


def signed_area(points: Sequence[Sequence[float]]) -> float:
    """The shoelace area; its sign is the winding direction."""
    total = 0.0
    for i in range(len(points)):
        x1, y1 = points[i]
        x2, y2 = points[(i + 1) % len(points)]
        total += x1 * y2 - x2 * y1
    return total / 2.0


def _orientation(a, b, c) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a, b, c) -> bool:
    """c, known to be collinear with a-b, lies within the segment's bounding box."""
    return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])


def segments_intersect(p1, p2, q1, q2) -> bool:
    d1, d2 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    d3, d4 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (d1 == 0 and _on_segment(q1, q2, p1)) or (d2 == 0 and _on_segment(q1, q2, p2)) or \
        (d3 == 0 and _on_segment(p1, p2, q1)) or (d4 == 0 and _on_segment(p1, p2, q2))


def first_crossing(points: Sequence[Sequence[float]]) -> Optional[Tuple[int, int]]:
    """The first pair of non-adjacent edges (by index) that touch or cross, or None for a simple polygon."""
    count = len(points)
    edges = [(points[i], points[(i + 1) % count]) for i in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            if j == i + 1 or (i == 0 and j == count - 1):
                # neighbours share a point; they overlap only if they fold back onto each other
                shared_first = i == 0 and j == count - 1
                a, b = (edges[j], edges[i]) if shared_first else (edges[i], edges[j])
                start, corner, end = a[0], a[1], b[1]
                if _orientation(start, corner, end) == 0 and \
                        (start[0] - corner[0]) * (end[0] - corner[0]) + (start[1] - corner[1]) * (end[1] - corner[1]) > 0:
                    return (i, j)
                continue
            if segments_intersect(edges[i][0], edges[i][1], edges[j][0], edges[j][1]):
                return (i, j)
    return None


def contains(polygon: Sequence[Point], x: float, y: float) -> bool:
    """Is (x, y) inside the polygon or on its outline? Even-odd ray casting; a point on an edge counts as
    inside, so an object standing exactly on a zone's border is in it (the same answer every frame)."""
    inside = False
    count = len(polygon)
    j = count - 1
    for i in range(count):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if _orientation((xj, yj), (xi, yi), (x, y)) == 0 and _on_segment((xj, yj), (xi, yi), (x, y)):
            return True
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def bottom_centre(box: Box) -> Point:
    """Where an object stands: the middle of its box's bottom edge (Frigate's rule, and every NVR's)."""
    return ((box[0] + box[2]) / 2.0, float(box[3]))


def bounds(polygon: Sequence[Point]) -> Tuple[float, float, float, float]:
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


class PolygonSet:
    """Several polygons (in pixels), tested against many points at once with numpy.

    Why: ten zones and twenty objects are 200 point-in-polygon tests a frame; one vectorised even-odd
    test over every edge of every polygon does them in a few array operations. A point on an outline
    counts as inside, as in `contains` (and the two agree: tests/test_zones.py).
    """

    def __init__(self, polygons: Sequence[Sequence[Point]]):
        import numpy as np

        self.count = len(polygons)
        starts, edges = [], []
        for polygon in polygons:
            starts.append(len(edges))
            for i in range(len(polygon)):
                (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % len(polygon)]
                edges.append((x1, y1, x2, y2))
        array = np.array(edges, np.float64).reshape(-1, 4)
        self.x1, self.y1, self.x2, self.y2 = (array[:, k] for k in range(4))
        self.dx, self.dy = self.x2 - self.x1, self.y2 - self.y1
        self.safe_dy = np.where(self.dy == 0, 1.0, self.dy)
        self.starts = np.array(starts, np.intp)
        self.low_x, self.high_x = np.minimum(self.x1, self.x2), np.maximum(self.x1, self.x2)
        self.low_y, self.high_y = np.minimum(self.y1, self.y2), np.maximum(self.y1, self.y2)

    def inside(self, xs, ys):
        """(points, polygons) booleans: is point i inside (or on the outline of) polygon j."""
        import numpy as np

        x = np.asarray(xs, np.float64)[:, None]
        y = np.asarray(ys, np.float64)[:, None]
        if self.count == 0 or x.shape[0] == 0:
            return np.zeros((x.shape[0], self.count), bool)
        straddles = (self.y1 > y) != (self.y2 > y)
        crossing = straddles & (x < self.x1 + (y - self.y1) * self.dx / self.safe_dy)
        on_line = self.dx * (y - self.y1) - self.dy * (x - self.x1) == 0
        on_edge = on_line & (self.low_x <= x) & (x <= self.high_x) & (self.low_y <= y) & (y <= self.high_y)
        odd = np.add.reduceat(crossing.astype(np.int16), self.starts, axis=1) % 2 == 1
        return odd | (np.add.reduceat(on_edge.astype(np.int16), self.starts, axis=1) > 0)
