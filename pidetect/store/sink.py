"""The sink that writes the record stream into the event store, on its own thread.

Fed every record like the journal and MQTT (`publish_record` only queues): an SD card's fsync must
never delay detection. A write that fails (a full card, a read-only remount) loses that change only
— SQLite rolls the transaction back, so no half-written row exists — is said once per episode, and
writing goes on with the next event. Retention runs after every RETENTION_EVERY writes: rows older
than `event_max_days` go with their snapshot files (only pidetect's own). Nothing else removes a row: a
snapshot the caps removed (or a full card made room with) leaves its event, marked without a snapshot
(`forget_snapshot`). The sink holds the store's writer lock: a second daemon on the same state_dir is refused.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Deque, Dict, Optional

from ..files import remove_own_snapshot
from ..records import ERR, INFO, WARNING, log_record
from .events import EventStore, WriterLock

log = logging.getLogger(__name__)
RETENTION_EVERY = 50
RECOVERED_AFTER = 10.0  # seconds of successful writes that end an episode of failures
QUEUE_LIMIT = 10000  # records waiting for a stuck card; beyond it the oldest are dropped (and said)


def snapshot_name(path: Optional[str], snapshot_dir: Optional[Path]) -> Optional[str]:
    """The file name of a snapshot the record points to, if it lies directly in snapshot_dir."""
    if not path or snapshot_dir is None:
        return None
    candidate = Path(path)
    return candidate.name if candidate.parent == snapshot_dir else None

MAX_TRACKS_KEPT = 10000
MAX_ADOPTED = 20  # orphan snapshots taken back as events at one start
ADOPTABLE = re.compile(r"(\d{8}-\d{6})\.(\d{3})-([A-Za-z0-9_-]+)-(\d+)\.jpg")


class StoreSink:
    name = "event store"

    def __init__(self, store: EventStore, emit: Callable, snapshot_dir: Optional[Path], max_days: float):
        self.store, self.emit, self.snapshot_dir, self.max_days = store, emit, snapshot_dir, max_days
        self._queue: Deque[dict] = collections.deque()
        self._cond = threading.Condition()
        self._open: Dict[int, int] = {}  # track id -> row id, for this pipeline's tracker
        self._rows: Dict[int, int] = {}  # track id -> row id, open or closed: a clip names its objects' tracks
        self._failure: Optional[str] = None
        self._failed_at = 0.0
        self._writes = 0
        self._dropped = 0
        self._retention_failed = False
        self.stopping = False
        self._writer_lock = WriterLock(store.path)
        if store.read_only:
            emit(log_record("warning", "pidetect.store", f"the event store {store.path} cannot be written (a "
                            "read-only file system, or not this user's): the review page shows its events, new "
                            "events are not kept; detection goes on. Remount it read-write or set state_dir"),
                 WARNING)
        else:
            self._writer_lock.acquire()  # ConfigError when another daemon writes here
        if store.moved_aside is not None:
            emit(log_record("error", "pidetect.store", f"the event store {store.path} was damaged: moved aside to "
                            f"{store.moved_aside}; a new store is started"), ERR)
        try:
            if not store.read_only:
                store.close_interrupted()  # before this sink opens any row
        except sqlite3.Error as exc:
            self._failure = str(exc)
            self._failed_at = time.monotonic()
            emit(log_record("error", "pidetect.store", f"cannot write the event store {store.path}: {exc}; "
                            "detection goes on, trying again with the next event"), ERR)
        if not store.read_only and self._failure is None and snapshot_dir is not None:
            self._adopt_orphans()
        self._thread = threading.Thread(target=self._run, name="pidetect-store", daemon=True)
        self._thread.start()
        self._retention()

    def publish_record(self, record: dict) -> None:
        kind, state = record.get("event"), record.get("state")
        if not ((kind in ("detection", "zone") and state in ("entered", "left")) or
                (kind == "clip" and state in ("saved", "removed"))):
            return
        with self._cond:
            if len(self._queue) >= QUEUE_LIMIT:
                self._queue.popleft()
                self._dropped += 1
                if self._dropped == 1:  # said once: the card stalls for minutes, or never answers
                    log.error("the event store %s does not keep up: the oldest of %d waiting events are dropped",
                              self.store.path, QUEUE_LIMIT)
            self._queue.append(record)
            self._cond.notify()

    def _adopt_orphans(self) -> None:
        """A snapshot written just before a kill -9 or power cut whose row never reached the store: its event is
        taken back from the file's name (label, track, time; end = start, score unknown). Only pidetect's own
        files, newer than the newest event this store has (older ones may be another camera's in a shared folder),
        and at most MAX_ADOPTED of them. Runs when the writer starts, before it writes anything (a reload's writer
        starts after the previous one delivered its queue)."""
        newest = self.store.newest_start()
        if newest is None:
            return
        adopted = 0
        try:
            entries = sorted(os.scandir(self.snapshot_dir), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            match = ADOPTABLE.fullmatch(entry.name)
            if not match or adopted >= MAX_ADOPTED or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stamp = time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S")) + int(match.group(2)) / 1000
            except ValueError:
                continue
            if stamp <= newest or self.store.has_snapshot(entry.name):
                continue
            try:
                self.store.open_event(match.group(3), -1, int(match.group(4)), stamp, 0.0, (), entry.name)
                self.store.close_interrupted()
            except sqlite3.Error:
                return
            adopted += 1
            log.warning("snapshot %s had no event (the daemon was killed while writing it): its event is kept",
                        entry.name)

    def forget_snapshot(self, name: str) -> None:
        """The snapshot caps removed a file (any thread): its event is kept, marked without a snapshot."""
        with self._cond:
            self._queue.append({"event": "snapshot", "state": "removed", "snapshot": name})
            self._cond.notify()

    def metrics_fields(self) -> dict:
        return {}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self.stopping:
                    self._cond.wait(0.5)
                if not self._queue and self.stopping:
                    return
                record = self._queue.popleft()
            self._write(record)

    def _write(self, record: dict) -> None:
        if self.store.read_only:
            return
        try:
            self._apply(record)
        except sqlite3.Error as exc:
            self._failed_at = time.monotonic()
            if self._failure is None:
                self._failure = str(exc)
                self.emit(log_record("error", "pidetect.store", f"cannot write the event store {self.store.path}: "
                                     f"{exc}; detection goes on, trying again with the next event"), ERR)
            return
        if self._failure is not None and time.monotonic() - self._failed_at >= RECOVERED_AFTER:
            # a nearly full card lets some writes through between failures: the episode ends only after
            # RECOVERED_AFTER seconds without one, so it is said once, not once per event
            self._failure = None
            self.emit(log_record("info", "pidetect.store", f"the event store {self.store.path} is written again"),
                      INFO)
        self._writes += 1
        if self._writes % RETENTION_EVERY == 0:
            self._retention()

    def _apply(self, record: dict) -> None:
        if record["event"] == "snapshot":
            self.store.forget_snapshot(record["snapshot"])
            return
        if record["event"] == "clip":
            if record["state"] == "saved":
                rows = [self._rows[track] for track in record["track_ids"] if track in self._rows]
                self.store.set_clip(rows, record["clip"])
            else:
                self.store.forget_clip(record["clip"])
            return
        track = record["track_id"]
        snapshot = snapshot_name(record.get("snapshot"), self.snapshot_dir)
        if record["event"] == "detection" and record["state"] == "entered":
            self._open[track] = self.store.open_event(record["label"], record["class_id"], track, record["ts"],
                                                      record["score"], record.get("zones", ()), snapshot,
                                                      record.get("box"))
            self._rows[track] = self._open[track]
            if len(self._rows) > MAX_TRACKS_KEPT:
                del self._rows[next(iter(self._rows))]  # the oldest: its clip was saved long ago
        elif record["event"] == "detection" and record["state"] == "stationary":
            if track in self._open:
                self.store.set_stationary(self._open[track])
        elif record["event"] == "detection":
            row = self._open.pop(track, None)
            if row is not None:
                self.store.close_event(row, record["ts"], record.get("top_score", record["score"]))
        elif record["state"] == "entered" and track in self._open:
            self.store.add_zone(self._open[track], record["zone"], snapshot)

    def _retention(self) -> None:
        if self.store.read_only:
            return
        try:
            older = time.time() - self.max_days * 86400 if self.max_days > 0 else None
            for name in self.store.prune(older):
                if self.snapshot_dir is not None:
                    remove_own_snapshot(self.snapshot_dir, name)
        except (sqlite3.Error, OSError) as exc:
            if not self._retention_failed:  # once per episode (a full card fails it at every run)
                self._retention_failed = True
                log.warning("event store retention failed: %s; trying again after the next %d events",
                            exc, RETENTION_EVERY)
        else:
            self._retention_failed = False

    def close(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify()
        self._thread.join(5)
        if not self.store.read_only:
            try:
                self.store.checkpoint()
            except sqlite3.Error:
                pass
        self.store.close()
        self._writer_lock.release()


def store_path(state_dir: str) -> Path:
    """events.db in state_dir. The default folder is the service's (/var/lib/pidetect, made by the installer);
    a user running pidetect by hand who cannot write there gets $XDG_STATE_HOME/pidetect (~/.local/state)."""
    from ..config import FIELDS
    from .events import FILE_NAME

    folder = Path(os.path.expanduser(state_dir))
    if str(folder) == FIELDS["state_dir"].default and not _writable(folder):
        folder = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pidetect"
    return folder / FILE_NAME


def _writable(folder: Path) -> bool:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return os.access(existing, os.W_OK | os.X_OK)
