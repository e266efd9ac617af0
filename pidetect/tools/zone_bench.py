"""What zones and filters cost per frame: the tracking stage with 10 zones and 20 moving objects.

Part of `pidetect bench` (`zones_filters_10x20`: what zones and filters add to the tracker, target
< 0.2 ms per frame); also runnable alone: `python -m pidetect.tools.zone_bench [FRAMES]`.

The scene is the worst case a user could configure: ten 8-point concave zones overlapping the
whole frame, every one counting every label, per-label filters on every label seen, two object-mask
polygons, and 20 objects walking so that they keep crossing zone edges. Only the filters, the
tracker and the zones are timed (TrackingStage.update), at 1280x720, against the same stage without
zones and filters (the tracker alone) on the same detections.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Dict, List

import numpy as np

from ..config_tables import FilterSpec, ZoneSpec
from ..frames import Detection, Frame, Result
from ..geometry import Polygon
from ..tracking.filters import ObjectFilters
from ..tracking.stage import TrackingStage
from ..tracking.tracker import Tracker
from ..tracking.zones import Zones

WIDTH, HEIGHT = 1280, 720
LABELS = ("person", "car", "dog", "cat")


def zone_scene(zones: int = 10):
    """Ten concave 8-point zones (a 'C' shape each), side by side and overlapping, as fractions of the frame."""
    specs = []
    for index in range(zones):
        left = index / (zones + 1)
        w = 2.0 / (zones + 1)
        points = ((left, 0.1), (left + w, 0.1), (left + w, 0.3), (left + w / 2, 0.3), (left + w / 2, 0.7),
                  (left + w, 0.7), (left + w, 0.95), (left, 0.95))
        specs.append(ZoneSpec(f"zone{index}", Polygon(points), (), inertia=3))
    filters = [FilterSpec(label, min_area=0.001, max_area=0.5, min_ratio=0.1, max_ratio=10, min_score=0.3,
                          threshold=0.5) for label in LABELS]
    masks = [Polygon(((0.0, 0.0), (0.2, 0.0), (0.2, 0.05))), Polygon(((0.8, 0.0), (1.0, 0.0), (1.0, 0.05)))]
    return specs, filters, masks


def detections_at(seq: int, objects: int = 20) -> List[Detection]:
    """20 objects on circles, each box about 80x160 px, crossing zone edges as they go."""
    out = []
    for index in range(objects):
        angle = seq * 0.02 + index * 2 * math.pi / objects
        cx = WIDTH / 2 + (WIDTH * 0.4) * math.cos(angle)
        cy = HEIGHT / 2 + (HEIGHT * 0.3) * math.sin(angle * 1.3)
        box = (int(cx - 40), int(cy - 80), int(cx + 40), int(cy + 80))
        out.append(Detection(LABELS[index % len(LABELS)], index % len(LABELS), 0.8, box))
    return out


def zone_cost(frames: int = 2000) -> Dict[str, float]:
    """Per-frame milliseconds of the whole tracking stage, of the tracker alone on the same detections, and
    their difference: what zones and filters add (interleaved frame by frame, so drift cancels out)."""
    specs, filter_specs, masks = zone_scene()
    filters = ObjectFilters(filter_specs, masks)
    full = TrackingStage(Tracker(threshold=filters.threshold), filters, Zones(specs))
    plain = TrackingStage(Tracker())
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    results = [Result(Frame(image, seq, float(seq), clock=seq / 30), tuple(detections_at(seq)), 0.0)
               for seq in range(1, frames + 1)]
    with_zones: List[float] = []
    tracker_only: List[float] = []
    zone_events = 0
    for result in results:
        started = time.perf_counter()
        done = full.update(result)
        middle = time.perf_counter()
        plain.update(result)
        ended = time.perf_counter()
        with_zones.append((middle - started) * 1000)
        tracker_only.append((ended - middle) * 1000)
        zone_events += sum(1 for e in done.events if e.kind == "zone")
    with_zones, tracker_only = with_zones[50:], tracker_only[50:]  # the first frames build the tracks
    stage_ms, tracker_ms = statistics.median(with_zones), statistics.median(tracker_only)
    return {"median_ms": round(stage_ms - tracker_ms, 4), "stage_median_ms": round(stage_ms, 4),
            "stage_p95_ms": round(sorted(with_zones)[int(len(with_zones) * 0.95)], 4),
            "tracker_median_ms": round(tracker_ms, 4), "zone_events": zone_events, "frames": len(with_zones),
            "zones": len(specs), "objects": len(results[0].detections)}


def main() -> int:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cost = zone_cost(frames)
    print(f"{cost['zones']} zones, {cost['objects']} objects, {WIDTH}x{HEIGHT}, {cost['frames']} frames "
          f"({cost['zone_events']} zone events): zones + filters {cost['median_ms']:.3f} ms per frame (median); "
          f"the whole tracking stage {cost['stage_median_ms']:.3f} ms (p95 {cost['stage_p95_ms']:.3f}), "
          f"the tracker alone {cost['tracker_median_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
