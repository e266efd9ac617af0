"""What the motion gate saves, measured: one realistic fixed-camera clip, run with and without the gate.

    python -m pidetect.tools.motion_check [--minutes 5] [--fps 15] [--keep DIR] [--every-frame-too] [RUN FLAGS]

(RUN FLAGS, e.g. `--regions off`, are passed to both runs.)

The clip is built from real photos: one still scene with sensor noise and JPEG artefacts on every
frame; a person walks in, stays a while and walks out; a cat walks in and stands still for a
minute; a global lighting change (a lamp switched on); a motorcycle crosses; the person again.
Each run is `pidetect run --realtime` as a child process; its CPU time (user + sys) comes from the
kernel's accounting of the child. The check passes when, in the same run of this script:
- CPU with the gate <= 0.35 x without;
- the same labels enter, each `entered` within 1 s of video time of the ungated run's, and the
  same labels leave (the still cat neither leaves early nor keeps inference at the full rate);
- no entered or left event within 3 s after the lighting change that the ungated run does not have.
With --every-frame-too a third run has the motion detector look at every frame
(`--idle-motion-fps 0`), judged against the same ungated run: what idle sampling adds.
Long and realtime on purpose, so it is a script (its figures go in the README), not a unit test;
the gate's logic is unit-tested on synthetic frames in tests/test_motion.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .measure import machine_info
from .demo import load_photo

SIZE = (960, 540)


@dataclass(frozen=True)
class Walker:
    """A photo cut-out that walks in from one side, may stand still, and walks out."""

    photo: str
    label: str
    size: Tuple[int, int]
    enter: float  # seconds: starts entering
    stand: Tuple[float, float]  # seconds: standing still from, to
    leave: float  # seconds: fully out
    y: int
    x_stand: int


def story(minutes: float) -> Tuple[List[Walker], float]:
    """The scene's events, scaled to the clip's length (5 minutes: the times below)."""
    k = minutes / 5
    walkers = [
        Walker("astronaut.png", "person", (300, 300), 20 * k, (24 * k, 34 * k), 38 * k, 200, 300),
        Walker("chelsea.png", "cat", (300, 200), 60 * k, (64 * k, 124 * k), 128 * k, 300, 560),
        Walker("motorcycle_left.png", "motorcycle", (330, 220), 200 * k, (205 * k, 205 * k), 210 * k, 280, 320),
        Walker("astronaut.png", "person", (300, 300), 250 * k, (254 * k, 262 * k), 266 * k, 200, 600),
    ]
    return walkers, 160 * k  # the lamp goes on


def x_at(walker: Walker, t: float) -> int:
    """Left edge at time t: slides in from the left, stands, slides out to the right."""
    start, end = -walker.size[0], SIZE[0]
    if t < walker.stand[0]:
        f = (t - walker.enter) / max(1e-6, walker.stand[0] - walker.enter)
        return int(start + f * (walker.x_stand - start))
    if t <= walker.stand[1]:
        return walker.x_stand
    f = (t - walker.stand[1]) / max(1e-6, walker.leave - walker.stand[1])
    return int(walker.x_stand + f * (end - walker.x_stand))


def write_clip(path: Path, minutes: float, fps: int) -> Dict[str, object]:
    rng = np.random.default_rng(7)
    gravel = load_photo("gravel.png")  # scikit-image's gravel: an empty driveway, nothing to detect
    background = cv2.resize(np.vstack([np.hstack([gravel, gravel])] * 2), SIZE)
    background = cv2.convertScaleAbs(background, alpha=0.7, beta=30)
    walkers, lamp_at = story(minutes)
    cut = {w.photo: cv2.resize(load_photo(w.photo), w.size) for w in walkers}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    frames = int(minutes * 60 * fps)
    for number in range(frames):
        t = number / fps
        frame = background.copy()
        for w in walkers:
            if w.enter <= t <= w.leave:
                x = x_at(w, t)
                left, right = max(0, x), min(SIZE[0], x + w.size[0])
                if right > left:
                    frame[w.y:w.y + w.size[1], left:right] = cut[w.photo][:, left - x:right - x]
        if t >= lamp_at:
            frame = cv2.convertScaleAbs(frame, alpha=1.15, beta=45)
        noise = rng.normal(0, 3.0, frame.shape).astype(np.float32)
        frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        writer.write(frame)  # mp4v compresses: the JPEG-like block artefacts a camera stream has
    writer.release()
    return {"frames": frames, "fps": fps, "lamp_at_s": lamp_at,
            "walkers": [{"label": w.label, "enter_s": w.enter, "still_s": list(w.stand), "out_s": w.leave}
                        for w in walkers]}


def run(clip: Path, motion: str, fps: int, extra: Tuple[str, ...] = ()) -> Dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pidetect", "run", "--source", str(clip), "--realtime",
                           "--motion", motion, "--log-format", "json", "--metrics-interval", "10", *extra],
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    events = [(r["state"], r["label"], round(r["frame_seq"] / fps, 2)) for r in records if r.get("event") == "detection"]
    metrics = [r for r in records if r.get("event") == "metrics"]
    return {"motion": motion, "flags": list(extra), "exit": done.returncode, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "events": events, "inferences": sum(round(m["inference_fps"] * m["interval_s"]) for m in metrics),
            "metrics": [{k: m.get(k) for k in ("ts", "inference_fps", "motion_share", "frames_gated", "frames_skipped")}
                        for m in metrics]}


def judge(gated: Dict[str, object], ungated: Dict[str, object], scenario: Dict[str, object]) -> List[Dict[str, object]]:
    def entered(result):
        return [(label, t) for state, label, t in result["events"] if state == "entered"]

    def left(result):
        return sorted(label for state, label, _t in result["events"] if state == "left")

    checks = []
    ratio = gated["cpu_s"] / ungated["cpu_s"] if ungated["cpu_s"] else float("inf")
    checks.append({"check": "CPU with the gate <= 0.35 x without", "value": round(ratio, 3), "pass": ratio <= 0.35})
    a, b = entered(gated), entered(ungated)
    same_labels = sorted(label for label, _ in a) == sorted(label for label, _ in b)
    late = []
    pool = list(b)
    for label, t in a:
        match = min((u for u in pool if u[0] == label), key=lambda u: abs(u[1] - t), default=None)
        if match is None or abs(match[1] - t) > 1.0:
            late.append((label, t, match))
        else:
            pool.remove(match)
    checks.append({"check": "same labels entered, each within 1 s of the ungated run", "value": {"gated": a, "ungated": b},
                   "pass": same_labels and not late})
    checks.append({"check": "same labels left", "value": {"gated": left(gated), "ungated": left(ungated)},
                   "pass": left(gated) == left(ungated)})
    lamp = scenario["lamp_at_s"]

    def near_lamp(result):
        return sorted((s, l) for s, l, t in result["events"] if lamp <= t <= lamp + 3)

    checks.append({"check": "no event caused by the lighting change", "value": near_lamp(gated),
                   "pass": near_lamp(gated) == near_lamp(ungated)})
    cat = next(w for w in scenario["walkers"] if w["label"] == "cat")
    cat_left = [t for s, l, t in gated["events"] if s == "left" and l == "cat"]
    checks.append({"check": "the still cat stays until it walks out", "value": cat_left,
                   "pass": bool(cat_left) and min(cat_left) >= cat["still_s"][1]})
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.motion_check", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="clip length (default 5)")
    parser.add_argument("--fps", type=int, default=15, help="clip frame rate (default 15)")
    parser.add_argument("--keep", type=Path, help="keep the clip and the report in this folder")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--every-frame-too", action="store_true",
                        help="a third run: the gate with the motion detector on every frame (--idle-motion-fps 0)")
    args, daemon_flags = parser.parse_known_args(argv)  # anything else is a flag of both runs (--regions off)
    with tempfile.TemporaryDirectory(prefix="pidetect-motion-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clip = folder / "fixed_camera.mp4"
        print(f"writing a {args.minutes:g}-minute clip at {args.fps} fps ...", file=sys.stderr, flush=True)
        scenario = write_clip(clip, args.minutes, args.fps)
        print("run without the gate ...", file=sys.stderr, flush=True)
        ungated = run(clip, "off", args.fps, tuple(daemon_flags))
        print("run with the gate ...", file=sys.stderr, flush=True)
        gated = run(clip, "on", args.fps, tuple(daemon_flags))
        runs = {"ungated": ungated, "gated": gated}
        if args.every_frame_too:
            print("run with the gate, motion detector on every frame ...", file=sys.stderr, flush=True)
            runs["gated_every_frame"] = run(clip, "on", args.fps, ("--idle-motion-fps", "0", *daemon_flags))
        hours = args.minutes / 60
        report = {"scenario": scenario, **runs,
                  "checks": {name: judge(r, ungated, scenario) for name, r in runs.items() if name != "ungated"},
                  "cpu_s_per_hour": {name: round(r["cpu_s"] / hours, 1) for name, r in runs.items()},
                  "cpu": os.uname().machine, "cpu_flags": machine_info()["cpu_flags"]}
        if args.keep:
            (folder / "motion_check.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"CPU: {report['cpu']} {' '.join(report['cpu_flags'])}")
        for name, r in runs.items():
            print(f"{name:<8} CPU {r['cpu_s']:.1f} s over {r['wall_s']:.0f} s ({report['cpu_s_per_hour'][name]:.0f} "
                  f"CPU-s per hour of video), {r['inferences']} inferences, events {r['events']}")
        for name, checks in report["checks"].items():
            for check in checks:
                print(f"{'PASS' if check['pass'] else 'FAIL'}  {name}: {check['check']}: {check['value']}")
    checks = report["checks"]["gated"]
    return 0 if all(c["pass"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
