"""Where frames come from. `make_source(config)` turns a source spec into a Source.

A Source only opens, reads and closes; reconnecting, pacing and reporting live in the capture
thread (pipeline.py), so every kind of camera gets the same fault handling.

Specs: `auto`, a device index (`0`) or `/dev/videoN` (V4L2), `picamera2[:N]` (the Pi's CSI camera),
a video file or an image sequence (`img_%04d.jpg`), `rtsp://…` / `http(s)://…` streams, a GStreamer
pipeline (`… ! appsink`, when OpenCV was built with GStreamer), and `pipe:COMMAND` reading raw
I420 frames from a command such as `rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 -o -`.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import select
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional, Protocol

import cv2
import numpy as np

from ..config import Config
from ..errors import ConfigError
from .framepool import FramePool
from .image_files import check_image_sequence

# V4L2 nodes on a Pi that are codecs or ISPs, not cameras: probing them wastes time or hangs.
NOT_CAMERAS = re.compile(r"codec|isp|rpivid|pispbe|hevc|bcm2835-|rp1-cfe|unicam-embedded", re.I)


class SourceError(Exception):
    """The source cannot deliver now (absent, refused, timed out); the capture thread retries."""


class Source(Protocol):
    name: str
    live: bool  # a camera or stream (frames come at their own pace); False for files
    native_fps: float

    def open(self) -> None: ...

    def read(self) -> Optional[np.ndarray]: ...  # BGR frame, or None at end (file) / on loss (live)

    def skip(self) -> bool: ...  # pass over one frame as cheaply as the source allows; False like read's None

    def cancel(self) -> None: ...  # from another thread: make a blocked read() return soon (best effort)

    def failure_detail(self) -> str: ...  # why the last session ended, if the source knows ('' if not)

    def close(self) -> None: ...


class OpenCVSource:
    """Anything cv2.VideoCapture reads: V4L2 devices, files, image sequences, network streams, GStreamer."""

    def __init__(self, name: str, target, api: int, live: bool, config: Config, network: bool = False):
        self.name, self.target, self.api, self.live = name, target, api, live
        self.config, self.network = config, network
        self.capture: Optional[cv2.VideoCapture] = None
        self.native_fps = 0.0
        self.pool = FramePool()

    def open(self) -> None:
        params: List[int] = []
        if self.network:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.config.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.config.read_timeout * 1000)]
        if isinstance(self.target, str) and not self.network and not self.live and self.api != cv2.CAP_IMAGES:
            if not Path(self.target).exists():
                raise SourceError(f"file not found: {self.target}")
            # One decoder thread for files: decoding runs beside inference on the capture thread and is
            # far faster than it (720p: 1.9 ms a frame here, inference 22 ms), while every extra
            # FFmpeg thread keeps frames of its own (2 MB more at 720p, measured).
            params += [cv2.CAP_PROP_N_THREADS, 1]
        if self.api == cv2.CAP_V4L2 and isinstance(self.target, str) and not Path(self.target).exists():
            raise SourceError(f"{self.target} does not exist ({video_devices()}); retrying in case it appears "
                              "(a camera plugged in late)")
        capture = cv2.VideoCapture(self.target, self.api, params)
        if not capture.isOpened():
            capture.release()
            if self.api == cv2.CAP_V4L2:
                raise SourceError(f"cannot open it: busy (another program uses it?) or not a camera "
                                  f"({video_devices()})")
            if self.network:
                raise SourceError(f"cannot open it: {network_failure(self.target, self.config.open_timeout)}")
            raise SourceError("OpenCV could not open it")
        if self.api == cv2.CAP_V4L2:
            # MJPG lets USB 2 cameras deliver 720p/1080p at full rate; ignored by cameras without it.
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            if self.config.width and self.config.height:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            if self.config.fps:
                capture.set(cv2.CAP_PROP_FPS, self.config.fps)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: we want the newest frame
        self.native_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.capture = capture

    def read(self) -> Optional[np.ndarray]:
        if self.capture is None:
            return None
        buffer = self.pool.free_buffer()
        ok, image = self.capture.read(buffer) if buffer is not None else self.capture.read()
        if not ok or image is None or not image.size:
            return None
        self.pool.keep(image)
        return image

    def skip(self) -> bool:
        """grab() without retrieve(): V4L2 hands over the buffer undecoded, FFmpeg skips the colour conversion."""
        return self.capture is not None and bool(self.capture.grab())

    def cancel(self) -> None:
        """OpenCV reads cannot be interrupted; network reads end within read_timeout, V4L2 within ~10 s."""

    def failure_detail(self) -> str:
        return ""

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class PipeSource:
    """Raw I420 frames on the stdout of a command (rpicam-vid for CSI cameras in a pure-pip venv).

    The command's stderr is kept (its last STDERR_LINES lines) so that when it exits, the `source
    lost` record says why ("no cameras available", a bad option) instead of leaving the user to guess.
    """

    STDERR_LINES = 5

    def __init__(self, command: str, config: Config):
        self.command, self.config = command, config
        self.name = "pipe:" + command
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"source {self.name!r}: cannot split the command: {exc} (check the quoting)") from None
        self.live, self.native_fps = True, float(config.fps)
        self.width, self.height = config.width, config.height
        self.frame_bytes = self.width * self.height * 3 // 2
        self.buffer = np.empty(self.frame_bytes, np.uint8)
        self.process: Optional[subprocess.Popen] = None
        self.stderr_tail: collections.deque = collections.deque(maxlen=self.STDERR_LINES)
        self._stderr_reader: Optional[threading.Thread] = None
        self.cancelled = threading.Event()
        self.pool = FramePool()

    def open(self) -> None:
        self.stderr_tail.clear()
        try:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL, bufsize=0)
        except OSError as exc:
            raise SourceError(f"cannot start {self.argv[0]!r}: {exc.strerror}") from None
        self._stderr_reader = threading.Thread(target=self._keep_stderr, args=(self.process.stderr,),
                                               name="pidetect-pipe-stderr", daemon=True)
        self._stderr_reader.start()

    def _keep_stderr(self, stream) -> None:
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").strip()
            if text:
                self.stderr_tail.append(text[:300])
        stream.close()

    def failure_detail(self) -> str:
        """The command's exit status and last stderr lines, once it has ended."""
        if self.process is None:
            return ""
        try:
            status = self.process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return ""
        if self._stderr_reader is not None:
            self._stderr_reader.join(0.5)
        said = " | ".join(self.stderr_tail)
        return f"{self.argv[0]} exited with status {status}" + (f", saying: {said}" if said else "")

    def _fill(self) -> bool:
        """Read one whole I420 frame into self.buffer; False when the command ended or went quiet."""
        if self.process is None:
            return False
        view, filled = memoryview(self.buffer), 0
        pipe = self.process.stdout
        while filled < self.frame_bytes:
            deadline = time.monotonic() + self.config.read_timeout
            ready: list = []
            while not ready and not self.cancelled.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], 0.2)  # short slices so cancel() is honoured
            if not ready:
                return False  # no data within read_timeout (or cancelled): treat as lost
            count = pipe.readinto(view[filled:])
            if not count:
                return False  # the command ended
            filled += count
        return True

    def read(self) -> Optional[np.ndarray]:
        if not self._fill():
            return None
        yuv = self.buffer.reshape(self.height * 3 // 2, self.width)
        image = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420, dst=self.pool.free_buffer())
        self.pool.keep(image)
        return image

    def skip(self) -> bool:
        """The bytes must be read (the pipe is a stream); the colour conversion is saved."""
        return self._fill()

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.stdout.close()  # the command's next write fails (SIGPIPE), which ends most encoders at once
        process.terminate()
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._stderr_reader is not None:
            self._stderr_reader.join(0.5)
            self._stderr_reader = None


class H264PipeSource(PipeSource):
    """H.264 on the stdout of a command (`rpicam-vid --codec h264 … -o -`, or FFmpeg copying an RTSP camera's
    stream: `ffmpeg -rtsp_transport tcp -i rtsp://… -c copy -f h264 -`), decoded by an FFmpeg child.

    Why: the camera's own encoder (the Pi 4's hardware one in rpicam-vid, or the camera's for RTSP) already
    made the video a clip needs; `h264_tap` hands every byte, as it came, to the recorder, which stores it
    without encoding again. A pump thread copies the command's output to the decoder and the tap; frames
    are read from the decoder (scaled to width x height) like raw frames from any pipe.
    """

    CHUNK = 1 << 16

    def __init__(self, command: str, config: Config, ffmpeg: str = "ffmpeg"):
        super().__init__(command, config)
        self.frame_bytes = self.width * self.height * 3
        self.buffer = np.empty(self.frame_bytes, np.uint8)
        self.ffmpeg = ffmpeg
        self.decoder: Optional[subprocess.Popen] = None
        self._pump: Optional[threading.Thread] = None
        self.h264_tap = None  # the recorder's feed_h264(bytes), set by the service when recording

    def open(self) -> None:
        super().open()
        # a small probe and no frame threading: the first frame in tens of milliseconds, not after seconds
        decoder = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-probesize", "32768",
                   "-analyzeduration", "0", "-flags", "low_delay", "-thread_type", "slice", "-f", "h264", "-i", "pipe:0",
                   "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}", "pipe:1"]
        try:
            self.decoder = subprocess.Popen(decoder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, bufsize=0)
        except OSError as exc:
            super().close()
            raise SourceError(f"cannot start the H.264 decoder {self.ffmpeg!r}: {exc.strerror} "
                              "(sudo apt install ffmpeg)") from None
        self._pump = threading.Thread(target=self._copy, args=(self.process.stdout, self.decoder.stdin),
                                      name="pidetect-h264-pump", daemon=True)
        self._pump.start()

    def _copy(self, camera, decoder) -> None:
        """Camera bytes to the decoder and to the recorder; ends when either side does."""
        try:
            while True:
                chunk = camera.read(self.CHUNK)
                if not chunk:
                    break
                tap = self.h264_tap
                if tap is not None:
                    tap(chunk)
                decoder.write(chunk)
        except (OSError, ValueError):
            pass
        finally:
            try:
                decoder.close()
            except OSError:
                pass

    def _fill(self) -> bool:
        if self.decoder is None:
            return False
        pipe, view, filled = self.decoder.stdout, memoryview(self.buffer), 0
        while filled < self.frame_bytes:
            deadline = time.monotonic() + self.config.read_timeout
            ready: list = []
            while not ready and not self.cancelled.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], 0.2)
            if not ready:
                return False
            count = pipe.readinto(view[filled:])
            if not count:
                return False
            filled += count
        return True

    def read(self) -> Optional[np.ndarray]:
        if not self._fill():
            return None
        image = self.pool.free_buffer()
        if image is None or image.shape != (self.height, self.width, 3):
            image = np.empty((self.height, self.width, 3), np.uint8)
        image.reshape(-1)[:] = self.buffer
        self.pool.keep(image)
        return image

    def close(self) -> None:
        # The pump may be blocked writing to the decoder (which waits for us to read its frames) or reading the
        # camera. So: the decoder goes first (its output closed, then killed: nothing of it is worth keeping),
        # the pump's write fails and it stops; then the camera command, as for any pipe.
        decoder, self.decoder = self.decoder, None
        if decoder is not None:
            decoder.stdout.close()
            decoder.kill()
        if self.process is not None:
            self.process.terminate()
        if self._pump is not None:
            self._pump.join(2)
            self._pump = None
        if decoder is not None:
            decoder.wait()
        super().close()


class Picamera2Source:
    """The Pi's CSI camera through Picamera2 (apt python3-picamera2; venv with --system-site-packages)."""

    def __init__(self, index: int, config: Config):
        self.index, self.config = index, config
        self.name = f"picamera2:{index}"
        self.live, self.native_fps = True, float(config.fps)
        self.camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("the CSI camera needs Picamera2 from Raspberry Pi OS: sudo apt install python3-picamera2 "
                              "(pidetect's installer makes its venv with --system-site-packages so that it sees it)") \
                from None
        except Exception as exc:  # numpy ABI errors when pip's numpy shadows apt's
            raise SourceError(f"picamera2 is not usable: {type(exc).__name__}: {exc}") from None
        try:
            if len(Picamera2.global_camera_info()) <= self.index:
                raise SourceError("no CSI camera detected (check the ribbon cable; 'rpicam-hello --list-cameras')")
            camera = Picamera2(self.index)
            size = (self.config.width or 1280, self.config.height or 720)
            controls = {"FrameRate": self.config.fps} if self.config.fps else {}
            camera.configure(camera.create_video_configuration(main={"size": size, "format": "RGB888"},
                                                               controls=controls))
            camera.start()
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"picamera2 failed to start: {type(exc).__name__}: {exc}") from None
        self.camera = camera

    def read(self) -> Optional[np.ndarray]:
        try:
            return self.camera.capture_array("main")  # RGB888 is BGR in memory, as OpenCV expects
        except Exception:
            return None

    def skip(self) -> bool:
        """Picamera2 delivers finished frames: skipping one costs what reading it does."""
        return self.read() is not None

    def cancel(self) -> None:
        """capture_array returns with the next frame (a few tens of ms)."""

    def failure_detail(self) -> str:
        return ""

    def close(self) -> None:
        if self.camera is not None:
            camera, self.camera = self.camera, None
            try:
                camera.stop()
                camera.close()
            except Exception:
                pass


def video_devices() -> str:
    """The V4L2 devices there are, for an error message: "cameras here: /dev/video0 (USB Camera), …"."""
    found = []
    for node in sorted(glob.glob("/dev/video*"), key=lambda p: int(re.sub(r"\D", "", p) or 0)):
        try:
            name = (Path("/sys/class/video4linux") / Path(node).name / "name").read_text().strip()
        except OSError:
            name = ""
        found.append(f"{node} ({name})" if name else node)
    return "video devices here: " + ", ".join(found) if found else "no /dev/video* devices on this machine"


def network_failure(url: str, timeout: float) -> str:
    """Why a network stream did not open, in FFmpeg's words (refused, timed out, 401, 404, no route…): OpenCV
    only says that it did not. ffprobe is asked once, with the same timeout; its last error line is the reason."""
    import shutil
    import subprocess

    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return "OpenCV could not open it (install ffmpeg for the reason: refused, timeout, 401, 404)"
    command = [ffprobe, "-v", "error", "-rw_timeout", str(int(timeout * 1e6))]
    if url.startswith("rtsp"):
        command += ["-rtsp_transport", "tcp"]
    try:
        done = subprocess.run([*command, "-i", url], capture_output=True, text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g} s (open_timeout)"
    except OSError:
        return "OpenCV could not open it"
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if done.returncode == 0:
        return "OpenCV could not open it, though FFmpeg can (an OpenCV build without this protocol?)"
    reason = lines[-1] if lines else f"ffprobe exit {done.returncode}"
    return redact_url(reason.replace(url, redact_url(url)))[:300]


def redact_url(text: str) -> str:
    """user:password@ in a URL said in a log becomes user:***@."""
    return re.sub(r"(://[^:/@\s]+):[^@/\s]+@", r"\1:***@", text)


class AutoSource:
    """The first camera that actually delivers a frame: the CSI camera, then V4L2 devices."""

    def __init__(self, config: Config, candidates: Optional[List] = None):
        self.config = config
        self.name, self.live, self.native_fps = "auto", True, 0.0
        self._candidates = candidates
        self.chosen = None
        self._first: Optional[np.ndarray] = None

    def candidates(self) -> List:
        if self._candidates is not None:
            return self._candidates
        found: List = [Picamera2Source(0, self.config)]
        for node in sorted(glob.glob("/dev/video*"), key=lambda p: int(re.sub(r"\D", "", p) or 0)):
            name_file = Path("/sys/class/video4linux") / Path(node).name / "name"
            try:
                if NOT_CAMERAS.search(name_file.read_text()):
                    continue
            except OSError:
                pass
            found.append(OpenCVSource(node, node, cv2.CAP_V4L2, True, self.config))
        return found

    def open(self) -> None:
        tried = []
        for candidate in self.candidates():
            try:
                candidate.open()
                image = candidate.read()
            except SourceError as exc:
                tried.append(f"{candidate.name}: {exc}")
                continue
            if image is None:
                candidate.close()
                tried.append(f"{candidate.name}: opened but delivered no frame")
                continue
            self.chosen, self._first = candidate, image
            self.name, self.native_fps = f"auto:{candidate.name}", candidate.native_fps
            return
        raise SourceError("no camera found (" + ("; ".join(tried) or "no /dev/video* devices and no CSI camera")
                          + "); plug one in or set source")

    def read(self) -> Optional[np.ndarray]:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        return self.chosen.read() if self.chosen else None

    def skip(self) -> bool:
        if self._first is not None:
            self._first = None
            return True
        return self.chosen.skip() if self.chosen else False

    def cancel(self) -> None:
        if self.chosen is not None:
            self.chosen.cancel()

    def failure_detail(self) -> str:
        return self.chosen.failure_detail() if self.chosen else ""

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
            self.chosen = None
        self.name = "auto"


def opencv_has_gstreamer() -> bool:
    return bool(re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))


def make_source(config: Config) -> Source:
    spec = config.source.strip()
    if spec == "auto":
        return AutoSource(config)
    if spec.isdigit():
        return OpenCVSource(f"/dev/video{spec}", int(spec), cv2.CAP_V4L2, True, config)
    if spec.startswith("/dev/video"):
        return OpenCVSource(spec, spec, cv2.CAP_V4L2, True, config)
    if spec == "picamera2" or spec.startswith("picamera2:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise ConfigError(f"source {spec!r}: picamera2:N needs a camera number, e.g. picamera2:0")
        return Picamera2Source(int(index), config)
    if spec.startswith("pipe:"):
        command = spec[len("pipe:"):].strip()
        if not command:
            raise ConfigError("source 'pipe:' needs a command, e.g. 'pipe:rpicam-vid -t 0 -n --codec yuv420 "
                              "--width 640 --height 480 -o -'")
        if config.pipe_codec == "h264":
            return H264PipeSource(command, config)
        return PipeSource(command, config)
    if re.match(r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://", spec):
        return OpenCVSource(redact_url(spec), spec, cv2.CAP_FFMPEG, True, config, network=True)
    if "!" in spec and "appsink" in spec:
        if not opencv_has_gstreamer():
            raise ConfigError("source is a GStreamer pipeline, but this OpenCV build has no GStreamer "
                              "(pip's opencv-python-headless); use apt's python3-opencv in a venv made "
                              "with --system-site-packages, or a pipe: source")
        return OpenCVSource("gstreamer", spec, cv2.CAP_GSTREAMER, True, config)
    if "%" in spec and not os.path.isfile(spec):  # a file that exists is a file, whatever its name
        check_image_sequence(spec)
        return OpenCVSource(spec, spec, cv2.CAP_IMAGES, False, config)
    if os.path.isdir(spec):
        raise ConfigError(f"source {spec!r} is a folder; give a video file or an image pattern like "
                          f"{spec.rstrip('/')}/img_%04d.jpg")
    if not os.path.exists(spec):
        # a camera that is absent is retried (it may be plugged in); a file that is not there is a typo
        raise ConfigError(f"source {spec!r}: no such file (and not a camera: those are auto, 0, /dev/videoN, "
                          "picamera2, rtsp://…, pipe:…); check the path")
    return OpenCVSource(spec, spec, cv2.CAP_FFMPEG, False, config)
