"""JPEG snapshots of the overlaid frame when an object enters, under a size and count cap.

The SD card must never fill: after each save the oldest files are removed until both caps hold.
Files are written to a temporary name and renamed, so a reader never sees half a JPEG.

Only files pidetect wrote are ever counted or removed: regular files (not links) directly in the
folder whose names match OWN_NAME, the pattern `save` writes. Whatever else the folder holds (a
user's photos, sub-folders, links) is never touched, whatever its name. A write that fails (a full
card, a read-only remount) removes its temporary file, frees room among pidetect's own files on a
full disk — the oldest, one for one with the new snapshot, at most a tenth for one write, and not again in
the episode once a tenth did not make room: a card that something else keeps filling must not cost every
snapshot — is said once per episode and is tried again with the next object. Every file
removed is told to `on_removed` (the event store keeps its event, marked without a snapshot).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

from ..files import SNAPSHOT_NAME as OWN_NAME
from ..files import remove_own_snapshot, unlink_quietly
from ..frames import Result
from .overlay import Overlay

log = logging.getLogger(__name__)
SAFE = re.compile(r"[^A-Za-z0-9_-]+")
OWN_TEMPORARY = re.compile(r"\.(\d{8}-\d{6}\.\d{3}-[A-Za-z0-9_-]+-\d+\.jpg)(\.\d+)?\.tmp")
MAX_LABEL_CHARS = 64  # of the label in a file name: a 5,000-character label must not make every write fail
STALE_TEMPORARY_SECONDS = 60.0
RECOVERED_AFTER = 10.0  # seconds without a failed write that end an episode of failures  # younger temporary files may be another daemon's write in progress


def name_part(label: str) -> str:
    """The label as it appears in a snapshot's name: safe characters, short, never empty."""
    return SAFE.sub("_", label).strip("_")[:MAX_LABEL_CHARS] or "object"


def is_own_file(entry: os.DirEntry) -> bool:
    """A regular file (not a link, not a folder) named as `Snapshots.save` names its files."""
    return bool(OWN_NAME.fullmatch(entry.name)) and entry.is_file(follow_symlinks=False)


def write_new_file(path: Path, data: bytes) -> None:
    """Write `data` to a file that must not exist yet; on any failure no file is left behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


class Snapshots:
    def __init__(self, folder: Path, max_files: int, max_mb: float, quality: int = 85,
                 draw_on: Optional[Callable[[Callable[[], np.ndarray]], np.ndarray]] = None,
                 on_removed: Optional[Callable[[str], None]] = None):
        self.folder, self.max_files, self.max_bytes = Path(folder), max_files, int(max_mb * 2**20)
        self.quality = quality
        # the display thread's DisplaySink.draw_here when there is a display: one thread draws all text
        self.draw_on = draw_on or (lambda draw: draw())
        self.overlay = Overlay(reuse_buffer=False)  # one picture per event: no buffer held between them
        self.on_removed = on_removed or (lambda name: None)
        self.failure: Optional[str] = None  # the current episode of failed writes, said once
        self._made_room = False  # making room failed in this episode: not tried again until the episode ends
        self._failed_at = 0.0
        self._files: Optional[List[Tuple[str, int]]] = None  # (name, size), oldest first

    def _scan(self) -> List[Tuple[str, int]]:
        """pidetect's own snapshots in the folder, oldest first; stale temporary files of its own removed.

        Read again before every save (a few hundred directory entries: well under a millisecond), so
        that two daemons sharing one folder keep its caps together.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        files = []
        now = time.time()
        for entry in os.scandir(self.folder):
            try:
                if is_own_file(entry):
                    info = entry.stat(follow_symlinks=False)
                    files.append((entry.name, info.st_size, info.st_mtime_ns))
                elif OWN_TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) and \
                        now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMPORARY_SECONDS:
                    unlink_quietly(Path(entry.path))  # left by a crash or power cut mid-write
            except FileNotFoundError:
                continue  # removed meanwhile (another daemon pruning the same folder)
        return [(name, size) for name, size, _written in sorted(files, key=_age_order)]

    def save(self, result: Result, track) -> Optional[str]:
        """Write the snapshot; return its path, or None (said once per episode) when it cannot be written."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(result.frame.ts))
        millis = int(result.frame.ts * 1000) % 1000
        name = f"{stamp}.{millis:03d}-{name_part(track.label)}-{track.track_id}.jpg"
        try:
            self._files = self._scan()
        except OSError as exc:
            self._report(exc)
            return None
        picture = self.draw_on(lambda: self.overlay.draw(result))
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        del picture
        if not ok:
            return None
        data = jpeg.tobytes()
        room_budget = max(1, len(self._files) // 10)  # at most a tenth of the snapshots for this one
        while True:
            try:
                self._write(name, data)
                break
            except OSError as exc:
                self._report(exc)
                if exc.errno != errno.ENOSPC or not self._files or self._made_room or room_budget == 0:
                    if exc.errno == errno.ENOSPC and self._files:
                        self._made_room = True  # a tenth did not make room: something else fills the card
                    return None
                # a full card: the oldest snapshot makes room for the newest, one for one — never more than the
                # write needs, so however the card fills, the number of snapshots does not fall
                room_budget -= 1
                self._remove_oldest(1)
        if self.failure and time.monotonic() - self._failed_at >= RECOVERED_AFTER:
            # a nearly full card lets some writes through between failures: the episode (and with it the one
            # making of room) ends only after RECOVERED_AFTER seconds without a failure
            log.warning("snapshots are written again to %s", self.folder)
            self.failure = None
            self._made_room = False
        self._files = [entry for entry in self._files if entry[0] != name]
        self._files.append((name, len(jpeg)))
        self._prune()
        return str(self.folder / name)

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.folder / f".{name}.{os.getpid()}.tmp"  # two daemons on one folder never collide
        try:
            write_new_file(temporary, data)
            os.replace(temporary, self.folder / name)
        except OSError:
            unlink_quietly(temporary)
            raise

    def _report(self, exc: OSError) -> None:
        """Said once per episode of failed writes (a full disk, a read-only remount, a missing folder)."""
        self._failed_at = time.monotonic()
        if self.failure is None:
            self.failure = (f"cannot write snapshots to {self.folder}: {exc.strerror or exc}; "
                            + ("removing the oldest of pidetect's own snapshots to make room, "
                               if exc.errno == errno.ENOSPC else "") + "trying again with the next object")
            log.error(self.failure)

    def _prune(self) -> None:
        total = sum(size for _name, size in self._files)
        excess = 0
        while excess < len(self._files) and (len(self._files) - excess > self.max_files or total > self.max_bytes):
            total -= self._files[excess][1]
            excess += 1
        self._remove_oldest(excess)

    def _remove_oldest(self, count: int) -> None:
        for name, _size in self._files[:count]:
            if remove_own_snapshot(self.folder, name):
                self.on_removed(name)
        del self._files[:count]


def _age_order(entry: Tuple[str, int, int]) -> tuple:
    """Oldest first: by the frame time in the name, then by when the file was written (objects entering
    in the same frame, or two daemons' files of the same millisecond)."""
    return (OWN_NAME.fullmatch(entry[0]).group(1), entry[2], entry[0])
