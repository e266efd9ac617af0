"""The web UI's HTTP server: the live view, the review page, the JSON API, /metrics and the zone editor.

    /                    live view (MJPEG)          /events              review page (events.html)
    /stream.mjpg         the overlaid stream        /api/events          ?label=&after=&before=&limit=
    /snapshot.jpg        one overlaid frame         /api/events/ID       GET; DELETE removes it and its files
    /frame.jpg           the frame, no overlay      /api/events/ID/snapshot.jpg, /api/events/ID/clip.mp4 (Range)
    /zones, /api/zones   the zone editor            /api/labels          labels with events
                                                    /api/notify          the last delivery per notification target
    /metrics             Prometheus text format (prometheus_text.py)

Built on socketserver with a few lines of request parsing, not http.server, which imports http.client
and ssl: 7 MB of the daemon's resident memory (measured). One request per connection (HTTP/1.0). A thread per client, at most
MAX_CLIENTS at once and MAX_PER_CLIENT from one address (more are refused at once with 503); a request head must
arrive whole within HEAD_SECONDS and HEAD_BYTES, so slow or hostile clients (slowloris) can neither stall
detection (which never waits for the server), lock others out, nor grow memory.

Who may look: with a password (HTTP Basic, `web_user` / `web_password_file`) every route asks for it;
off loopback without one the daemon refuses to start (config check). Wrong passwords are logged (never the
password) and a client that keeps failing waits longer and longer (`LoginBackoff`). The `Host` a request names
must be this Pi (its names, addresses, localhost, or `web_hosts`): a page on another site whose name a rebinding
DNS points at this Pi is refused. A request that changes something (DELETE) is refused when its Origin or
Referer is another site's. Snapshots are served by event id only: the file name comes from the store, must be
one pidetect writes, and is opened without following links, so no request can name a path.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
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
MAX_PER_CLIENT = 32  # connections from one address: a browser opens at most 6 a page; several tabs and phones fit
HEAD_SECONDS = 10.0  # to send the whole request line and headers
HEAD_BYTES = 16384  # request line and headers together
NAMES_SECONDS = 30.0  # this Pi's addresses are read again this often (a DHCP lease may change them)
PAGES = Path(__file__).parent
STATIC = {"/app.css": "text/css; charset=utf-8", "/app.js": "text/javascript; charset=utf-8"}
BOUNDARY = b"pidetectframe"  # the MJPEG stream's part separator
EVENT_PATH = re.compile(r"/api/events/(\d{1,18})(/snapshot\.jpg|/clip\.mp4|/thumb\.jpg)?")
EVENT_PAGE = re.compile(r"/events/(\d{1,18})")
HOST_V6 = re.compile(r"\[([0-9A-Fa-f:.%a-z]+)\](?::\d+)?")
RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")
MAX_LIMIT = 1000
MAX_LINE = 8192
MAX_HEADERS = 100
MAX_LABEL = 200
MAX_BODY = 65536  # a drawn polygon's JSON


@dataclass
class WebApp:
    """What the routes read. Everything is optional: a bare server (tests) serves the live view only."""

    latest: object  # mjpeg.LatestJpeg
    picture: object = None  # mjpeg.LatestPicture
    layout: ZoneLayout = field(default_factory=ZoneLayout)
    store: object = None  # store.events.EventStore (its own reader connection)
    snapshot_dir: Optional[Path] = None
    record_dir: Optional[Path] = None  # clips (record = true)
    metrics: Optional[Callable[[], bytes]] = None  # the Prometheus exposition
    auth: Optional[Tuple[str, str]] = None  # (user, password)
    on_delete: Optional[Callable[[object], None]] = None  # removes an event's files
    notify: Optional[Callable[[], dict]] = None  # the last delivery per notification target (outputs/notify.py)
    hosts: Tuple[str, ...] = ()  # names the owner reaches the UI by, besides this Pi's own (web_hosts)
    labels: Tuple[str, ...] = ()  # the model's: a zone drawn on the page may only count these
    live: Optional[Callable[[], dict]] = None  # the camera's state and what is in view (web/live_state.py)
    config_path: Optional[Path] = None  # the file zones are saved into (None: started without one)
    settings: dict = field(default_factory=dict)  # the configuration in effect, secrets hidden (status page)
    camera_name: str = ""
    web_port: int = 0  # this camera's web port: the others on this Pi are listed beside it


class WebServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # listen() backlog: with 5, viewers connecting at once waited for a SYN retry (1 s)

    def __init__(self, address: Tuple[str, int], app: WebApp):
        self.app = app
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._per_client: dict = {}  # address -> open connections
        self._per_client_lock = threading.Lock()
        self.backoff = LoginBackoff()
        self.thumbnails = Thumbnails()
        self._names: Optional[set] = None  # own_names, kept for NAMES_SECONDS
        self._names_at = 0.0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, WebRequest)

    def process_request(self, request, client_address) -> None:
        client = client_address[0]
        with self._per_client_lock:
            crowded = self._per_client.get(client, 0) >= MAX_PER_CLIENT
            if not crowded:
                self._per_client[client] = self._per_client.get(client, 0) + 1
        if crowded or not self._clients.acquire(blocking=False):
            if not crowded:
                self._leave(client)
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _leave(self, client: str) -> None:
        with self._per_client_lock:
            left = self._per_client.get(client, 1) - 1
            if left > 0:
                self._per_client[client] = left
            else:
                self._per_client.pop(client, None)

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
            self._leave(client_address[0])

    def own_names(self) -> set:
        """The hosts a request may name: loopback, this Pi's name and NAME.local, its addresses (read again every
        NAMES_SECONDS: DHCP may change them), the bound address, web_hosts. No DNS lookup: a Pi without a
        resolver must not stall a request."""
        import time

        now = time.monotonic()
        if self._names is not None and now - self._names_at < NAMES_SECONDS:
            return self._names
        host = socket.gethostname().lower()
        names = {"localhost", "127.0.0.1", "::1", host, f"{host}.local"}
        names.update(name.lower().rstrip(".") for name in self.app.hosts)
        bound = self.server_address[0]
        if bound not in ("0.0.0.0", "::", ""):
            names.add(bound.lower())
        else:
            try:
                import psutil

                names.update(address.address.split("%")[0].lower() for addresses in psutil.net_if_addrs().values()
                             for address in addresses if address.family in (socket.AF_INET, socket.AF_INET6))
            except (ImportError, OSError):
                pass
        self._names, self._names_at = names, now
        return names


class LoginBackoff:
    """Wrong passwords per client address: after FREE_FAILURES, each further try waits twice as long as the last
    (up to MAX_WAIT s) — 3,385 guesses a second become one a minute. A right password clears the count."""

    FREE_FAILURES = 5
    MAX_WAIT = 60.0
    MAX_CLIENTS_KEPT = 4096

    def __init__(self, clock: Callable[[], float] = None):
        import time

        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._failures: dict = {}  # address -> (failures, not before)

    def wait_left(self, client: str) -> float:
        with self._lock:
            _count, not_before = self._failures.get(client, (0, 0.0))
        return max(0.0, not_before - self.clock())

    def failed(self, client: str) -> int:
        with self._lock:
            count = self._failures.get(client, (0, 0.0))[0] + 1
            wait = 0.0 if count <= self.FREE_FAILURES else min(self.MAX_WAIT, 2.0 ** (count - self.FREE_FAILURES - 1))
            if len(self._failures) >= self.MAX_CLIENTS_KEPT and client not in self._failures:
                self._failures.pop(next(iter(self._failures)))
            self._failures[client] = (count, self.clock() + wait)
            return count

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


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
        return datetime.datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError):  # not a date, or one no clock can hold ("year 0 is out of range")
        raise RequestError(f"{name} must be seconds since 1970 or a date like 2026-12-01 or 2026-12-01T09:30 "
                           f"(got {value[:40]!r})") from None


def _whole(value: str, name: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise RequestError(f"{name} must be a whole number")
    return int(value)


class RequestError(ValueError):
    """What was wrong in the request, in words for the person who sent it (a 400)."""


class BadRequest(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


REASONS = {200: "OK", 206: "Partial Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 414: "URI Too Long",
           416: "Range Not Satisfiable", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


class WebRequest(socketserver.StreamRequestHandler):
    """One HTTP/1.0 request per connection (Connection: close), parsed here in a few lines.

    Not http.server: it imports http.client and with it ssl, 7 MB of the daemon's resident memory
    (measured), for what is a request line and a few headers. Limits: a line of MAX_LINE bytes, MAX_HEADERS
    headers; no route reads a body."""

    timeout = 10.0  # seconds a client may take to send its request, or to take what we send

    def handle(self) -> None:
        try:
            method, target, headers = self._read_request()
        except BadRequest as exc:
            self._error(exc.status, str(exc))
            return
        except (OSError, ValueError):
            return  # a client that went away or sent nothing
        self.command, self.path, self.headers = method, target, headers
        try:
            if method in ("GET", "HEAD", "DELETE", "POST"):
                self._dispatch(method)
            else:
                self._error(405, "only GET, HEAD, POST and DELETE", [("Allow", "GET, HEAD, POST, DELETE")])
        except OSError:
            pass  # the client went away mid-reply

    def _read_request(self):
        import time

        deadline = time.monotonic() + HEAD_SECONDS
        budget = HEAD_BYTES

        def line() -> bytes:
            nonlocal budget
            left = deadline - time.monotonic()
            if left <= 0:
                raise BadRequest(408, f"the request head took longer than {HEAD_SECONDS:g} s")
            self.connection.settimeout(left)
            try:
                text = self.rfile.readline(min(MAX_LINE, budget) + 1)
            except socket.timeout:
                raise BadRequest(408, f"the request head took longer than {HEAD_SECONDS:g} s") from None
            budget -= len(text)
            if budget < 0:
                raise BadRequest(431, f"the request head is larger than {HEAD_BYTES} bytes")
            return text

        first = line()
        if not first:
            raise ValueError("no request")
        if len(first) > MAX_LINE:
            raise BadRequest(414, "request line too long")
        words = first.decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/") or not words[1].startswith("/"):
            raise BadRequest(400, "bad request line")
        headers = {}
        for _ in range(MAX_HEADERS + 1):
            header = line()
            if len(header) > MAX_LINE:
                raise BadRequest(431, "header too long")
            if header in (b"\r\n", b"\n", b""):
                self.connection.settimeout(self.timeout)  # the reply: the usual timeout per send
                return words[0], words[1], headers
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise BadRequest(431, "too many headers")

    def _dispatch(self, method: str) -> None:
        app: WebApp = self.server.app
        refused = self._foreign_host() or (method not in ("GET", "HEAD") and self._foreign_origin())
        if refused:
            log.warning("web: refused %s %s from %s: %s", method, self.path[:200], self.client_address[0], refused)
            self._error(403, refused)
            return
        if app.auth is not None and not self._authorised(app.auth):
            return
        parsed = urllib.parse.urlsplit(self.path)
        try:
            query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True, max_num_fields=10)
        except ValueError:
            self._error(400, "too many parameters")
            return
        fail = self._error
        try:
            self._route(method, parsed.path, {k: v[-1] for k, v in query.items()})
        except RequestError as exc:
            fail(400, str(exc))
        except OSError:
            raise  # the client went away
        except Exception as exc:  # sqlite3.Error (a damaged store), a bug: an answer, never a dropped connection
            log.error("web: %s %s failed: %s: %s", method, parsed.path, type(exc).__name__, exc)
            fail(500, f"the event store cannot be read ({exc}); detection goes on; see the log"
                 if type(exc).__module__.startswith("sqlite3") else f"{type(exc).__name__}: {exc}")

    def _foreign_host(self) -> str:
        """Why the Host header is refused, or ''. No Host (HTTP/1.0 tools) is fine: a browser always sends one."""
        host = self.headers.get("host", "")
        if not host:
            return ""
        bracketed = HOST_V6.fullmatch(host)
        name = bracketed.group(1) if bracketed else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.lower().rstrip(".")
        if name in self.server.own_names():
            return ""
        return (f"this web UI does not answer to the name {host[:100]!r} (add it to web_hosts in the config if "
                "you reach this Pi by that name)")

    def _foreign_origin(self) -> str:
        """Why a state-changing request is refused (another site's page sent it), or ''. Browsers send Origin with
        every such request; tools (curl) send neither Origin nor Referer and are let through."""
        origin = self.headers.get("origin") or ""
        referer = self.headers.get("referer") or ""
        source = origin or referer
        if not source:
            return ""
        parts = urllib.parse.urlsplit(source)
        own = self.headers.get("host", "")
        if origin == "null" or parts.netloc.lower() != own.lower():
            return f"a change requested by another site's page ({source[:100]!r}) is refused"
        return ""

    def _authorised(self, auth: Tuple[str, str]) -> bool:
        """True, or the 401/429 reply is sent. Scheme names are case-insensitive (RFC 9110): `basic` is Basic."""
        client = self.client_address[0]
        backoff: LoginBackoff = self.server.backoff
        header = self.headers.get("authorization", "")
        challenge = [("WWW-Authenticate", 'Basic realm="pidetect", charset="UTF-8"')]
        if not header:
            self._error(401, "password required", challenge)
            return False
        wait = backoff.wait_left(client)
        if wait > 0:
            self._error(429, f"too many wrong passwords from {client}: try again in {wait:.0f} s",
                        [("Retry-After", str(int(wait) + 1))])
            return False
        scheme, _, credentials = header.partition(" ")
        user = password = ""
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                pass
        import hmac  # here, not at the top: it loads libcrypto (hashlib), megabytes a Pi without a password keeps
        import unicodedata

        expected_user, expected_password = auth
        password = unicodedata.normalize("NFC", password)  # the file's password is NFC too
        if hmac.compare_digest(user.encode(), expected_user.encode()) & \
                hmac.compare_digest(password.encode(), expected_password.encode()):
            backoff.succeeded(client)
            return True
        failures = backoff.failed(client)
        log.warning("web: wrong user or password from %s (user %r, %d failed in a row)%s", client, user[:64], failures,
                    "; it waits before trying again" if failures > LoginBackoff.FREE_FAILURES else "")
        self._error(401, "wrong user or password", challenge)
        return False

    def _route(self, method: str, path: str, query: dict) -> None:
        app: WebApp = self.server.app
        head = method == "HEAD"
        match = EVENT_PATH.fullmatch(path)
        if method == "POST":
            if path == "/api/zones/check":
                self._zone_check()
            elif path == "/api/zones/save":
                self._zone_save()
            elif path == "/api/zones/delete":
                self._zone_delete()
            else:
                self._error(405, "POST goes to /api/zones/check, /api/zones/save or /api/zones/delete")
            return
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
            self._json({**zone_editor.layout_json(app.layout, size), "labels": list(app.labels),
                        "can_save": app.config_path is not None}, head)
        elif path in STATIC:
            self._body((PAGES / path[1:]).read_bytes(), STATIC[path], head, cache="no-cache")
        elif path == "/status":
            self._page("status.html", head)
        elif EVENT_PAGE.fullmatch(path):
            self._page("event.html", head)
        elif path == "/api/status":
            self._json(self._status(), head)
        elif path == "/api/cameras":
            from .cameras import cameras_here

            self._json(cameras_here(app.config_path, app.web_port, app.camera_name), head)
        elif path == "/api/reload":
            self._json(self._reload_verdict(), head)
        elif path == "/api/zone-names":
            self._json(app.store.zones() if app.store is not None else [], head)
        elif path == "/events":
            self._page("events.html", head)
        elif path == "/api/events":
            self._events(query, head)
        elif path == "/api/live":
            if app.live is None:
                self._error(404, "no live state (the web UI runs without its event store)")
            else:
                self._json(app.live(), head)
        elif path == "/api/notify":
            self._json({"targets": app.notify() if app.notify is not None else {}}, head)
        elif path == "/api/labels":
            self._json(app.store.labels() if app.store is not None else [], head)
        elif match:
            self._event(int(match.group(1)), match.group(2) or "", head)
        elif path == "/metrics":
            if app.metrics is None:
                self._error(404, "no metrics")
            else:
                self._body(app.metrics(), "text/plain; version=0.0.4; charset=utf-8", head)
        else:
            self._error(404, "not found; try / (live view), /events (review), /zones, /api/events or /metrics")

    def _read_json_body(self):
        """The request's JSON body (at most MAX_BODY bytes, sent within the request's time)."""
        length = self.headers.get("content-length", "")
        if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY:
            raise RequestError(f"send a JSON body of at most {MAX_BODY} bytes with its Content-Length")
        body = self.rfile.read(int(length))
        try:
            return json.loads(body)
        except ValueError:
            raise RequestError("the body is not JSON") from None

    def _status(self) -> dict:
        """The status page's figures: the live state (the latest metrics record as it is), the configuration in
        effect (secrets hidden), the disk use of snapshots and clips."""
        import shutil

        app: WebApp = self.server.app
        status = dict(app.live()) if app.live is not None else {}
        disk = {}
        for name, folder in (("snapshots", app.snapshot_dir), ("clips", app.record_dir)):
            if folder is None:
                continue
            used = 0
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_file(follow_symlinks=False):
                            used += entry.stat(follow_symlinks=False).st_size
                usage = shutil.disk_usage(folder)
                disk[name] = {"folder": str(folder), "bytes": used, "free_bytes": usage.free,
                              "total_bytes": usage.total}
            except OSError:
                disk[name] = {"folder": str(folder), "bytes": None, "free_bytes": None, "total_bytes": None}
        status.update({"settings": app.settings, "disk": disk, "events": app.store.count() if app.store else None})
        return status

    def _reload_verdict(self) -> dict:
        from ..reload_verdict import read_verdict, verdict_path

        app: WebApp = self.server.app
        return read_verdict(verdict_path(app.settings.get("state_dir", "."))) or {}

    def _zone_draft(self, body: dict):
        from .zone_check import read_draft

        app: WebApp = self.server.app
        try:
            return read_draft(body, app.picture.size if app.picture is not None else None)
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def _zone_save(self) -> None:
        """A drawn zone or mask into the config file (comments kept, the old file as .bak), then a reload: the
        page asks /api/reload for the daemon's verdict."""
        from .config_edit import with_mask, with_zone
        from .zone_check import check_draft

        app: WebApp = self.server.app
        if app.config_path is None:
            raise RequestError("pidetect was started without a config file: there is nothing to save into "
                               "(start it with --config FILE)")
        body = self._read_json_body()
        draft = self._zone_draft(body)
        replacing = body.get("replacing") if isinstance(body, dict) else None
        layout = app.layout
        if draft.kind == "zone" and isinstance(replacing, str):  # editing: its own name is not "in use"
            from dataclasses import replace as replaced

            layout = replaced(layout, zones=tuple(z for z in layout.zones if z.name != replacing))
        problems = check_draft(draft, layout, app.labels)
        if problems:
            self._json({"ok": False, "problems": problems}, False)
            return
        index = body.get("index") if isinstance(body.get("index"), int) else None
        self._edit_config(lambda document: with_zone(document, draft, replacing if isinstance(replacing, str) else None)
                          if draft.kind == "zone" else with_mask(document, draft.kind, draft.points, index))

    def _zone_delete(self) -> None:
        from .config_edit import with_mask, without_zone

        app: WebApp = self.server.app
        if app.config_path is None:
            raise RequestError("pidetect was started without a config file: there is nothing to delete from")
        body = self._read_json_body()
        if not isinstance(body, dict):
            raise RequestError("send {kind, name} or {kind, index}")
        kind = body.get("kind")
        if kind == "zone" and isinstance(body.get("name"), str):
            self._edit_config(lambda document: without_zone(document, body["name"]))
        elif kind in ("object_mask", "motion_mask") and isinstance(body.get("index"), int):
            self._edit_config(lambda document: with_mask(document, kind, None, body["index"]))
        else:
            raise RequestError("send {kind: zone, name} or {kind: object_mask|motion_mask, index}")

    def _edit_config(self, change) -> None:
        """The config file read, changed, checked and written (config_edit.save), then the daemon reloaded."""
        from .config_edit import EditError, read_document, save

        app: WebApp = self.server.app
        try:
            saved = save(app.config_path, change(read_document(app.config_path)), app.labels)
        except EditError as exc:
            self._json({"ok": False, "problems": [str(exc)]}, False)
            return
        self._json({"ok": True, "saved": str(saved.path), "backup": str(saved.backup),
                    "reload": self._ask_reload()}, False)

    def _ask_reload(self) -> int:
        """SIGHUP to this daemon (as `systemctl reload` sends it): the number of the verdict to wait for."""
        import signal

        verdict = self._reload_verdict()
        number = verdict.get("reload", 0) if verdict.get("pid") == os.getpid() else 0
        os.kill(os.getpid(), signal.SIGHUP)
        return number + 1

    def _zone_check(self) -> None:
        """A polygon drawn on the page, checked with the daemon's own rules; its TOML when the daemon takes it."""
        from .zone_check import check_draft, draft_toml, free_name, read_draft

        app: WebApp = self.server.app
        size = app.picture.size if app.picture is not None else None
        try:
            draft = read_draft(self._read_json_body(), size)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        problems = check_draft(draft, app.layout, app.labels)
        self._json({"ok": not problems, "problems": problems, "toml": "" if problems else draft_toml(draft, app.layout),
                    "free_name": free_name(draft.name, app.layout)}, False)

    # --- events ---------------------------------------------------------------------------------
    def _events(self, query: dict, head: bool) -> None:
        """?label= &zone= &min_score= &after= &before= (seconds or ISO dates) &limit= (1..1000) &cursor=START:ID (the
        next page after that event) &since_id=ID (only newer events: the page's poll)."""
        store = self.server.app.store
        known = ("label", "zone", "min_score", "after", "before", "limit", "cursor", "since_id")
        unknown = sorted(set(query) - set(known))
        if unknown:
            raise RequestError(f"unknown parameter {unknown[0]!r}; use " + ", ".join(known))
        label = query.get("label") or None
        zone = query.get("zone") or None
        for name, value in (("label", label), ("zone", zone)):
            if value is not None and len(value) > MAX_LABEL:
                raise RequestError(f"{name} is longer than {MAX_LABEL} characters")
        after = _number(query["after"], "after") if query.get("after") else None
        before = _number(query["before"], "before") if query.get("before") else None
        min_score = None
        if query.get("min_score"):
            try:
                min_score = float(query["min_score"])
            except ValueError:
                min_score = -1.0
            if not 0.0 <= min_score <= 1.0:
                raise RequestError("min_score must be a number from 0 to 1")
        cursor = None
        if query.get("cursor"):
            start, _, number = query["cursor"].partition(":")
            try:
                cursor = (float(start), int(number))
            except ValueError:
                raise RequestError("cursor must be START:ID of the last event shown (as the page sends it)") from None
        since_id = _whole(query["since_id"], "since_id") if query.get("since_id") else None
        limit = _whole(query.get("limit") or "100", "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise RequestError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        events = store.list(label, after, before, limit, zone=zone, min_score=min_score, cursor=cursor,
                            since_id=since_id) if store is not None else []
        self._json([event.as_dict() for event in events], head)

    def _event(self, event_id: int, part: str, head: bool) -> None:
        app: WebApp = self.server.app
        event = app.store.get(event_id) if app.store is not None else None
        if event is None:
            self._error(404, f"no event {event_id}")
        elif not part:
            self._json(event.as_dict(), head)
        elif part == "/clip.mp4":
            self._clip(event, head)
        elif part == "/thumb.jpg":
            thumb = self.server.thumbnails.get(event.snapshot, lambda: thumbnail(
                read_own_snapshot(app.snapshot_dir, event.snapshot), event.box) if event.box else None)
            if thumb is None:
                self._error(404, f"event {event_id} has no thumbnail (no snapshot, or taken before boxes were kept)")
            else:
                self._body(thumb, "image/jpeg", head, cache="private, max-age=86400")
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

    def _clip(self, event, head: bool) -> None:
        """The event's clip, whole (200) or the byte range asked for (206): browsers seek with Range requests."""
        app: WebApp = self.server.app
        clip = open_own_clip(app.record_dir, event.clip)
        if clip is None:
            self._error(404, f"event {event.id} has no clip (recording off, not finished, or removed by retention)")
            return
        with clip:
            size = os.fstat(clip.fileno()).st_size
            first, last, status = 0, size - 1, 200
            wanted = self.headers.get("range", "")
            match = RANGE.fullmatch(wanted.replace(" ", "")) if wanted else None
            if match and (match.group(1) or match.group(2)):  # one range; several (a comma) get the whole file
                if match.group(1):
                    first = int(match.group(1))
                    last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                else:  # bytes=-N: the last N bytes
                    first = max(0, size - int(match.group(2)))
                if first >= size or first > last:
                    self._error(416, f"the clip has {size} bytes", [("Content-Range", f"bytes */{size}")])
                    return
                status = 206  # anything else (several ranges, another unit): the whole file, as RFC 9110 allows
            length = last - first + 1
            lines = [f"HTTP/1.0 {status} {REASONS[status]}", "Content-Type: video/mp4", f"Content-Length: {length}",
                     "Accept-Ranges: bytes", "Cache-Control: private, max-age=86400", "X-Content-Type-Options: nosniff",
                     "Connection: close"] + ([f"Content-Range: bytes {first}-{last}/{size}"] if status == 206 else [])
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if not head and length:
                self.connection.sendfile(clip, first, length)  # from the page cache, never all in memory

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


    def _error(self, status: int, text: str, extra=()) -> None:
        """The error in words; for the API (/api/…) as JSON, {"error": text}, which its callers parse."""
        head = getattr(self, "command", "") == "HEAD"
        if getattr(self, "path", "").startswith("/api/"):
            self._body(json.dumps({"error": text}).encode(), "application/json", head, status=status, extra=extra)
        else:
            self._body((text + "\n").encode(), "text/plain; charset=utf-8", head, status=status, extra=extra)

    def _body(self, body: bytes, content_type: str, head: bool, cache: str = "no-store", status: int = 200,
              extra=()) -> None:
        lines = [f"HTTP/1.0 {status} {REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in extra),
                 f"Content-Type: {content_type}", f"Content-Length: {len(body)}", f"Cache-Control: {cache}",
                 "X-Content-Type-Options: nosniff", "Connection: close"]
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head_bytes if head else head_bytes + body)

    def _stream(self, latest, head: bool) -> None:
        self.wfile.write(("HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary="
                          + BOUNDARY.decode() + "\r\nCache-Control: no-cache, private\r\n"
                          "Connection: close\r\n\r\n").encode())
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


def open_own_file(folder: Optional[Path], name: Optional[str], own_name):
    """A file pidetect wrote in `folder`, open for reading, or None. The name must be one pidetect writes
    (`own_name`: no separators, no '..'), it must be a regular file, and a link placed in the folder is never
    followed. Snapshots and clips are served only through here."""
    if folder is None or not name or not own_name.fullmatch(name):
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


THUMB_WIDTH = 320


class Thumbnails:
    """Thumbnails made one at a time (a page asks for dozens at once: each decodes a whole snapshot, 2.7 MB at
    720p, and a dozen at once would be the daemon's memory peak) and kept, the newest MAX of them (a few KB each)."""

    MAX = 300

    def __init__(self) -> None:
        import collections

        self._lock = threading.Lock()
        self._kept: "collections.OrderedDict[str, Optional[bytes]]" = collections.OrderedDict()

    def get(self, name: Optional[str], make: Callable[[], Optional[bytes]]) -> Optional[bytes]:
        if not name:
            return None
        with self._lock:
            if name in self._kept:
                self._kept.move_to_end(name)
                return self._kept[name]
            data = make()
            if data is not None:
                self._kept[name] = data
                while len(self._kept) > self.MAX:
                    self._kept.popitem(last=False)
            return data


def thumbnail(jpeg: Optional[bytes], box) -> Optional[bytes]:
    """The event's own object cut from its snapshot: its box with a margin of a fifth on each side (at least 24
    pixels), no wider than THUMB_WIDTH. So a cup and the table it stands on are two different pictures."""
    import cv2
    import numpy as np

    if jpeg is None:
        return None
    # decoded at the smallest of 1, 1/2, 1/4 that keeps the crop at least THUMB_WIDTH wide (libjpeg scales while
    # decoding): a 720p snapshot's small object needs no 2.7 MB picture in memory
    x1, _y1, x2, _y2 = (int(v) for v in box)
    scale = 1
    for reduced in (4, 2):
        if (x2 - x1) * 1.4 / reduced >= THUMB_WIDTH:
            scale = reduced
            break
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}[scale]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        return None
    left, top, right, bottom = (round(v / scale) for v in thumbnail_crop(box, image.shape[1] * scale,
                                                                         image.shape[0] * scale))
    if right - left < 2 or bottom - top < 2:
        return None
    crop = image[top:bottom, left:right]
    if crop.shape[1] > THUMB_WIDTH:
        crop = cv2.resize(crop, (THUMB_WIDTH, max(1, round(crop.shape[0] * THUMB_WIDTH / crop.shape[1]))),
                          interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else None


def thumbnail_crop(box, width: int, height: int):
    """Where `thumbnail` cuts (left, top, right, bottom): the page and the tests use the same rule."""
    x1, y1, x2, y2 = (int(v) for v in box)
    margin_x, margin_y = max(24, (x2 - x1) // 5), max(24, (y2 - y1) // 5)
    return max(0, x1 - margin_x), max(0, y1 - margin_y), min(width, x2 + margin_x), min(height, y2 + margin_y)


def read_own_snapshot(folder: Optional[Path], name: Optional[str]) -> Optional[bytes]:
    """The bytes of a snapshot pidetect wrote in `folder` (at most 50 MB), or None."""
    from ..files import SNAPSHOT_NAME as OWN_NAME

    snapshot = open_own_file(folder, name, OWN_NAME)
    if snapshot is None:
        return None
    with snapshot:
        if os.fstat(snapshot.fileno()).st_size > 50 * 2**20:
            return None
        return snapshot.read()


def open_own_clip(folder: Optional[Path], name: Optional[str]):
    """The clip pidetect wrote in `folder`, open for reading, or None."""
    from ..files import CLIP_NAME

    return open_own_file(folder, name, CLIP_NAME)
