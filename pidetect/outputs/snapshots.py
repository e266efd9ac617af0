"""JPEG snapshots of the overlaid frame when an object enters, under a size and count cap.

The SD card must never fill: after each save the oldest files are removed until both caps hold.
Files are written to a temporary name and renamed, so a reader never sees half a JPEG.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2

from ..frames import Result
from .overlay import Overlay

log = logging.getLogger(__name__)
SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Snapshots:
    def __init__(self, folder: Path, max_files: int, max_mb: float, quality: int = 85):
        self.folder, self.max_files, self.max_bytes = Path(folder), max_files, int(max_mb * 2**20)
        self.quality = quality
        self.overlay = Overlay()
        self.disabled_reason: Optional[str] = None
        self._files: Optional[List[Tuple[str, int]]] = None  # (name, size), oldest first

    def _scan(self) -> List[Tuple[str, int]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        files = []
        for entry in os.scandir(self.folder):
            if entry.is_file() and entry.name.endswith(".jpg"):
                files.append((entry.name, entry.stat().st_size))
        return sorted(files)

    def save(self, result: Result, track) -> Optional[str]:
        """Write the snapshot; return its path, or None (with one warning) when the folder is unusable."""
        if self.disabled_reason:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(result.frame.ts))
        millis = int(result.frame.ts * 1000) % 1000
        name = f"{stamp}.{millis:03d}-{SAFE.sub('_', track.label)}-{track.track_id}.jpg"
        target = self.folder / name
        try:
            if self._files is None:
                self._files = self._scan()
            ok, jpeg = cv2.imencode(".jpg", self.overlay.draw(result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            temporary = self.folder / f".{name}.tmp"
            temporary.write_bytes(jpeg.tobytes())
            os.replace(temporary, target)
        except OSError as exc:
            self.disabled_reason = f"snapshots disabled: cannot write to {self.folder}: {exc.strerror}"
            log.error(self.disabled_reason)
            return None
        self._files.append((name, len(jpeg)))
        self._prune()
        return str(target)

    def _prune(self) -> None:
        total = sum(size for _name, size in self._files)
        while self._files and (len(self._files) > self.max_files or total > self.max_bytes):
            name, size = self._files.pop(0)
            total -= size
            try:
                (self.folder / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove old snapshot %s: %s", name, exc.strerror)
