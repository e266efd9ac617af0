"""An MJPEG-over-HTTP view of the overlay, for a browser or VLC on another machine.

Each frame is JPEG-encoded once (and only while someone watches), then every viewer gets the
newest encoded frame; a slow viewer simply skips frames, so viewers never slow the detector.
Binds to 127.0.0.1 unless mjpeg_address says otherwise.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from typing import Optional

import cv2

from ..frames import Result
from ..overlay import Overlay
from . import DisplayUnavailable

log = logging.getLogger(__name__)
BOUNDARY = b"pidetectframe"
INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>pidetect</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}
img{display:block;max-width:100vw;max-height:calc(100vh - 2em);margin:auto}
p{margin:.4em;text-align:center}</style></head>
<body><img id="live" src="/stream.mjpg" alt="live view">
<p>pidetect live view &middot; <a href="/snapshot.jpg" style="color:#8cf">snapshot</a></p></body></html>
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

    def wait_newer(self, seq: int, timeout: float = 1.0):
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq or self.closed, timeout)
            return self.seq, self.jpeg


class MjpegDisplay:
    name = "mjpeg"

    def __init__(self, address: str = "127.0.0.1", port: int = 8080, quality: int = 80):
        self.address, self.port, self.quality = address, port, quality
        self.latest = LatestJpeg()
        self.overlay = Overlay()
        self.server = self._make_server()
        self.thread = threading.Thread(target=self.server.serve_forever, name="pidetect-mjpeg", daemon=True)
        self.thread.start()
        log.info("MJPEG view on http://%s:%d/", address, self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.server.server_address[1]}/"

    def _make_server(self) -> http.server.ThreadingHTTPServer:
        latest = self.latest

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                if self.path in ("/", "/index.html"):
                    body = INDEX_HTML.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path.startswith("/stream.mjpg"):
                    self._stream()
                elif self.path.startswith("/snapshot.jpg"):
                    self._snapshot()
                else:
                    self.send_error(404, "try / or /stream.mjpg")

            def _viewer(self, delta: int) -> None:
                with latest.cond:
                    latest.viewers += delta

            def _snapshot(self):
                self._viewer(+1)
                try:
                    _seq, jpeg = latest.wait_newer(latest.seq, timeout=5.0)
                finally:
                    self._viewer(-1)
                if jpeg is None:
                    self.send_error(503, "no frame yet")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg)))
                self.end_headers()
                self.wfile.write(jpeg)

            def _stream(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY.decode())
                self.send_header("Cache-Control", "no-cache, private")
                self.end_headers()
                self._viewer(+1)
                seq = 0
                try:
                    while not latest.closed:
                        new_seq, jpeg = latest.wait_newer(seq)
                        if new_seq == seq or jpeg is None:
                            continue
                        seq = new_seq
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
                    pass
                finally:
                    self._viewer(-1)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        try:
            return Server((self.address, self.port), Handler)
        except OSError as exc:
            raise DisplayUnavailable(f"MJPEG view cannot listen on {self.address}:{self.port}: {exc.strerror} "
                                     "(set mjpeg_port to a free port)") from None

    def show(self, result: Result, fps: Optional[float] = None) -> None:
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
