"""What the stages hand things over with: the one-frame slot and the call-each-sink guard.

Shared by the daemon's pipeline and the outputs' display thread, so it sits below both.
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional

from .frames import Frame, SourceGap
from .records import ERR, log_record

RecordFn = Callable[[dict, int], None]


class LatestFrameSlot:
    """Holds at most one frame. A new frame replaces an untaken one, which counts as dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Optional[Frame] = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, wait_for_taker: bool = False, stop: Optional[threading.Event] = None) -> None:
        with self._cond:
            if wait_for_taker:
                while self._frame is not None and not self._closed and not (stop and stop.is_set()):
                    self._cond.wait(0.1)
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def put_gap(self, gap: SourceGap, stop: Optional[threading.Event] = None) -> None:
        """Hand over a gap marker once the last frame has been taken (it is not a frame: not counted)."""
        with self._cond:
            while self._frame is not None and not self._closed and not (stop and stop.is_set()):
                self._cond.wait(0.1)
            self._frame = gap
            self._cond.notify_all()

    def take(self, timeout: float):
        """The newest frame (or a SourceGap), or None after `timeout`."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        """No more frames will come (end of a file source)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and self._frame is None


def call_each(targets: List, call: Callable, record: RecordFn, kind: str,
              on_failure: Callable = lambda target: None) -> None:
    """Call every target; one that raises is removed from `targets` with an error record, the rest go on.

    Why: one broken output (a display, a sink) must never stop detection or the other outputs.
    """
    for target in list(targets):
        try:
            call(target)
        except Exception as exc:
            targets.remove(target)
            message = f"{kind} {target.name} failed and was disabled: {type(exc).__name__}: {exc}"
            record(log_record("error", "pidetect.pipeline", message), ERR)
            on_failure(target)


class InView:
    """How many objects the tracker follows now: written by the events sink, read by the motion gate.

    The one value that flows back up the pipeline, kept to a single integer behind a lock so the
    capture stage never sees the tracker itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def set(self, count: int) -> None:
        with self._lock:
            self._count = count

    @property
    def occupied(self) -> bool:
        with self._lock:
            return self._count > 0


class FollowedBoxes:
    """Where the tracker expects its objects: written by the tracking stage, read by the inference workers so
    that regions keep looking at a slow or stationary object (inference/regions.py). A tuple behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boxes: tuple = ()

    def set(self, boxes) -> None:
        with self._lock:
            self._boxes = tuple(boxes)

    def get(self) -> tuple:
        with self._lock:
            return self._boxes
