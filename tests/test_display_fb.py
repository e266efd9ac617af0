"""The HDMI framebuffer, tested on a plain file plus a fake sysfs folder.

Pixels are checked with a reference packer written here from the bitfields alone (numpy shifts),
independent of the OpenCV conversions the display uses.
"""

import struct

import cv2
import numpy as np
import pytest

from daemon import of, run_daemon
from pidetect.tools.measure import fake_framebuffer
from pidetect.tools.demo import write_scene_video
from pidetect.outputs.fb import FBIOGET_VSCREENINFO, FbInfo, parse_fix_line_length, parse_var_screeninfo
from pidetect.outputs.letterbox import fit_rect, letterbox
from pidetect.outputs.overlay import class_colour

BITFIELDS = {  # format -> bpp, (red, green, blue) as (offset, length)
    "rgb565": (16, ((11, 5), (5, 6), (0, 5))),
    "bgr565": (16, ((0, 5), (5, 6), (11, 5))),
    "xrgb8888": (32, ((16, 8), (8, 8), (0, 8))),
}


def reference_pack(bgr, bpp, fields):
    """Pack BGR pixels into framebuffer words from the bitfields alone."""
    b, g, r = (bgr[..., i].astype(np.uint32) for i in range(3))
    word = np.zeros(bgr.shape[:-1], np.uint32)
    for value, (offset, length) in zip((r, g, b), fields):
        word |= (value >> (8 - length)) << offset
    return word.astype(np.uint16 if bpp == 16 else np.uint32)


def read_words(fb_file, width, height, stride, bpp, fields):
    """The colour bits of every pixel (the X byte of 32 bpp formats is don't-care and masked off)."""
    raw = np.frombuffer(fb_file.read_bytes(), np.uint8).reshape(height, stride)
    dtype = np.dtype("<u2") if bpp == 16 else np.dtype("<u4")
    words = raw[:, : width * bpp // 8].copy().view(dtype).reshape(height, width)
    mask = sum(((1 << length) - 1) << offset for offset, length in fields)
    return words & np.array(mask, dtype), raw


def make_fb(tmp_path, width, height, bpp, stride):
    return fake_framebuffer(tmp_path, width, height, bpp, stride)


@pytest.fixture(scope="module")
def cat_clip(tmp_path_factory):
    """1280x720 clip ending on the cat photo, so the screen holds the cat with its box at the end."""
    path = tmp_path_factory.mktemp("fbclip") / "cat.avi"
    write_scene_video(path, 1280, 720, fps=10, frames_per_scene=12, blank_frames=3,
                      scenes=[("chelsea.png", "cat")], trailing_blank=False)
    capture = cv2.VideoCapture(str(path))
    last = None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        last = frame
    capture.release()
    return path, last


@pytest.mark.parametrize("fmt,stride_pad", [("rgb565", 0), ("bgr565", 0), ("xrgb8888", 0), ("rgb565", 64)],
                         ids=["rgb565", "bgr565", "xrgb8888-32bpp", "rgb565-wide-stride"])
def test_framebuffer_holds_scaled_frame_and_box(tmp_path, cat_clip, model_paths, fmt, stride_pad):
    width, height = 1920, 1080
    bpp, fields = BITFIELDS[fmt]
    stride = width * bpp // 8 + stride_pad
    fb, sysfs = make_fb(tmp_path, width, height, bpp, stride)
    # paced like a camera: unpaced, the int8 default infers faster than a 1080p screen is drawn, and
    # results that arrive while it draws are not kept (by design), so the last picture could be an old one
    # the whole frame at every look (regions off): the box of the entered record is then the box of every frame,
    # so the last picture on the screen has it where the record says (regions alternate whole and cropped looks)
    args = ["--source", cat_clip[0], "--realtime", "--display", "fb", "--fb-device", fb, "--fb-tty", "",
            "--regions", "off"]
    if fmt == "bgr565":
        args += ["--fb-format", "bgr565"]  # a plain file has no bitfields to read; a real device reports them
    code, records, stderr = run_daemon(*args, env={"PIDETECT_SYSFS": str(sysfs)})
    assert code == 0, stderr
    assert not [r for r in records if r.get("level") == "error"], records
    cat = of(records, "detection", label="cat", state="entered")[0]
    words, raw = read_words(fb, width, height, stride, bpp, fields)
    if stride_pad:
        assert not raw[:, width * bpp // 8:].any(), "the row padding must stay untouched"
    # the frame, letterboxed 1280x720 -> 1920x1080 (scale 1.5), in a patch free of overlay drawing
    expected, _ = letterbox(cat_clip[1], width, height)
    x1, y1, x2, y2 = cat["box"]
    ox, oy, sw, sh = fit_rect(1280, 720, width, height)
    scale = sw / 1280
    patch = (slice(int(oy + (y1 + 60) * scale), int(oy + (y2 - 60) * scale)),
             slice(int(ox + (x1 + 60) * scale), int(ox + (x2 - 60) * scale)))
    same = np.mean(words[patch] == reference_pack(expected, bpp, fields)[patch])
    assert same > 0.97, f"only {same:.1%} of the patch matches the reference-packed frame"
    # the box's left edge, half-way down, is the cat's class colour
    colour = np.array(class_colour(cat["class_id"]), np.uint8).reshape(1, 1, 3)
    want = reference_pack(colour, bpp, fields)[0, 0]
    edge_x, mid_y = round(ox + x1 * scale), round(oy + (y1 + y2) / 2 * scale)
    assert want in words[mid_y, edge_x - 1: edge_x + 2], (hex(want), [hex(w) for w in words[mid_y, edge_x - 3:edge_x + 4]])


def test_var_and_fix_screeninfo_parsing():
    """The ioctl structs of a real BGR565 device (vfb), laid out as the kernel fills them."""
    var = struct.pack("8I12I", 1024, 768, 1024, 768, 0, 0, 16, 0, 0, 5, 0, 5, 6, 0, 11, 5, 0, 0, 0, 0)
    var += bytes(160 - len(var))
    width, height, bpp, red, green, blue = parse_var_screeninfo(var)
    info = FbInfo(width, height, bpp, 2048, red, green, blue)
    assert (width, height, bpp) == (1024, 768, 16) and info.pixel_format == "bgr565"
    fix = bytearray(80 if struct.calcsize("L") == 8 else 68)
    fix[:8] = b"vfb\0\0\0\0\0"
    offset = 48 if struct.calcsize("L") == 8 else 44
    struct.pack_into("I", fix, offset, 2112)
    assert parse_fix_line_length(bytes(fix)) == 2112
    assert FBIOGET_VSCREENINFO == 0x4600


def test_framebuffer_absent_then_plugged_in(tmp_path, cat_clip, model_paths):
    """HDMI unplugged at boot: the daemon keeps detecting, and draws once fb0 appears."""
    from daemon import Daemon

    fb = tmp_path / "fb0"
    sysfs = tmp_path / "sys"
    daemon = Daemon("--source", cat_clip[0], "--realtime", "--loop", "--display", "fb", "--fb-device", fb,
                    "--fb-tty", "", env={"PIDETECT_SYSFS": str(sysfs)})
    try:
        daemon.wait_for(lambda r: r.get("event") == "log" and "cannot open" in r.get("message", ""), what="fb warning")
        daemon.wait_for(lambda r: r.get("event") == "detection", what="detection without a screen")
        make_fb(tmp_path, 640, 480, 16, 1280)
        import time

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not np.frombuffer(fb.read_bytes(), np.uint8).any():
            time.sleep(0.2)
        assert np.frombuffer(fb.read_bytes(), np.uint8).any(), "nothing drawn after fb0 appeared"
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    warnings = [r for r in daemon.records if r.get("event") == "log" and "cannot open" in r.get("message", "")]
    assert len(warnings) == 1  # said once, not every retry


def test_failing_display_is_dropped_and_others_go_on(tmp_path, cat_clip, model_paths):
    import socket

    fb, sysfs = make_fb(tmp_path, 640, 480, 16, 1280)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, records, stderr = run_daemon("--source", cat_clip[0], "--display", "fb,mjpeg,window", "--fb-device", fb,
                                           "--fb-tty", "", "--mjpeg-port", port, "--web-best-effort",
                                           env={"PIDETECT_SYSFS": str(sysfs)})
    assert code == 0, stderr
    errors = [r["message"] for r in records if r.get("level") == "error"]
    assert any("display mjpeg unavailable" in m and f"127.0.0.1:{port}" in m for m in errors), errors
    assert any("display window unavailable" in m and "headless" in m for m in errors), errors
    assert np.frombuffer(fb.read_bytes(), np.uint8).any()
    assert of(records, "detection", label="cat")
