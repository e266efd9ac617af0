"""Is an MP4 complete? Its top-level boxes read back, the index (`moov`) found, the duration taken from it.

Why not trust FFmpeg's exit code: FFmpeg 5.1 exits 0 when it fails to write the trailer ("Error writing
trailer … No space left on device"), leaving an MP4 without its `moov` index that no player opens. A clip is
given its name only after this check passes; the boxes are read directly (a few reads of the file's
headers, no subprocess), so the check costs nothing next to the copy that made the file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator, Optional, Tuple

HEADER = struct.Struct(">I4s")


def _boxes(data_size: int, read_at) -> Iterator[Tuple[bytes, int, int]]:
    """(type, offset of the body, body size) of each box in [0, data_size); ValueError when one overruns."""
    offset = 0
    while offset < data_size:
        head = read_at(offset, 16)
        if len(head) < 8:
            raise ValueError("truncated box header")
        size, kind = HEADER.unpack_from(head)
        header = 8
        if size == 1:  # a 64-bit size follows
            if len(head) < 16:
                raise ValueError("truncated box header")
            size, header = struct.unpack_from(">Q", head, 8)[0], 16
        elif size == 0:  # to the end of the file
            size = data_size - offset
        if size < header or offset + size > data_size:
            raise ValueError(f"box {kind!r} runs past the end of the file")
        yield kind, offset + header, size - header
        offset += size


def mp4_duration(path: Path) -> Optional[float]:
    """Seconds of the movie if `path` is a complete MP4 (ftyp, mdat and moov with its mvhd, every box whole),
    else None."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)

            def read_at(offset: int, count: int) -> bytes:
                file.seek(offset)
                return file.read(count)

            found = {}
            for kind, body, body_size in _boxes(size, read_at):
                found[kind] = (body, body_size)
            if not {b"ftyp", b"mdat", b"moov"} <= set(found):
                return None
            moov, moov_size = found[b"moov"]
            for kind, body, body_size in _boxes(moov_size, lambda offset, count: read_at(moov + offset,
                                                                                         min(count, moov_size - offset))):
                if kind != b"mvhd":
                    continue
                header = read_at(moov + body, min(body_size, 32))
                if header[:1] == b"\x01":  # version 1: 64-bit times
                    timescale, duration = struct.unpack_from(">IQ", header, 20)
                else:
                    timescale, duration = struct.unpack_from(">II", header, 12)
                return duration / timescale if timescale and duration else None
    except (OSError, ValueError, struct.error):
        return None
    return None
