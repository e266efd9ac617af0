"""The moving parts: a capture thread, a one-frame slot, an inference worker, and the sinks.

    Source --Frame--> LatestFrameSlot --> InferencePool (1..n workers) --Result--> TrackingStage
        --Result with events and zones--> sinks (events, displays)

The slot keeps only the newest frame, so inference always runs on the freshest image and no
backlog can build up: a detection is at most about one inference plus one frame interval old.
File sources are the exception: unless paced with --realtime they hand over every frame and wait
for the worker (batch processing drops nothing). Capture/decoding of the next frame overlaps
inference of the current one.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Protocol, Sequence

from ..capture.gate import MotionGate
from ..capture.motion import MotionDetector
from ..capture.sources import Source, SourceError
from ..frames import Frame, Result, SourceGap
from ..inference.edgetpu import AcceleratorLost
from ..inference.regions import RegionPlanner, RegionSettings
from ..pixels import as_bgr8
from ..records import INFO, WARNING, log_record
from ..slots import FollowedBoxes, LatestFrameSlot, RecordFn, call_each
from ..tracking.stage import TrackingStage

log = logging.getLogger(__name__)


class CaptureThread(threading.Thread):
    """Opens the source, reads frames into the slot, reconnects with capped exponential backoff.

    Every way a live source can fail (it will not open, or it opened and then stopped) goes through
    the same backoff, so a camera command that exits at once is retried at most once a second at
    first and every reconnect_max_delay seconds later, never in a loop. The delay starts over only
    after a session that delivered frames for STEADY_SECONDS. An unexpected exception is a bug:
    it is logged with its cause and `failed` is set, so the service exits non-zero and systemd's
    Restart=on-failure acts.
    """

    STEADY_SECONDS = 10.0
    NOMINAL_FILE_FPS = 25.0  # a file without a frame rate (an image sequence): video time runs at this rate

    def __init__(self, source: Source, slot: LatestFrameSlot, record: RecordFn, stop: threading.Event,
                 realtime: bool = False, loop: bool = False, max_delay: float = 30.0,
                 gate: Optional[MotionGate] = None, keep_motion_boxes: bool = False,
                 every_frame: Optional[Callable[[Frame, float], None]] = None,
                 motion: Optional[MotionDetector] = None):
        super().__init__(name="pidetect-capture", daemon=True)
        self.source, self.slot, self.record, self.stop = source, slot, record, stop
        self.realtime, self.loop, self.max_delay = realtime, loop, max_delay
        self.gate, self.keep_motion_boxes = gate, keep_motion_boxes
        # without a gate, a motion detector of its own when regions want motion boxes (a file run)
        self.motion = motion
        self._motion_at: Optional[float] = None
        # the recorder's feed: gets every frame, decoded even while the gate rests, with the source's rate
        self.every_frame = every_frame
        self.seq = 0  # frames the source delivered, read or skipped: numbers frames, gives the capture rate
        self.first_frame = threading.Event()
        self.failed = False

    def _source_record(self, state: str, detail: str = "", priority: int = INFO) -> None:
        self.record({"event": "source", "state": state, "source": self.source.name, "detail": detail}, priority)

    def run(self) -> None:
        try:
            self._capture()
        except Exception as exc:
            self.failed = True
            log.error("capture thread failed: %s: %s", type(exc).__name__, exc, exc_info=True)
        finally:
            self.source.close()
            self.slot.close()

    def _capture(self) -> None:
        delay, attempts = 1.0, 0
        while not self.stop.is_set():
            if os.environ.get("PIDETECT_TEST_CAPTURE_RAISES"):  # the tests' way to reach the handler above
                raise RuntimeError("injected by PIDETECT_TEST_CAPTURE_RAISES")
            try:
                self.source.open()
            except SourceError as exc:
                attempts += 1
                self._source_record("retrying", f"{exc}; attempt {attempts}, next in {delay:g} s", WARNING)
                self.stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            attempts = 0
            if self.source.native_fps > 0:
                self._source_record("opened", f"{self.source.native_fps:g} fps")
            elif not self.source.live:
                self._source_record("opened", f"no frame rate in the file: video time (the motion gate's clock, "
                                    f"--realtime pacing) runs at a nominal {self.NOMINAL_FILE_FPS:g} fps")
            else:
                self._source_record("opened")
            opened = time.monotonic()
            delivered = self._read_until_end()
            why = self.source.failure_detail()
            self.source.close()
            if self.stop.is_set():
                break
            if not self.source.live:
                self._source_record("eof", f"{delivered} frame(s)")
                if self.loop and delivered:
                    self.slot.put_gap(SourceGap(self.seq, time.time()), self.stop)
                    if self.gate is not None:
                        self.gate.reset()
                    continue
                break
            if delivered and time.monotonic() - opened >= self.STEADY_SECONDS:
                delay = 1.0
            detail = f"the source stopped delivering frames after {delivered} frame(s)"
            self._source_record("lost", detail + (f": {why}" if why else "") + f"; reopening in {delay:g} s",
                                WARNING)
            if self.gate is not None:
                self.gate.reset()
            self.slot.put_gap(SourceGap(self.seq, time.time()), self.stop)
            self.stop.wait(delay)
            delay = min(delay * 2, self.max_delay)

    def _read_until_end(self) -> int:
        """Read frames until the source ends or fails; return how many were delivered."""
        delivered = 0
        # a file's frame rate; a file without one (an image sequence says -1) gets a nominal rate, so that
        # video time, never the wall clock, drives its motion gate
        video_fps = 0.0 if self.source.live else (self.source.native_fps if self.source.native_fps > 0
                                                  else self.NOMINAL_FILE_FPS)
        paced = self.realtime and video_fps > 0
        interval = 1.0 / video_fps if paced else 0.0
        batch = not self.source.live and not self.realtime
        next_due = time.monotonic()
        while not self.stop.is_set():
            # the gate's clock: video time for a file (paced or not, the same frames are gated), else wall time
            now = (self.seq + 1) / video_fps if video_fps > 0 else time.monotonic()
            look = self.gate is None or self.gate.wants_frame(now)
            if look or self.every_frame is not None:
                image = self.source.read()
                if image is None:
                    break
                image = as_bgr8(image)  # grey, BGRA, 16-bit or float frames: 8-bit BGR from here on
            elif not self.source.skip():
                break
            if paced:
                next_due += interval
                pause = next_due - time.monotonic()
                if pause > 0:
                    self.stop.wait(pause)
            self.seq += 1
            delivered += 1
            if self.every_frame is not None:
                self.every_frame(Frame(image, self.seq, time.time(), self.source.name, clock=now),
                                 video_fps or self.source.native_fps or self.NOMINAL_FILE_FPS)
            if not look:
                continue  # the idle gate did not even look: the frame was not decoded (unless recorded)
            motion, moving = (), None
            if self.gate is not None:
                infer, motion = self.gate.decide(image, now)
                moving = tuple(motion)
                if not infer:
                    continue  # nothing moves and nothing is due: the model rests
            elif self.motion is not None:
                elapsed = now - self._motion_at if self._motion_at is not None and now > self._motion_at else 0.0
                self._motion_at = now
                motion = moving = tuple(self.motion.update(image, elapsed).boxes)
            self.slot.put(Frame(image, self.seq, time.time(), self.source.name,
                                motion if self.keep_motion_boxes else (), clock=now, moving=moving),
                          wait_for_taker=batch, stop=self.stop)
            self.first_frame.set()
        return delivered


class Sink(Protocol):
    name: str

    def handle(self, result: Result) -> None: ...

    def source_gap(self, gap: SourceGap) -> None: ...  # the stream broke: forget what was in view

    def close(self) -> None: ...


# (the error, a callable that keeps the worker's heartbeat fresh while it waits) -> a Detector, or None to stop
RecoverFn = Callable[[AcceleratorLost, Callable[[], None]], Optional[object]]


class InferencePool:
    """One or more inference workers sharing the slot; results reach the sinks in capture order.

    With one worker this is the plain loop. With two (each with its own one- or few-thread
    interpreter) consecutive frames are inferred in parallel, which uses the cores better than one
    interpreter with more threads; results are re-ordered so the tracker always sees frames in the
    order they were captured, and the tracking stage (filters, tracker, zones) runs on each in that
    order before the sinks get it. `heartbeat` is the oldest worker's, so a single stuck worker stops
    the watchdog pings.
    """

    def __init__(self, detectors: Sequence, slot: LatestFrameSlot, tracking: TrackingStage, sinks: List[Sink],
                 record: RecordFn, stop: threading.Event, on_inference: Callable[[float, float, int], None],
                 max_frames: int = 0, stall_after_frames: int = 0, recover: Optional[RecoverFn] = None,
                 regions: Optional[RegionSettings] = None, followed: Optional[FollowedBoxes] = None):
        self.slot, self.tracking, self.sinks, self.record, self.stop = slot, tracking, sinks, record, stop
        self.detectors = detectors  # a list the service keeps: a replaced detector is replaced there too
        self.recover = recover  # a lost accelerator -> the detector to go on with (None: stop)
        self.on_inference, self.max_frames = on_inference, max_frames
        self.stall_after_frames = stall_after_frames  # test hook: simulate a hung interpreter
        self.regions, self.followed = regions, followed  # where the model looks in a large frame
        self._take_lock = threading.Lock()  # one taker at a time, so take order is capture order
        self._lock = threading.Lock()  # guards the order book and the sinks
        self._zones_checked_for = (0, 0)
        self._order: Deque[int] = collections.deque()  # seqs taken, oldest first
        self._done: Dict[int, Result] = {}  # finished but waiting for an older frame
        self.taken = 0
        self.processed = 0
        self.failed = False
        self.finished = threading.Event()
        self.workers = [InferenceWorker(d, self, n) for n, d in enumerate(detectors)]
        self._running = len(self.workers)

    @property
    def heartbeat(self) -> float:
        return min(worker.heartbeat for worker in self.workers)

    @property
    def quota_reached(self) -> bool:
        return bool(self.max_frames) and self.taken >= self.max_frames

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def join(self, timeout: float) -> None:
        for worker in self.workers:
            worker.join(timeout)

    @staticmethod
    def _key(item) -> object:
        """Place in the order book: a frame's seq, or the gap after a seq."""
        return ("gap", item.after_seq) if isinstance(item, SourceGap) else item.seq

    def take(self, timeout: float):
        """The next Frame or SourceGap for a worker, or None."""
        with self._take_lock:
            if self.quota_reached:
                return None
            item = self.slot.take(timeout)
            if item is not None:
                with self._lock:
                    self._order.append(self._key(item))
                    if isinstance(item, Frame):
                        self.taken += 1
            return item

    def deliver(self, done) -> None:
        """A Result (or a SourceGap) is finished; pass on everything that is now next in capture order."""
        with self._lock:
            self._done[self._key(done if isinstance(done, SourceGap) else done.frame)] = done
            while self._order and self._order[0] in self._done:
                ready = self._done.pop(self._order.popleft())
                if isinstance(ready, SourceGap):
                    ready = dataclasses.replace(ready, events=self.tracking.flush(ready.after_seq))
                    call_each(self.sinks, lambda sink: sink.source_gap(ready), self.record, "output")
                else:
                    self._check_zones_fit(ready.frame)
                    ready = self.tracking.update(ready)
                    call_each(self.sinks, lambda sink: sink.handle(ready), self.record, "output")
                    self.processed += 1

    def _check_zones_fit(self, frame: Frame) -> None:
        """Said once per frame size: a zone no object can ever stand in (its points beyond the picture)."""
        height, width = frame.image.shape[:2]
        if (width, height) == self._zones_checked_for:
            return
        self._zones_checked_for = (width, height)
        for name in self.tracking.zones.outside(width, height):
            self.record(log_record("warning", "pidetect.zones", f"zone {name} lies entirely outside the "
                                   f"{width}x{height} picture: nothing can enter it; check its points (fractions of "
                                   "the frame 0..1, or this camera's pixels)"), WARNING)

    def delivering(self):
        """The lock deliveries hold: the service flushes the tracking stage under it at shutdown."""
        return self._lock

    def worker_exited(self, failed: bool) -> None:
        with self._lock:
            self.failed = self.failed or failed
            self._running -= 1
            if self._running == 0 or failed:
                self.finished.set()


class InferenceWorker(threading.Thread):
    """Runs its own Detector on the newest frame the pool hands out.

    `heartbeat` is bumped on every loop pass, including idle waits, so the service can tell a
    worker that waits for a camera (fine) from one stuck inside an invoke (watchdog must fire).
    """

    def __init__(self, detector, pool: InferencePool, number: int):
        super().__init__(name=f"pidetect-inference-{number}", daemon=True)
        self.detector, self.pool, self.number = detector, pool, number
        self.heartbeat = time.monotonic()
        self.planner = None
        if pool.regions is not None and pool.regions.mode != "off":
            self.planner = RegionPlanner(pool.regions, min(detector.input_width, detector.input_height))

    def _look(self, frame: Frame) -> Result:
        """The whole frame, or the regions the planner picks (motion and the followed objects)."""
        if self.planner is not None:
            height, width = frame.image.shape[:2]
            followed = self.pool.followed.get() if self.pool.followed is not None else ()
            planned = self.planner.regions(width, height, tuple(frame.moving or ()) + followed, frame.clock)
            if planned is not None:
                result = self.detector.detect_regions(frame, planned)
                return result if self.planner.settings.show else dataclasses.replace(result, regions=())
        return self.detector.detect(frame)

    def run(self) -> None:
        pool, failed = self.pool, False
        try:
            while not pool.stop.is_set():
                self.heartbeat = time.monotonic()
                frame = pool.take(timeout=0.25)
                if frame is None:
                    if pool.slot.finished or pool.quota_reached:
                        break
                    continue
                if isinstance(frame, SourceGap):
                    pool.deliver(frame)
                    continue
                if pool.stall_after_frames and pool.taken > pool.stall_after_frames:
                    log.warning("test hook: inference worker stalls now (PIDETECT_TEST_STALL_AFTER_FRAMES)")
                    pool.stop.wait()
                    break
                result = self.detect(frame)
                if result is None:
                    break
                pool.on_inference(result.inference_ms, (time.time() - frame.ts) * 1000, result.model_calls)
                pool.deliver(result)
                del frame, result  # do not hold a frame (2.7 MB at 720p) while waiting for the next one
        except Exception:
            failed = True
            log.exception("inference worker failed")
        finally:
            pool.worker_exited(failed)

    def detect(self, frame: Frame) -> Optional[Result]:
        """The frame's Result; through a lost accelerator, from the detector the pool's `recover` gives
        instead (the same frame again: every frame taken must be delivered). None: stopped meanwhile."""
        while True:
            try:
                return self._look(frame)
            except AcceleratorLost as exc:
                if self.pool.recover is None:
                    raise
                replacement = self.pool.recover(exc, self.beat)
                if replacement is None:
                    return None
                self.detector = replacement
                if isinstance(self.pool.detectors, list):
                    self.pool.detectors[self.number] = replacement

    def beat(self) -> None:
        self.heartbeat = time.monotonic()
