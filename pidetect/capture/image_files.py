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
HEADER_BYTES = 4096  # every header but JPEG's sits in the first bytes; JPEG is walked segment by segment
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
            try:
                found = _parse(head, tail)
                if head.startswith(b"\xff\xd8"):
                    jpeg_size = _jpeg_size(handle)
                    found = ("JPEG", *jpeg_size, not tail.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")) \
                        if jpeg_size else None
                elif head[:4] in (b"II*\x00", b"MM\x00*"):
                    tiff_size = _tiff_size(handle, head[:2])
                    found = ("TIFF", *tiff_size, False) if tiff_size else None
            except (struct.error, IndexError, ValueError):  # a header cut short or with fields out of range
                found = None
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
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


def exif_orientation(path: Path) -> int:
    """The EXIF Orientation (1..8) of a JPEG, 1 when it has none or it cannot be read.

    Why: phones store photos sideways with Orientation 6 or 8; OpenCV (and Ultralytics) turn them upright
    when they decode, so sizes and labels refer to the upright picture. Only the first 64 KiB are read.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(65536)
    except OSError:
        return 1
    if not data.startswith(b"\xff\xd8"):
        return 1
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\0\0":
            return _tiff_orientation(data[at + 10:at + 2 + length])
        if marker in (0xDA, 0xD9) or length < 2:
            break
        at += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for entry in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        at = ifd + 2 + 12 * entry
        if at + 12 > len(tiff):
            break
        if int.from_bytes(tiff[at:at + 2], order) == 0x0112:
            value = int.from_bytes(tiff[at + 8:at + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


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
        return None  # read by _jpeg_size from the file itself
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", width, height, b"IEND" not in tail
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return "BMP", width, abs(height), False
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return None  # read by _tiff_size from the file itself
    if re.match(rb"P[1-6]\s", head[:3]):
        fields = re.match(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)", head)
        return ("PNM", int(fields.group(1)), int(fields.group(2)), False) if fields else None
    return None


def _jpeg_size(handle) -> Optional[Tuple[int, int]]:
    """Walk the markers to the first SOFn frame header (baseline, progressive, lossless…).

    Seeks over each segment, so EXIF, ICC and XMP blocks of any size before the frame header
    (a phone photo's EXIF alone can exceed 64 KB) cost a seek each, not a read.
    """
    handle.seek(2)
    for _ in range(10000):  # a real file has a few dozen segments before its frame header
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        while code == 0xFF:  # fill bytes
            byte = handle.read(1)
            if not byte:
                return None
            code = byte[0]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            frame = handle.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        if length < 2:
            return None
        handle.seek(length - 2, 1)
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


def _tiff_size(handle, order_mark: bytes) -> Optional[Tuple[int, int]]:
    """ImageWidth and ImageLength from the first IFD, wherever in the file it is (often at the end)."""
    order = "<" if order_mark == b"II" else ">"
    handle.seek(4)
    (offset,) = struct.unpack(order + "I", handle.read(4))
    handle.seek(offset)
    (count,) = struct.unpack(order + "H", handle.read(2))
    entries = handle.read(12 * min(count, 4096))
    found = {}
    for start in range(0, len(entries) - 11, 12):
        tag, kind = struct.unpack(order + "HH", entries[start:start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            value = entries[start + 8:start + (10 if kind == 3 else 12)]
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value)[0]
    return (found[256], found[257]) if len(found) == 2 else None
