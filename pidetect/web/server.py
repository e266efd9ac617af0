"""The web UI's HTTP server: the live view, the review page, the JSON API, /metrics and the zone editor.

    /                    live view (MJPEG)          /events              review page (events.html)
    /stream.mjpg         the overlaid stream        /api/events          ?label=&after=&before=&limit=
    /snapshot.jpg        one overlaid frame         /api/events/ID       GET; DELETE removes it and its files
    /frame.jpg           the frame, no overlay      /api/events/ID/snapshot.jpg
    /zones, /api/zones   the zone editor            /api/labels          labels with events
    /metrics             Prometheus text format (prometheus_client)

Built on http.server: prometheus_client imports it (and ssl) anyway, so once /metrics exists the
hand-written parser that saved 4.6 MB saves nothing, while http.server brings HTTP/1.1 keep-alive,
header limits and error replies for free (measured: README "Web UI"). A thread per client, at most
MAX_CLIENTS at once (more are refused at once with 503), each with a 10 s socket timeout, so slow or
hostile clients can neither stall detection (which never waits for the server) nor grow memory.

Who may look: with a password (HTTP Basic, `web_user` / `web_password_file`) every route asks for it;
off loopback without one the daemon refuses to start (config check). Snapshots are served by event
id only: the file name comes from the store, must be one pidetect writes, and is opened without
following links, so no request can name a path.
"""

from __future__ import annotations

import base64
import hmac
import http.server
import json
import logging
import os
import re
import socketserver
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Tuple

from . import zone_editor
from .zone_editor import ZoneLayout

log = logging.getLogger(__name__)
MAX_CLIENTS = 128
PAGES = Path(__file__).parent
EVENT_PATH = re.compile(r"/api/events/(\d{1,18})(/snapshot\.jpg)?")
MAX_LIMIT = 1000
MAX_LABEL = 200


@dataclass
class WebApp:
    """What the routes read. Everything is optional: a bare server (tests) serves the live view only."""

    latest: object  # mjpeg.LatestJpeg
    picture: object = None  # mjpeg.LatestPicture
    layout: ZoneLayout = field(default_factory=ZoneLayout)
    store: object = None  # store.events.EventStore (its own reader connection)
    snapshot_dir: Optional[Path] = None
    metrics: Optional[Callable[[], bytes]] = None  # the Prometheus exposition
    auth: Optional[Tuple[str, str]] = None  # (user, password)
    on_delete: Optional[Callable[[object], None]] = None  # removes an event's files


class WebServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # listen() backlog: with 5, viewers connecting at once waited for a SYN retry (1 s)

    def __init__(self, address: Tuple[str, int], app: WebApp):
        self.app = app
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, WebRequest)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would look the host name up (slow, pointless)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        if not self._clients.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-reply is normal; anything else is a bug worth its traceback (debug)."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("web client %s went away: %s", client_address[0], error)
        else:
            log.warning("web request from %s failed: %s: %s", client_address[0], type(error).__name__, error,
                        exc_info=True)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._clients.release()


def _number(value: str, name: str) -> float:
    """A time parameter: seconds since the epoch, or a date / date-time in ISO 8601 (local time)."""
    import datetime

    try:
        number = float(value)
        if number != number or abs(number) > 1e11:
            raise ValueError
        return number
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be seconds since 1970 or a date like 2026-12-01 or 2026-12-01T09:30") from None
    return moment.timestamp()


class WebRequest(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # seconds a client may take to send its request, or to take what we send
    default_request_version = "HTTP/1.0"  # a request without a version gets a status line too (never HTTP/0.9)

    def version_string(self) -> str:
        return "pidetect"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        log.debug("web %s: " + format, self.address_string(), *args)

    # --- dispatch -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _not_allowed(self) -> None:
        self.close_connection = True
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD, DELETE")
        self._body(b"only GET, HEAD and DELETE (of an event)\n", "text/plain; charset=utf-8", False)

    do_POST = do_PUT = do_PATCH = do_OPTIONS = _not_allowed

    def _dispatch(self, method: str) -> None:
        app: WebApp = self.server.app
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # no route takes a body: never read one, and end the connection after
        if app.auth is not None and not self._authorised(app.auth):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="pidetect", charset="UTF-8"')
            self._body(b"password required\n", "text/plain", method == "HEAD")
            return
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        try:
            query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True, max_num_fields=10, strict_parsing=False)
        except ValueError:
            self._error(400, "too many parameters")
            return
        try:
            self._route(method, path, {k: v[-1] for k, v in query.items()})
        except ValueError as exc:
            self._error(400, str(exc))

    def _authorised(self, auth: Tuple[str, str]) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected_user, expected_password = auth
        return hmac.compare_digest(user.encode(), expected_user.encode()) & \
            hmac.compare_digest(password.encode(), expected_password.encode())

    def _route(self, method: str, path: str, query: dict) -> None:
        app: WebApp = self.server.app
        head = method == "HEAD"
        match = EVENT_PATH.fullmatch(path)
        if method == "DELETE":
            if match and not match.group(2):
                self._delete(int(match.group(1)))
            else:
                self._error(405, "only events can be deleted: DELETE /api/events/ID")
            return
        if path in ("/", "/index.html"):
            self._page("live.html", head)
        elif path == "/stream.mjpg":
            self._stream(app.latest, head)
        elif path == "/snapshot.jpg":
            with app.latest.viewing():
                _seq, jpeg = app.latest.wait_newer(app.latest.seq, timeout=5.0)
            self._jpeg(jpeg, head)
        elif path == "/frame.jpg":
            self._jpeg(app.picture.jpeg() if app.picture is not None else None, head)
        elif path == "/zones":
            self._body(zone_editor.page(), "text/html; charset=utf-8", head)
        elif path == "/api/zones":
            size = app.picture.size if app.picture is not None else None
            self._json(zone_editor.layout_json(app.layout, size), head)
        elif path == "/events":
            self._page("events.html", head)
        elif path == "/api/events":
            self._events(query, head)
        elif path == "/api/labels":
            self._json(app.store.labels() if app.store is not None else [], head)
        elif match:
            self._event(int(match.group(1)), bool(match.group(2)), head)
        elif path == "/metrics":
            if app.metrics is None:
                self._error(404, "no metrics")
            else:
                self._body(app.metrics(), "text/plain; version=0.0.4; charset=utf-8", head)
        else:
            self._error(404, "not found; try / (live view), /events (review), /zones, /api/events or /metrics")

    # --- events ---------------------------------------------------------------------------------
    def _events(self, query: dict, head: bool) -> None:
        store = self.server.app.store
        unknown = sorted(set(query) - {"label", "after", "before", "limit"})
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; use label, after, before, limit")
        label = query.get("label") or None
        if label is not None and len(label) > MAX_LABEL:
            raise ValueError(f"label is longer than {MAX_LABEL} characters")
        after = _number(query["after"], "after") if query.get("after") else None
        before = _number(query["before"], "before") if query.get("before") else None
        limit_text = query.get("limit") or "100"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        events = store.list(label, after, before, int(limit_text)) if store is not None else []
        self._json([event.as_dict() for event in events], head)

    def _event(self, event_id: int, snapshot: bool, head: bool) -> None:
        app: WebApp = self.server.app
        event = app.store.get(event_id) if app.store is not None else None
        if event is None:
            self._error(404, f"no event {event_id}")
        elif not snapshot:
            self._json(event.as_dict(), head)
        else:
            data = read_own_snapshot(app.snapshot_dir, event.snapshot)
            if data is None:
                self._error(404, f"event {event_id} has no snapshot (not taken, or removed by the snapshot caps)")
            else:
                self._body(data, "image/jpeg", head, cache="private, max-age=86400")

    def _delete(self, event_id: int) -> None:
        app: WebApp = self.server.app
        event = app.store.delete(event_id) if app.store is not None else None
        if event is None:
            self._error(404, f"no event {event_id}")
            return
        if app.on_delete is not None:
            app.on_delete(event)
        self._json({"deleted": event_id}, False)

    # --- replies --------------------------------------------------------------------------------
    def _page(self, name: str, head: bool) -> None:
        self._body((PAGES / name).read_bytes(), "text/html; charset=utf-8", head)

    def _jpeg(self, jpeg: Optional[bytes], head: bool) -> None:
        if jpeg is None:
            self._error(503, "no frame yet")
        else:
            self._body(jpeg, "image/jpeg", head)

    def _json(self, value, head: bool) -> None:
        self._body(json.dumps(value).encode(), "application/json", head)

    def _error(self, status: int, text: str) -> None:
        self.send_response(status)
        self._body((text + "\n").encode(), "text/plain; charset=utf-8", self.command == "HEAD")

    def _body(self, body: bytes, content_type: str, head: bool, cache: str = "no-store") -> None:
        if not hasattr(self, "_headers_buffer") or not self._headers_buffer:
            self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _stream(self, latest, head: bool) -> None:
        from .mjpeg import BOUNDARY

        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY.decode())
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
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


def read_own_snapshot(folder: Optional[Path], name: Optional[str]) -> Optional[bytes]:
    """The bytes of a snapshot pidetect wrote in `folder`, or None. The name must be one pidetect writes
    (no separators, no '..'), and a link placed in the folder is never followed."""
    from ..outputs.snapshots import OWN_NAME

    if folder is None or not name or not OWN_NAME.fullmatch(name):
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        import stat

        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 50 * 2**20:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
