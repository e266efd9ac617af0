"""The event store: one SQLite row per tracked object, so what happened can be reviewed later.

A file in `state_dir` (`events.db`), in WAL mode with synchronous=FULL: a row is on the card when its
transaction commits, and `kill -9` or a power cut at any moment leaves a database that opens with
every committed row (SQLite's journal guarantees it; events are a few a minute, so the fsync per
event costs nothing that matters). The file is recognised by its application id; a file that is not
an SQLite database, or is someone else's, is reported and never written to.

A row is opened when an object enters the picture, gains zones as it enters them, and is closed
with its end time and top score when it leaves. Rows left open by a crash are closed when the store
is written again (end = start: the end was never seen).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import ConfigError

APPLICATION_ID = 0x70644576  # 'pdEv': marks the file as pidetect's event store
SCHEMA_VERSION = 2  # 2: the stationary column (added in place to a version 1 store)
FILE_NAME = "events.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL,
    class_id INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL,
    score REAL NOT NULL,
    zones TEXT NOT NULL DEFAULT '[]',
    snapshot TEXT,
    clip TEXT,
    stationary INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_start ON events (start);
CREATE INDEX IF NOT EXISTS events_label_start ON events (label, start);
"""


@dataclass(frozen=True)
class StoredEvent:
    id: int
    label: str
    class_id: int
    track_id: int
    start: float
    end: Optional[float]
    score: float
    zones: tuple
    snapshot: Optional[str]  # file name in snapshot_dir
    clip: Optional[str]
    stationary: bool = False  # the object stood still at some point (a parked car)

    def as_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "class_id": self.class_id, "track_id": self.track_id,
                "start": self.start, "end": self.end,
                "duration": round(self.end - self.start, 3) if self.end is not None else None,
                "score": round(self.score, 4), "zones": list(self.zones),
                "snapshot": f"/api/events/{self.id}/snapshot.jpg" if self.snapshot else None,
                "clip": f"/api/events/{self.id}/clip.mp4" if self.clip else None,
                # events sharing a clip are one review item: the same `review` value
                "review": self.clip[:-len(".mp4")] if self.clip else None, "stationary": self.stationary}


def _row(row) -> StoredEvent:
    return StoredEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], tuple(json.loads(row[7])),
                       row[8], row[9], bool(row[10]))


COLUMNS = "id, label, class_id, track_id, start, end, score, zones, snapshot, clip, stationary"


class EventStore:
    """One connection, used from any thread under a lock (the writer sink and the web server's readers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"state_dir {folder}: cannot create it ({exc.strerror or exc}); set state_dir to a "
                              "writable folder") from None
        if self.path.exists() and not self.path.is_file():
            raise ConfigError(f"event store {self.path} is not a file; move it away or set state_dir")
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"event store {self.path}: cannot open it ({exc}); check state_dir") from None
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigError(f"event store {self.path} is not an SQLite database ({exc}); it was left as it is: "
                              "move it away (pidetect starts a new one) or set state_dir") from None
        if existed and application_id != APPLICATION_ID and (tables or application_id):
            db.close()
            raise ConfigError(f"{self.path} is not pidetect's event store (another program's database); it was "
                              "left as it is: move it away or set state_dir")
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
            if "stationary" not in columns:  # a version 1 store: its events are kept, the column added
                db.execute("ALTER TABLE events ADD COLUMN stationary INTEGER NOT NULL DEFAULT 0")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigError(f"event store {self.path} cannot be used ({exc}); it was left as it is: move it "
                              "away or set state_dir") from None
        return db

    # --- writing (the store sink's thread) ------------------------------------------------------
    def close_interrupted(self) -> int:
        """Rows a crash (or kill -9) left open get end = start: their end was never seen. Called by the writer
        when it starts, when no row of this process is open; never by a check that only opens the file."""
        with self._lock:
            return self._db.execute("UPDATE events SET end = start WHERE end IS NULL").rowcount

    def open_event(self, label: str, class_id: int, track_id: int, start: float, score: float,
                   zones: Sequence[str] = (), snapshot: Optional[str] = None) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (label, class_id, track_id, start, score, zones, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (label, class_id, track_id, start, score, json.dumps(list(zones)), snapshot))
            return int(cursor.lastrowid)

    def add_zone(self, event_id: int, zone: str, snapshot: Optional[str] = None) -> None:
        with self._lock:
            row = self._db.execute("SELECT zones, snapshot FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return
            zones = json.loads(row[0])
            if zone not in zones:
                zones.append(zone)
            self._db.execute("UPDATE events SET zones = ?, snapshot = ? WHERE id = ?",
                             (json.dumps(zones), row[1] or snapshot, event_id))

    def set_clip(self, event_ids: Sequence[int], name: str) -> None:
        """The clip (a file name in record_dir) these events are in: one review item."""
        with self._lock:
            self._db.executemany("UPDATE events SET clip = ? WHERE id = ?", [(name, i) for i in event_ids])

    def forget_clip(self, name: str) -> None:
        """The clip's file was removed (retention): its events stay, without it."""
        with self._lock:
            self._db.execute("UPDATE events SET clip = NULL WHERE clip = ?", (name,))

    def clip_in_use(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM events WHERE clip = ? LIMIT 1", (name,)).fetchone() is not None

    def set_stationary(self, event_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE events SET stationary = 1 WHERE id = ?", (event_id,))

    def close_event(self, event_id: int, end: float, score: float) -> None:
        with self._lock:
            self._db.execute("UPDATE events SET end = ?, score = max(score, ?) WHERE id = ?", (end, score, event_id))

    # --- reading (the web server) ---------------------------------------------------------------
    def list(self, label: Optional[str] = None, after: Optional[float] = None, before: Optional[float] = None,
             limit: int = 100) -> List[StoredEvent]:
        where, args = [], []
        if label:
            where.append("label = ?")
            args.append(label)
        if after is not None:
            where.append("start >= ?")
            args.append(after)
        if before is not None:
            where.append("start < ?")
            args.append(before)
        sql = f"SELECT {COLUMNS} FROM events" + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY start DESC, id DESC LIMIT ?"
        with self._lock:
            return [_row(row) for row in self._db.execute(sql, (*args, limit))]

    def get(self, event_id: int) -> Optional[StoredEvent]:
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return _row(row) if row else None

    def labels(self) -> List[str]:
        with self._lock:
            return [label for (label,) in self._db.execute("SELECT DISTINCT label FROM events ORDER BY label")]

    def delete(self, event_id: int) -> Optional[StoredEvent]:
        """Remove the row; the caller removes its files (it knows the snapshot folder)."""
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM events WHERE id = ?", (event_id,))
        return _row(row)

    # --- retention -----------------------------------------------------------------------------------
    def prune(self, snapshot_dir: Optional[Path], older_than: Optional[float]) -> List[str]:
        """Rows started before `older_than` go, and so do the oldest rows whose snapshot the snapshot caps
        removed (files are pruned oldest first, so the scan stops at the first snapshot still there).
        Returns the snapshot names of the rows removed for their age: the caller removes those files."""
        names: List[str] = []
        with self._lock:
            if older_than is not None:
                names = [name for (name,) in self._db.execute(
                    "SELECT snapshot FROM events WHERE start < ? AND snapshot IS NOT NULL", (older_than,))]
                self._db.execute("DELETE FROM events WHERE start < ?", (older_than,))
            if snapshot_dir is not None:
                rows = self._db.execute("SELECT id, snapshot FROM events WHERE snapshot IS NOT NULL "
                                        "ORDER BY start, id LIMIT 200").fetchall()
                gone = []
                for event_id, name in rows:
                    if os.path.lexists(snapshot_dir / name):
                        break
                    gone.append((event_id,))
                if gone:
                    self._db.executemany("DELETE FROM events WHERE id = ?", gone)
        return names

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
