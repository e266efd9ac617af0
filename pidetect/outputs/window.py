"""A desktop window (cv2.imshow): a developer convenience only.

pip's opencv-python-headless has no GUI, and a GUI build aborts the whole process (SIGABRT, not
catchable) when no display is reachable, so both are checked before any window is opened.
"""

from __future__ import annotations

import os
import re

from typing import Optional

import cv2

from ..frames import Result
from .overlay import Overlay
from .display import DisplayUnavailable


def gui_backend() -> str:
    match = re.search(r"GUI:\s+(\S+)", cv2.getBuildInformation())
    return match.group(1) if match else "NONE"


class WindowDisplay:
    name = "window"

    def __init__(self, title: str = "pidetect"):
        backend = gui_backend()
        if backend == "NONE":
            raise DisplayUnavailable("--display window needs an OpenCV build with a GUI; this one is headless "
                                     "(opencv-python-headless). Use --display mjpeg and open the page in a browser, "
                                     "or --display fb on the Pi's HDMI console")
        if not os.environ.get("DISPLAY"):
            raise DisplayUnavailable("--display window needs a desktop session (DISPLAY is not set; Wayland-only "
                                     "sessions are not supported by OpenCV's window backends)")
        self.title = title
        self.overlay = Overlay()
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, result: Result, fps: Optional[float] = None) -> None:
        cv2.imshow(self.title, self.overlay.draw(result, fps))
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
