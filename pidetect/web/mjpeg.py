"""An MJPEG-over-HTTP view of the overlay, for a browser or VLC on another machine.

Each frame is JPEG-encoded once (and only while someone watches), then every viewer gets the
newest encoded frame; a slow viewer simply skips frames, so viewers never slow the detector.
Binds to 127.0.0.1 unless mjpeg_address says otherwise.

Beside the stream: /zones, the zone editor (zone_editor.py, zones.html), reading /api/zones (the
configured zones and masks) and /frame.jpg (the newest frame without the overlay, encoded on request).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import socketserver
import threading
from typing import Optional, Tuple

import cv2
import numpy as np

from ..frames import Result
from ..outputs.overlay import Overlay
from ..outputs.display import DisplayUnavailable
from . import zone_editor
from .zone_editor import ZoneLayout

log = logging.getLogger(__name__)
BOUNDARY = b"pidetectframe"
MAX_LINE = 8192
MAX_HEADERS = 100
INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>pidetect</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}
img{display:block;max-width:100vw;max-height:calc(100vh - 2em);margin:auto}
p{margin:.4em;text-align:center}</style></head>
<body><img id="live" src="/stream.mjpg" alt="live view">
<p>pidetect live view &middot; <a href="/snapshot.jpg" style="color:#8cf">snapshot</a> &middot;
<a href="/zones" style="color:#8cf">zones</a></p></body></html>
"""


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
    """The newest frame the display was given, without the overlay: the zone editor's picture.

    Only a reference (the capture's frame pool never refills a buffer that is still referenced), so
    keeping it costs no copy and no encode until someone opens the editor."""

    def __init__(self) -> None:
        self.image: Optional[np.ndarray] = None

    @property
    def size(self) -> Optional[Tuple[int, int]]:
        image = self.image
        return (image.shape[1], image.shape[0]) if image is not None else None

    def jpeg(self, quality: int = 90) -> Optional[bytes]:
        image = self.image
        if image is None:
            return None
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return data.tobytes() if ok else None


class MjpegServer(socketserver.ThreadingTCPServer):
    """A thread per viewer. Built on socketserver rather than http.server: http.server imports
    http.client, which imports ssl, and that alone costs the daemon 4.6 MB of resident memory
    (measured) for three fixed GET routes."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # listen() backlog: with 5, viewers connecting at once waited for a SYN retry (1 s)

    def __init__(self, address: Tuple[str, int], latest: LatestJpeg, picture: Optional[LatestPicture] = None,
                 layout: ZoneLayout = ZoneLayout()):
        self.latest, self.layout = latest, layout
        self.picture = picture or LatestPicture()
        super().__init__(address, MjpegRequest)


class MjpegRequest(socketserver.StreamRequestHandler):
    """One HTTP/1.0 request: GET / (page), /stream.mjpg (multipart JPEG stream), /snapshot.jpg."""

    timeout = 10.0  # seconds a viewer may take to send its request, or to take a frame we send

    def handle(self) -> None:
        try:
            request = self.rfile.readline(MAX_LINE).decode("latin-1").split()
            for _ in range(MAX_HEADERS):  # headers are not needed; read up to the blank line
                if self.rfile.readline(MAX_LINE) in (b"\r\n", b"\n", b""):
                    break
            if len(request) != 3 or not request[2].startswith("HTTP/"):
                self._reply(400, "Bad Request", "text/plain", b"bad request\n")
            elif request[0] not in ("GET", "HEAD"):
                self._reply(405, "Method Not Allowed", "text/plain", b"only GET\n")
            else:
                self._route(request[1].split("?", 1)[0], head_only=request[0] == "HEAD")
        except (OSError, ValueError):
            pass  # a viewer that went away or sent garbage: nothing to answer

    def _route(self, path: str, head_only: bool) -> None:
        latest: LatestJpeg = self.server.latest
        if path in ("/", "/index.html"):
            self._reply(200, "OK", "text/html; charset=utf-8", INDEX_HTML.encode(), head_only)
        elif path == "/stream.mjpg":
            self._stream(latest, head_only)
        elif path == "/snapshot.jpg":
            with latest.viewing():
                _seq, jpeg = latest.wait_newer(latest.seq, timeout=5.0)
            if jpeg is None:
                self._reply(503, "Service Unavailable", "text/plain", b"no frame yet\n", head_only)
            else:
                self._reply(200, "OK", "image/jpeg", jpeg, head_only)
        elif path == "/zones":
            self._reply(200, "OK", "text/html; charset=utf-8", zone_editor.page(), head_only)
        elif path == "/api/zones":
            body = json.dumps(zone_editor.layout_json(self.server.layout, self.server.picture.size)).encode()
            self._reply(200, "OK", "application/json", body, head_only)
        elif path == "/frame.jpg":
            jpeg = self.server.picture.jpeg()
            if jpeg is None:
                self._reply(503, "Service Unavailable", "text/plain", b"no frame yet\n", head_only)
            else:
                self._reply(200, "OK", "image/jpeg", jpeg, head_only)
        else:
            self._reply(404, "Not Found", "text/plain", b"try / or /stream.mjpg or /zones\n", head_only)

    def _reply(self, status: int, reason: str, content_type: str, body: bytes, head_only: bool = False) -> None:
        head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        self.wfile.write(head if head_only else head + body)

    def _stream(self, latest: LatestJpeg, head_only: bool) -> None:
        self.wfile.write(("HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary="
                          + BOUNDARY.decode() + "\r\nCache-Control: no-cache, private\r\n"
                          "Connection: close\r\n\r\n").encode())
        if head_only:
            return
        seq = 0
        with latest.viewing():
            while not latest.closed:
                new_seq, jpeg = latest.wait_newer(seq)
                if new_seq == seq or jpeg is None:
                    continue
                seq = new_seq
                self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")


class MjpegDisplay:
    name = "mjpeg"

    def __init__(self, address: str = "127.0.0.1", port: int = 8080, quality: int = 80,
                 layout: ZoneLayout = ZoneLayout()):
        self.address, self.port, self.quality, self.layout = address, port, quality, layout
        self.latest = LatestJpeg()
        self.picture = LatestPicture()
        self.overlay = Overlay()
        self.server = self._make_server()
        self.thread = threading.Thread(target=self.server.serve_forever, name="pidetect-mjpeg", daemon=True)
        self.thread.start()
        log.info("MJPEG view on http://%s:%d/", address, self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.server.server_address[1]}/"

    def _make_server(self) -> "MjpegServer":
        try:
            return MjpegServer((self.address, self.port), self.latest, self.picture, self.layout)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                hint = "another program uses that port: set mjpeg_port to a free one"
            elif exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
                hint = "no interface of this machine has that address: set mjpeg_address to 127.0.0.1 or 0.0.0.0"
            elif exc.errno == errno.EACCES:
                hint = "ports below 1024 need root: set mjpeg_port to 1024 or above"
            else:
                hint = "check mjpeg_address and mjpeg_port"
            raise DisplayUnavailable(f"MJPEG view cannot listen on {self.address}:{self.port}: "
                                     f"{exc.strerror or exc} ({hint})") from None

    def show(self, result: Result, fps: Optional[float] = None) -> None:
        self.picture.image = result.frame.image  # a reference, for the zone editor
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
