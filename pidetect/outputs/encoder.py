"""The clip encoder: raw frames in, short H.264 segments out, on a tmpfs, for the recorder's pre-roll.

One FFmpeg subprocess per camera session encodes every frame it is given into MPEG-TS segments of
`keyframe_frames` frames each (every segment starts with a keyframe, so a clip can begin at any
segment), written to `buffer_dir`, a tmpfs: nothing touches the SD card while nothing happens. FFmpeg
prints each finished segment on its standard output (the segment muxer's CSV list); a reader thread
turns those lines into `Segment`s.

Why FFmpeg as a subprocess, not PyAV: the encoder runs on its own core beside detection (a GIL-free
process), a crash of the codec cannot take the daemon with it, FFmpeg is one `apt install` on a Pi and
offers the Pi 4's hardware encoder (`h264_v4l2m2m`) through the same command; PyAV's wheels bundle their
own FFmpeg without the Pi's V4L2 M2M encoder. Measured figures: README "Clips".

Frames are fed at a constant rate (`fps`): the recorder repeats or skips frames to keep the video's
time in step with the capture clock, so stream time t is always capture clock `clock0 + t`.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

log = logging.getLogger(__name__)
ENCODERS = ("auto", "libx264", "h264_v4l2m2m")
KEYFRAME_SECONDS = 0.4  # a segment per keyframe: a clip starts at most this much before pre_capture asks


@dataclass(frozen=True)
class Segment:
    path: Path
    start: float  # stream seconds (0 = the session's first frame)
    end: float

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


class EncoderError(Exception):
    """FFmpeg is missing, would not start, or stopped: said by the recorder, detection goes on."""


def find_ffmpeg() -> Optional[str]:
    return shutil.which("ffmpeg")


def pick_encoder(requested: str, ffmpeg: str) -> str:
    """`auto`: the Pi 4's hardware encoder when the kernel offers it (/dev/video11 is its V4L2 M2M encoder
    node) and FFmpeg has it, else libx264 (the Pi 5 has no hardware H.264 encoder)."""
    if requested != "auto":
        return requested
    if Path("/dev/video11").exists() and _ffmpeg_has_encoder(ffmpeg, "h264_v4l2m2m"):
        return "h264_v4l2m2m"
    return "libx264"


def _ffmpeg_has_encoder(ffmpeg: str, name: str) -> bool:
    try:
        listing = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                 timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split()[1:2] == [name] for line in listing.splitlines() if line.strip())


def keyframe_frames(fps: float) -> int:
    return max(1, round(fps * KEYFRAME_SECONDS))


def encoder_command(ffmpeg: str, encoder: str, width: int, height: int, fps: float, folder: Path,
                    prefix: str) -> List[str]:
    gop = keyframe_frames(fps)
    if encoder == "libx264":  # ultrafast: the cheapest preset; zerolatency: no frame held back (no B-frames)
        codec = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-crf", "26",
                 "-x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0"]
    else:  # the Pi 4's hardware encoder: a bit rate, no presets
        codec = ["-c:v", encoder, "-b:v", "4M", "-g", str(gop)]
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-framerate", f"{fps:g}",
            "-i", "pipe:0", "-an", *codec, "-pix_fmt", "yuv420p",
            "-f", "segment", "-segment_time", f"{gop / fps:.6f}", "-segment_time_delta", f"{0.5 / fps:.6f}",
            "-segment_format", "mpegts", "-segment_list", "pipe:1", "-segment_list_type", "csv",
            "-reset_timestamps", "0", str(folder / f"{prefix}%09d.ts")]


def copy_command(ffmpeg: str, fps: float, folder: Path, prefix: str) -> List[str]:
    """The camera's H.264 (Annex B, as rpicam-vid or `ffmpeg -c copy -f h264` write it) cut into segments as it
    is: no encoding. Segments start at the camera's keyframes (rpicam-vid --intra sets how often)."""
    # a small probe: FFmpeg's default (5 MB or 5 s of stream) held the first segment back for minutes at a
    # still camera's bit rate; the stream's parameters are in its first keyframe
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-probesize", "32768", "-analyzeduration", "0",
            "-f", "h264", "-framerate", f"{fps:g}", "-i", "pipe:0", "-an", "-c:v", "copy",
            "-f", "segment", "-segment_time", f"{KEYFRAME_SECONDS:.6f}",
            "-segment_format", "mpegts", "-segment_list", "pipe:1", "-segment_list_type", "csv",
            "-reset_timestamps", "0", str(folder / f"{prefix}%09d.ts")]


class SegmentEncoder:
    """One FFmpeg process encoding one session's frames (one size, one rate) into segments, or, with
    `encoder = "copy"`, cutting the camera's own H.264 bytes into segments (`write_bytes`)."""

    def __init__(self, ffmpeg: str, encoder: str, width: int, height: int, fps: float, folder: Path, prefix: str):
        self.width, self.height, self.fps, self.folder = width, height, fps, Path(folder)
        self.copy = encoder == "copy"
        self.command = copy_command(ffmpeg, fps, self.folder, prefix) if self.copy else \
            encoder_command(ffmpeg, encoder, width, height, fps, self.folder, prefix)
        self.segments: "queue.Queue[Segment]" = queue.Queue()
        self.frames_written = 0
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise EncoderError(f"cannot start {ffmpeg}: {exc.strerror or exc}") from None
        self._errors: List[str] = []
        self._reader = threading.Thread(target=self._read_list, name="pidetect-encoder-list", daemon=True)
        self._reader.start()
        self._stderr = threading.Thread(target=self._read_errors, name="pidetect-encoder-errors", daemon=True)
        self._stderr.start()

    def write(self, image: np.ndarray) -> None:
        """One frame into the encoder (blocks while FFmpeg's pipe is full); EncoderError if FFmpeg is gone."""
        try:
            self.process.stdin.write(memoryview(np.ascontiguousarray(image)).cast("B"))
        except (BrokenPipeError, ValueError, OSError):
            raise EncoderError(self.failure()) from None
        self.frames_written += 1

    def write_bytes(self, chunk: bytes) -> None:
        """The camera's H.264 as it came (copy); EncoderError if FFmpeg is gone."""
        try:
            self.process.stdin.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            raise EncoderError(self.failure()) from None

    @property
    def stream_time(self) -> float:
        """Seconds of video written so far: where the next frame will be."""
        return self.frames_written / self.fps

    def failure(self) -> str:
        try:
            self.process.wait(timeout=1)  # it is ending: let it finish saying why
        except subprocess.TimeoutExpired:
            pass
        self._stderr.join(1)
        errors = "; ".join(self._errors[-3:])
        return f"the encoder (ffmpeg) stopped (exit {self.process.returncode})" + (f": {errors}" if errors else "")

    def close(self, timeout: float = 10.0) -> None:
        """End the stream: FFmpeg writes the last segment and exits; it is killed if it takes longer."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(2)
        self._stderr.join(2)  # its pipe closed with the process: the thread ends (a busy machine may need a moment)

    def _read_list(self) -> None:
        for raw in self.process.stdout:
            name, _, times = raw.decode(errors="replace").strip().partition(",")
            start, _, end = times.partition(",")
            try:
                self.segments.put(Segment(self.folder / os.path.basename(name), float(start), float(end)))
            except ValueError:
                continue

    def _read_errors(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self._errors = (self._errors + [line])[-10:]
