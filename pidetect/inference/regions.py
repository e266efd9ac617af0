"""Regions: where in a large frame the model looks, at (about) its own scale — and the merge of what it saw.

A 300x300 model shown a whole 1080p frame sees a person 20 m away as a few squeezed pixels. Shown a square
crop around where something moved (or where a followed object is about to be), it sees that person at full
size and undistorted. Frigate's central trick; this is pidetect's own, smaller version:

    plan(frame size, model size, motion boxes, followed objects' predicted boxes, whole frame due?, budget)
        -> square regions in frame pixels (a whole-frame look is one region too)
    merge(detections of each region, mapped back to frame pixels) -> one set of detections

Planning: each box of interest is grown by GROW (an object is not cut at a region's edge); boxes are
clustered greedily, biggest first, while the square around a cluster stays within the model's own side
(1:1 pixels, or the box itself if it is bigger: then the region is scaled down to fit, as little as
possible); if more clusters remain than the budget allows, the two whose joint square is smallest are merged
until they fit (fewer calls, each a little coarser). Merging: a box that touches a region's border where the
region does not end at the frame's edge may be an object cut in two: it is dropped when another region has
a box of the same label overlapping it; then class-wise NMS across regions keeps the best box of each object.

Pure functions of plain boxes: no model, no frame, no threads (ARCHITECTURE: no lower stage imports a higher
one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..boxes import cover_matrix, iou_matrix
from ..frames import Box, Detection

GROW = 1.4  # a box of interest grown by this factor (each side) before regions are planned around it
EDGE_PIXELS = 2  # a box within this many pixels of an inner region border counts as cut
MERGE_IOU = 0.5  # boxes of one label from different regions overlapping this much are one object
CUT_COVER = 0.5  # a cut box lying this much inside a same-label box of another region is that object's part


@dataclass(frozen=True)
class Region:
    """A square crop of the frame (the whole frame is a region too, and not square)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def box(self) -> Box:
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def is_whole(self, frame_width: int, frame_height: int) -> bool:
        return (self.x, self.y, self.width, self.height) == (0, 0, frame_width, frame_height)


def whole(frame_width: int, frame_height: int) -> Region:
    return Region(0, 0, frame_width, frame_height)


def _grown(box: Sequence[float], frame_width: int, frame_height: int) -> Tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) * GROW / 2, (y2 - y1) * GROW / 2
    return (max(cx - half_w, 0.0), max(cy - half_h, 0.0), min(cx + half_w, frame_width),
            min(cy + half_h, frame_height))


def _side(extent: Tuple[float, float, float, float]) -> float:
    return max(extent[2] - extent[0], extent[3] - extent[1])


def _union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def square_around(extent: Sequence[float], side: float, frame_width: int, frame_height: int) -> Region:
    """The square of `side` pixels centred on the extent, moved inside the frame (shrunk only when the frame's
    short side is smaller)."""
    side = int(round(min(side, frame_width, frame_height)))
    cx, cy = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    x = int(round(min(max(cx - side / 2, 0), frame_width - side)))
    y = int(round(min(max(cy - side / 2, 0), frame_height - side)))
    return Region(x, y, side, side)


def plan(frame_width: int, frame_height: int, model_side: int, interest: Sequence[Box], whole_due: bool,
         budget: int) -> List[Region]:
    """The regions to run the model on for one frame (see the module's text). `interest`: motion boxes and
    followed objects' predicted boxes, in frame pixels. With nothing of interest, or the whole frame due, the
    whole frame is one of them (and counts in the budget)."""
    budget = max(1, budget)
    if not interest:
        return [whole(frame_width, frame_height)]
    slots = budget - 1 if whole_due else budget
    regions: List[Region] = [whole(frame_width, frame_height)] if whole_due else []
    if slots <= 0:
        return regions
    extents = sorted((_grown(b, frame_width, frame_height) for b in interest), key=_side, reverse=True)
    clusters: List[Tuple[float, float, float, float]] = []
    for extent in extents:
        for index, cluster in enumerate(clusters):
            joined = _union(cluster, extent)
            if _side(joined) <= max(model_side, _side(cluster)):
                clusters[index] = joined
                break
        else:
            clusters.append(extent)
    while len(clusters) > slots:
        best = None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                side = _side(_union(clusters[i], clusters[j]))
                if best is None or side < best[0]:
                    best = (side, i, j)
        _side_ij, i, j = best
        clusters[i] = _union(clusters[i], clusters[j])
        del clusters[j]
    short_side = min(frame_width, frame_height)
    for cluster in clusters:
        side = max(model_side, _side(cluster))
        if side >= short_side and not whole_due and frame_width <= frame_height * 1.34:
            regions.append(whole(frame_width, frame_height))  # a square as big as the frame: the frame itself
            continue
        regions.append(square_around(cluster, side, frame_width, frame_height))
    return _distinct(regions)


def _distinct(regions: List[Region]) -> List[Region]:
    seen, out = set(), []
    for region in regions:
        if region not in seen:
            seen.add(region)
            out.append(region)
    return out


def to_frame(detections: Sequence[Detection], region: Region) -> List[Detection]:
    """A region's detections (in its own pixels) in pixels of the frame."""
    out = []
    for d in detections:
        x1, y1, x2, y2 = d.box
        out.append(Detection(d.label, d.class_id, d.score,
                             (x1 + region.x, y1 + region.y, x2 + region.x, y2 + region.y)))
    return out


def _cut(box: Box, region: Region, frame_width: int, frame_height: int) -> bool:
    """Does the box touch a border of its region that is not the frame's edge (where an object may go on)?"""
    x1, y1, x2, y2 = box
    rx1, ry1, rx2, ry2 = region.box
    return ((x1 - rx1 <= EDGE_PIXELS and rx1 > 0) or (y1 - ry1 <= EDGE_PIXELS and ry1 > 0)
            or (rx2 - x2 <= EDGE_PIXELS and rx2 < frame_width) or (ry2 - y2 <= EDGE_PIXELS and ry2 < frame_height))


def merge(found: Sequence[Tuple[Region, Sequence[Detection]]], frame_width: int, frame_height: int,
          max_results: int, nms_iou: float = MERGE_IOU) -> Tuple[Detection, ...]:
    """The detections of every region (already in frame pixels) as one set: cut boxes dropped where a whole
    one exists, then the best box of each object kept (class-wise NMS across regions), best first."""
    items = [(d, number, _cut(d.box, region, frame_width, frame_height))
             for number, (region, detections) in enumerate(found) for d in detections]
    if not items:
        return ()
    boxes = np.array([d.box for d, _n, _c in items], dtype=np.float64)
    labels = np.array([d.label for d, _n, _c in items])
    numbers = np.array([n for _d, n, _c in items])
    cut = np.array([c for _d, _n, c in items], dtype=bool)
    scores = np.array([d.score for d, _n, _c in items], dtype=np.float64)
    keep = np.ones(len(items), dtype=bool)
    if cut.any():
        rows = np.flatnonzero(cut)
        same = (labels[rows, None] == labels[None, :]) & (numbers[rows, None] != numbers[None, :]) & ~cut[None, :]
        near = (iou_matrix(boxes[rows], boxes) >= nms_iou) | (cover_matrix(boxes[rows], boxes) >= CUT_COVER)
        keep[rows[(same & near).any(axis=1)]] = False  # a whole box of the same object exists in another region
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(-scores[kept], kind="stable")]
    chosen: List[int] = []
    overlap = iou_matrix(boxes[order], boxes[order])
    same_class = labels[order][:, None] == labels[order][None, :]
    suppressed = np.zeros(len(order), dtype=bool)
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        chosen.append(int(order[rank]))
        suppressed |= same_class[rank] & (overlap[rank] >= nms_iou)
        if len(chosen) >= max_results:
            break
    return tuple(items[i][0] for i in chosen)


def tiles(width: int, height: int, model_side: int, max_tiles: int = 12, overlap: float = 0.2) -> List[Region]:
    """A still photo's tiles for `detect --tiles` and `eval --tiles`: squares at the model's own scale (larger
    when more than `max_tiles` would be needed), overlapping by `overlap` of a side so an object cut by one is
    whole in its neighbour, and the whole photo for objects larger than a tile."""
    side = float(model_side)
    while True:
        step = side * (1 - overlap)
        across = max(1, int(np.ceil((width - side) / step)) + 1) if width > side else 1
        down = max(1, int(np.ceil((height - side) / step)) + 1) if height > side else 1
        if across * down <= max_tiles or side >= min(width, height):
            break
        side *= 1.25
    side_px = int(round(min(side, width, height)))
    xs = np.linspace(0, width - side_px, across).round().astype(int) if across > 1 else [max((width - side_px) // 2, 0)]
    ys = np.linspace(0, height - side_px, down).round().astype(int) if down > 1 else [max((height - side_px) // 2, 0)]
    found = [Region(int(x), int(y), side_px, side_px) for y in ys for x in xs]
    return _distinct(found + [whole(width, height)])


# regions = auto: on when the frame's short side is at least this many model sides. Measured (tools/regions_check):
# PETS09 at 768x576 with the 300x300 SSD (1.9 sides) recall 0.70 -> 0.83, precision 0.72 -> 0.87; its 1080p
# version with the 640x640 YOLOv8n (1.7 sides) recall 0.41 -> 0.88: both clearly gain, so 1.5
AUTO_RATIO = 1.5
# seconds between whole-frame looks while regions are on (large objects, whatever no motion announced): the
# daemon passes detect_interval, the motion gate's own keep-alive look (10 s). Measured (tools/regions_check, one
# run each): every 2 s instead gave the same recall and a little less precision (1080p PETS 0.762 / 0.838 against
# 0.770 / 0.853), and cost the gated camera more (motion_check)
WHOLE_EVERY = 10.0
MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class RegionSettings:
    mode: str = "auto"  # auto | on | off
    budget: int = 3  # at most this many model calls a frame
    whole_every: float = WHOLE_EVERY
    show: bool = False  # keep the regions on the Result for the overlay (show_motion)


class RegionPlanner:
    """One inference worker's planner: the pure `plan` plus when the whole frame is due (the frame's clock)."""

    def __init__(self, settings: RegionSettings, model_side: int):
        self.settings, self.model_side = settings, model_side
        self._last_whole: Optional[float] = None

    def wanted(self, frame_width: int, frame_height: int) -> bool:
        mode = self.settings.mode
        return mode == "on" or (mode == "auto" and min(frame_width, frame_height) >= AUTO_RATIO * self.model_side)

    def regions(self, frame_width: int, frame_height: int, interest: Sequence[Box], clock: float
                ) -> Optional[List[Region]]:
        """The regions of this frame, or None for the plain whole-frame look (regions off for this size)."""
        if not self.wanted(frame_width, frame_height):
            return None
        last = self._last_whole
        due = last is None or clock < last or clock - last >= self.settings.whole_every - 1e-6
        planned = plan(frame_width, frame_height, self.model_side, interest, due, self.settings.budget)
        if any(r.is_whole(frame_width, frame_height) for r in planned):
            self._last_whole = clock
        return planned
