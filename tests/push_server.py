"""A local push service for the notification tests: an HTTP server on 127.0.0.1 that keeps every request
(Apprise's json:// POSTs title, message and attachments as base64; its ntfy:// sends an attachment as the request body with
the title and message in headers, as the ntfy server takes them), optionally slow. Never anything but loopback."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from typing import List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PushServer:
    def __init__(self, port: Optional[int] = None, delay: float = 0.0):
        self.port = port or free_port()
        self.delay = delay
        self.received: List[dict] = []
        self._server: Optional[http.server.ThreadingHTTPServer] = None

    def url(self, path: str = "hook", secret: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/{path}" + (f"?token={secret}" if secret else "")

    def start(self) -> "PushServer":
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if owner.delay:
                    time.sleep(owner.delay)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                body["_path"], body["_at"], body["_method"] = self.path, time.time(), self.command
                body["_headers"], body["_raw"] = dict(self.headers), raw
                owner.received.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id": "x", "event": "message"}')

            do_PUT = do_POST  # ntfy servers take PUT too

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 30.0) -> List[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received

    @staticmethod
    def attachment(message: dict) -> bytes:
        return base64.b64decode(message["attachments"][0]["base64"])
