"""A local push service for the notification measurements (bench, notify_check): an HTTP server on 127.0.0.1
at a free port that keeps the arrival time of every POST. Loopback only."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import List


class PushService:
    """A local push service on 127.0.0.1 (a free port): keeps the arrival time of every POST."""

    def __init__(self) -> None:
        self.arrivals: List[float] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.arrivals.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
