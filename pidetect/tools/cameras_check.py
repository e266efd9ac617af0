"""What a second camera costs in memory: one `pidetect run` against two side by side (the systemd-native
design, pidetect@door + pidetect@garden, each with its own interpreter).

    python -m pidetect.tools.cameras_check [--seconds 20] [--size 640x480] [--fps 10] [--json]

Each daemon reads its own looped clip of scikit-image's photos at --fps, like a camera, with the web UI
and snapshots on (what a camera of several runs). Figures per process, read from /proc at the end:
peak RSS (VmHWM), private memory (RssAnon) and PSS (Pss from smaps_rollup), where pages two processes
share (the libraries: Python, OpenCV, LiteRT) count half in each; the sum of PSS is what the machine
really spends. Besides, the memory one Detector (interpreter + model) adds to a process that already
has everything else loaded: what one process serving two sources with one interpreter would save, at
most, over two processes. A real-time run, so it is a script, never a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from .measure import clip_cache_dir, free_port, machine_info, status_mb
from .demo import write_scene_video

SCENES = ([("chelsea.png", "cat"), ("astronaut.png", "person")], [("horse.png", "horse"), ("coffee.png", "cup")])


def make_clip(index: int, width: int, height: int, fps: float) -> Path:
    path = clip_cache_dir() / f"camera{index}_{width}x{height}_{fps:g}.avi"
    if not path.is_file():
        temporary = path.with_name(".tmp-" + path.name)
        write_scene_video(temporary, width, height, fps=fps, frames_per_scene=int(fps * 2), blank_frames=int(fps),
                          scenes=SCENES[index])
        os.replace(temporary, path)
    return path


def pss_mb(pid: int) -> Dict[str, float]:
    """Pss, Pss_Anon and Pss_File of the whole process, in MB (smaps_rollup)."""
    figures = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key = line.split(":", 1)[0]
                if key in ("Pss", "Pss_Anon", "Pss_File"):
                    figures[key] = int(line.split()[1]) / 1024
    except OSError:
        return {}
    return figures


def run_cameras(count: int, seconds: float, width: int, height: int, fps: float, workdir: Path) -> List[Dict]:
    """`count` daemons at once, each its own camera; their memory after `seconds` of running."""
    processes = []
    for index in range(count):
        name = ("door", "garden")[index]
        state = workdir / f"{name}-{count}"
        state.mkdir()
        args = [sys.executable, "-m", "pidetect", "run", "--camera-name", name, "--accelerator", "cpu",
                "--source", str(make_clip(index, width, height, fps)), "--realtime", "--loop",
                "--display", "mjpeg", "--mjpeg-port", str(free_port()), "--state-dir", str(state),
                "--snapshots", "--snapshot-dir", str(state / "snapshots"), "--log-format", "json",
                "--metrics-interval", "5", "--interpreters", "1"]
        processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(seconds)
    figures = []
    for index, process in enumerate(processes):
        status, pss = status_mb(process.pid), pss_mb(process.pid)
        figures.append({"camera": ("door", "garden")[index], "peak_rss_mb": round(status.get("VmHWM", 0), 1),
                        "rss_mb": round(status.get("VmRSS", 0), 1), "anon_mb": round(status.get("RssAnon", 0), 1),
                        "pss_mb": round(pss.get("Pss", 0), 1), "pss_file_mb": round(pss.get("Pss_File", 0), 1),
                        "running": process.poll() is None})
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    return figures


DETECTOR_COST = """
import json, os
import numpy
from pidetect.config import build_config
from pidetect.daemon.service import make_detector
from pidetect.tools.measure import status_mb
config = build_config(None, {"accelerator": "cpu"})
first = make_detector(config)  # the first one brings every library in
first.detect_image(numpy.zeros((480, 640, 3), numpy.uint8))
before = status_mb(os.getpid())
second = make_detector(config)
second.detect_image(numpy.zeros((480, 640, 3), numpy.uint8))
after = status_mb(os.getpid())
print(json.dumps({"rss_mb": round(after["VmRSS"] - before["VmRSS"], 1),
                  "anon_mb": round(after["RssAnon"] - before["RssAnon"], 1)}))
"""


def detector_cost() -> Dict[str, float]:
    """What one more interpreter with the default model adds to a process that has one already."""
    done = subprocess.run([sys.executable, "-c", DETECTOR_COST], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="pidetect-cameras-") as tmp:
        one = run_cameras(1, args.seconds, width, height, args.fps, Path(tmp))
        two = run_cameras(2, args.seconds, width, height, args.fps, Path(tmp))
    report = {"machine": machine_info(), "seconds": args.seconds, "size": args.size, "fps": args.fps,
              "one_camera": one, "two_cameras": two,
              "one_pss_mb": round(sum(p["pss_mb"] for p in one), 1),
              "two_pss_mb": round(sum(p["pss_mb"] for p in two), 1),
              "two_rss_sum_mb": round(sum(p["rss_mb"] for p in two), 1),
              "detector": detector_cost()}
    report["second_camera_mb"] = round(report["two_pss_mb"] - report["one_pss_mb"], 1)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = report["machine"]
    print(f"cameras_check — {m['cpu']} ({m['cores']} cores), {args.size} at {args.fps:g} fps, {args.seconds:g} s")
    for title, rows in (("one camera", one), ("two cameras", two)):
        for row in rows:
            print(f"  {title:<12} {row['camera']:<7} peak RSS {row['peak_rss_mb']:6.1f} MB, RSS {row['rss_mb']:6.1f}, "
                  f"private {row['anon_mb']:6.1f}, PSS {row['pss_mb']:6.1f} (of it files {row['pss_file_mb']:.1f})"
                  f"{'' if row['running'] else '  (EXITED)'}")
    print(f"  PSS, the machine's real cost: one camera {report['one_pss_mb']} MB, two cameras {report['two_pss_mb']} MB "
          f"(RSS summed: {report['two_rss_sum_mb']} MB): the second camera costs {report['second_camera_mb']} MB")
    print(f"  one more interpreter with the default model in a process that has one: {report['detector']['rss_mb']} "
          f"MB RSS ({report['detector']['anon_mb']} MB private)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
