"""bench's pipeline figures: the daemon's own pipeline in process (display off and on, the motion gate) and
`pidetect run` as a child process (start to READY, CPU, peak RSS with every output on)."""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional


from ..config import Config
from .measure import fake_framebuffer, free_port, mapped_rss_mb, status_mb


def pipeline(model: Path, labels: Path, clip: Path, frames: int, interpreters: int, display: str,
             workdir: Path) -> Dict[str, float]:
    """The real capture thread + slot + worker (+ display thread) on the clip, frame by frame."""
    from ..daemon.logs import RecordLog
    from ..daemon.service import Service

    env_before = os.environ.get("PIDETECT_SYSFS")
    viewer: Optional[threading.Thread] = None
    overrides: Dict[str, object] = {}
    if display == "fb":
        fb, sysfs = fake_framebuffer(workdir, 1920, 1080)
        os.environ["PIDETECT_SYSFS"] = str(sysfs)
        overrides = {"display": ("fb",), "fb_device": str(fb), "fb_tty": ""}
    elif display == "mjpeg":
        overrides = {"display": ("mjpeg",), "mjpeg_port": free_port()}
    config = Config(source=str(clip), model=str(model), labels=str(labels or ""), interpreters=interpreters,
                    max_frames=frames, metrics_interval=3600, **overrides)
    sink = open(os.devnull, "w")
    service = Service(config, RecordLog("json", stream=sink))
    if display == "mjpeg":
        viewer = threading.Thread(target=_watch_mjpeg, args=(config.mjpeg_port,), daemon=True)
        viewer.start()
    cpu_before = time.process_time()
    started = time.perf_counter()
    service.run()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    sink.close()
    if env_before is None:
        os.environ.pop("PIDETECT_SYSFS", None)
    shown = sum(output.shown for output in service.running.outputs if hasattr(output, "shown"))
    return {"display": display, "interpreters": interpreters, "frames": service.metrics.total_inferred,
            "frames_per_s": round(service.metrics.steady_fps() or 0.0, 2),
            "cpu_percent": round(cpu / elapsed * 100, 1),
            "display_shown": shown if display != "none" else None}


def gated_pipeline(model: Path, labels: Optional[Path], clip: Path) -> Dict[str, object]:
    """The clip paced like a camera, once with the motion gate and once without: what the gate saves.

    The bench clip shows photos with empty frames between them, so the gate should rest on the
    empty stretches; a fixed camera's day is mostly empty stretches (python -m pidetect.tools.motion_check).
    """
    from ..daemon.logs import RecordLog
    from ..daemon.service import Service

    rows: Dict[str, object] = {}
    for motion in ("off", "on"):
        config = Config(source=str(clip), model=str(model), labels=str(labels or ""), realtime=True,
                        motion=motion, metrics_interval=3600)
        sink = open(os.devnull, "w")
        service = Service(config, RecordLog("json", stream=sink))
        cpu_before, started = time.process_time(), time.perf_counter()
        service.run()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        sink.close()
        gate = service.running.gate
        rows[f"motion_{motion}"] = {
            "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "inferences": service.metrics.total_inferred,
            "frames": service.running.capture.seq,
            "frames_gated": gate.counters.gated if gate else 0,
            "frames_skipped": gate.counters.skipped if gate else 0,
            "motion_share": round(gate.counters.motion_frames / max(1, gate.counters.looked), 3) if gate else None}
    off, on = rows["motion_off"], rows["motion_on"]
    rows["cpu_ratio"] = round(on["cpu_seconds"] / off["cpu_seconds"], 3) if off["cpu_seconds"] else None
    return rows


def _watch_mjpeg(port: int) -> None:
    """One viewer reading the stream for the whole run, so every frame is really JPEG-encoded."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
                while conn.recv(1 << 16):
                    pass
            return
        except OSError:
            time.sleep(0.05)


def _review_page_open(port: int, stop: threading.Event) -> None:
    """The web app left open as its pages ask: the events page's list and every thumbnail (and each snapshot)
    every 2 s, the live page's /api/live every 2 s, the status page's /api/status and /metrics every 6 s."""
    import urllib.request

    base, count = f"http://127.0.0.1:{port}", 0
    while not stop.is_set():
        try:
            urllib.request.urlopen(base + "/events", timeout=5).read()
            events = json.loads(urllib.request.urlopen(base + "/api/events?limit=100", timeout=5).read())
            for event in events:
                for part in ("thumbnail", "snapshot"):
                    if event.get(part):
                        urllib.request.urlopen(base + event[part], timeout=5).read()
            urllib.request.urlopen(base + "/api/live", timeout=5).read()
            if count % 3 == 0:
                urllib.request.urlopen(base + "/metrics", timeout=5).read()
                urllib.request.urlopen(base + "/api/status", timeout=5).read()
            count += 1
        except (OSError, ValueError):
            pass
        stop.wait(2.0)


EVERYTHING_ZONES = """[zones.left]
points = [[0.0, 0.4], [0.5, 0.4], [0.5, 1.0], [0.0, 1.0]]

[zones.right]
points = [[0.5, 0.4], [1.0, 0.4], [1.0, 1.0], [0.5, 1.0]]
objects = ["person", "cat"]

[filters.person]
min_area = 0.005
threshold = 0.5
"""


def daemon_process(clip: Path, model: Path, labels: Path, display: str, workdir: Path,
                   duration: float, interpreters: int = 1) -> Dict[str, float]:
    """Start to READY over a real notify socket; CPU % from getrusage(RUSAGE_CHILDREN), peak RSS from VmHWM."""
    notify_path = workdir / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    args = [sys.executable, "-m", "pidetect", "run", "--source", str(clip), "--realtime", "--loop",
            "--model", str(model), *(["--labels", str(labels)] if labels else []), "--duration", str(duration),
            "--log-format", "json", "--metrics-interval", "1", "--interpreters", str(interpreters),
            "--accelerator", "cpu"]  # the CPU's figures; the accelerator's are `accelerator_ceiling`
    fb: Optional[Path] = None
    stop_page = threading.Event()
    if display in ("fb", "all+fb"):
        fb, sysfs = fake_framebuffer(workdir, 1920, 1080)
        env["PIDETECT_SYSFS"] = str(sysfs)
        args += ["--fb-device", str(fb), "--fb-tty", ""]
    push = None
    if display in ("mjpeg", "all", "all+fb", "all+notify"):
        port = free_port()
        state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
        args += ["--mjpeg-port", str(port), "--state-dir", str(state)]
        threading.Thread(target=_watch_mjpeg, args=(port,), daemon=True).start()  # a viewer, so it encodes
        if display != "mjpeg":  # "mjpeg" is the live view with one viewer, as it was measured before the web UI
            threading.Thread(target=_review_page_open, args=(port, stop_page), daemon=True).start()
    if display.startswith("all"):  # the web UI with the review page open and /metrics scraped, snapshots, the
        config = workdir / "everything.toml"  # event store, zones and filters (all+fb: and the HDMI screen)
        text = EVERYTHING_ZONES
        if display == "all+notify":  # and one notification target, a local push service (every label, no cooldown)
            from .push_service import PushService

            push = PushService()
            text += f'\n[notify.bench]\nurls = ["json://127.0.0.1:{push.port}/push"]\ncooldown = 0\n'
        config.write_text(text)
        args += ["--display", "fb,mjpeg" if display == "all+fb" else "mjpeg", "--snapshots", "--snapshot-dir",
                 str(workdir / "snapshots"), "--config", str(config)]
    elif display != "none":
        args += ["--display", display]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    ready_s = None
    try:
        while ready_s is None:
            message = receiver.recv(4096).decode()
            if "READY=1" in message.split("\n"):
                ready_s = time.perf_counter() - started
    except socket.timeout:
        pass
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = peak_anon = peak_file = 0.0
    reader = threading.Thread(target=lambda: outputs.append(proc.stdout.read()), daemon=True)
    outputs: List[str] = []
    reader.start()
    fb_mapped = 0.0
    while proc.poll() is None:
        figures = status_mb(proc.pid)
        peak = max(peak, figures.get("VmHWM", 0.0))
        peak_anon = max(peak_anon, figures.get("RssAnon", 0.0))
        peak_file = max(peak_file, figures.get("RssFile", 0.0))
        if fb is not None:
            fb_mapped = max(fb_mapped, mapped_rss_mb(proc.pid, fb) or 0.0)
        time.sleep(0.1)
    reader.join(5)
    stop_page.set()
    if push is not None:
        push.httpd.shutdown()
    output = outputs[0] if outputs else ""
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - started
    receiver.close()
    notify_path.unlink()
    rss = [json.loads(line)["rss_mb"] for line in output.splitlines() if '"event": "metrics"' in line]
    steady = rss[len(rss) // 2:] or rss
    cpu_s = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    return {"display": display, "interpreters": interpreters,
            "start_to_ready_s": round(ready_s, 3) if ready_s else None,
            "cpu_percent": round(cpu_s / wall * 100, 1),
            "peak_rss_mb": round(peak, 1),
            "peak_anon_mb": round(peak_anon, 1), "peak_file_mb": round(peak_file, 1),
            "fb_standin_rss_mb": round(fb_mapped, 1),
            "steady_rss_mb": round(statistics.median(steady), 1) if steady else None,
            "exit_code": proc.returncode, **({"notifications": len(push.arrivals)} if push is not None else {})}


