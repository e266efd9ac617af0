"""An MJPEG-over-HTTP view of the overlay, for a browser or VLC on another machine.

Each frame is JPEG-encoded once (and only while someone watches), then every viewer gets the
newest encoded frame; a slow viewer simply skips frames, so viewers never slow the detector.
Binds to 127.0.0.1 unless mjpeg_address says otherwise.

The display owns the web UI's server (server.py): the live view is where it all started, and the
review page, the API, /metrics and the zone editor (zone_editor.py) share its address and port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from ..frames import Result
from ..outputs.overlay import Overlay
from ..outputs.display import DisplayUnavailable
from .server import WebApp, WebServer
from .zone_editor import ZoneLayout

log = logging.getLogger(__name__)


class LatestJpeg:
    """The newest encoded frame and a condition for viewers to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: Optional[bytes] = None
        self.seq = 0
        self.viewers = 0
        self.closed = False

    def publish(self, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg, self.seq = jpeg, self.seq + 1
            self.cond.notify_all()

    @contextlib.contextmanager
    def viewing(self):
        """Count a viewer while the block runs: frames are encoded only while someone watches."""
        with self.cond:
            self.viewers += 1
        try:
            yield
        finally:
            with self.cond:
                self.viewers -= 1

    def wait_newer(self, seq: int, timeout: float = 1.0):
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq or self.closed, timeout)
            return self.seq, self.jpeg


class LatestPicture:
    """The newest frame the display was given, without the overlay, kept as a JPEG: the zone editor's picture.

    Why encoded and not a reference to the frame: a reference keeps one of the capture's frame buffers from
    being filled again, so the pool holds one more (2.6 MB at 720p: one of the five buffers measured with
    everything on). A JPEG of it is a tenth of that. Encoded (on the display thread) at most every FRESH_S
    seconds while someone asked for the picture in the last WANTED_S, else every IDLE_S: a 720p encode takes
    a few milliseconds, so that is no load. A request finding only an older picture waits up to WAIT_S for the
    next frame shown (none comes while the motion gate rests: then it gets the older one).
    """

    FRESH_S = 2.0
    IDLE_S = 30.0
    WANTED_S = 300.0
    WAIT_S = 1.5
    QUALITY = 90

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._jpeg: Optional[bytes] = None
        self._size: Optional[Tuple[int, int]] = None
        self._encoded_at: Optional[float] = None
        self._asked_at: Optional[float] = None

    def offer(self, image: np.ndarray) -> None:
        """A frame the display shows (display thread): encoded when one is due, never kept."""
        now = self.clock()
        with self._cond:
            self._size = (image.shape[1], image.shape[0])
            wanted = self._asked_at is not None and now - self._asked_at < self.WANTED_S
            if self._encoded_at is not None and now - self._encoded_at < (self.FRESH_S if wanted else self.IDLE_S):
                return
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.QUALITY])
        if ok:
            with self._cond:
                self._jpeg, self._encoded_at = data.tobytes(), now
                self._cond.notify_all()

    @property
    def size(self) -> Optional[Tuple[int, int]]:
        return self._size

    def jpeg(self) -> Optional[bytes]:
        """The picture (any thread): the newest encoded, after waiting a moment for a fresh one if it is old."""
        with self._cond:
            now = self.clock()
            self._asked_at = now
            before = self._encoded_at
            if before is None or now - before >= self.FRESH_S:
                self._cond.wait_for(lambda: self._encoded_at != before, self.WAIT_S)
            return self._jpeg


class MjpegDisplay:
    name = "mjpeg"

    def __init__(self, address: str = "127.0.0.1", port: int = 8080, quality: int = 80,
                 layout: ZoneLayout = ZoneLayout(), **web):
        """`web`: the rest of the web UI's WebApp (store, snapshot_dir, record_dir, metrics, auth, on_delete)."""
        self.address, self.port, self.quality = address, port, quality
        self.latest = LatestJpeg()
        self.picture = LatestPicture()
        self.app = WebApp(self.latest, self.picture, layout, **web)
        self.overlay = Overlay()
        self.server = self._make_server()
        self.thread = threading.Thread(target=self.server.serve_forever, name="pidetect-mjpeg", daemon=True)
        self.thread.start()
        log.info("web UI on http://%s:%d/ (live view; /events, /zones, /api/events, /metrics)", address,
                 self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.server.server_address[1]}/"

    def _make_server(self) -> WebServer:
        try:
            return WebServer((self.address, self.port), self.app)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                hint = ("another program uses that port (another pidetect camera? each needs its own): set "
                        "mjpeg_port to a free one")
            elif exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
                hint = "no interface of this machine has that address: set mjpeg_address to 127.0.0.1 or 0.0.0.0"
            elif exc.errno == errno.EACCES:
                hint = "ports below 1024 need root: set mjpeg_port to 1024 or above"
            else:
                hint = "check mjpeg_address and mjpeg_port"
            raise DisplayUnavailable(f"MJPEG view cannot listen on {self.address}:{self.port}: "
                                     f"{exc.strerror or exc} ({hint})") from None

    def show(self, result: Result, fps: Optional[float] = None) -> None:
        self.picture.offer(result.frame.image)  # the zone editor's picture
        if self.latest.viewers == 0:
            return  # nobody watches: skip drawing and the JPEG encode entirely
        image = self.overlay.draw(result, fps)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self.latest.publish(jpeg.tobytes())

    def close(self) -> None:
        with self.latest.cond:
            self.latest.closed = True
            self.latest.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(2)
