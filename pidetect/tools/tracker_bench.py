"""What the tracker costs per frame with 5, 20 and 50 objects in view (target: < 1 ms at 50).

Part of `pidetect bench` (`tracker`); also runnable alone: `python -m pidetect.tools.tracker_bench [FRAMES]`.
The objects walk on crossing circles (zone_bench's scene) at 10 looks a second, with a few pixels of box
jitter and one detection in twenty missed, so prediction, both associations and the recovery passes all run.
Only Tracker.update is timed.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Dict, List

import numpy as np

from ..frames import Detection
from ..tracking.tracker import Tracker
from .zone_bench import detections_at


def jittered(seq: int, objects: int, rng: np.random.Generator) -> List[Detection]:
    out = []
    for det in detections_at(seq, objects):
        if rng.random() < 0.05:
            continue  # missed by the detector
        dx, dy = rng.integers(-3, 4, size=2)
        x1, y1, x2, y2 = det.box
        out.append(Detection(det.label, det.class_id, det.score, (x1 + dx, y1 + dy, x2 + dx, y2 + dy)))
    return out


def tracker_cost(objects: int, frames: int = 1000) -> Dict[str, float]:
    rng = np.random.default_rng(objects)
    scenes = [jittered(seq, objects, rng) for seq in range(1, frames + 1)]
    tracker = Tracker()
    times: List[float] = []
    for seq, detections in enumerate(scenes, 1):
        started = time.perf_counter()
        tracker.update(detections, seq / 10, seq)
        times.append((time.perf_counter() - started) * 1000)
    times = times[50:]  # the first looks build the objects
    return {"objects": objects, "median_ms": round(statistics.median(times), 4),
            "p95_ms": round(sorted(times)[int(len(times) * 0.95)], 4), "frames": len(times),
            "followed": len(tracker.tracks)}


def tracker_costs(frames: int = 1000) -> List[Dict[str, float]]:
    return [tracker_cost(objects, frames) for objects in (5, 20, 50)]


def main() -> int:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for row in tracker_costs(frames):
        print(f"{row['objects']:>2} objects: {row['median_ms']:.3f} ms per frame (median), p95 {row['p95_ms']:.3f} ms "
              f"over {row['frames']} frames ({row['followed']} followed at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
