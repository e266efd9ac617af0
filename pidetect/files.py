"""Writing a file whole or not at all: what `models fetch`, `quantize`, `eval --plot` and bench's clip
cache write is made beside its destination and only renamed over it once complete, so a crash, a
full card or a failed check never leaves a half-written model or clip where a reader finds it. And the
other end of a file's life: removing only what pidetect wrote."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Pattern

log = logging.getLogger(__name__)


@contextlib.contextmanager
def replaced_when_done(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside `path` (ending in `suffix`, for writers that go by the extension);
    when the block finishes it replaces `path`, when it raises it is removed. The result gets the
    permissions a plain new file would (mkstemp's 0600 would hide a model from the service's user)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


MAX_PASSWORD_FILE = 4096  # bytes: a password file holds one line; a 200 MB file must not be read whole


def read_password_file(path: str, key: str) -> str:
    """A password kept in a file (never in the config, a flag or a log): its first line, trailing whitespace
    stripped (what `echo secret > file` and editors leave), in Unicode NFC (the same password typed on another
    keyboard arrives composed the same way). Comments or notes may follow on later lines.

    A FIFO or a device would block start and stop: only a regular file is read, and at most MAX_PASSWORD_FILE
    bytes of it."""
    import unicodedata

    from .errors import ConfigError

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{key} {path}: not a regular file; put the password in a file (chmod 600)")
        with open(path, "rb") as file:
            data = file.read(MAX_PASSWORD_FILE + 1)
        if len(data) > MAX_PASSWORD_FILE:
            raise ConfigError(f"{key} {path}: the file is larger than {MAX_PASSWORD_FILE} bytes; a password file "
                              "holds the password on its first line (is it the right file?)")
        first = data.decode("utf-8").split("\n", 1)[0].rstrip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key} {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if not first:
        raise ConfigError(f"{key} {path}: the first line is empty; write the password on the first line")
    return unicodedata.normalize("NFC", first)


RAM_FILE_SYSTEMS = ("tmpfs", "ramfs")


def file_system_type(path: Path) -> str:
    """The type of the file system `path` lies on (the longest mount point above it in /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        after = line.split(" - ", 1)[1].split()
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, after[0] if after else ""
    return kind


# The names pidetect gives the files it writes: only files named so (directly in their folder, regular files) are
# ever counted, served or removed. Here, below every stage, because the writers (outputs), the retention (store)
# and the review page (web) all need them.
SNAPSHOT_NAME = re.compile(r"(\d{8}-\d{6}\.\d{3})-[A-Za-z0-9_-]+-\d+\.jpg")
CLIP_NAME = re.compile(r"(\d{8}-\d{6}\.\d{3})-(\d+)\.mp4")


def remove_own_snapshot(folder: Path, name: str) -> bool:
    """Remove a snapshot pidetect wrote (the caps, the event store's retention and the review page's delete)."""
    return remove_own_file(folder, name, SNAPSHOT_NAME, "snapshot")


def remove_own_file(folder: Path, name: str, own_name: Pattern[str], what: str) -> bool:
    """Remove a file pidetect wrote: named as it names them (`own_name`: no separators, no '..'), directly in
    `folder`, and still a regular file (never a link put there since). Snapshots and clips, whatever removes
    them (caps, retention, the review page's delete), go through here. True if it was removed."""
    if not own_name.fullmatch(name):
        return False
    path = folder / name
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot remove %s %s: %s", what, name, exc.strerror)
        return False


def unlink_quietly(path: Path) -> None:
    """Remove a file of pidetect's own making that may already be gone (temporary files, segments)."""
    try:
        path.unlink()
    except OSError:
        pass
