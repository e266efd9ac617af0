"""What regions cost per frame: the same frames looked at whole and through regions, in one interleaved run.

Part of `pidetect bench` (`regions`: model calls a frame and the time ratio against the whole-frame look;
targets <= 3 calls and <= 3.5x); also runnable alone: `python -m pidetect.tools.regions_bench CLIP [FRAMES]`.
The bench clip's frames are placed in a 1920x1080 grey canvas (a camera that sees the scene from afar), the
motion detector gives the motion boxes, the tracker the followed objects' boxes, as in the daemon.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..capture.motion import MotionDetector
from ..frames import Frame
from ..inference.detector import Detector, DetectorOptions
from ..inference.regions import RegionPlanner, RegionSettings
from ..tracking.tracker import Tracker

CANVAS = (1920, 1080)


def placed(image: np.ndarray) -> np.ndarray:
    width, height = CANVAS
    canvas = np.full((height, width, 3), 118, np.uint8)
    h, w = image.shape[:2]
    scale = min(1.0, (height / 2) / h, (width / 2) / w)
    if scale < 1.0:
        import cv2

        image = cv2.resize(image, (int(w * scale), int(h * scale)))
        h, w = image.shape[:2]
    canvas[height - h - 40:height - 40, width - w - 60:width - 60] = image
    return canvas


def regions_cost(model: Path, labels: Optional[Path], frames: list, threads: Optional[int] = None,
                 fps: float = 30.0) -> Dict[str, float]:
    detector = Detector(model, labels, DetectorOptions(num_threads=threads, weak_threshold=0.25))
    planner = RegionPlanner(RegionSettings("on"), min(detector.input_width, detector.input_height))
    motion, tracker = MotionDetector(), Tracker()
    whole_ms, region_ms, calls = [], [], []
    detector.detect(Frame(placed(frames[0]), 0, 0.0))  # the first invoke packs XNNPACK's weights
    for seq, image in enumerate(frames, 1):
        canvas = placed(image)
        clock = seq / fps
        moving = motion.update(canvas, 1 / fps).boxes
        frame = Frame(canvas, seq, time.time(), clock=clock, moving=tuple(moving))
        started = time.perf_counter()
        detector.detect(frame)
        middle = time.perf_counter()
        regions = planner.regions(CANVAS[0], CANVAS[1], tuple(moving) + tuple(tracker.expected_boxes()), clock)
        result = detector.detect_regions(frame, regions)
        ended = time.perf_counter()
        tracker.update(result.detections, clock, seq, weak=result.weak)
        whole_ms.append((middle - started) * 1000)
        region_ms.append((ended - middle) * 1000)
        calls.append(result.model_calls)
    whole, regions_median = statistics.median(whole_ms), statistics.median(region_ms)
    return {"frames": len(frames), "model_calls_per_frame": round(float(np.mean(calls)), 2),
            "whole_ms_median": round(whole, 2), "regions_ms_median": round(regions_median, 2),
            "regions_ms_mean": round(float(np.mean(region_ms)), 2), "whole_ms_mean": round(float(np.mean(whole_ms)), 2),
            "ratio": round(float(np.mean(region_ms)) / max(float(np.mean(whole_ms)), 1e-9), 2)}


def main() -> int:
    from ..inference.model_paths import resolve_model_paths
    from .video_frames import read_frames

    if len(sys.argv) < 2:
        print("usage: python -m pidetect.tools.regions_bench CLIP [FRAMES]", file=sys.stderr)
        return 2
    clip = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    model, labels = resolve_model_paths(None, None)
    row = regions_cost(model, labels, read_frames(clip, count))
    print(f"{row['frames']} frames in {CANVAS[0]}x{CANVAS[1]}: {row['model_calls_per_frame']} model calls a frame, "
          f"{row['regions_ms_mean']:.1f} ms a frame with regions vs {row['whole_ms_mean']:.1f} ms whole "
          f"({row['ratio']:.2f}x; medians {row['regions_ms_median']:.1f} / {row['whole_ms_median']:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
