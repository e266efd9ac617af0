"""Writing a file whole or not at all: what `models fetch`, `quantize`, `eval --plot` and bench's clip
cache write is made beside its destination and only renamed over it once complete, so a crash, a
full card or a failed check never leaves a half-written model or clip where a reader finds it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


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
