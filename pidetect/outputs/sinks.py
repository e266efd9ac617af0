"""Builds the outputs a config asks for: the display sink (fb, mjpeg, window) and snapshots.

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
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

from ..config import Config, sysfs_root
from ..errors import ConfigError, UnavailableError
from ..files import RAM_FILE_SYSTEMS, file_system_type, read_password_file
from .display import DisplayUnavailable
from ..frames import Result
from ..records import ERR, log_record
from ..slots import call_each
from .snapshots import Snapshots, remove_own_snapshot

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
                      _close_quietly)
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
            _close_quietly(display)


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


def _close_quietly(display) -> None:
    try:
        display.close()
    except Exception as exc:
        log.warning("closing display %s: %s", display.name, exc)


def make_display(name: str, config: Config, web: Optional[dict] = None):
    if name == "fb":
        from .fb import FramebufferDisplay

        return FramebufferDisplay(config.fb_device, config.fb_tty, config.fb_format,
                                  sysfs_root() / "class" / "graphics")
    if name == "mjpeg":
        from ..web.mjpeg import MjpegDisplay
        from ..web.zone_editor import ZoneLayout

        return MjpegDisplay(config.mjpeg_address, config.mjpeg_port,
                            layout=ZoneLayout(config.zones, config.object_mask, config.motion_mask), **(web or {}))
    if name == "window":
        from .window import WindowDisplay

        return WindowDisplay()
    raise ValueError(name)


def build_outputs(config: Config, emit: Callable, web: Optional[dict] = None) -> Tuple[List, Optional[Snapshots]]:
    """The display sink and snapshots; `web`: what the web UI serves besides the live view (build_web)."""
    check_outputs(config)  # before any display exists: a display holds its port
    displays = []
    screen = None
    if "fb" in config.display:
        from .fb import claim_screen

        screen = claim_screen(config.fb_device)  # a second camera on the same screen is refused now (78)
    try:
        for name in config.display:
            if name == "none":
                continue
            try:
                display = make_display(name, config, web)
                if name == "fb":
                    display.claim, screen = screen, None
                displays.append(display)
            except DisplayUnavailable as exc:
                if name == "mjpeg" and not config.web_best_effort:  # a "running" service without its page: no
                    raise UnavailableError(f"{exc}; the web UI is what this service serves, so it stops (exit 69: "
                                           "systemd tries again); free the port, set mjpeg_port, or set "
                                           "web_best_effort = true to detect without the web UI") from None
                message = f"display {name} unavailable, continuing without it: {exc}"
                emit(log_record("error", "pidetect.display", message), ERR)
        outputs: List = [DisplaySink(displays, emit, config.display_nice)] if displays else []
        snapshots = Snapshots(Path(config.snapshot_dir), config.snapshot_max_files, config.snapshot_max_mb,
                              draw_on=outputs[0].draw_here if outputs else None) if config.snapshots else None
        if config.record:
            outputs.append(build_recorder(config, emit))
    except BaseException:  # e.g. the web port taken: nothing half-built may keep the screen or a port
        for display in displays:
            _close_quietly(display)
        raise
    finally:
        if screen is not None:  # no fb display came of it
            screen.close()
    return outputs, snapshots


def check_outputs(config: Config) -> None:
    """The ConfigErrors building the outputs would raise, found without building them (start-up, reload)."""
    if config.snapshots:
        folder = Path(config.snapshot_dir)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"snapshot_dir {folder} is a file, not a folder; set snapshot_dir to a folder "
                              "(it is created if missing)")
    if config.record:
        check_recording(config)


def record_buffer_dir(config: Config) -> Path:
    """Where the pre-roll ring lives: record_buffer_dir, else the unit's RuntimeDirectory (/run/pidetect, a
    tmpfs), else /dev/shm."""
    if config.record_buffer_dir:
        return Path(config.record_buffer_dir)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) if runtime else Path("/dev/shm")


def check_recording(config: Config) -> str:
    """FFmpeg, a clip folder and a pre-roll folder in RAM, or the ConfigError saying what to do; the FFmpeg found."""
    from .encoder import find_ffmpeg

    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        raise ConfigError("record = true needs FFmpeg, which is not installed: sudo apt install ffmpeg "
                          "(or set record = false)")
    folder = Path(config.record_dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"record_dir {folder} is a file, not a folder; set record_dir to a folder "
                          "(it is created if missing)")
    ring = record_buffer_dir(config)
    if not ring.is_dir():
        raise ConfigError(f"record_buffer_dir {ring} is not a folder; set record_buffer_dir to a tmpfs folder "
                          "such as /dev/shm")
    kind = file_system_type(ring)
    if kind not in RAM_FILE_SYSTEMS:
        raise ConfigError(f"record_buffer_dir {ring} is on {kind or 'an unknown file system'}, not in RAM: the "
                          "pre-roll is written all the time and would wear the SD card; set record_buffer_dir "
                          "to a tmpfs folder such as /dev/shm")
    if not os.access(ring, os.W_OK | os.X_OK):
        raise ConfigError(f"record_buffer_dir {ring} is not writable by this user; set record_buffer_dir to a "
                          "tmpfs folder it may write, such as /dev/shm")
    return ffmpeg


def build_recorder(config: Config, emit: Callable):
    """The recorder sink (record = true): checked first, so a missing FFmpeg is one clear error."""
    from .clips import ClipFolder
    from .encoder import pick_encoder
    from .recorder import Recorder

    ffmpeg = check_recording(config)
    folder = ClipFolder(Path(config.record_dir), config.record_max_gb, config.record_max_days, ffmpeg)
    return Recorder(folder, record_buffer_dir(config), ffmpeg, pick_encoder(config.record_encoder, ffmpeg),
                    config.pre_capture, config.post_capture, emit, config.required_zones)


def web_ui_on(config: Config) -> bool:
    """The web UI (live view, review page, API, /metrics, zone editor) runs with the mjpeg display."""
    return "mjpeg" in config.display


def is_loopback(address: str) -> bool:
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def web_auth(config: Config) -> Optional[Tuple[str, str]]:
    """(user, password) the web UI asks for, or None. Off loopback a password is required unless
    web_auth = "none" says otherwise: a camera must never be open to the network by accident."""
    if config.web_password_file:
        return config.web_user, read_password_file(config.web_password_file, "web_password_file")
    if config.web_auth == "password" and not is_loopback(config.mjpeg_address):
        raise ConfigError(f"mjpeg_address = {config.mjpeg_address} opens the web UI (live view, events, snapshots) "
                          "beyond this Pi without a password: set web_password_file to a file holding one "
                          "(sudo sh -c 'openssl rand -base64 12 > /etc/pidetect/web.password'), or "
                          "web_auth = \"none\" if anyone on this network may look, or mjpeg_address = 127.0.0.1")
    return None


def check_web(config: Config, writer_pid: Optional[int] = None) -> None:
    """The ConfigErrors building the web UI would raise: the password rule, and a store that cannot be used
    (another daemon writing it: `writer_pid` is the one being reloaded, whose lock it is)."""
    if not web_ui_on(config):
        return
    from ..store.events import EventStore
    from ..store.sink import store_path

    from ..store.events import check_writer_lock

    web_auth(config)
    path = store_path(config.state_dir)
    check_writer_lock(path, writer_pid)  # another daemon on this state_dir (a reload's own lock is fine)
    EventStore(path, repair=False).close()  # a damaged file is moved aside by the writer, not by a check


def build_web(config: Config, emit: Callable, metrics, labels: Sequence[str] = ()) -> Tuple[List, Optional[dict]]:
    """With the web UI on: the record sinks that feed it (the event store's writer, the Prometheus metrics)
    and what the web server reads (the store, the snapshot folder, the metrics page, the password)."""
    if not web_ui_on(config):
        return [], None
    from ..store.events import EventStore
    from ..store.sink import StoreSink, store_path

    auth = web_auth(config)
    store = EventStore(store_path(config.state_dir))
    snapshot_dir = Path(config.snapshot_dir) if config.snapshots else None
    sink = StoreSink(store, emit, snapshot_dir, config.event_max_days)

    def on_delete(event) -> None:
        if event.snapshot:
            remove_own_snapshot(Path(config.snapshot_dir), event.snapshot)
        if event.clip and not store.clip_in_use(event.clip):  # the review item's last event takes the clip along
            from .clips import remove_own_clip

            remove_own_clip(Path(config.record_dir), event.clip)

    web = {"store": store, "snapshot_dir": Path(config.snapshot_dir), "metrics": metrics.exposition, "auth": auth,
           "hosts": tuple(config.web_hosts), "labels": tuple(labels),
           "on_delete": on_delete, "record_dir": Path(config.record_dir) if config.record else None}
    if config.notify:
        from .notify import DeliveryBoard

        web["notify"] = DeliveryBoard()  # the notification sink writes it, /api/notify reads it
    return [sink, metrics], web


def check_record_sinks(config: Config) -> None:
    """The ConfigErrors building the record sinks would raise (the MQTT password and CA files, topic keys, the
    notification URLs and their files)."""
    if config.mqtt_host:
        from .mqtt import settings_from_config

        settings_from_config(config)
    if config.notify:
        from .notify import check_urls, read_targets

        check_urls(read_targets(config.notify))


def build_record_sinks(config: Config, emit: Callable, web: Optional[dict] = None) -> List:
    """Sinks of the record stream (what the journal gets): MQTT when mqtt_host is set, notifications when
    [notify.…] tables are."""
    sinks: List = []
    if config.mqtt_host:
        from .mqtt import MqttSink, settings_from_config

        sinks.append(MqttSink(settings_from_config(config), emit))
    if config.notify:
        from .notify import NotifySink, check_urls, read_targets

        targets = read_targets(config.notify)
        check_urls(targets)  # an unknown service is a config error at start, not a silent target
        sinks.append(NotifySink(targets, emit, config.web_base_url, config.camera_name,
                                board=web.get("notify") if web else None))
    return sinks
