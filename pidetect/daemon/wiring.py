"""Wiring: what a config asks for, built — the outputs (displays, snapshots, clips), the web UI and its event store,
the record sinks (MQTT, notifications) — and the checks that find a config's errors before anything is built.

The composition of the daemon's parts, above them all: the service calls it; no stage imports it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..config import Config, sysfs_root
from ..errors import ConfigError, UnavailableError
from ..files import RAM_FILE_SYSTEMS, file_system_type, read_password_file
from ..outputs.display import DisplayUnavailable
from ..records import ERR, log_record
from ..outputs.display_sink import DisplaySink, close_quietly
from ..outputs.snapshots import Snapshots, remove_own_snapshot

log = logging.getLogger(__name__)


def make_display(name: str, config: Config, web: Optional[dict] = None):
    if name == "fb":
        from ..outputs.fb import FramebufferDisplay

        return FramebufferDisplay(config.fb_device, config.fb_tty, config.fb_format,
                                  sysfs_root() / "class" / "graphics")
    if name == "mjpeg":
        from ..web.mjpeg import MjpegDisplay
        from ..web.zone_editor import ZoneLayout

        return MjpegDisplay(config.mjpeg_address, config.mjpeg_port,
                            layout=ZoneLayout(config.zones, config.object_mask, config.motion_mask), **(web or {}))
    if name == "window":
        from ..outputs.window import WindowDisplay

        return WindowDisplay()
    raise ValueError(name)


def build_outputs(config: Config, emit: Callable, web: Optional[dict] = None) -> Tuple[List, Optional[Snapshots]]:
    """The display sink and snapshots; `web`: what the web UI serves besides the live view (build_web)."""
    check_outputs(config)  # before any display exists: a display holds its port
    displays = []
    screen = None
    if "fb" in config.display:
        from ..outputs.fb import claim_screen

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
            close_quietly(display)
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
    from ..outputs.encoder import find_ffmpeg

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
    from ..outputs.clips import ClipFolder
    from ..outputs.encoder import pick_encoder
    from ..outputs.recorder import Recorder

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


def build_web(config: Config, emit: Callable, metrics, labels: Sequence[str] = (), model: Optional[dict] = None,
              config_path: Optional[Path] = None) -> Tuple[List, Optional[dict]]:
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
            from ..outputs.clips import remove_own_clip

            remove_own_clip(Path(config.record_dir), event.clip)

    from ..web.live_state import LiveState

    live = LiveState(config.camera_name, model=model)
    web = {"store": store, "live": live.snapshot, "snapshot_dir": Path(config.snapshot_dir), "metrics": metrics.exposition, "auth": auth,
           "hosts": tuple(config.web_hosts), "labels": tuple(labels), "config_path": config_path,
           "settings": settings_view(config), "camera_name": config.camera_name, "web_port": config.mjpeg_port,
           "on_delete": on_delete, "record_dir": Path(config.record_dir) if config.record else None}
    if config.notify:
        from ..outputs.notify import DeliveryBoard

        web["notify"] = DeliveryBoard()  # the notification sink writes it, /api/notify reads it
    return [sink, metrics, live], web


def settings_view(config: Config) -> dict:
    """The configuration in effect for the status page: every flat key, with what could be a secret hidden (a
    password in a camera URL; the password files are paths, their contents are never read here)."""
    from ..capture.sources import redact_url
    from ..config import FLAG_FIELDS

    view = {}
    for key in FLAG_FIELDS:
        value = getattr(config, key)
        view[key] = redact_url(value) if isinstance(value, str) else list(value) if isinstance(value, tuple) else value
    view["zones"] = [zone.name for zone in config.zones]
    view["notify"] = [target.name for target in config.notify]  # their URLs carry tokens: names only
    return view


def check_record_sinks(config: Config) -> None:
    """The ConfigErrors building the record sinks would raise (the MQTT password and CA files, topic keys, the
    notification URLs and their files)."""
    if config.mqtt_host:
        from ..outputs.mqtt import settings_from_config

        settings_from_config(config)
    if config.notify:
        from ..outputs.notify import check_urls, read_targets

        check_urls(read_targets(config.notify))


def build_record_sinks(config: Config, emit: Callable, web: Optional[dict] = None) -> List:
    """Sinks of the record stream (what the journal gets): MQTT when mqtt_host is set, notifications when
    [notify.…] tables are."""
    sinks: List = []
    if config.mqtt_host:
        from ..outputs.mqtt import MqttSink, settings_from_config

        sinks.append(MqttSink(settings_from_config(config), emit))
    if config.notify:
        from ..outputs.notify import NotifySink, check_urls, read_targets

        targets = read_targets(config.notify)
        check_urls(targets)  # an unknown service is a config error at start, not a silent target
        sinks.append(NotifySink(targets, emit, config.web_base_url, config.camera_name,
                                board=web.get("notify") if web else None))
    return sinks
