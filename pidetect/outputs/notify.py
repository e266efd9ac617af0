"""Notifications to a phone (or e-mail, a chat, a webhook) through Apprise: the snapshot first, the clip after.

A record sink, like MQTT: it reads the records every sink gets and never touches the pipeline.

    'detection entered' (a target without zones) or 'zone entered' (a target's zone)
        --labels, min_score, cooldown per label and zone--> a message with the object's snapshot attached
    'clip saved' of an object that was notified --> a follow-up with the clip

Messages wait in a bounded queue and are sent on this sink's own thread through a helper process
(notify_helper.py: Apprise costs ~30 MB of memory, kept out of the daemon and started only when a message is due,
closed after a quiet minute). A target that fails is retried with backoff (only its failed URLs), said once per
outage and once when it works again; a message older than MAX_AGE is dropped and counted. Nothing here can
block capture or inference. URLs hold secrets: they are never logged — a target is named by its [notify.NAME].
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

from ..config_tables import NotifySpec
from ..errors import ConfigError, UnavailableError
from ..records import INFO, WARNING, log_record

log = logging.getLogger(__name__)

QUEUE = 100  # messages waiting at most (the oldest beyond are dropped and counted)
MAX_AGE = 600.0  # seconds a message is retried before it is dropped: news of ten minutes ago is no news
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # seconds between retries of a failing target
HELPER_IDLE = 60.0  # seconds without messages before the helper process is closed
HELPER_TIMEOUT = 30.0  # seconds one send may take before the helper is taken for hung and replaced
URLS_FILE_MAX = 64 * 1024


@dataclass(frozen=True)
class Target:
    """A [notify.NAME] with its URLs read (from the file, when it names one)."""

    spec: NotifySpec
    urls: Tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Message:
    target: Target
    title: str
    body: str
    attach: Optional[str]
    created: float  # monotonic
    pending: List[str] = field(default_factory=list)  # URLs not yet delivered
    attempts: int = 0
    due: float = 0.0  # monotonic: not before
    captured_ts: float = 0.0  # the frame's wall-clock time, for the latency figure


def read_targets(specs: Sequence[NotifySpec]) -> List[Target]:
    """Every target with its URLs; a urls_file that is missing, unreadable, huge or empty is a ConfigError."""
    targets = []
    for spec in specs:
        urls = spec.urls
        if spec.urls_file:
            path = Path(spec.urls_file).expanduser()
            try:
                if path.stat().st_size > URLS_FILE_MAX:
                    raise ConfigError(f"{spec.where}: notify.{spec.name} urls_file {path} is larger than "
                                      f"{URLS_FILE_MAX // 1024} KB: it should hold a few URLs, one a line")
                text = path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                raise ConfigError(f"{spec.where}: notify.{spec.name} urls_file {path} does not exist; write the "
                                  "Apprise URLs in it, one a line") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{spec.where}: notify.{spec.name} urls_file {path} cannot be read "
                                  f"({getattr(exc, 'strerror', None) or exc}): make it readable by the service's user "
                                  "(pidetect)") from None
            urls = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
            if not urls or not all("://" in url for url in urls):
                raise ConfigError(f"{spec.where}: notify.{spec.name} urls_file {path} holds no Apprise URL "
                                  "(one a line, e.g. ntfy://ntfy.sh/my-topic; # starts a comment)")
        targets.append(Target(spec, tuple(urls)))
    return targets


def redacted(url: str) -> str:
    """What may be said of a URL: its scheme only (hosts, tokens and passwords stay out of every log)."""
    return url.split("://", 1)[0] + "://…"


class Helper:
    """The Apprise helper process: started on first use, replaced when it dies or hangs."""

    def __init__(self, command: Optional[Sequence[str]] = None):
        self.command = list(command or [sys.executable, "-m", "pidetect.outputs.notify_helper"])
        self._proc: Optional[subprocess.Popen] = None
        self._ids = 0
        self.last_used = 0.0

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True, env=env)
        return self._proc

    def ask(self, request: dict, timeout: float = HELPER_TIMEOUT) -> List[dict]:
        """One request, its per-URL results; a helper that does not answer in `timeout` is ended."""
        proc = self._start()
        self._ids += 1
        request = dict(request, id=self._ids)
        answer: List[str] = []

        def read() -> None:
            line = proc.stdout.readline()
            answer.append(line)

        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            raise RuntimeError("the notification helper ended (is apprise installed? pip install 'pidetect[notify]')")
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        self.last_used = time.monotonic()
        if reader.is_alive() or not answer or not answer[0]:
            self.close()
            raise RuntimeError("the notification helper did not answer" if reader.is_alive()
                               else "the notification helper ended (is apprise installed? pip install "
                                    "'pidetect[notify]')")
        return json.loads(answer[0])["results"]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


def check_urls(targets: Sequence[Target], helper: Optional[Helper] = None) -> None:
    """Every URL must be one Apprise knows (asked of the helper, which then ends): a ConfigError names the
    target and the scheme, never the URL."""
    try:
        import importlib.util

        if importlib.util.find_spec("apprise") is None:
            raise ConfigError("notifications need Apprise: pip install 'pidetect[notify]' (or remove the [notify.…] "
                              "tables)")
    except ValueError:
        pass
    helper = helper or Helper()
    try:
        for target in targets:
            results = helper.ask({"check": list(target.urls)}, timeout=60.0)
            for url, result in zip(target.urls, results):
                if not result["ok"]:
                    raise ConfigError(f"{target.spec.where}: notify.{target.name}: {redacted(url)} is not a URL "
                                      f"Apprise can use ({_without_secrets(result['error'], url)}); see Apprise's "
                                      "list of services for its form")
    except RuntimeError as exc:
        raise UnavailableError(f"notifications: {exc}") from None
    finally:
        helper.close()


def _without_secrets(text: str, url: str) -> str:
    """Apprise's own words about a URL, with anything of the URL past its scheme taken out."""
    rest = url.split("://", 1)[-1]
    for part in [rest] + [p for p in rest.replace("?", "/").replace("&", "/").replace("@", "/").split("/") if len(p) > 3]:
        text = text.replace(part, "…")
    return text


class DeliveryBoard:
    """The last delivery of each target, as the web UI shows it (GET /api/notify): built with the web UI, written
    by the sink (no URL in it: a target is its [notify.NAME], a failure its secret-free reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Dict[str, dict] = {}

    def set(self, name: str, entry: dict) -> None:
        with self._lock:
            self._last[name] = dict(entry)

    def __call__(self) -> Dict[str, dict]:
        with self._lock:
            return {name: dict(entry) for name, entry in self._last.items()}


class NotifySink:
    """See the module's text. `emit` takes records (the service's); `base_url` makes links ('' = none)."""

    name = "notify"

    def __init__(self, targets: Sequence[Target], emit: Callable, base_url: str = "", camera: str = "",
                 helper: Optional[Helper] = None, board: Optional[DeliveryBoard] = None):
        self.targets = list(targets)
        self.emit, self.base_url, self.camera = emit, base_url.rstrip("/"), camera
        self.helper = helper or Helper()
        self._queue: Deque[Message] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._last: Dict[Tuple[str, str, str], float] = {}  # (target, label, zone) -> monotonic of the last message
        self._notified: Dict[int, List[Target]] = {}  # track id -> targets told about it (for the clip follow-up)
        self._failing: Dict[str, bool] = {}  # target -> in an outage (said once)
        self.sent = self.failed = self.dropped = 0
        self.last_delivery: Dict[str, dict] = {}  # target -> {"ok", "at", "error"}: the status of each target
        self.board = board
        self.latencies: List[float] = []  # seconds from the frame's capture to delivery, per message
        self._thread = threading.Thread(target=self._run, name="pidetect-notify", daemon=True)
        self._thread.start()

    # --- records in (any thread) -----------------------------------------------------------------
    def publish_record(self, record: dict) -> None:
        kind, state = record.get("event"), record.get("state")
        if kind == "clip" and state == "saved":
            self._clip(record)
            return
        if state != "entered" or kind not in ("detection", "zone"):
            return
        zone = record.get("zone", "") if kind == "zone" else ""
        for target in self.targets:
            spec = target.spec
            if (kind == "zone") != bool(spec.zones) or (zone and zone not in spec.zones):
                continue
            if spec.labels and record["label"] not in spec.labels:
                continue
            if record.get("score", 0.0) < spec.min_score:
                continue
            key = (target.name, record["label"], zone)
            now = time.monotonic()
            with self._cond:
                last = self._last.get(key)
                if last is not None and now - last < spec.cooldown:
                    continue  # the same visitor, or the next one within the cooldown: grouped
                self._last[key] = now
                self._notified.setdefault(record["track_id"], []).append(target)
                if len(self._notified) > 1000:
                    del self._notified[next(iter(self._notified))]
            where = f" in {zone}" if zone else ""
            title = f"{record['label'].capitalize()}{where}" + (f" ({self.camera})" if self.camera else "")
            body = (f"{record['label']}{where} at {time.strftime('%H:%M:%S', time.localtime(record.get('ts', time.time())))}"
                    f", score {record.get('score', 0):.2f}")
            if self.base_url:
                body += f"\n{self.base_url}/events"
            snapshot = record.get("snapshot") if spec.attach == "snapshot" else None
            self._put(Message(target, title, body, snapshot, now, list(target.urls),
                              captured_ts=record.get("ts", time.time())))

    def _clip(self, record: dict) -> None:
        told = []
        with self._cond:
            for track in record.get("track_ids", []):
                for target in self._notified.pop(track, []):
                    if target not in told:
                        told.append(target)
        for target in told:
            what = ", ".join(record.get("labels", [])) or "the event"
            body = f"The clip of {what} is saved ({record.get('duration', 0):.0f} s)"
            body += f": {self.base_url}/events" if self.base_url else f": {record.get('clip', '')}"
            self._put(Message(target, f"Clip: {what}", body, None, time.monotonic(), list(target.urls),
                              captured_ts=time.time()))

    def _put(self, message: Message) -> None:
        with self._cond:
            if len(self._queue) >= QUEUE:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(message)
            self._cond.notify()

    # --- delivery (this sink's thread) -------------------------------------------------------------------
    def _next(self) -> Optional[Message]:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                ready = [m for m in self._queue if m.due <= now]
                if ready:
                    message = ready[0]
                    self._queue.remove(message)
                    return message
                wait = min([m.due - now for m in self._queue] + [HELPER_IDLE])
                if not self._queue and self.helper.running and now - self.helper.last_used >= HELPER_IDLE:
                    self.helper.close()  # a quiet minute: give the memory back
                self._cond.wait(max(wait, 0.05))
            return None

    def _run(self) -> None:
        while True:
            message = self._next()
            if message is None:
                return
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        target = message.target
        attach = message.attach if message.attach and Path(message.attach).is_file() else None
        try:
            results = self.helper.ask({"send": message.pending, "title": message.title, "body": message.body,
                                       "attach": attach})
            failed = [(url, r["error"]) for url, r in zip(message.pending, results) if not r["ok"]]
        except RuntimeError as exc:
            failed = [(url, str(exc)) for url in message.pending]
        delivered = len(message.pending) - len(failed)
        with self._cond:
            self.sent += delivered
        if delivered:
            self.latencies.append(time.time() - message.captured_ts)
            self.latencies = self.latencies[-200:]
        if not failed:
            self._ok(target)
            return
        message.pending = [url for url, _error in failed]
        message.attempts += 1
        reason = _without_secrets(failed[0][1], failed[0][0])
        self._fail(target, f"{len(failed)} of {len(target.urls)} URL(s) failed ({redacted(failed[0][0])}: {reason})")
        if time.monotonic() - message.created + BACKOFF[min(message.attempts - 1, len(BACKOFF) - 1)] > MAX_AGE:
            with self._cond:
                self.dropped += 1
            return
        message.due = time.monotonic() + BACKOFF[min(message.attempts - 1, len(BACKOFF) - 1)]
        with self._cond:
            self._queue.append(message)

    def _said(self, target: Target, entry: dict) -> None:
        self.last_delivery[target.name] = entry
        if self.board is not None:
            self.board.set(target.name, entry)

    def _ok(self, target: Target) -> None:
        self._said(target, {"ok": True, "at": round(time.time(), 3), "error": ""})
        if self._failing.pop(target.name, False):
            self.emit({"event": "notify", "state": "recovered", "target": target.name,
                       "detail": "messages are delivered again"}, INFO)

    def _fail(self, target: Target, detail: str) -> None:
        with self._cond:
            self.failed += 1
        self._said(target, {"ok": False, "at": round(time.time(), 3), "error": detail})
        if not self._failing.get(target.name):
            self._failing[target.name] = True  # once per outage
            self.emit({"event": "notify", "state": "failing", "target": target.name,
                       "detail": detail + "; retried with backoff"}, WARNING)

    # --- the service's side -------------------------------------------------------------------------------
    def metrics_fields(self) -> dict:
        with self._cond:
            return {"notify_sent": self.sent, "notify_failed": self.failed, "notify_dropped": self.dropped,
                    "notify_queued": len(self._queue)}

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is due within `timeout`, then stop (messages still waiting are counted as dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not any(m.attempts == 0 for m in self._queue):
                    break
            time.sleep(0.05)
        with self._cond:
            self._stopping = True
            self.dropped += len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self.helper.close()  # a slow or hung service: its send ends with the helper, the service stops in time
        self._thread.join(timeout=5.0)
        if self.dropped:
            self.emit(log_record("warning", "pidetect.notify", f"{self.dropped} notification(s) were dropped "
                                 "(the service was away, or the queue was full)"), WARNING)
