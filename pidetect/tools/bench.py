"""`pidetect bench`: where the time goes, and how close the pipeline gets to the physical limit.

Measured side by side in one run, on the same frames:
  ceiling   interpreter-only throughput (invoke on a prepared input) per thread count, and two
            1-thread interpreters in parallel;
  stages    per-frame cost of capture/decode, preprocess, invoke, postprocess, tracking, overlay,
            display encode (JPEG for MJPEG, RGB565 pack for the framebuffer), median and p95;
  serial    the tutorial loop users start from (read -> resize -> invoke -> parse -> draw, one
            thread of control, same model and backend);
  pipeline  the daemon's own pipeline (capture thread + latest-frame slot + inference worker) on
            the same file, display off and on, as frames/s and as a ratio to the ceiling;
  process   `pidetect run` as a child: start to READY (a real sd_notify socket), CPU %, peak RSS.

The ceiling, the serial loop and the pipelines are measured in interleaved rounds and reported as
medians of per-round figures: on a shared machine the speed drifts by several percent within a
minute, and a ratio of two figures taken minutes apart would measure the drift. End-to-end rates
are steady rates (first to last result), so start-up and shutdown do not count against them.
Targets are judged by `pidetect bench --check`, never by unit tests.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from .. import __version__
from ..capture.motion import MotionDetector
from ..config import Config
from ..files import replaced_when_done
from .demo import write_scene_video
from ..inference.backends import BACKENDS, resolve_backend
from ..inference.detector import Detector, DetectorOptions
from ..errors import ModelError, UnavailableError
from ..outputs.fb import FramebufferDisplay
from ..tracking.tracker import Tracker
from .regions_bench import regions_cost
from .video_frames import read_frames
from .tracker_bench import tracker_costs
from .zone_bench import zone_cost
from ..frames import Frame, Result
from ..outputs.overlay import Overlay


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def stage_summary(values_ms: List[float]) -> Dict[str, float]:
    return {"median_ms": round(statistics.median(values_ms), 3), "p95_ms": round(percentile(values_ms, 95), 3)}


def clip_cache_dir() -> Path:
    """Where generated clips are kept between runs: a private folder (0700) in the user's cache.

    Not a fixed name in /tmp: there any local user could put a file or a symlink in its place
    beforehand, and a root bench would read or overwrite what it points to.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "pidetect"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if folder.is_symlink() or folder.stat().st_uid != os.getuid():
        raise UnavailableError(f"clip cache {folder} is not a folder owned by this user; remove it or set "
                               "XDG_CACHE_HOME")
    folder.chmod(0o700)
    return folder


def count_frames(path: Path, at_least: int) -> int:
    """Frames OpenCV can read from `path`, counting up to `at_least`."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while count < at_least and capture.isOpened() and capture.grab():
        count += 1
    capture.release()
    return count


def make_clip(folder: Path, width: int, height: int, frames: int) -> Path:
    """A 1280x720 (by default) mp4 of real photos with empty frames between them, cached in `folder`.

    A cached clip is used only if it is a regular file that still holds `frames` readable frames;
    a new one is written to a temporary name and renamed into place.
    """
    path = folder / f"bench_{width}x{height}_{frames}.mp4"
    if path.is_file() and not path.is_symlink() and count_frames(path, frames) >= frames:
        return path
    per_scene = max(1, frames // 10)
    repeat = max(1, math.ceil(frames / (5 * 2 * per_scene)))  # at least `frames` frames
    with replaced_when_done(path, suffix=".mp4") as temporary:  # the video writer goes by the extension
        write_scene_video(temporary, width, height, fps=30, frames_per_scene=per_scene,
                          blank_frames=per_scene, repeat=repeat)
    return path


# --- ceiling -------------------------------------------------------------------------------------
def accelerator_ceiling(model: Optional[Path], labels: Optional[Path], settings, runs: int,
                        warmup: int = 10) -> Dict[str, object]:
    """Which accelerator `settings` run (and why, for auto), with its invoke rate when it is the Edge TPU.

    Every other figure of bench is the CPU's, on the CPU model; this row is what a Coral adds.
    """
    from ..inference.accelerator import open_detector

    detector = open_detector(model, labels, DetectorOptions(), settings)
    row: Dict[str, object] = {"asked": settings.accelerator, "ran": detector.accelerator,
                              "model": str(detector.model_path), "note": detector.accelerator_note}
    if detector.delegate is not None:
        row.update(invoke_rate(detector, runs, warmup, repeats=1))
    return row


def invoke_rate(detector: Detector, runs: int, warmup: int = 10, repeats: int = 3) -> Dict[str, float]:
    """Best of `repeats` timed batches of `runs` invokes on a placed blank frame, after `warmup` ones."""
    detector.prepare(np.zeros((detector.input_height, detector.input_width, 3), np.uint8))
    for _ in range(warmup):
        detector.interpreter.invoke()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(runs):
            detector.interpreter.invoke()
        best = min(best, time.perf_counter() - started)
    return {"inferences_per_s": round(runs / best, 2), "ms": round(best / runs * 1000, 2)}


def ceiling(model: Path, labels: Path, threads: int, runs: int, warmup: int = 10, repeats: int = 3,
            backend: str = "auto") -> Dict[str, float]:
    """Best of `repeats` timed batches: the ceiling is what the interpreter can do, not a noisy average."""
    detector = Detector(model, labels, DetectorOptions(num_threads=threads, backend=backend))
    return {"threads": threads, **invoke_rate(detector, runs, warmup, repeats)}


def parallel_ceiling(model: Path, labels: Path, interpreters: int, runs: int) -> Dict[str, float]:
    """`interpreters` one-thread interpreters invoking concurrently (the alternating-frames idea's limit)."""
    detectors = [Detector(model, labels, DetectorOptions(num_threads=1)) for _ in range(interpreters)]
    for d in detectors:
        d.prepare(np.zeros((d.input_height, d.input_width, 3), np.uint8))
        for _ in range(5):
            d.interpreter.invoke()
    barrier = threading.Barrier(interpreters + 1)

    def work(d: Detector) -> None:
        barrier.wait()
        for _ in range(runs):
            d.interpreter.invoke()

    workers = [threading.Thread(target=work, args=(d,)) for d in detectors]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    return {"interpreters": interpreters, "threads_each": 1,
            "inferences_per_s": round(interpreters * runs / elapsed, 2)}


# --- other backends and models --------------------------------------------------------------------
OTHER_PYTHON_SNIPPET = """
import json, sys
from pathlib import Path
from pidetect.tools.bench import backend_rows
print(json.dumps(backend_rows(Path(sys.argv[1]), Path(sys.argv[2]) if sys.argv[2] else None, int(sys.argv[3]),
                               int(sys.argv[4]))))
"""


def backend_rows(model: Path, labels: Path, threads: int, runs: int) -> List[Dict[str, object]]:
    """Every TFLite backend in this Python: its interpreter-only rate on the model, or that it is missing."""
    rows: List[Dict[str, object]] = []
    for name, _module in BACKENDS:
        where = {"python": platform.python_version(), "numpy": np.__version__, "interpreter": sys.executable}
        try:
            found = resolve_backend(name)
        except UnavailableError:
            rows.append({"backend": name, "available": False, **where})
            continue
        rate = ceiling(model, labels, threads, runs, warmup=3, repeats=1, backend=found.name)
        rows.append({"backend": found.name, "version": found.version, "available": True, "threads": threads,
                     "inferences_per_s": rate["inferences_per_s"], "ms": rate["ms"], **where})
    return rows


def compare_backends(model: Path, labels: Path, threads: int, runs: int,
                     other_pythons: Sequence[Path] = ()) -> List[Dict[str, object]]:
    """The backends of this Python and of each other Python given.

    Why other Pythons: tflite-runtime 2.14 needs numpy < 2, so it lives in a venv of its own
    (`make test` builds .venv-tflite with pidetect installed); it is measured there, in a child.
    """
    rows = backend_rows(model, labels, threads, runs)
    for python in other_pythons:
        done = subprocess.run([str(python), "-c", OTHER_PYTHON_SNIPPET, str(model), str(labels or ""), str(threads),
                               str(runs)], capture_output=True, text=True, timeout=900)
        if done.returncode == 0:
            rows += json.loads(done.stdout.strip().splitlines()[-1])
        else:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"backend": "?", "available": False, "interpreter": str(python), "detail": last})
    return rows


def compare_models(model: Path, labels: Path, threads: int, runs: int) -> List[Dict[str, object]]:
    """Every .tflite beside the model: its size and rate, or why it cannot run here (e.g. an Edge TPU build)."""
    rows: List[Dict[str, object]] = []
    for path in sorted(model.parent.glob("*.tflite")):
        row: Dict[str, object] = {"model": path.name, "mb": round(path.stat().st_size / 2**20, 2)}
        try:
            rate = ceiling(path, labels, threads, runs, warmup=3, repeats=1)
            row.update(runs=True, inferences_per_s=rate["inferences_per_s"], ms=rate["ms"])
        except (ModelError, UnavailableError) as exc:
            row.update(runs=False, detail=str(exc))
        rows.append(row)
    return rows


# --- stages --------------------------------------------------------------------------------------
def stages(model: Path, labels: Path, clip: Path, frames: int, threads: int,
           workdir: Path) -> Dict[str, Dict[str, float]]:
    detector = Detector(model, labels, DetectorOptions(num_threads=threads))
    tracker, overlay = Tracker(), Overlay()
    times: Dict[str, List[float]] = {k: [] for k in ("capture_decode", "motion", "preprocess", "invoke",
                                                      "postprocess", "postprocess_eval", "tracking", "overlay",
                                                      "encode_jpeg", "fb_1080p_rgb565")}
    motion = MotionDetector()
    capture = cv2.VideoCapture(str(clip))
    fb_device, sysfs = fake_framebuffer(workdir, 1920, 1080)
    screen = FramebufferDisplay(str(fb_device), "", "rgb565", sysfs / "class" / "graphics")
    screen.open()  # opened before timing, as it stays open in the daemon

    def timed(name: str, fn: Callable):
        started = time.perf_counter()
        value = fn()
        times[name].append((time.perf_counter() - started) * 1000)
        return value

    for seq in range(1, frames + 1):
        ok, image = timed("capture_decode", capture.read)
        if not ok:
            break
        timed("motion", lambda: motion.update(image, 1 / 30))
        placement = timed("preprocess", lambda: detector.prepare(image))
        timed("invoke", detector.invoke)
        detections = timed("postprocess", lambda: detector.decode(placement))
        # decode (+ NMS for YOLO) as eval runs it: threshold 0.001, IoU 0.7, up to 100 boxes
        timed("postprocess_eval", lambda: detector.family.decode(detector.interpreter.get_tensor, placement,
                                                                 0.001, 0.7, 100))
        timed("tracking", lambda: tracker.update(detections, seq / 30, seq))
        result = Result(Frame(image, seq, time.time()), detections, 0.0)
        drawn = timed("overlay", lambda: overlay.draw(result, 10.0))
        timed("encode_jpeg", lambda: cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 80]))
        timed("fb_1080p_rgb565", lambda: screen.show(result, 10.0))
    capture.release()
    screen.close()
    return {name: stage_summary(values) for name, values in times.items() if values}


# --- the serial tutorial loop --------------------------------------------------------------------
def serial_loop(model: Path, labels_path: Path, clip: Path, frames: int, threads: int,
                threshold: float = 0.5) -> Dict[str, float]:
    """The loop of the usual Pi tutorial: everything in one thread of control, one frame at a time.

    The tutorial's own code for SSD models (set_tensor from a resized copy, a Python loop over the
    four outputs); for other families the same single-threaded order through the Detector.
    """
    probe = Detector(model, labels_path, DetectorOptions(num_threads=threads, threshold=threshold))
    if probe.family.name != "ssd":
        overlay, detector = Overlay(), probe
        return timed_serial(clip, frames, lambda frame: overlay.draw(detector.detect_image(frame)))
    labels = probe.labels
    probe = None  # the tutorial makes its own interpreter
    interpreter = resolve_backend().interpreter_class(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()
    h, w = int(input_detail["shape"][1]), int(input_detail["shape"][2])

    def tutorial(frame: np.ndarray) -> None:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, (w, h))
        if input_detail["dtype"] == np.int8:  # what tutorials for int8 models write: the pixel less 128
            resized = (resized.astype(np.int16) - 128).astype(np.int8)
        elif input_detail["dtype"] == np.float32:
            resized = (np.float32(resized) - 127.5) / 127.5
        interpreter.set_tensor(input_detail["index"], np.expand_dims(resized, axis=0))
        interpreter.invoke()
        boxes = interpreter.get_tensor(out[0]["index"])[0]
        classes = interpreter.get_tensor(out[1]["index"])[0]
        scores = interpreter.get_tensor(out[2]["index"])[0]
        fh, fw = frame.shape[:2]
        for i in range(len(scores)):
            if scores[i] > threshold:
                ymin, xmin, ymax, xmax = boxes[i]
                p1, p2 = (int(xmin * fw), int(ymin * fh)), (int(xmax * fw), int(ymax * fh))
                cv2.rectangle(frame, p1, p2, (10, 255, 0), 2)
                cv2.putText(frame, f"{labels.get(int(classes[i]), '?')}: {int(scores[i] * 100)}%", p1,
                            cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)

    return timed_serial(clip, frames, tutorial)


def timed_serial(clip: Path, frames: int, handle: Callable[[np.ndarray], object]) -> Dict[str, float]:
    """Read and handle one frame at a time; the rate is timed from the first frame on (a steady rate,
    as the pipeline's is)."""
    capture = cv2.VideoCapture(str(clip))
    count = 0
    started = time.perf_counter()
    while count < frames:
        ok, frame = capture.read()
        if not ok:
            break
        handle(frame)
        count += 1
        if count == 1:
            started = time.perf_counter()
    elapsed = time.perf_counter() - started
    capture.release()
    return {"frames": count, "frames_per_s": round((count - 1) / elapsed, 2)}


# --- the daemon's pipeline, in process -----------------------------------------------------------
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
    """A review page left open: the page, its event list and every thumbnail every 2 s, /metrics every 5 s."""
    import urllib.request

    base, count = f"http://127.0.0.1:{port}", 0
    while not stop.is_set():
        try:
            urllib.request.urlopen(base + "/events", timeout=5).read()
            events = json.loads(urllib.request.urlopen(base + "/api/events?limit=100", timeout=5).read())
            for event in events:
                if event.get("snapshot"):
                    urllib.request.urlopen(base + event["snapshot"], timeout=5).read()
            if count % 3 == 0:
                urllib.request.urlopen(base + "/metrics", timeout=5).read()
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


def fake_framebuffer(folder: Path, width: int, height: int, bpp: int = 16, stride: Optional[int] = None):
    """A plain file standing in for /dev/fb0 plus the sysfs folder describing it (use with $PIDETECT_SYSFS)."""
    stride = stride or width * bpp // 8
    fb = folder / "fb0"
    fb.write_bytes(bytes(stride * height))
    graphics = folder / "sys" / "class" / "graphics" / "fb0"
    graphics.mkdir(parents=True, exist_ok=True)
    (graphics / "virtual_size").write_text(f"{width},{height}\n")
    (graphics / "bits_per_pixel").write_text(f"{bpp}\n")
    (graphics / "stride").write_text(f"{stride}\n")
    return fb, folder / "sys"


# --- `pidetect run` as a child -------------------------------------------------------------------
def vm_hwm_mb(pid: int) -> Optional[float]:
    """The process's peak resident set so far (VmHWM): not inherited from the parent across fork+exec,
    unlike ru_maxrss, which would report the benchmark's own size."""
    return status_mb(pid).get("VmHWM")


def status_mb(pid: int) -> Dict[str, float]:
    """VmHWM, VmRSS, RssAnon and RssFile from /proc/PID/status, in MB (empty once the process is gone).

    Why RssAnon beside the peak: RssFile, the libraries' pages mapped in, depends on what the page
    cache holds (measured here: right after the OpenCV wheel was installed, with all its pages cached,
    the same run read 40 MB more RSS than after dropping the caches); RssAnon is the daemon's own."""
    figures = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    figures[key] = int(line.split()[1]) / 1024
    except OSError:
        return {}
    return figures


MAPPING_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def mapped_rss_mb(pid: int, path: Path) -> Optional[float]:
    """Resident size of `path`'s mappings in the process (the framebuffer stand-in's pages).

    Why report it: the stand-in is a regular file, whose mapped pages count in RSS; /dev/fb0 on a Pi
    (vc4 DRM fbdev emulation) maps device memory, which the kernel does not count as the process's."""
    try:
        resident, inside = 0, False
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                if MAPPING_HEADER.match(line):
                    inside = line.rstrip().endswith(str(path))
                elif inside and line.startswith("Rss:"):
                    resident += int(line.split()[1])
        return resident / 1024
    except OSError:
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def machine_info() -> Dict[str, object]:
    info = {"machine": platform.machine(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "cores": os.cpu_count(), "pidetect": __version__,
            "numpy": np.__version__, "opencv": cv2.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    model_line = [line for line in cpuinfo if line.startswith(("model name", "Model"))]
    info["cpu"] = model_line[0].split(":", 1)[1].strip() if model_line else platform.processor()
    # the flags that decide how fast int8 inference runs, printed beside every figure
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith(("flags", "Features"))), [])
    info["cpu_flags"] = sorted(set(flags) & {"avx2", "avx512_vnni", "avx_vnni", "asimd", "asimddp"})
    return info


def run_bench(model: Path, labels: Path, source: Optional[Path], frames: int, threads_list: List[int],
              runs: int, size: str, process_seconds: float, say: Callable[[str], None],
              rounds: int = 3, other_pythons: Sequence[Path] = (), accelerator=None,
              model_named: Optional[Path] = None, labels_named: Optional[Path] = None) -> Dict[str, object]:
    cores = os.cpu_count() or 1
    backend = resolve_backend()
    report: Dict[str, object] = {"machine": machine_info(),
                                 "backend": {"name": backend.name, "version": backend.version},
                                 "model": {"path": str(model), "bytes": model.stat().st_size}}
    with tempfile.TemporaryDirectory(prefix="pidetect-bench-") as tmp:
        workdir = Path(tmp)
        width, height = (int(v) for v in size.lower().split("x"))
        clip = source or make_clip(clip_cache_dir(), width, height, frames)
        report["source"] = {"path": str(clip), "frames": frames,
                            "size": "x".join(map(str, read_frames(clip, 1)[0].shape[1::-1]))}
        if accelerator is not None:
            say(f"accelerator: {accelerator.accelerator}")
            report["accelerator"] = accelerator_ceiling(model_named, labels_named, accelerator, runs)
        say(f"ceiling: interpreter only, {runs} runs after warm-up")
        report["ceiling"] = [ceiling(model, labels, t, runs) for t in threads_list]
        if cores >= 2:
            report["ceiling_parallel"] = parallel_ceiling(model, labels, 2, runs // 2)
        say("backends and models")
        report["backends"] = compare_backends(model, labels, cores, max(20, runs // 4), other_pythons)
        report["models"] = compare_models(model, labels, cores, max(20, runs // 4))
        say("stages per frame")
        report["stages"] = stages(model, labels, clip, frames, cores, workdir)
        say("zones and filters: 10 zones, 20 objects")
        report["zones"] = zone_cost()
        say("tracker: 5, 20 and 50 objects in view")
        report["tracker"] = tracker_costs()
        say("regions: the clip placed in a 1920x1080 frame, looked at whole and through regions")
        report["regions"] = regions_cost(model, labels, read_frames(clip, frames), cores)
        say(f"end to end: {rounds} interleaved round(s) of ceiling, serial loop and pipelines")
        configs = [(interpreters, display) for interpreters in sorted({1, min(2, cores)})
                   for display in ("none", "fb", "mjpeg")]
        rounds_done = []
        for number in range(rounds):
            before = ceiling(model, labels, cores, runs, repeats=1)["inferences_per_s"]
            this_round = {"serial": serial_loop(model, labels, clip, frames, cores),
                          "pipeline": [pipeline(model, labels, clip, frames, i, d, workdir) for i, d in configs]}
            after = ceiling(model, labels, cores, runs, repeats=1)["inferences_per_s"]
            this_round["ceiling_per_s"] = round((before + after) / 2, 2)  # bracket the round: drift averages out
            this_round["ceiling_before_after"] = [before, after]
            rounds_done.append(this_round)
            say(f"  round {number + 1}: ceiling {this_round['ceiling_per_s']:.1f}/s, serial "
                f"{this_round['serial']['frames_per_s']:.1f}, pipelines "
                + ", ".join(f"{p['frames_per_s']:.1f}" for p in this_round["pipeline"]))
        report["rounds"] = rounds_done
        say("motion gate: the clip paced like a camera, with and without the gate")
        report["gate"] = gated_pipeline(model, labels, clip)
        say("daemon process: start to READY, CPU, peak RSS")
        report["process"] = [daemon_process(clip, model, labels, display, workdir, process_seconds, interpreters)
                             for interpreters in sorted({1, min(2, cores)}) for display in ("none", "fb", "mjpeg")]
        say("daemon process with everything on: the web UI with the review page open and /metrics scraped, "
            "snapshots, the event store, zones and filters (and once more with the HDMI screen too)")
        report["process"] += [daemon_process(clip, model, labels, display, workdir, process_seconds, 1)
                              for display in ("all", "all+fb", "all+notify")]
    report.update(summarize_rounds(report["rounds"]))
    steady = {p["display"]: p["steady_rss_mb"] for p in report["process"] if p["interpreters"] == 1}
    if steady.get("all") and steady.get("none"):
        report["web_ui_mb"] = round(steady["all"] - steady["none"], 1)
    report["bench_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


def _accelerator_lines(report: Dict[str, object]) -> List[str]:
    row = report.get("accelerator")
    if not row:
        return []
    rate = (f": {row['inferences_per_s']:.1f} inferences/s ({row['ms']:.1f} ms), {Path(row['model']).name}"
            if "inferences_per_s" in row else "")
    note = f" — {row['note']}" if row.get("note") else ""
    return [f"accelerator {row['asked']}: ran {row['ran']}{rate}{note}", ""]


def summarize_rounds(rounds: List[Dict[str, object]]) -> Dict[str, object]:
    """Medians over the rounds: rates, and ratios taken within each round (so drift cancels out).

    `serial_headroom` = ceiling / serial loop is the most a pipeline with one interpreter can gain over
    the serial loop here: it cannot run faster than that interpreter alone. Two one-thread
    interpreters are bounded by the parallel ceiling instead, which can be higher.
    """
    def median(values) -> float:
        return round(statistics.median(values), 3)

    pipelines = []
    for index, config in enumerate(rounds[0]["pipeline"]):
        runs = [r["pipeline"][index] for r in rounds]
        shown = [p["display_shown"] for p in runs if p.get("display_shown") is not None]
        pipelines.append({"interpreters": config["interpreters"], "display": config["display"],
                          "frames": config["frames"], "frames_per_s": median([p["frames_per_s"] for p in runs]),
                          "cpu_percent": median([p["cpu_percent"] for p in runs]),
                          "display_shown": median(shown) if shown else None})
    ratios: Dict[str, float] = {
        "ceiling_all_cores_per_s": median([r["ceiling_per_s"] for r in rounds]),
        "serial_to_ceiling": median([r["serial"]["frames_per_s"] / r["ceiling_per_s"] for r in rounds]),
        "serial_headroom": median([r["ceiling_per_s"] / r["serial"]["frames_per_s"] for r in rounds]),
    }
    for index, p in enumerate(pipelines):
        name = f"pipeline_{p['interpreters']}x_{p['display']}"
        ratios[f"{name}_to_ceiling"] = median([r["pipeline"][index]["frames_per_s"] / r["ceiling_per_s"]
                                               for r in rounds])
        if p["display"] == "none":
            ratios[f"pipeline_{p['interpreters']}x_over_serial"] = median(
                [r["pipeline"][index]["frames_per_s"] / r["serial"]["frames_per_s"] for r in rounds])
    return {"serial": {"frames_per_s": median([r["serial"]["frames_per_s"] for r in rounds])},
            "pipeline": pipelines, "ratios": ratios}


def format_table(report: Dict[str, object]) -> str:
    m = report["machine"]
    lines = [f"pidetect bench — {m['cpu']} ({m['machine']}, {m['cores']} cores), {report['backend']['name']} "
             f"{report['backend']['version']}, Python {m['python']}, OpenCV {m['opencv']}, numpy {m['numpy']}",
             f"model {Path(report['model']['path']).name} ({report['model']['bytes'] / 2**20:.1f} MB); "
             f"source {report['source']['size']}, {report['source']['frames']} frames", "",
             *_accelerator_lines(report), "ceiling (interpreter only, CPU)"]
    for c in report["ceiling"]:
        lines.append(f"  {c['threads']} thread(s)           {c['inferences_per_s']:8.1f} inferences/s  ({c['ms']:.1f} ms)")
    if "ceiling_parallel" in report:
        p = report["ceiling_parallel"]
        lines.append(f"  {p['interpreters']} x 1-thread parallel  {p['inferences_per_s']:8.1f} inferences/s")
    lines += ["", f"backends (interpreter only, {m['cores']} threads)"]
    for b in report.get("backends", []):
        where = f"{b['interpreter']} (Python {b.get('python', '?')}, numpy {b.get('numpy', '?')})"
        if b.get("available"):
            lines.append(f"  {b['backend']:<16}{b['version']:<9}{b['inferences_per_s']:8.1f} inferences/s "
                         f"({b['ms']:.1f} ms)  {where}")
        elif b["backend"] != "?":
            lines.append(f"  {b['backend']:<16}not installed  {where}")
        else:
            lines.append(f"  {b['interpreter']}: failed: {b['detail']}")
    lines += ["", "models beside the model file"]
    for row in report.get("models", []):
        if row["runs"]:
            lines.append(f"  {row['model']:<58} {row['mb']:5.1f} MB {row['inferences_per_s']:8.1f} inferences/s")
        else:
            lines.append(f"  {row['model']:<58} {row['mb']:5.1f} MB  does not run here: {row['detail']}")
    lines += ["", "stages per frame              median      p95"]
    for name, s in report["stages"].items():
        lines.append(f"  {name:<26}{s['median_ms']:8.2f} ms{s['p95_ms']:8.2f} ms")
    if "zones" in report:
        z = report["zones"]
        lines.append(f"  zones + filters ({z['zones']} zones, {z['objects']} objects) {z['median_ms']:.3f} ms "
                     f"(tracking stage {z['stage_median_ms']:.3f} ms, tracker alone {z['tracker_median_ms']:.3f} ms)")
    if "regions" in report:
        g = report["regions"]
        lines.append(f"  regions (1920x1080)      {g['regions_ms_mean']:8.2f} ms  {g['model_calls_per_frame']} calls a frame, "
                     f"{g['ratio']:.2f}x the whole frame ({g['whole_ms_mean']:.2f} ms)")
    for row in report.get("tracker", []):
        lines.append(f"  tracker, {row['objects']:>2} objects in view  {row['median_ms']:8.3f} ms{row['p95_ms']:8.3f} ms")
    r = report["ratios"]
    lines += ["", f"end to end, median of {len(report['rounds'])} interleaved round(s)   frames/s   vs ceiling",
              f"  ceiling, 1 interpreter, {m['cores']} thread(s)  {r['ceiling_all_cores_per_s']:9.1f}        1.00",
              f"  serial tutorial loop        {report['serial']['frames_per_s']:9.1f}   {r['serial_to_ceiling']:9.2f}"]
    for p in report["pipeline"]:
        key = f"pipeline_{p['interpreters']}x_{p['display']}_to_ceiling"
        shown = f", screen showed {p['display_shown']:.0f} of {p['frames']} results" if p.get("display_shown") else ""
        lines.append(f"  pipeline {p['interpreters']} interp., {p['display']:<6}{p['frames_per_s']:9.1f}   "
                     f"{r[key]:9.2f}   (CPU {p['cpu_percent']:.0f}%{shown})")
    for name, value in r.items():
        if name.endswith("_over_serial"):
            lines.append(f"  {name.replace('_', ' ')}: {value:.2f}x")
    lines.append(f"  upper bound with one interpreter (ceiling / serial): {r['serial_headroom']:.2f}x")
    gate = report.get("gate")
    if gate:
        lines += ["", "motion gate (the clip paced like a camera)"]
        for motion in ("off", "on"):
            g = gate[f"motion_{motion}"]
            extra = (f", {g['frames_gated']} gated ({g['frames_skipped']} not decoded), motion in "
                     f"{g['motion_share']:.0%} of frames looked at") if motion == "on" else ""
            lines.append(f"  motion {motion:<3}  {g['inferences']:5d} inferences of {g['frames']} frames, "
                         f"{g['cpu_seconds']:.2f} CPU-s in {g['seconds']:.1f} s{extra}")
        if gate.get("cpu_ratio") is not None:
            lines.append(f"  CPU with the gate / without: {gate['cpu_ratio']:.2f}")
    models = report.get("models") or []
    rates = {m["model"]: m.get("inferences_per_s") for m in models if m.get("runs")}
    int8 = [name for name in rates if name.endswith("_int8.tflite")]
    for name in int8:
        source = name.replace("_int8.tflite", ".tflite")
        if source in rates and rates[source]:
            lines.append(f"  {name} / {source}: {rates[name] / rates[source]:.2f}x the inferences per second")
    lines += ["", "pidetect run (child process, 1280x720 at its own pace; all = the web UI with everything on)"]
    for p in report["process"]:
        stand_in = f" (of which the fb stand-in file {p['fb_standin_rss_mb']} MB)" if p.get("fb_standin_rss_mb") else ""
        lines.append(f"  {p['interpreters']} interp., display {p['display']:<6} start→READY {p['start_to_ready_s']} s, "
                     f"CPU {p['cpu_percent']:.0f}%, peak RSS {p['peak_rss_mb']} MB{stand_in}, "
                     f"steady RSS {p['steady_rss_mb']} MB (peak anon {p.get('peak_anon_mb')} MB, "
                     f"file-backed {p.get('peak_file_mb')} MB)")
    if "web_ui_mb" in report:
        lines.append(f"  the web UI with everything on (viewer, review page, /metrics, store, snapshots, zones) costs "
                     f"{report['web_ui_mb']} MB of steady RSS over display none")
    return "\n".join(lines)


def display_peak(report: Dict[str, object], display: str) -> float:
    return next(p["peak_rss_mb"] for p in report["process"] if p["display"] == display and p["interpreters"] == 1)


TARGETS = (  # (name, description, function of the report -> (value, ok))
    ("pipeline_display_off", "pipeline (1 interpreter, display off) >= 0.85 x ceiling",
     lambda r: (r["ratios"]["pipeline_1x_none_to_ceiling"], r["ratios"]["pipeline_1x_none_to_ceiling"] >= 0.85)),
    ("pipeline_display_on", "pipeline (1 interpreter) with fb and with mjpeg >= 0.80 x ceiling",
     lambda r: (min(r["ratios"]["pipeline_1x_fb_to_ceiling"], r["ratios"]["pipeline_1x_mjpeg_to_ceiling"]),
                min(r["ratios"]["pipeline_1x_fb_to_ceiling"], r["ratios"]["pipeline_1x_mjpeg_to_ceiling"]) >= 0.80)),
    ("over_serial", "best pipeline configuration >= 1.12 x the serial tutorial loop",
     lambda r: (max(v for k, v in r["ratios"].items() if k.endswith("_over_serial")),
                max(v for k, v in r["ratios"].items() if k.endswith("_over_serial")) >= 1.12)),
    ("rss_display_on", "peak RSS of pidetect run (1 interpreter) with the fb and with the mjpeg display <= 120 MB",
     lambda r: (max(display_peak(r, "fb"), display_peak(r, "mjpeg")),
                max(display_peak(r, "fb"), display_peak(r, "mjpeg")) <= 120)),
    ("rss_everything", "peak RSS of pidetect run with everything on (web UI with a viewer, the review page open "
     "and /metrics scraped, snapshots, event store, zones) <= 135 MB",
     lambda r: (display_peak(r, "all"), display_peak(r, "all") <= 135)),
    ("rss_notify", "peak RSS of pidetect run with everything on and one notification target <= 135 MB (Apprise runs "
     "in its own helper process)", lambda r: (display_peak(r, "all+notify"), display_peak(r, "all+notify") <= 135)),
    ("start_to_ready", "start to READY <= 2 s with the model present",
     lambda r: (max(p["start_to_ready_s"] or 99 for p in r["process"]),
                max(p["start_to_ready_s"] or 99 for p in r["process"]) <= 2.0)),
    ("motion_stage", "motion detector <= 1 ms per frame (median, at the clip's size)",
     lambda r: (r["stages"]["motion"]["median_ms"], r["stages"]["motion"]["median_ms"] <= 1.0)),
    ("zones_filters_10x20", "zones + filters with 10 zones and 20 objects add < 0.2 ms per frame (median)",
     lambda r: (r["zones"]["median_ms"], r["zones"]["median_ms"] < 0.2)),
    ("tracker_50", "the tracker with 50 objects in view < 1 ms per frame (median)",
     lambda r: (r["tracker"][-1]["median_ms"], r["tracker"][-1]["median_ms"] < 1.0)),
    ("regions_calls", "regions on a 1080p frame: <= 3 model calls a frame (mean)",
     lambda r: (r["regions"]["model_calls_per_frame"], r["regions"]["model_calls_per_frame"] <= 3.0)),
    ("regions_cost", "regions on a 1080p frame cost <= 3.5 x the whole-frame look (mean time a frame)",
     lambda r: (r["regions"]["ratio"], r["regions"]["ratio"] <= 3.5)),
    ("decode_stage", "decode (+ NMS) <= 1 ms at the daemon's threshold and <= 5 ms at eval's 0.001",
     lambda r: ((r["stages"]["postprocess"]["median_ms"], r["stages"]["postprocess_eval"]["median_ms"]),
                r["stages"]["postprocess"]["median_ms"] <= 1.0 and r["stages"]["postprocess_eval"]["median_ms"] <= 5.0)),
)


def check_targets(report: Dict[str, object]) -> List[Dict[str, object]]:
    results = []
    for name, text, judge in TARGETS:
        value, ok = judge(report)
        results.append({"target": name, "description": text, "value": value, "pass": bool(ok)})
    return results
