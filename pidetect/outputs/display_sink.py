"""The display sink: one thread that draws the newest result on every display (fb, mjpeg, window).

Displays run on their own thread, so drawing, JPEG encoding or a slow framebuffer never delays
inference. A result that arrives while the display is still drawing is not kept (keeping it would
keep its frame, 2.7 MB at 720p): the display shows the first result that arrives once it is free.
The display thread also runs at a lower CPU priority (display_nice, default nice 10, that thread
only): when the cores are saturated, detection keeps its rate and the screen takes what is left.
Measured here with the framebuffer on (1 interpreter, 3 interleaved rounds): nice 0 -> 0.76 of the
interpreter ceiling with 95 % of results shown; nice 10 -> 0.80-0.85 with about 60 % shown;
nice 19 -> 0.83 with 37 % shown. With spare CPU the screen still shows every result.
Each display draws the overlay itself, at its own resolution: the framebuffer at screen size,
the MJPEG view at frame size and only while someone watches.
A display that fails to start or breaks later is dropped with an error record; detection goes on.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Callable, List, Optional, TypeVar

from ..frames import Result
from ..slots import call_each

log = logging.getLogger(__name__)
T = TypeVar("T")


class DisplaySink:
    """The display thread: draws the newest result on every display, and draws what others ask it to.

    Snapshots are drawn here too (`draw_here`) when there is a display: OpenCV 5 keeps a text renderer
    per thread that draws text, 5.8 MB resident each (measured with opencv-python-headless 5.0), so
    one drawing thread instead of two keeps that memory once.
    """

    name = "display"
    JOB_TIMEOUT_S = 10.0  # a snapshot drawn here that takes longer: the thread is stuck, the caller gives up

    def __init__(self, displays: List, emit: Callable, nice: int = 10):
        self.displays, self.emit, self.nice = displays, emit, nice
        self._cond = threading.Condition()
        self._latest: Optional[Result] = None  # the newest result not yet drawn
        self._jobs: collections.deque = collections.deque()  # (job, Future) to run on this thread, in order
        self._stopping = False
        self._arrivals: collections.deque = collections.deque(maxlen=30)
        self._drawing = False
        self.shown = self.skipped = 0
        self.thread = threading.Thread(target=self._run, name="pidetect-display", daemon=True)
        self.thread.start()

    def handle(self, result: Result) -> None:
        self._arrivals.append(time.monotonic())
        with self._cond:
            if self._drawing:
                self.skipped += 1
                return
            self._latest = result
            self._cond.notify()

    def draw_here(self, job: Callable[[], T]) -> T:
        """Run `job` on the display thread before the next picture; return what it returns (or raise)."""
        done: Future = Future()
        with self._cond:
            if self._stopping or not self.thread.is_alive():
                return job()
            self._jobs.append((job, done))
            self._cond.notify()
        return done.result(timeout=self.JOB_TIMEOUT_S)

    def source_gap(self, gap) -> None:
        """Nothing to draw for a gap: the screen keeps the last picture until the camera is back."""

    def fps(self) -> Optional[float]:
        arrivals = list(self._arrivals)
        if len(arrivals) < 2 or arrivals[-1] == arrivals[0]:
            return None
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def _run(self) -> None:
        lower_this_thread_priority(self.nice)
        while True:
            with self._cond:
                while not self._jobs and self._latest is None and not self._stopping:
                    self._cond.wait()
                if self._jobs:
                    job, done = self._jobs.popleft()
                    result = None
                elif self._latest is not None:
                    job, result, self._latest, self._drawing = None, self._latest, None, True
                else:
                    break  # stopping, and nothing asked of this thread is left
            if job is not None:
                _run_job(job, done)
                continue
            fps = self.fps()
            call_each(self.displays, lambda display: display.show(result, fps), self.emit, "display",
                      close_quietly)
            del result  # let the frame go before waiting for the next one
            self.shown += 1
            with self._cond:
                self._drawing = False

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.thread.join(2)
        for display in self.displays:
            close_quietly(display)


def _run_job(job: Callable, done: Future) -> None:
    try:
        done.set_result(job())
    except BaseException as exc:  # the caller gets it, as if it had run the job itself
        done.set_exception(exc)


def lower_this_thread_priority(nice: int) -> None:
    """Linux gives each thread its own nice value: setpriority on the thread id lowers only this one."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (OSError, AttributeError) as exc:  # e.g. a unit whose SystemCallFilter refuses setpriority
        log.warning("the display thread keeps its CPU priority (%s): a busy screen will slow detection; "
                    "set display_nice = 0 to accept that", exc)


def close_quietly(display) -> None:
    try:
        display.close()
    except Exception as exc:
        log.warning("closing display %s: %s", display.name, exc)
