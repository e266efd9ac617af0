"""The HDMI screen via the Linux framebuffer (/dev/fb0), for a service with no desktop.

On Raspberry Pi OS Bookworm (vc4-kms-v3d) /dev/fb0 is DRM fbdev emulation, usually 16 bpp RGB565,
sometimes 32 bpp XRGB8888. The geometry and the red/green/blue bit offsets are read from the
kernel (FBIOGET_*SCREENINFO ioctls), falling back to /sys/class/graphics/fbN when the device is
a plain file (tests); the pixel packing is chosen from the offsets, and rows honour the stride.
The text console on tty1 would draw over the picture, so it is switched to graphics mode
(KDSETMODE, needs CAP_SYS_TTY_CONFIG) while we draw and back to text on close.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from ..errors import ConfigError
from ..frames import Result
from .letterbox import BandedLetterbox
from .overlay import Overlay
from .display import DisplayUnavailable

log = logging.getLogger(__name__)

FBIOGET_VSCREENINFO = 0x4600
FBIOGET_FSCREENINFO = 0x4602
KDSETMODE = 0x4B3A
KD_TEXT, KD_GRAPHICS = 0, 1
RETRY_SECONDS = 5.0

# struct fb_var_screeninfo: xres, yres, xres_virtual, yres_virtual, xoffset, yoffset, bits_per_pixel,
# grayscale, then red/green/blue/transp fb_bitfield {offset, length, msb_right}, ... (160 bytes)
VAR_FORMAT = "8I12I"
VAR_SIZE = 160
# struct fb_fix_screeninfo: char id[16]; unsigned long smem_start; u32 smem_len, type, type_aux, visual;
# u16 xpanstep, ypanstep, ywrapstep; u32 line_length; ... (68 bytes on 32-bit, 80 on 64-bit)
FIX_SIZE = 80 if struct.calcsize("L") == 8 else 68


@dataclass(frozen=True)
class FbInfo:
    width: int
    height: int
    bits_per_pixel: int
    stride: int  # bytes per row, may exceed width * bytes per pixel
    red: Tuple[int, int]  # (bit offset, length)
    green: Tuple[int, int]
    blue: Tuple[int, int]

    @property
    def pixel_format(self) -> str:
        if self.bits_per_pixel == 16:
            return "rgb565" if self.red[0] == 11 else "bgr565"
        if self.bits_per_pixel == 32:
            return "xrgb8888" if self.red[0] == 16 else "xbgr8888"  # red in the high byte: memory order B, G, R
        return f"unsupported {self.bits_per_pixel} bpp"


FORMATS = {  # name -> (bits per pixel, bitfields)
    "rgb565": (16, ((11, 5), (5, 6), (0, 5))),
    "bgr565": (16, ((0, 5), (5, 6), (11, 5))),
    "xrgb8888": (32, ((16, 8), (8, 8), (0, 8))),
    "xbgr8888": (32, ((0, 8), (8, 8), (16, 8))),
}


def parse_var_screeninfo(raw: bytes) -> Tuple[int, int, int, Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    values = struct.unpack_from(VAR_FORMAT, raw)
    width, height, bpp = values[0], values[1], values[6]
    red, green, blue = (values[8], values[9]), (values[11], values[12]), (values[14], values[15])
    return width, height, bpp, red, green, blue


def parse_fix_line_length(raw: bytes) -> int:
    offset = 16 + struct.calcsize("L") + 4 * 4 + 2 * 3
    offset += (-offset) % 4  # alignment of the u32 after three u16
    return struct.unpack_from("I", raw, offset)[0]


def read_fb_info(fd: int, device: Path, sysfs: Path, pixel_format: str = "auto") -> FbInfo:
    """Geometry and pixel layout from the kernel, or from sysfs when `device` is a plain file."""
    try:
        var = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(VAR_SIZE))
        fix = fcntl.ioctl(fd, FBIOGET_FSCREENINFO, bytes(FIX_SIZE))
        width, height, bpp, red, green, blue = parse_var_screeninfo(var)
        stride = parse_fix_line_length(fix)
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
        folder = sysfs / device.name
        try:
            width, height = (int(v) for v in (folder / "virtual_size").read_text().strip().split(","))
            bpp = int((folder / "bits_per_pixel").read_text())
            stride = int((folder / "stride").read_text())
        except (OSError, ValueError) as sys_exc:
            raise DisplayUnavailable(f"{device}: not a framebuffer device and no geometry in {folder} "
                                     f"({sys_exc})") from None
        default = "rgb565" if bpp == 16 else "xrgb8888"
        red, green, blue = FORMATS[pixel_format if pixel_format != "auto" else default][1]
    if pixel_format != "auto":
        bits, (red, green, blue) = FORMATS[pixel_format]
        if bits != bpp:
            raise DisplayUnavailable(f"{device}: fb_format {pixel_format} needs {bits} bpp, the framebuffer has {bpp}")
    info = FbInfo(width, height, bpp, stride, red, green, blue)
    if info.pixel_format not in FORMATS:
        raise DisplayUnavailable(f"{device}: {bpp} bpp framebuffers are not supported (16 or 32 bpp)")
    if stride < width * bpp // 8:
        raise DisplayUnavailable(f"{device}: stride {stride} is shorter than a row of {width} pixels")
    return info


PACK_CODES = {
    "rgb565": cv2.COLOR_BGR2BGR565,  # red in bits 11-15
    "bgr565": cv2.COLOR_RGB2BGR565,  # channels swapped: blue in bits 11-15
    "xrgb8888": cv2.COLOR_BGR2BGRA,  # little-endian 0xXXRRGGBB is B, G, R, X in memory
    "xbgr8888": cv2.COLOR_BGR2RGBA,
}


def pack_pixels(bgr: np.ndarray, fmt: str, out: Optional[np.ndarray] = None) -> np.ndarray:
    """BGR image -> the framebuffer's bytes per pixel (OpenCV's SIMD conversions), into `out` if given."""
    return cv2.cvtColor(bgr, PACK_CODES[fmt], dst=out)


def claim_screen(device: str) -> socket.socket:
    """Hold the right to draw on `device` for this process's life, or raise ConfigError: one screen, one camera.

    An abstract Unix socket named after the device: it exists exactly while its process does (a crash or
    kill -9 frees it, no stale lock file), needs no writable folder under ProtectSystem=strict, and is seen
    by every pidetect on the machine, whatever its unit's private /tmp. Taken whether or not the device is
    there yet (HDMI plugged in later), so the second camera is refused at start, not when a screen appears.
    """
    import hashlib

    path = os.path.realpath(device)
    name = f"pidetect-screen:{path}" if len(path) < 80 else f"pidetect-screen:{hashlib.sha1(path.encode()).hexdigest()}"
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        claim.bind("\0" + name)
    except OSError as exc:
        claim.close()
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"cannot claim the screen {device}: {exc.strerror}") from None
        raise ConfigError(f"another pidetect already draws on {device} (display fb): only one camera may own the "
                          "HDMI screen; set display = \"mjpeg\" (or \"none\") for this camera, or stop the other "
                          "(systemctl list-units 'pidetect*')") from None
    return claim


class FramebufferDisplay:
    name = "fb"

    def __init__(self, device: str = "/dev/fb0", tty: str = "/dev/tty1", pixel_format: str = "auto",
                 sysfs: Path = Path("/sys/class/graphics")):
        self.device, self.tty_path, self.pixel_format, self.sysfs = Path(device), tty, pixel_format, sysfs
        self.fd: Optional[int] = None
        self.info: Optional[FbInfo] = None
        self.tty_fd: Optional[int] = None
        self._next_try = 0.0
        self._letterbox: Optional[BandedLetterbox] = None
        self._map: Optional[mmap.mmap] = None
        self._screen: Optional[np.ndarray] = None
        self._last_error = ""
        self.overlay = Overlay()
        self.claim: Optional[socket.socket] = None  # claim_screen's, released with the display

    def open(self) -> None:
        """Open the device now; raise DisplayUnavailable with the reason if it is not usable."""
        try:
            fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise DisplayUnavailable(f"cannot open {self.device}: {exc.strerror} (HDMI unplugged, no fbdev "
                                     "emulation, or the user is not in group video)") from None
        try:
            self.info = read_fb_info(fd, self.device, self.sysfs, self.pixel_format)
        except Exception:
            os.close(fd)
            raise
        try:
            self._map = mmap.mmap(fd, self.info.stride * self.info.height, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            os.close(fd)
            raise DisplayUnavailable(f"cannot map {self.device}: {exc}") from None
        self.fd = fd
        self._last_error = ""
        info = self.info
        self._letterbox = BandedLetterbox(info.width, info.height)
        # The screen itself as an array: rows `stride` bytes apart, so packing writes straight into it.
        channels = info.bits_per_pixel // 8
        self._screen = np.ndarray((info.height, info.width, channels), np.uint8, buffer=self._map,
                                  strides=(info.stride, channels, 1))
        log.info("framebuffer %s: %dx%d, %d bpp %s, stride %d", self.device, info.width, info.height,
                 info.bits_per_pixel, info.pixel_format, info.stride)
        self._console_graphics(True)

    def _console_graphics(self, on: bool) -> None:
        if not self.tty_path:
            return
        try:
            if on and self.tty_fd is None:
                self.tty_fd = os.open(self.tty_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            if self.tty_fd is not None:
                fcntl.ioctl(self.tty_fd, KDSETMODE, KD_GRAPHICS if on else KD_TEXT)
        except OSError as exc:
            if on:
                log.warning("cannot put %s in graphics mode (%s); the text console may draw over the picture. "
                            "The service needs CAP_SYS_TTY_CONFIG and group tty.", self.tty_path, exc.strerror)
        if not on and self.tty_fd is not None:
            os.close(self.tty_fd)
            self.tty_fd = None

    def show(self, result: Result, fps: Optional[float] = None) -> None:
        """The frame letterboxed onto the screen with the overlay drawn at screen resolution, a band of
        rows at a time (scaled, drawn, packed straight into the mapped framebuffer): no screen-sized copy."""
        if self.fd is None:
            if time.monotonic() < self._next_try:
                return
            try:
                self.open()
            except DisplayUnavailable as exc:
                self._next_try = time.monotonic() + RETRY_SECONDS
                if str(exc) != self._last_error:  # say it once, not every retry
                    log.warning("%s; retrying every %.0f s", exc, RETRY_SECONDS)
                    self._last_error = str(exc)
                return
        image = result.frame.image
        size = (self.info.width, self.info.height)
        shapes = self.overlay.layout(result, fps, size, self._letterbox.rect(image))
        try:
            for top, band in self._letterbox.bands(image):
                self.overlay.render(shapes, band, top)
                pack_pixels(band, self.info.pixel_format, out=self._screen[top:top + band.shape[0]])
        except (OSError, ValueError, cv2.error) as exc:
            log.warning("writing to %s failed (%s); display closed, retrying in %.0f s", self.device,
                        exc, RETRY_SECONDS)
            self._close_device()
            self._next_try = time.monotonic() + RETRY_SECONDS

    def _close_device(self) -> None:
        if self.fd is not None:
            self._screen = None
            self._map.close()
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        self._close_device()
        self._console_graphics(False)
        if self.claim is not None:
            self.claim.close()
            self.claim = None
