"""Reading still images safely: the size is read from the file's header before anything is decoded.

Why: a 389 KB PNG can declare 20000x20000 pixels, and decoding it takes 1.2 GB for the pixels alone
(2.4 GB RSS measured): enough to kill a Pi. Every place that decodes a user's image file (`detect`,
`eval`, calibration, image-sequence sources) goes through here, and an image beyond MAX_PIXELS is
refused with its name and size. A file whose header pidetect cannot read is refused too, rather
than handed to a decoder with no limit.
"""

from __future__ import annotations

import glob
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import ConfigError, UsageError

log = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000  # 50 megapixels: a 48 MP phone photo passes, and decodes to 150 MB of BGR
HEADER_BYTES = 64 * 1024  # JPEG markers before the frame header (EXIF, thumbnails) fit in this
FORMATS = "JPEG, PNG, BMP, WebP, TIFF, PPM/PGM"


class ImageFileError(UsageError):
    """An image file that cannot or must not be decoded (exit 2 from the CLI)."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    truncated: bool  # the end-of-image mark is missing (JPEG EOI, PNG IEND): the file was cut short


def read_header(path: Path) -> ImageHeader:
    """Format and size from the first bytes; ImageFileError when the file is no image pidetect reads."""
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder; give image files (e.g. {str(path).rstrip('/')}/*.jpg)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 32))
            tail = handle.read()
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        found = _parse(head, tail)
    except (struct.error, IndexError, ValueError):  # a header cut short or with fields out of range
        found = None
    if found is None:
        raise ImageFileError(f"{path}: not an image pidetect can read (it reads {FORMATS})")
    kind, width, height, truncated = found
    if width <= 0 or height <= 0:
        raise ImageFileError(f"{path}: damaged {kind} header (size {width}x{height})")
    return ImageHeader(kind, width, height, truncated)


def check_size(path: Path, header: ImageHeader, max_pixels: int = MAX_PIXELS) -> None:
    if header.width * header.height > max_pixels:
        raise ImageFileError(f"{path}: {header.width}x{header.height} pixels is more than pidetect decodes "
                             f"({max_pixels // 1_000_000} megapixels at most); scale the image down first")


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The image as BGR, after its header passed the pixel limit; a warning names a truncated file."""
    import cv2

    header = read_header(path)
    check_size(path, header, max_pixels)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFileError(f"{path}: the {header.format} data is damaged and cannot be decoded")
    if header.truncated:
        log.warning("%s is truncated (no end-of-image mark): detecting on what could be decoded", path)
    return image


def check_image_sequence(pattern: str, max_pixels: int = MAX_PIXELS) -> None:
    """Every existing file of a printf-style sequence (img_%04d.jpg) passes the pixel limit.

    Files are checked when the source is made, so an oversized frame is a configuration error at
    start rather than a decoder's memory spike at frame 500.
    """
    wildcard = re.sub(r"%0?\d*d", "*", glob.escape(pattern).replace("[%]", "%"))
    for name in sorted(glob.glob(wildcard)):
        try:
            header = read_header(Path(name))
            check_size(Path(name), header, max_pixels)
        except ImageFileError as exc:
            raise ConfigError(f"image sequence {pattern}: {exc}") from None


def _parse(head: bytes, tail: bytes) -> Optional[Tuple[str, int, int, bool]]:
    if head.startswith(b"\xff\xd8"):
        size = _jpeg_size(head)
        if size is None:
            return None
        return ("JPEG", *size, not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"))
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", width, height, b"IEND" not in tail
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return "BMP", width, abs(height), False
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        size = _tiff_size(head)
        return ("TIFF", *size, False) if size else None
    if re.match(rb"P[1-6]\s", head[:3]):
        fields = re.match(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)", head)
        return ("PNM", int(fields.group(1)), int(fields.group(2)), False) if fields else None
    return None


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Walk the markers to the first SOFn frame header (baseline, progressive, lossless…)."""
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        (length,) = struct.unpack(">H", data[index + 2:index + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5:index + 9])
            return width, height
        if length < 2:
            return None
        index += 2 + length
    return None


def _webp_size(data: bytes) -> Optional[Tuple[str, int, int, bool]]:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return "WebP", width & 0x3FFF, height & 0x3FFF, False
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, False
    if chunk == b"VP8X":
        return "WebP", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1, False
    return None


def _tiff_size(data: bytes) -> Optional[Tuple[int, int]]:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    found = {}
    for entry in range(count):
        start = offset + 2 + entry * 12
        if start + 12 > len(data):
            return None
        tag, kind = struct.unpack(order + "HH", data[start:start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), data[start + 8:start + (10 if kind == 3 else 12)])[0]
    return (found[256], found[257]) if len(found) == 2 else None
