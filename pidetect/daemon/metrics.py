"""Numbers a Pi user watches: capture and inference FPS, drops, latency percentiles, CPU, memory,
SoC temperature and throttling. Collected by counters the pipeline bumps; read every interval.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import psutil

from ..config import sysfs_root

THROTTLE_BITS = {0: "under-voltage", 1: "arm-frequency-capped", 2: "throttled", 3: "soft-temp-limit",
                 16: "under-voltage-occurred", 17: "frequency-capped-occurred", 18: "throttled-occurred",
                 19: "soft-temp-limit-occurred"}


class PiHealth:
    """SoC temperature and firmware throttling flags; None where the machine has no such sensor."""

    def __init__(self, sysfs: Optional[Path] = None):
        sysfs = sysfs or sysfs_root()
        self.thermal = sysfs / "class/thermal/thermal_zone0/temp"
        self.throttled_file = sysfs / "devices/platform/soc/soc:firmware/get_throttled"
        self.vcgencmd = shutil.which("vcgencmd")

    def temperature_c(self) -> Optional[float]:
        try:
            return round(int(self.thermal.read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            return None

    def throttled(self) -> Optional[str]:
        """Hex flags as `vcgencmd get_throttled` prints them (0x0 = all fine)."""
        try:
            return hex(int(self.throttled_file.read_text().strip(), 16))
        except (OSError, ValueError):
            pass
        if self.vcgencmd:
            try:
                out = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2)
                return hex(int(out.stdout.strip().partition("=")[2], 16))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return None
        return None


def throttled_now(value: Optional[str]) -> bool:
    """Under-voltage, frequency capping, throttling or the soft temperature limit right now (bits 0-3)."""
    return bool(value) and int(value, 16) & 0xF != 0


def throttle_flags(value: Optional[str]) -> List[str]:
    if not value:
        return []
    bits = int(value, 16)
    return [name for bit, name in THROTTLE_BITS.items() if bits & (1 << bit)]


class Metrics:
    """Interval counters. `add_*` are called from the pipeline threads; `take` from the service."""

    def __init__(self, health: Optional[PiHealth] = None):
        self.health = health or PiHealth()
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # first call primes the counter
        self._lock = threading.Lock()
        self._latencies: List[float] = []
        self._ages: List[float] = []
        self._inferred = 0
        self._calls = 0
        self._started = self._last = time.monotonic()
        self._last_captured = self._last_dropped = 0
        self.total_inferred = 0
        self.first_inference_at: Optional[float] = None  # monotonic; with the last one, the run's steady rate
        self.last_inference_at: Optional[float] = None
        self.peak_rss_mb = 0.0

    def add_inference(self, inference_ms: float, frame_age_ms: float, model_calls: int = 1) -> None:
        """`frame_age_ms`: capture to result; stays near one inference + one frame interval without a backlog.
        `model_calls`: interpreter runs for the frame (one per region)."""
        with self._lock:
            self._calls += model_calls
            self._latencies.append(inference_ms)
            self._ages.append(frame_age_ms)
            self._inferred += 1
            self.total_inferred += 1
            self.last_inference_at = time.monotonic()
            if self.first_inference_at is None:
                self.first_inference_at = self.last_inference_at

    def steady_fps(self) -> Optional[float]:
        """Results per second from the first to the last one: the pipeline's rate without start-up
        (model load, first frame) and shutdown (joining threads, closing displays)."""
        with self._lock:
            if self.total_inferred < 2 or self.last_inference_at == self.first_inference_at:
                return None
            return (self.total_inferred - 1) / (self.last_inference_at - self.first_inference_at)

    def take(self, captured_total: int, dropped_total: int) -> dict:
        """The metrics record for the interval since the previous call."""
        now = time.monotonic()
        with self._lock:
            latencies, ages, inferred, calls = self._latencies, self._ages, self._inferred, self._calls
            self._latencies, self._ages, self._inferred, self._calls = [], [], 0, 0
        elapsed = max(now - self._last, 1e-6)
        captured = captured_total - self._last_captured
        dropped = dropped_total - self._last_dropped
        self._last, self._last_captured, self._last_dropped = now, captured_total, dropped_total
        rss_mb = self.process.memory_info().rss / 2**20
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
        p50 = p95 = age_p95 = None
        if latencies:
            p50, p95 = (round(float(v), 2) for v in np.percentile(latencies, [50, 95]))
            age_p95 = round(float(np.percentile(ages, 95)), 1)
        return {
            "event": "metrics",
            "capture_fps": round(captured / elapsed, 2),
            "inference_fps": round(inferred / elapsed, 2),
            "frames_dropped": dropped,
            "inference_ms_p50": p50,
            "inference_ms_p95": p95,
            "frame_age_ms_p95": age_p95,
            "model_calls_per_frame": round(calls / inferred, 2) if inferred else None,
            "cpu_percent": round(self.process.cpu_percent(None), 1),
            "rss_mb": round(rss_mb, 1),
            "temp_c": self.health.temperature_c(),
            "throttled": self.health.throttled(),
            "interval_s": round(elapsed, 2),
            "ts": round(time.time(), 3),
        }
