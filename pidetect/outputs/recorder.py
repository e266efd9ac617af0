"""The recorder: an H.264 clip of every event, from `pre_capture` seconds before the object appeared to
`post_capture` seconds after it left; objects whose clips overlap share one (a review item).

Every captured frame is encoded (the capture thread hands each one over, decoded even when the motion
gate rests) into short segments on a tmpfs (`encoder.py`): the last few seconds stay there as the
pre-roll ring, and nothing reaches the SD card while nothing happens. When an object enters, the clip
starts with the ring's segments reaching back `pre_capture` seconds; the segments that follow are
appended until `post_capture` seconds after the last of its objects left; then the clip is finalised
into an MP4 (`clips.py`) and a `clip` record (state `saved`) goes to every log, MQTT and the event store.

A source that delivers H.264 itself (a `pipe:` with `pipe_codec = "h264"`: rpicam-vid's hardware encoder, an
RTSP camera copied by FFmpeg) hands its bytes over too (`feed_h264`): then the segments are cut from the
camera's own stream (`-c copy`), no frame is encoded, and the decoded frames only say when each frame of
the stream was captured (the n-th frame decoded is the n-th frame of the stream).

One thread does all of it, fed by a queue: the capture thread (frames) and the inference delivery (the
tracking stage's events) only put things in, never wait. Frames the encoder cannot take in time are
dropped (said once) and the video repeats the last frame instead, so video time keeps pace with the
capture clock: stream time t is capture clock `clock0 + t` for the whole session. A lost camera (a
SourceGap) or the service stopping ends the open clip with what was recorded.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Iterable, List, Optional, Set

from ..files import unlink_quietly
from ..frames import Frame, Result, TrackEvent
from ..records import ERR, INFO, WARNING, log_record
from .clips import ClipFile, ClipFolder, ClipWriteError, clip_name
from .encoder import KEYFRAME_SECONDS, EncoderError, Segment, SegmentEncoder

log = logging.getLogger(__name__)
MAX_QUEUED_FRAMES = 4  # raw frames waiting for the encoder (2.7 MB each at 720p): more are dropped
MAX_REPEAT_SECONDS = 2.0  # a longer hole in the frames starts a new encoder session instead of a still picture
RESTART_DELAY_S = 5.0
MAX_WAITING_CHUNKS = 256  # of the H.264 pipe's 64 KB: what may wait for the first decoded frame  # after the encoder failed, before it is started again


@dataclass
class OpenClip:
    """The review item being recorded: the clip and the objects in it."""

    number: int
    want_start: float  # stream time the clip should begin (pre_capture before the first object)
    file: Optional[ClipFile]
    track_ids: Set[int] = field(default_factory=set)
    labels: List[str] = field(default_factory=list)
    zones: List[str] = field(default_factory=list)
    in_view: Set[int] = field(default_factory=set)
    end: Optional[float] = None  # stream time it ends, once the last object has left


class Recorder:
    """The recording sink: `feed` from the capture thread, `handle`/`source_gap` from the pipeline."""

    name = "recorder"

    def __init__(self, folder: ClipFolder, buffer_dir: Path, ffmpeg: str, encoder: str, pre_capture: float,
                 post_capture: float, emit: Callable, required_zones: Iterable[str] = ()):
        self.folder, self.ffmpeg, self.encoder_name = folder, ffmpeg, encoder
        self.pre, self.post, self.emit = pre_capture, post_capture, emit
        self.required_zones = frozenset(required_zones)
        remove_stale_rings(Path(buffer_dir))
        self.ring_dir = Path(buffer_dir) / f"pidetect-ring-{os.getpid()}-{id(self):x}"
        self.inbox: "queue.Queue" = queue.Queue()
        self._queued_frames = 0
        self._count_lock = threading.Lock()
        self.frames_dropped = 0
        self._drop_said = False
        self.encoder: Optional[SegmentEncoder] = None
        self.clock0 = 0.0  # capture clock of the session's stream time 0
        self.ts_at_clock0 = 0.0  # wall time of it
        self.ring: Deque[Segment] = collections.deque()
        self.clip: Optional[OpenClip] = None
        self.copying = False  # the source sends H.264: segments are cut from it, nothing is encoded
        self._h264_waiting: List[bytes] = []  # bytes that came before the session's first frame (and its rate)
        self._frame_times: Deque = collections.deque(maxlen=3000)  # (capture clock, stream time) of recent frames
        self.clips_saved = 0
        self._number = 0
        self._failure: Optional[str] = None  # the current episode of failed clip writes, said once
        self._failure_lock = threading.Lock()  # the recorder's thread and the finishers both say failures
        self._finishers: List[threading.Thread] = []
        self._encoder_failed_at: Optional[float] = None
        self._encoder_failure_said = False
        self.ring_dir.mkdir(parents=True, exist_ok=True)
        self.thread = threading.Thread(target=self._run, name="pidetect-recorder", daemon=True)
        self.thread.start()

    # --- called by other threads: put and return -------------------------------------------------
    def feed(self, frame: Frame, fps: float) -> None:
        """Every decoded frame (capture thread). Never blocks: a frame the encoder has no room for is dropped.
        When copying the camera's H.264, only the frame's time is passed on (no picture, never dropped)."""
        if self.copying:
            self.inbox.put(("tick", frame.clock, (frame.ts, fps)))
            return
        with self._count_lock:
            if self._queued_frames >= MAX_QUEUED_FRAMES:
                self.frames_dropped += 1
                return
            self._queued_frames += 1
        self.inbox.put(("frame", frame, fps))

    def feed_h264(self, chunk: bytes) -> None:
        """The camera's H.264 bytes as they came (the H.264 pipe source's pump thread)."""
        self.inbox.put(("h264", chunk, None))

    def handle(self, result: Result) -> None:
        if result.events:
            self.inbox.put(("events", result.events, result.frame.clock))

    def source_gap(self, gap) -> None:
        self.inbox.put(("gap", gap.events, None))

    def close(self) -> None:
        self.inbox.put(("stop", None, None))
        self.thread.join(30)
        for finisher in list(self._finishers):
            finisher.join(30)

    def metrics_fields(self) -> dict:
        """For the metrics record: the pre-roll's RAM, frames the encoder could not take, clips saved."""
        return {"record_ring_mb": round(self.ring_bytes / 2**20, 2), "record_frames_dropped": self.frames_dropped,
                "clips_saved": self.clips_saved}

    @property
    def ring_bytes(self) -> int:
        """What the pre-roll ring holds on the tmpfs now (its memory: a tmpfs lives in RAM)."""
        return sum(segment.size for segment in list(self.ring))

    # --- the recorder's thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                try:
                    kind, payload, extra = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    self._collect_segments()
                    continue
                if kind == "frame":
                    with self._count_lock:
                        self._queued_frames -= 1
                    self._frame(payload, extra)
                    del payload  # do not hold a frame while waiting for the next
                elif kind == "tick":
                    self._copied_frame(payload, *extra)
                elif kind == "h264":
                    self._h264(payload)
                elif kind == "events":
                    self._events(payload, extra)
                elif kind == "gap":
                    self._events(payload, None)
                    self._end_session()
                elif kind == "stop":
                    self._end_session()
                    break
                self._collect_segments()
        except Exception as exc:  # a bug: said, and recording stops; detection goes on
            self.emit(log_record("error", "pidetect.recorder", f"recording stopped: {type(exc).__name__}: {exc}"),
                      ERR)
            log.exception("recorder failed")
            self._stop_encoder()
        finally:
            shutil.rmtree(self.ring_dir, ignore_errors=True)

    def _h264(self, chunk: bytes) -> None:
        self.copying = True
        if self.encoder is None:
            self._h264_waiting.append(chunk)
            if len(self._h264_waiting) > MAX_WAITING_CHUNKS:  # no frame decoded from it for long: not kept
                del self._h264_waiting[0]
            return
        try:
            self.encoder.write_bytes(chunk)
        except EncoderError as exc:
            self._encoder_failed(str(exc))

    def _frame(self, frame: Frame, fps: float) -> None:
        if self.copying:
            self._copied_frame(frame.clock, frame.ts, fps)
            return
        height, width = frame.image.shape[:2]
        encoder = self.encoder
        if encoder is not None and (encoder.width, encoder.height, encoder.fps) != (width, height, fps):
            self._end_session()  # the camera came back at another size or rate: a new session
            encoder = None
        if encoder is not None:
            target = round((frame.clock - self.clock0) * fps)  # the frame number this picture belongs at
            if target - encoder.frames_written > MAX_REPEAT_SECONDS * fps:
                self._end_session()
                encoder = None
        if encoder is None:
            if self._encoder_failed_at is not None and time.monotonic() - self._encoder_failed_at < RESTART_DELAY_S:
                return
            encoder = self._start_encoder(width, height, fps, frame.clock, frame.ts)
            if encoder is None:
                return
        target = round((frame.clock - self.clock0) * fps)
        if self.frames_dropped and not self._drop_said:
            self._drop_said = True
            self.emit(log_record("warning", "pidetect.recorder", "the encoder cannot keep up with the camera: "
                                 "frames are dropped and the clip repeats the last one (lower the camera's "
                                 "resolution or frame rate, or use a hardware encoder)"), WARNING)
        try:
            while encoder.frames_written <= target:  # repeats the picture over frames that were dropped
                encoder.write(frame.image)
        except EncoderError as exc:
            self._encoder_failed(str(exc))
            return
        self._frame_times.append((frame.clock, encoder.stream_time - 1 / fps))
        self._maybe_finish()

    def _copied_frame(self, clock: float, ts: float, fps: float) -> None:
        """A frame decoded from the camera's H.264: the copier's clock moves one frame on."""
        if self.encoder is None:
            if self._encoder_failed_at is not None and time.monotonic() - self._encoder_failed_at < RESTART_DELAY_S:
                self._h264_waiting.clear()
                return
            if self._start_encoder(0, 0, fps, clock, ts, "copy") is None:
                return
            waiting, self._h264_waiting = self._h264_waiting, []
            for chunk in waiting:
                self._h264(chunk)
            if self.encoder is None:
                return
        self._frame_times.append((clock, self.encoder.stream_time))
        self.encoder.frames_written += 1  # the stream's frames, counted by their decoded copies
        self._maybe_finish()

    def _start_encoder(self, width: int, height: int, fps: float, clock: float, ts: float,
                       encoder: Optional[str] = None) -> Optional[SegmentEncoder]:
        prefix = f"s{self._number:06d}-{int(time.monotonic() * 1000) % 10**9:09d}-"
        try:
            self.encoder = SegmentEncoder(self.ffmpeg, encoder or self.encoder_name, width, height, fps,
                                          self.ring_dir, prefix)
        except EncoderError as exc:
            self._encoder_failed(str(exc))
            return None
        self.clock0, self.ts_at_clock0 = clock, ts
        self._encoder_failed_at = None
        return self.encoder

    def _encoder_failed(self, why: str) -> None:
        """Said once until the encoder works again (a segment arrives): a broken FFmpeg is retried every
        RESTART_DELAY_S seconds without a record each time."""
        if not self._encoder_failure_said:
            self._encoder_failure_said = True
            self.emit(log_record("error", "pidetect.recorder", f"{why}; the open clip is lost, recording starts "
                                 f"again in {RESTART_DELAY_S:g} s (tried again every {RESTART_DELAY_S:g} s, said "
                                 "once); detection goes on"), ERR)
        self._encoder_failed_at = time.monotonic()
        if self.clip is not None and self.clip.file is not None:
            self.clip.file.abandon()
        self.clip = None
        self._stop_encoder()

    def _stop_encoder(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None
        self._frame_times.clear()
        self._h264_waiting.clear()
        for segment in self.ring:
            unlink_quietly(segment.path)
        self.ring.clear()

    def _stream_time(self, clock: float) -> float:
        """Where the frame captured at `clock` is in the stream: looked up (exact for copied streams, whose frames
        need not come at a steady rate), else from the constant rate the encoder is fed at."""
        for seen, stream_time in reversed(self._frame_times):
            if seen == clock:
                return stream_time
            if seen < clock:
                break
        return clock - self.clock0

    def _events(self, events: Iterable[TrackEvent], clock: Optional[float]) -> None:
        """Open, grow and end the review item from the tracking stage's events (clock None: a gap, now)."""
        if self.encoder is None:
            return
        now = self._stream_time(clock) if clock is not None else self.encoder.stream_time
        for event in events:
            if self._starts_clip(event):
                if self.clip is None:
                    self._open_clip(now)
                clip = self.clip
                if clip is None:
                    continue
                clip.track_ids.add(event.track_id)
                clip.in_view.add(event.track_id)
                clip.end = None
                if event.label not in clip.labels:
                    clip.labels.append(event.label)
            clip = self.clip
            if clip is None or event.track_id not in clip.track_ids:
                continue
            if event.kind == "zone" and event.state == "entered" and event.zone not in clip.zones:
                clip.zones.append(event.zone)
            if event.kind == "detection" and event.state == "left" and event.track_id in clip.in_view:
                clip.in_view.discard(event.track_id)
                if not clip.in_view:
                    clip.end = now + self.post

    def _starts_clip(self, event: TrackEvent) -> bool:
        if event.state != "entered":
            return False
        if not self.required_zones:
            return event.kind == "detection"
        return event.kind == "zone" and event.zone in self.required_zones

    def _open_clip(self, now: float) -> None:
        self._number += 1
        want_start = max(0.0, now - self.pre)
        name = clip_name(self.ts_at_clock0 + want_start, self._number)
        try:
            clip_file = self.folder.start(name)
        except ClipWriteError as exc:
            self._write_failed(exc)
            clip_file = None
        self.clip = OpenClip(self._number, want_start, clip_file)
        for segment in self.ring:
            self._append(segment)

    def _append(self, segment: Segment) -> None:
        clip = self.clip
        if clip is None or clip.file is None or segment.end <= clip.want_start + 1e-6:
            return
        if clip.end is not None and segment.start >= clip.end - 1e-6:
            return
        try:
            clip.file.append(segment)
        except ClipWriteError as exc:
            clip.file = None  # this clip is lost; its objects are still followed, the next clip tries again
            self._write_failed(exc)

    def _collect_segments(self) -> None:
        encoder = self.encoder
        if encoder is None:
            return
        while True:
            try:
                segment = encoder.segments.get_nowait()
            except queue.Empty:
                break
            self.ring.append(segment)
            self._encoder_failure_said = False  # it works: a later failure is a new episode
            self._append(segment)
        keep_from = encoder.stream_time - self.pre - 2 * KEYFRAME_SECONDS
        while self.ring and self.ring[0].end < keep_from:
            unlink_quietly(self.ring.popleft().path)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        clip = self.clip
        if clip is None or clip.end is None or self.encoder is None:
            return
        if clip.file is not None and clip.file.end < clip.end - 1e-6:
            return  # the segment holding the clip's last frame is not finished yet
        if clip.file is None and self.encoder.stream_time < clip.end:
            return
        self._finish(clip.end)

    def _end_session(self) -> None:
        """The camera was lost, changed, or the service stops: the encoder's last segment, then the clip."""
        if self.encoder is None:
            return
        end = self.encoder.stream_time
        self.encoder.close()
        while True:
            try:
                segment = self.encoder.segments.get_nowait()
            except queue.Empty:
                break
            self._append(segment)
        if self.clip is not None:
            self._finish(min(end, self.clip.end) if self.clip.end is not None else end)
        self._stop_encoder()

    def _finish(self, end: float) -> None:
        """The clip's part file is complete: it is finalised on a thread of its own (FFmpeg copies it into the
        MP4, a few hundred milliseconds), so the recorder goes on taking frames meanwhile."""
        clip, self.clip = self.clip, None
        if clip.file is None or clip.file.start is None:
            if clip.file is not None:
                clip.file.abandon()
            return
        record = {"event": "clip", "state": "saved", "start": round(self.ts_at_clock0 + clip.file.start, 3),
                  "end": round(self.ts_at_clock0 + end, 3), "duration": round(end - clip.file.start, 3),
                  "labels": list(clip.labels), "track_ids": sorted(clip.track_ids), "zones": list(clip.zones)}
        self._finishers = [thread for thread in self._finishers if thread.is_alive()]
        finisher = threading.Thread(target=self._finish_file, args=(clip.file, record), name="pidetect-clip-finish",
                                    daemon=True)
        self._finishers.append(finisher)
        finisher.start()

    def _finish_file(self, clip_file: ClipFile, record: dict) -> None:
        try:
            path = clip_file.finish(record["duration"])
        except ClipWriteError as exc:
            self._write_failed(exc)
            return
        with self._failure_lock:
            recovered, self._failure = self._failure is not None, None
        if recovered:
            self.emit(log_record("info", "pidetect.recorder", f"clips are written again to {self.folder.folder}"),
                      INFO)
        self.clips_saved += 1
        self.emit({**record, "path": str(path), "clip": path.name, "ts": round(time.time(), 3)}, INFO)
        self.folder.prune(self._removed)

    def _removed(self, name: str) -> None:
        self.emit({"event": "clip", "state": "removed", "clip": name, "path": str(self.folder.folder / name),
                   "ts": round(time.time(), 3)}, INFO)

    def _write_failed(self, exc: ClipWriteError) -> None:
        """Said once per episode; on a full card the oldest of pidetect's own clips make room for the next."""
        with self._failure_lock:
            first, self._failure = self._failure is None, self._failure or str(exc)
        if first:
            self.emit(log_record("error", "pidetect.recorder", f"{exc}; this clip is not kept"
                                 + ("; removing the oldest of pidetect's own clips to make room" if exc.no_space
                                    else "") + "; trying again with the next event; detection goes on"), ERR)
        if exc.no_space and first:  # once per episode: bounded, whatever keeps the card full
            self.folder.prune(self._removed, make_room=True)


RING_NAME = re.compile(r"pidetect-ring-(\d+)-[0-9a-f]+")


def remove_stale_rings(folder: Path) -> None:
    """Rings a killed daemon left in RAM (kill -9 leaves no chance to clean up): its pid is gone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = RING_NAME.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
