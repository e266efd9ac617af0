"""bench's model figures: the interpreter ceiling (threads, parallel interpreters, accelerators, backends,
models), the per-stage costs and the tutorial's serial loop, on the same frames."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..capture.motion import MotionDetector
from ..inference.backends import BACKENDS, resolve_backend
from ..inference.detector import Detector, DetectorOptions
from ..errors import ModelError, UnavailableError
from ..outputs.fb import FramebufferDisplay
from ..tracking.tracker import Tracker
from ..frames import Frame, Result
from ..outputs.overlay import Overlay
from .measure import fake_framebuffer, stage_summary


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
from pidetect.tools.bench_model import backend_rows
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
