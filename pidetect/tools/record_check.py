"""What recording costs: the daemon's CPU with record on vs off, the pre-roll's RAM, and the encoder's
CPU per frame through an FFmpeg subprocess vs PyAV in-process.

    python -m pidetect.tools.record_check [--seconds 30] [--rounds 2] [--size 1280x720] [--fps 15] [--json]

A real-time run (a camera's pace), so it is a script, never a unit test. The clip: scikit-image's
photos with empty frames between them (objects come and go, so clips are made), at --fps, looped, read
three ways: as a file; as raw frames on a pipe (rpicam-vid --codec yuv420); as H.264 on a pipe
(rpicam-vid --codec h264), whose clips are cut from the stream without encoding. On the pipes the camera
command is an FFmpeg decoding or copying the file, counted in the CPU figure like rpicam-vid would be.
Rounds interleave off and on so that both see the same machine. CPU % counts the daemon and its FFmpeg
children (all waited for: RUSAGE_CHILDREN). The three sources run without the motion gate, so that
detection costs the same in each; `file+gate` runs the file with the gate, where recording also costs
the decoding of every frame the gate would have skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from .measure import clip_cache_dir, machine_info, status_mb, vm_hwm_mb
from .video_frames import read_frames
from .demo import write_scene_video


def make_clip(width: int, height: int, fps: float) -> Path:
    path = clip_cache_dir() / f"record_{width}x{height}_{fps:g}.mp4"
    if not path.is_file():
        per_scene = int(fps * 3)  # 3 s of each photo, 3 s of nothing between them
        temporary = path.with_name(".tmp-" + path.name)
        write_scene_video(temporary, width, height, fps=fps, frames_per_scene=per_scene, blank_frames=per_scene)
        os.replace(temporary, path)
    return path


def h264_copy_of(clip: Path, fps: float) -> Path:
    """The clip as a camera's H.264 (no B-frames, a keyframe a second, as the Pi's encoder makes them)."""
    path = clip.with_name(clip.stem + "_h264.mp4")
    if not path.is_file():
        temporary = path.with_name(".tmp-" + path.name)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-preset", "veryfast",
                        "-bf", "0", "-x264-params", f"keyint={int(fps)}:min-keyint={int(fps)}:scenecut=0",
                        "-pix_fmt", "yuv420p", "-f", "mp4", str(temporary)], check=True)
        os.replace(temporary, path)
    return path


KINDS = ("file", "yuv420", "h264", "file+gate")


def source_args(kind: str, clip: Path, h264: Path, width: int, height: int, fps: float) -> List[str]:
    """file: the clip paced like a camera; yuv420: raw frames on a pipe (rpicam-vid --codec yuv420 stands in as
    FFmpeg decoding the H.264 file at its pace); h264: that file's H.264 on a pipe (rpicam-vid --codec h264)."""
    if kind in ("file", "file+gate"):  # file+gate: with the motion gate (the others without, to compare alike)
        return ["--source", str(clip), "--realtime", "--loop", "--motion", "on" if kind == "file+gate" else "off"]
    size = ["--width", str(width), "--height", str(height), "--fps", f"{fps:g}", "--motion", "off"]
    if kind == "yuv420":
        return ["--source", f"pipe:ffmpeg -v error -re -stream_loop -1 -i {h264} -f rawvideo -pix_fmt yuv420p -",
                *size]
    return ["--source", f"pipe:ffmpeg -v error -re -stream_loop -1 -i {h264} -c copy -f h264 -",
            "--pipe-codec", "h264", *size]


def daemon_run(source: List[str], seconds: float, record: bool, workdir: Path, encoder: str = "libx264") -> Dict:
    args = [sys.executable, "-m", "pidetect", "run", *source,
            "--duration", str(seconds), "--log-format", "json", "--metrics-interval", "1",
            "--state-dir", str(workdir / "state")]
    if record:
        args += ["--record", "--record-dir", str(workdir / "clips"), "--record-encoder", encoder]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0.0
    output: List[str] = []
    import threading

    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, vm_hwm_mb(proc.pid) or 0.0)
        time.sleep(0.2)
    reader.join(10)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = [json.loads(line) for line in (output[0] if output else "").splitlines() if line.startswith("{")]
    metrics = [r for r in records if r.get("event") == "metrics"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"record": record, "exit_code": proc.returncode, "cpu_percent": round(cpu / wall * 100, 1),
            "daemon_peak_rss_mb": round(peak, 1),
            "ring_mb_max": max((r.get("record_ring_mb", 0.0) for r in metrics), default=0.0),
            "clips_saved": len([r for r in records if r.get("event") == "clip" and r.get("state") == "saved"]),
            "frames_dropped_by_recorder": max((r.get("record_frames_dropped", 0) for r in metrics), default=0),
            "inference_fps": round(statistics.median([r["inference_fps"] for r in metrics[1:]] or [0.0]), 1)}


def ffmpeg_cost(frames: List, fps: float, workdir: Path) -> Dict:
    """CPU seconds per frame and peak RSS of the recorder's own FFmpeg command, fed as fast as it takes them."""
    from ..outputs.encoder import SegmentEncoder

    height, width = frames[0].shape[:2]
    folder = Path(tempfile.mkdtemp(prefix="record-check-", dir="/dev/shm"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    encoder = SegmentEncoder("ffmpeg", "libx264", width, height, fps, folder, "s")
    peak = anon = 0.0
    for index, frame in enumerate(frames):
        encoder.write(frame)
        if index % 10 == 0:
            figures = status_mb(encoder.process.pid)
            peak, anon = max(peak, figures.get("VmHWM", 0.0)), max(anon, figures.get("RssAnon", 0.0))
    encoder.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    size = sum(p.stat().st_size for p in folder.iterdir())
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"how": "ffmpeg subprocess (libx264 ultrafast)", "cpu_ms_per_frame": round(cpu / len(frames) * 1000, 2),
            "rss_mb": round(peak, 1), "anon_mb": round(anon, 1),
            "mbit_per_s": round(size * 8 / (len(frames) / fps) / 1e6, 2)}


def pyav_cost(frames: List, fps: float) -> Optional[Dict]:
    """The same encoding in-process with PyAV (its wheel bundles FFmpeg and libx264), if it is installed."""
    try:
        import av
    except ImportError:
        return None
    import io

    height, width = frames[0].shape[:2]
    rss_before = _rss_mb()
    start = resource.getrusage(resource.RUSAGE_SELF)
    output = io.BytesIO()
    container = av.open(output, mode="w", format="mpegts")
    from ..outputs.encoder import keyframe_frames

    gop = keyframe_frames(fps)  # the recorder's keyframe interval, so both make the same stream
    stream = container.add_stream("libx264", rate=int(fps), options={
        "preset": "ultrafast", "tune": "zerolatency", "crf": "26",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    return {"how": f"PyAV {av.__version__} in-process (libx264 ultrafast)",
            "cpu_ms_per_frame": round(cpu / len(frames) * 1000, 2), "rss_mb": round(_rss_mb() - rss_before, 1),
            "anon_mb": None,
            "mbit_per_s": round(len(output.getvalue()) * 8 / (len(frames) / fps) / 1e6, 2)}


def _rss_mb() -> float:
    return status_mb(os.getpid()).get("VmRSS", 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.record_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each daemon run (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved off/on rounds (default 2)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    clip = make_clip(width, height, args.fps)
    report: Dict = {"machine": machine_info(), "clip": str(clip), "fps": args.fps, "size": args.size, "runs": []}
    h264 = h264_copy_of(clip, args.fps)
    with tempfile.TemporaryDirectory(prefix="pidetect-record-check-") as tmp:
        for round_number in range(args.rounds):
            for kind in KINDS:
                for record in (False, True):
                    workdir = Path(tmp) / f"r{round_number}-{kind}-{int(record)}"
                    workdir.mkdir()
                    run = daemon_run(source_args(kind, clip, h264, width, height, args.fps), args.seconds, record,
                                     workdir)
                    run.update(round=round_number + 1, source=kind)
                    report["runs"].append(run)
                    print(f"record_check: round {round_number + 1} {kind} record {'on ' if record else 'off'}: "
                          f"CPU {run['cpu_percent']}%, clips {run['clips_saved']}", file=sys.stderr)
        frames = read_frames(clip, int(args.fps * 10))
        report["encoders"] = [ffmpeg_cost(frames, args.fps, Path(tmp))]
        pyav = pyav_cost(frames, args.fps)
        if pyav:
            report["encoders"].append(pyav)
    report["median_cpu_percent"] = {
        f"{kind} record {'on' if record else 'off'}": round(statistics.median(
            [r["cpu_percent"] for r in report["runs"] if r["source"] == kind and r["record"] == record]), 1)
        for kind in KINDS for record in (False, True)}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    machine = report["machine"]
    print(f"{machine['cpu']} ({machine['cores']} cores, flags {', '.join(machine['cpu_flags'])}); "
          f"{args.size} at {args.fps:g} fps --realtime, {args.seconds:g} s per run, {args.rounds} round(s)")
    for run in report["runs"]:
        print(f"  round {run['round']} {run['source']:<9} record {'on ' if run['record'] else 'off'}: CPU "
              f"{run['cpu_percent']}% (daemon + children), daemon peak RSS {run['daemon_peak_rss_mb']} MB, ring max "
              f"{run['ring_mb_max']} MB, clips {run['clips_saved']}, recorder drops "
              f"{run['frames_dropped_by_recorder']}, inference {run['inference_fps']} fps")
    print("  median CPU: " + ", ".join(f"{name} {value}%" for name, value in report["median_cpu_percent"].items()))
    for encoder in report["encoders"]:
        memory = (f"peak RSS {encoder['rss_mb']} MB (private {encoder['anon_mb']} MB) of its own process"
                  if encoder["anon_mb"] is not None else f"+{encoder['rss_mb']} MB in the daemon")
        print(f"  encoder {encoder['how']}: {encoder['cpu_ms_per_frame']} ms CPU per frame, {memory}, "
              f"{encoder['mbit_per_s']} Mbit/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
