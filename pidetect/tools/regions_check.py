"""What regions buy, measured: person recall and precision, model calls and CPU, with `--regions off` and `auto`.

    python -m pidetect.tools.regions_check VIDEO GT.txt [--canvas 1920x1080] [--at X,Y] [--model M] [--keep DIR]

A labelled video (MOTChallenge ground truth) is placed into a larger canvas — plain grey with a little sensor
noise, so nothing unlabelled appears — as a camera with a wider view would see the same scene from afar, and
the ground truth shifted by the same offset (`--canvas 0x0`: the video as it is). Each mode is `pidetect run`
as a child process over the clip with per-frame records; its CPU time (user + sys) comes from the kernel's
accounting of the child. Recall and precision are of the per-frame confident detections of `--label` against
the labelled boxes at IoU 0.5 (one to one; don't-care boxes and the detections on them dropped), before any
tracking. Long on purpose: a script whose figures go in the README, not a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from ..models import mot
from ..tracking.association import assign
from .measure import machine_info

MATCH_IOU = 0.5


def place(video: Path, truth: mot.MotFile, canvas: Tuple[int, int], at: Tuple[int, int], folder: Path
          ) -> Tuple[Path, Path]:
    """The video inside a grey canvas at `at` (lossless FFV1), and its ground truth shifted alike."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width, height = canvas
    out = folder / f"placed-{width}x{height}.mkv"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    rng = np.random.default_rng(0)
    x, y = at
    while True:
        ok, image = capture.read()
        if not ok:
            break
        h, w = image.shape[:2]
        if x + w > width or y + h > height:
            raise SystemExit(f"the {w}x{h} video does not fit at {x},{y} in {width}x{height}")
        frame = np.full((height, width, 3), 118, np.int16) + rng.normal(0, 2.0, (height, width, 1)).astype(np.int16)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        frame[y:y + h, x:x + w] = image
        writer.write(frame)
    writer.release()
    capture.release()
    lines = []
    for rows, conf in ((truth.scored, 1), (truth.ignored, 0)):
        for number, boxes in rows.items():
            lines += [f"{number},{i},{bx + x},{by + y},{bw},{bh},{conf},-1,-1,-1" for i, bx, by, bw, bh in boxes]
    gt = folder / "gt.txt"
    gt.write_text("\n".join(lines) + "\n")
    return out, gt


def run_mode(clip: Path, mode: str, label: str, extra: List[str]) -> Dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "pidetect", "run", "--source", str(clip), "--regions", mode, "--per-frame",
               "--log-format", "json", "--log-level", "debug", "--display", "none", "--metrics-interval", "86400",
               "--no-snapshots", "--no-record", "--mqtt-host", "", "--state-dir", tempfile.mkdtemp(), *extra]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pidetect run --regions {mode} failed: {done.stderr[-2000:]}")
    frames: Dict[int, List[mot.Row]] = {}
    calls = []
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == "frame":
            frames[record["frame_seq"]] = [(0, d["box"][0], d["box"][1], d["box"][2] - d["box"][0],
                                            d["box"][3] - d["box"][1]) for d in record["detections"]
                                           if d["label"] == label]
            calls.append(record.get("model_calls", 1))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"frames": frames, "model_calls_per_frame": round(float(np.mean(calls)), 2) if calls else None,
            "cpu_s": round(cpu, 1)}


def recall_precision(truth: mot.MotFile, frames: Dict[int, List[mot.Row]]) -> Tuple[float, float]:
    matched = labelled = predicted = 0
    for number, rows in frames.items():
        kept = mot.drop_dont_care(truth, number, rows)
        scored = truth.scored.get(number, [])
        labelled += len(scored)
        predicted += len(kept)
        if scored and kept:
            overlap = mot._xywh_iou(scored, kept)
            matched += len(assign(1.0 - overlap, 1.0 - MATCH_IOU + 1e-9))
    return (matched / labelled if labelled else 0.0, matched / predicted if predicted else 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.regions_check", description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("gt", type=Path)
    parser.add_argument("--canvas", default="1920x1080", help="WxH of the larger frame (0x0: the video as it is)")
    parser.add_argument("--at", default="1000,400", help="X,Y of the video's top-left corner in the canvas")
    parser.add_argument("--label", default="person")
    parser.add_argument("--modes", default="off,auto", help="regions modes to compare (off,auto,on)")
    parser.add_argument("--keep", type=Path, help="keep the clip and its ground truth in this folder")
    parser.add_argument("--json", action="store_true")
    args, extra = parser.parse_known_args(argv)
    truth = mot.read_ground_truth(args.gt)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="pidetect-regions-"))
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.canvas.lower().split("x"))
    if width and height:
        clip, gt = place(args.video, truth, (width, height), tuple(int(v) for v in args.at.split(",")), folder)
        truth = mot.read_ground_truth(gt)
    else:
        clip = args.video
    rows = []
    for mode in args.modes.split(","):
        run = run_mode(clip, mode, args.label, extra)
        recall, precision = recall_precision(truth, run["frames"])
        rows.append({"mode": mode, "recall": round(recall, 3), "precision": round(precision, 3),
                     "model_calls_per_frame": run["model_calls_per_frame"], "cpu_s": run["cpu_s"],
                     "frames": len(run["frames"])})
    report = {"clip": str(clip), "canvas": args.canvas, "options": extra, "machine": machine_info(), "rows": rows}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{clip} ({args.canvas}), {args.label}, IoU {MATCH_IOU}; options {' '.join(extra) or '(defaults)'}")
    print(f"{'regions':<8} {'recall':>7} {'precision':>9} {'calls/frame':>11} {'CPU s':>7}")
    for row in rows:
        print(f"{row['mode']:<8} {row['recall']:>7.3f} {row['precision']:>9.3f} {row['model_calls_per_frame']:>11} "
              f"{row['cpu_s']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
