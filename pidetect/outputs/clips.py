"""Clip files in record_dir: written while the event goes on, listed only once playable, pruned oldest first.

While a clip is open its segments are appended to a hidden MPEG-TS file (`.NAME.part.ts`); when it
ends, FFmpeg copies that stream (no re-encoding) into a finalised MP4 with its index at the front
(`+faststart`, so a browser starts playing before the whole file has arrived), written to a hidden
temporary name, read back (`mp4.mp4_duration`: every box whole, the `moov` index there, a duration), flushed
to the card and renamed. So only a complete, playable MP4 ever carries a clip's name — FFmpeg's exit code is
not enough: it exits 0 when a full card stops it writing the index — and `kill -9` or a power cut leaves at
most a hidden part file, which is removed later.

Only files pidetect wrote are ever counted or removed: regular files (not links) directly in the folder
named as `CLIP_NAME` names them. A failed write (a full card) removes what it wrote, is said once per
episode, makes room among pidetect's own clips on a full card (once per episode: a card that something else
keeps full never costs more than a tenth of the clips), and is tried again with the next event.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ..files import CLIP_NAME, remove_own_file, unlink_quietly
from .encoder import Segment
from .mp4 import mp4_duration

log = logging.getLogger(__name__)
PART_NAME = re.compile(r"\.(\d{8}-\d{6}\.\d{3})-(\d+)\.mp4\.(part\.ts|tmp)")
STALE_PART_SECONDS = 60.0  # younger part files may be another daemon's clip in progress
COPY_CHUNK = 1 << 20


class ClipWriteError(Exception):
    def __init__(self, message: str, no_space: bool = False):
        super().__init__(message)
        self.no_space = no_space


def clip_name(start_ts: float, number: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start_ts))
    return f"{stamp}.{int(start_ts * 1000) % 1000:03d}-{number}.mp4"


def remove_own_clip(folder: Path, name: str) -> bool:
    """Remove a clip pidetect wrote (named as it names them, a regular file directly in `folder`)."""
    return remove_own_file(folder, name, CLIP_NAME, "clip")


class ClipFile:
    """One clip being written: segments appended to its part file, then finalised into NAME.mp4."""

    def __init__(self, folder: Path, name: str, ffmpeg: str):
        self.folder, self.name, self.ffmpeg = folder, name, ffmpeg
        self.part = folder / f".{name}.part.ts"
        self.temporary = folder / f".{name}.tmp"
        self.start: Optional[float] = None  # stream time of the first segment appended
        self.end = 0.0  # stream time the appended segments reach
        self.bytes = 0
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _write_error(f"cannot write clips to {folder}", exc) from None

    def append(self, segment: Segment) -> None:
        try:
            with open(segment.path, "rb") as source:
                while True:
                    chunk = source.read(COPY_CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(self._fd, view):]
                    self.bytes += len(chunk)
        except FileNotFoundError:
            return  # a segment the ring already let go: the clip starts a little later
        except OSError as exc:
            self.abandon()
            raise _write_error(f"cannot write clips to {self.folder}", exc) from None
        if self.start is None:
            self.start = segment.start
        self.end = segment.end

    def finish(self, duration: Optional[float]) -> Path:
        """The part file copied into a finalised MP4 (cut to `duration` seconds), flushed and renamed."""
        os.close(self._fd)
        self._fd = -1
        command = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(self.part),
                   "-map", "0:v", "-c", "copy", *(["-t", f"{duration:.3f}"] if duration else []),
                   "-movflags", "+faststart", "-f", "mp4", str(self.temporary)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            self.abandon()
            raise ClipWriteError(f"cannot finish clip {self.name}: {exc}") from None
        no_space = "No space left" in done.stderr
        if done.returncode != 0 or no_space or mp4_duration(self.temporary) is None:
            self.abandon()
            why = "no space left on the card" if no_space else \
                (done.stderr.strip().splitlines() or ["the MP4 FFmpeg wrote is incomplete (no index)"])[-1]
            raise ClipWriteError(f"cannot write clips to {self.folder}: {why}", no_space)
        try:
            _flush(self.temporary)
            final = self.folder / self.name
            os.replace(self.temporary, final)
            _flush(self.folder)
        except OSError as exc:
            self.abandon()
            raise _write_error(f"cannot write clips to {self.folder}", exc) from None
        unlink_quietly(self.part)
        return final

    def abandon(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        unlink_quietly(self.part)
        unlink_quietly(self.temporary)


class ClipFolder:
    """record_dir: starts clips, prunes pidetect's own clips by total size and age."""

    def __init__(self, folder: Path, max_gb: float, max_days: float, ffmpeg: str):
        self.folder, self.ffmpeg = Path(folder), ffmpeg
        self.max_bytes = int(max_gb * 2**30) if max_gb > 0 else 0
        self.max_age = max_days * 86400.0 if max_days > 0 else 0.0

    def start(self, name: str) -> ClipFile:
        return ClipFile(self.folder, name, self.ffmpeg)

    def own_clips(self) -> List[Tuple[str, int]]:
        """(name, size) of pidetect's clips, oldest first; part files a crash left (stale) removed."""
        clips = []
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            try:
                if CLIP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    clips.append((entry.name, entry.stat(follow_symlinks=False).st_size))
                elif PART_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) and \
                        now - entry.stat(follow_symlinks=False).st_mtime > STALE_PART_SECONDS:
                    unlink_quietly(Path(entry.path))
            except FileNotFoundError:
                continue
        return sorted(clips, key=lambda item: (CLIP_NAME.fullmatch(item[0]).group(1), item[0]))

    def prune(self, on_removed: Callable[[str], None], make_room: bool = False) -> None:
        """Oldest first until the size and age caps hold; `make_room` (a full card): also the oldest tenth."""
        clips = self.own_clips()
        total = sum(size for _name, size in clips)
        oldest_kept = time.time() - self.max_age if self.max_age else None
        extra = max(1, len(clips) // 10) if make_room and clips else 0
        for index, (name, size) in enumerate(clips):
            started = time.mktime(time.strptime(CLIP_NAME.fullmatch(name).group(1)[:15], "%Y%m%d-%H%M%S"))
            too_old = oldest_kept is not None and started < oldest_kept
            too_big = self.max_bytes and total > self.max_bytes
            if not (too_old or too_big or index < extra):
                break
            if remove_own_clip(self.folder, name):
                on_removed(name)
            total -= size


def _write_error(context: str, exc: OSError) -> ClipWriteError:
    return ClipWriteError(f"{context}: {exc.strerror or exc}", exc.errno == errno.ENOSPC)


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
