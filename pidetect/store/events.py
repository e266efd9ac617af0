"""The event store: one SQLite row per tracked object, so what happened can be reviewed later.

A file in `state_dir` (`events.db`), in WAL mode with synchronous=FULL: a row is on the card when its
transaction commits, and `kill -9` or a power cut at any moment leaves a database that opens with
every committed row (SQLite's journal guarantees it; events are a few a minute, so the fsync per
event costs nothing that matters). The file is recognised by its application id; a file that is not
an SQLite database, or is someone else's, is reported and never written to.

A row is opened when an object enters the picture, gains zones as it enters them, and is closed
with its end time and top score when it leaves. Rows left open by a crash are closed when the store
is written again (end = start: the end was never seen).

What can go wrong with the file, and what happens (the review history is what the owner keeps):
- The WAL is checkpointed and cut back to `JOURNAL_SIZE_LIMIT` (after retention, and at close), so it
  never grows to fill the card.
- One writer per file: `WriterLock` (an flock on `events.db.lock`) refuses a second daemon on the same
  state_dir at start, rather than letting it close the first one's open rows.
- A file that is pidetect's but damaged (SQLite says malformed) is moved aside whole (`events.db.damaged-…`,
  with its -wal and -shm) and a fresh store started: said once, never a restart loop.
- A healthy file on a read-only mount is opened read-only: the review page shows it, new events are not kept
  (said once), detection goes on.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..errors import ConfigError

log = logging.getLogger(__name__)
JOURNAL_SIZE_LIMIT = 1 << 20  # bytes of WAL kept after a checkpoint (SQLite's default keeps all it ever grew to)
CACHE_KIB = 512  # SQLite's page cache: events are a few a minute and the pages read are the newest (default 2 MB)

APPLICATION_ID = 0x70644576  # 'pdEv': marks the file as pidetect's event store
SCHEMA_VERSION = 3  # 2: the stationary column; 3: the box column (each added in place to an older store)
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
    stationary INTEGER NOT NULL DEFAULT 0,
    box TEXT
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
    box: Optional[tuple] = None  # where it was when it entered (x1, y1, x2, y2 in the snapshot's pixels)

    def as_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "class_id": self.class_id, "track_id": self.track_id,
                "start": self.start, "end": self.end,
                "duration": round(self.end - self.start, 3) if self.end is not None else None,
                "score": round(self.score, 4), "zones": list(self.zones),
                "snapshot": f"/api/events/{self.id}/snapshot.jpg" if self.snapshot else None,
                "clip": f"/api/events/{self.id}/clip.mp4" if self.clip else None,
                # events sharing a clip are one review item: the same `review` value
                "review": self.clip[:-len(".mp4")] if self.clip else None, "stationary": self.stationary,
                "box": list(self.box) if self.box else None,
                "thumbnail": f"/api/events/{self.id}/thumb.jpg" if self.snapshot and self.box else None}


def _row(row) -> StoredEvent:
    return StoredEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], tuple(json.loads(row[7])),
                       row[8], row[9], bool(row[10]), tuple(json.loads(row[11])) if row[11] else None)


COLUMNS = "id, label, class_id, track_id, start, end, score, zones, snapshot, clip, stationary, box"


class EventStore:
    """One connection, used from any thread under a lock (the writer sink and the web server's readers)."""

    def __init__(self, path: Path, repair: bool = True):
        """`repair` False (a check, a reload's preflight): a damaged file is left where it is (`damaged` set);
        only the writer that will use the store moves it aside."""
        self.path = Path(path)
        self.repair = repair
        self.damaged = False
        self._lock = threading.Lock()
        self.read_only = False  # on a read-only mount: read for the review page, never written
        self.moved_aside: Optional[Path] = None  # where a damaged file went
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
        if self.path.exists() and not _writable_place(self.path):
            return self._open_read_only()
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
            if _header_application_id(self.path) == APPLICATION_ID:  # ours, damaged where SQLite reads first
                return self._damaged()
            raise ConfigError(f"event store {self.path} is not an SQLite database ({exc}); it was left as it is: "
                              "move it away (pidetect starts a new one) or set state_dir") from None
        if existed and application_id != APPLICATION_ID and (tables or application_id):
            db.close()
            raise ConfigError(f"{self.path} is not pidetect's event store (another program's database); it was "
                              "left as it is: move it away or set state_dir")
        if existed and not _healthy(db):
            db.close()
            return self._damaged()
        db.execute("PRAGMA shrink_memory")  # quick_check read every page into the cache: give it back
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
            if "stationary" not in columns:  # a version 1 store: its events are kept, the column added
                db.execute("ALTER TABLE events ADD COLUMN stationary INTEGER NOT NULL DEFAULT 0")
            if "box" not in columns:  # before version 3: its events are kept, without a box
                db.execute("ALTER TABLE events ADD COLUMN box TEXT")
        except sqlite3.OperationalError as exc:
            db.close()
            if _read_only_error(exc):
                return self._open_read_only()
            raise ConfigError(f"event store {self.path} cannot be used ({exc}); it was left as it is: move it "
                              "away or set state_dir") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ConfigError(f"event store {self.path} cannot be used ({exc}); it was left as it is: move it "
                              "away or set state_dir") from None
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """A store on a read-only mount (a card remounted read-only after errors, a backup): read, never written."""
        self.read_only = True
        for query in ("mode=ro", "immutable=1"):  # immutable: no -shm can be made beside it on a read-only mount
            try:
                db = sqlite3.connect(f"file:{self.path}?{query}", uri=True, timeout=5.0, check_same_thread=False,
                                     isolation_level=None)
                application_id = db.execute("PRAGMA application_id").fetchone()[0]
                db.execute("SELECT count(*) FROM events").fetchone()
            except sqlite3.Error as exc:
                error = exc
                continue
            if application_id != APPLICATION_ID:
                db.close()
                raise ConfigError(f"{self.path} is not pidetect's event store (another program's database); it was "
                                  "left as it is: move it away or set state_dir")
            return db
        raise ConfigError(f"event store {self.path} is on a read-only file system and cannot be read ({error}); "
                          "remount it read-write or set state_dir") from None

    def _damaged(self) -> sqlite3.Connection:
        self.damaged = True
        if not self.repair:
            return sqlite3.connect(":memory:", check_same_thread=False)  # nothing of the file is read
        self.moved_aside = self._move_aside()
        return self._open()

    def _move_aside(self) -> Path:
        """The damaged file (and its -wal, -shm) renamed beside it, whole: the owner may still recover rows."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("-wal", "-shm", ""):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                try:
                    os.replace(source, f"{aside}{suffix}")
                except OSError as exc:
                    raise ConfigError(f"event store {self.path} is damaged and cannot be moved aside "
                                      f"({exc.strerror or exc}); move it away by hand or set state_dir") from None
        log.error("the event store %s was damaged: moved aside to %s (its rows may be recoverable with sqlite3's "
                  ".recover); a new store is started", self.path, aside)
        return aside

    # --- writing (the store sink's thread) ------------------------------------------------------
    def close_interrupted(self) -> int:
        """Rows a crash (or kill -9) left open get end = start: their end was never seen. Called by the writer
        when it starts, when no row of this process is open; never by a check that only opens the file."""
        with self._lock:
            return self._db.execute("UPDATE events SET end = start WHERE end IS NULL").rowcount

    def open_event(self, label: str, class_id: int, track_id: int, start: float, score: float,
                   zones: Sequence[str] = (), snapshot: Optional[str] = None, box: Optional[Sequence[int]] = None) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (label, class_id, track_id, start, score, zones, snapshot, box) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (label, class_id, track_id, start, score, json.dumps(list(zones)), snapshot,
                 json.dumps([int(v) for v in box]) if box else None))
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
             limit: int = 100, zone: Optional[str] = None, min_score: Optional[float] = None,
             cursor: Optional[Tuple[float, int]] = None, since_id: Optional[int] = None) -> List[StoredEvent]:
        """Newest first. `cursor` (start, id) of the last event a page showed: the next page starts after it, so
        paging never skips or repeats an event however many arrive meanwhile. `since_id`: only events newer than
        that id (the page's "new events" poll)."""
        where, args = [], []
        if label:
            where.append("label = ?")
            args.append(label)
        if zone:
            where.append("EXISTS (SELECT 1 FROM json_each(events.zones) WHERE json_each.value = ?)")
            args.append(zone)
        if min_score is not None:
            where.append("score >= ?")
            args.append(min_score)
        if after is not None:
            where.append("start >= ?")
            args.append(after)
        if before is not None:
            where.append("start < ?")
            args.append(before)
        if cursor is not None:
            where.append("(start < ? OR (start = ? AND id < ?))")
            args += [cursor[0], cursor[0], cursor[1]]
        if since_id is not None:
            where.append("id > ?")
            args.append(since_id)
        sql = f"SELECT {COLUMNS} FROM events" + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY start DESC, id DESC LIMIT ?"
        with self._lock:
            return [_row(row) for row in self._db.execute(sql, (*args, limit))]

    def zones(self) -> List[str]:
        """The zones events were in, for the page's filter."""
        with self._lock:
            return [zone for (zone,) in self._db.execute(
                "SELECT DISTINCT json_each.value FROM events, json_each(events.zones) ORDER BY 1")]

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

    def forget_snapshot(self, name: str) -> None:
        """The snapshot's file was removed (its caps, or room made on a full card): its event stays, without it."""
        with self._lock:
            self._db.execute("UPDATE events SET snapshot = NULL WHERE snapshot = ?", (name,))

    # --- retention -----------------------------------------------------------------------------------
    def prune(self, older_than: Optional[float]) -> List[str]:
        """Rows started before `older_than` go: the only rows retention removes (a missing snapshot never costs
        its event: a shared or changed snapshot folder proves nothing). Returns the snapshot names of the rows
        removed, for the caller to remove those files (only pidetect's own, in its own folder). The WAL is then
        checkpointed and cut back to JOURNAL_SIZE_LIMIT."""
        names: List[str] = []
        with self._lock:
            if older_than is not None:
                names = [name for (name,) in self._db.execute(
                    "SELECT snapshot FROM events WHERE start < ? AND snapshot IS NOT NULL", (older_than,))]
                self._db.execute("DELETE FROM events WHERE start < ?", (older_than,))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return names

    def checkpoint(self) -> None:
        """The WAL's rows copied into the file and the WAL cut to nothing (at close: a clean store is one file)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def newest_start(self) -> Optional[float]:
        with self._lock:
            return self._db.execute("SELECT max(start) FROM events").fetchone()[0]

    def has_snapshot(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM events WHERE snapshot = ? LIMIT 1", (name,)).fetchone() is not None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class WriterLock:
    """One daemon writes a store: an flock on `events.db.lock`, held while the writer runs (the kernel lets go
    when the process ends, even by kill -9). The holder's pid is written in the file for the error message."""

    def __init__(self, store_path: Path):
        self.path = Path(f"{store_path}.lock")
        self._fd = -1

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES):
                return  # nobody can write this store: there is nothing to share
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ConfigError(two_writers(self.path, holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def check_writer_lock(store_path: Path, writer_pid: Optional[int] = None) -> None:
    """At start (and before a reload): ConfigError if another process holds the store's writer lock (this process,
    or `writer_pid` — the daemon `pidetect reload` checks a new config for — may)."""
    path = Path(f"{store_path}.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no lock file: nobody has written here yet
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if holder not in (str(os.getpid()), str(writer_pid)):  # a reload: the writer is the daemon reloaded
            raise ConfigError(two_writers(path, holder)) from None
    finally:
        os.close(fd)


def two_writers(lock: Path, holder: str) -> str:
    return (f"another pidetect (pid {holder or '?'}) writes the event store in {lock.parent}: two daemons on one "
            "state_dir would close each other's events; give each camera its own state_dir (pidetect@NAME "
            "units do: /var/lib/pidetect/NAME)")


def _header_application_id(path: Path) -> Optional[int]:
    """The application id in an SQLite file's header (bytes 68-71), read without SQLite: a damaged schema page
    must not hide whose file it is."""
    try:
        with open(path, "rb") as file:
            header = file.read(72)
    except OSError:
        return None
    if len(header) < 72 or not header.startswith(b"SQLite format 3\x00"):
        return None
    return int.from_bytes(header[68:72], "big")


def _healthy(db: sqlite3.Connection) -> bool:
    """SQLite's quick_check (the pages and indexes, not the rows' contents): milliseconds for years of events."""
    try:
        return db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        return False


def _writable_place(path: Path) -> bool:
    """False on a read-only mount (and for a file this user may not write)."""
    try:
        if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return True
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _read_only_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text
