"""Where records go: the systemd journal (with fields), text on stderr, or JSON lines on stdout.

A record is a flat dict such as {"event": "detection", "state": "entered", "label": "cat", ...}.
Every format carries the same records; the journal gets each key upper-cased as a field, so
`journalctl -u pidetect EVENT=detection LABEL=cat` filters exactly. Python `logging` messages
(warnings from libraries and our own modules) become {"event": "log", ...} records too, so a user
reads one stream.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional, TextIO

from ..records import DEBUG, ERR, INFO, WARNING, log_record

_LEVEL_TO_PRIORITY = {logging.DEBUG: DEBUG, logging.INFO: INFO, logging.WARNING: WARNING,
                      logging.ERROR: ERR, logging.CRITICAL: ERR}
SYSLOG_IDENTIFIER = "pidetect"


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(text: str) -> str:
    """A text line that stays one line: a newline in a value (a label, a camera's stderr) cannot forge another."""
    return CONTROL_CHARACTERS.sub(lambda match: repr(match.group())[1:-1], text)


def describe(record: Dict[str, Any]) -> str:
    """The one human line for a record: the journal's MESSAGE and the text format."""
    event = record.get("event")
    if event == "detection":
        x1, y1, x2, y2 = record["box"]
        text = (f"{record['label']} {record['state']} (track {record['track_id']}, score {record['score']:.2f}, "
                f"box {x1},{y1},{x2},{y2}, frame {record['frame_seq']})")
        if record.get("zones"):
            text += " in " + ", ".join(record["zones"])
        if record.get("stationary"):
            text += ", stationary"
        if record.get("snapshot"):
            text += f" snapshot {record['snapshot']}"
        return text
    if event == "zone":
        verb = "entered" if record["state"] == "entered" else "left"
        text = (f"{record['label']} {verb} zone {record['zone']} (track {record['track_id']}, score "
                f"{record['score']:.2f}, frame {record['frame_seq']})")
        if record.get("snapshot"):
            text += f" snapshot {record['snapshot']}"
        return text
    if event == "clip":
        if record["state"] == "removed":
            return f"clip {record['clip']} removed (retention)"
        what = ", ".join(record["labels"]) or "objects"
        text = f"clip of {what} saved: {record['path']} ({record['duration']:.1f} s, tracks " + \
            ", ".join(map(str, record["track_ids"])) + ")"
        if record.get("zones"):
            text += " in " + ", ".join(record["zones"])
        return text
    if event == "frame":
        objects = ", ".join(f"{d['label']} {d['score']:.2f}" for d in record["detections"]) or "nothing"
        return f"frame {record['frame_seq']}: {objects}"
    if event == "metrics":
        parts = [f"capture {record['capture_fps']:.1f} fps", f"inference {record['inference_fps']:.1f} fps",
                 f"p50 {_num(record['inference_ms_p50'])} ms", f"p95 {_num(record['inference_ms_p95'])} ms",
                 f"dropped {record['frames_dropped']}", f"cpu {record['cpu_percent']:.0f}%",
                 f"rss {record['rss_mb']:.0f} MB"]
        if record.get("temp_c") is not None:
            parts.append(f"{record['temp_c']:.1f}°C")
        if record.get("throttled"):
            parts.append(f"throttled {record['throttled']}")
        if "motion_share" in record:
            parts.append(f"motion in {record['motion_share']:.0%} of frames looked at, {record['frames_gated']} gated "
                         f"({record.get('frames_skipped', 0)} not decoded)")
        return "metrics: " + ", ".join(parts)
    if event == "source":
        return f"source {record['source']} {record['state']}" + (f": {record['detail']}" if record.get("detail") else "")
    if event == "lifecycle":
        extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "state", "ts", "camera"))
        return f"{record['state']}" + (f" {extra}" if extra else "")
    if event == "log":
        return record["message"]
    if event == "accelerator":
        detail = {"lost": record.get("error"), "fallback": f"running {record.get('model')} on the CPU",
                  "retrying": f"attempt {record.get('attempt')}, next in {record.get('retry_in_s')} s: "
                              f"{record.get('error')}",
                  "recovered": f"{record.get('accelerator')} after {record.get('attempts')} attempt(s)"}.get(
            record["state"])
        return f"accelerator {record['state']}" + (f": {detail}" if detail else "")
    if event == "notify":
        return f"notify {record['target']} {record['state']}" + (f": {record['detail']}" if record.get("detail") else "")
    if event == "mqtt":
        return f"mqtt {record['state']} {record.get('broker', '')}" + (f": {record['detail']}" if record.get("detail") else "")
    return json.dumps(record)


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


class RecordLog:
    """Thread-safe writer of records in one format. `emit` never raises because of the output."""

    def __init__(self, fmt: str, stream: Optional[TextIO] = None, journal_send: Optional[Callable] = None,
                 camera: str = ""):
        self.format = fmt
        self.stream = stream or (sys.stdout if fmt == "json" else sys.stderr)
        self._send = journal_send
        self._lock = threading.Lock()
        self.camera = camera  # camera_name: on every record (journalctl CAMERA=door), so two cameras stay apart

    def emit(self, record: Dict[str, Any], priority: int = INFO) -> None:
        record.setdefault("ts", round(time.time(), 3))
        if self.camera:
            record.setdefault("camera", self.camera)
        try:
            if self.format == "journal":
                self._send(**journal_fields(record, priority))
                return
            with self._lock:
                if self.format == "json":
                    self.stream.write(json.dumps(record, default=str) + "\n")
                else:
                    stamp = time.strftime("%H:%M:%S", time.localtime(record["ts"]))
                    level = {ERR: "error: ", WARNING: "warning: "}.get(priority, "")
                    who = f"{self.camera}: " if self.camera else ""
                    self.stream.write(f"{stamp} {who}{level}{one_line(describe(record))}\n")
                self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stdout/stderr or an unreachable journal must not stop detection


def journal_fields(record: Dict[str, Any], priority: int) -> Dict[str, str]:
    fields = {"MESSAGE": describe(record), "PRIORITY": str(priority), "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER}
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, dict)):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        fields[key.upper()] = str(value)
    return fields


def journal_sender() -> Optional[Callable]:
    """systemd.journal.send when systemd-python is installed and a journal socket exists."""
    try:
        from systemd import journal
    except Exception:
        return None
    if not os.path.exists("/run/systemd/journal/socket"):
        return None
    return journal.send


def open_record_log(fmt: str, camera: str = "") -> RecordLog:
    """Pick the format; 'auto' means journal under systemd (JOURNAL_STREAM set) when reachable, else text."""
    notice = None
    if fmt in ("auto", "journal"):
        sender = journal_sender()
        if sender is not None and (fmt == "journal" or os.environ.get("JOURNAL_STREAM")):
            return RecordLog("journal", journal_send=sender, camera=camera)
        if fmt == "journal":
            notice = ("journal logging unavailable (systemd-python not installed or no journald socket); "
                      "logging text to stderr")
        fmt = "text"
    log = RecordLog(fmt, camera=camera)
    if notice:
        log.emit(log_record("warning", "pidetect", notice), WARNING)
    return log


class RecordHandler(logging.Handler):
    """Routes Python logging into the record stream."""

    def __init__(self, records: RecordLog):
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.emit(log_record(record.levelname.lower(), record.name, record.getMessage()),
                          _LEVEL_TO_PRIORITY.get(record.levelno, INFO))


def route_python_logging(records: RecordLog, level: str) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(RecordHandler(records))
    root.setLevel(level.upper())


class Notifier:
    """sd_notify(3) over the datagram socket in $NOTIFY_SOCKET; a no-op outside systemd.

    Implemented directly (a few lines) so READY/WATCHDOG work without systemd-python; failures
    are swallowed because a notification must never take the daemon down.
    """

    def __init__(self, address: Optional[str] = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self._socket: Optional[socket.socket] = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: Any) -> bool:
        if not self.address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self.address)
            return True
        except OSError:
            self.failures += 1
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval() -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), if systemd asked for them."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
