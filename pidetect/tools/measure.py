"""What the measuring tools share: percentiles, the cached test clip, a stand-in framebuffer, a process's memory
figures, a free port and the machine's description (bench, soak and the *_check scripts use them)."""

from __future__ import annotations

import math
import os
import platform
import re
import socket
import statistics
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

from .. import __version__
from ..files import replaced_when_done
from .demo import write_scene_video
from ..errors import UnavailableError


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


