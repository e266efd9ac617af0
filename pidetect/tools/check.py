"""`pidetect check`: the environment doctor. One line per check, exit 0 when every needed part works.

Needed: an inference backend, the model and labels, the configured camera delivering a frame, and
each configured display. The journal is needed only when log_format = journal.
"""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..config import Config
from ..errors import EX_CONFIG, EX_UNAVAILABLE, PidetectError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    needed: bool = True
    exit_code: int = 0  # a failure's own exit code where it has one (the Edge TPU's); 0: by the check's name


def _check_notify(config: Config) -> Check:
    """The notification targets: their URL files read and every URL one Apprise knows (nothing is sent; URLs
    are named by their scheme only: they hold secrets). `pidetect notify-test` sends a message."""
    from ..errors import PidetectError
    from ..outputs.notify import check_urls, read_targets, redacted

    try:
        targets = read_targets(config.notify)
        check_urls(targets)
    except PidetectError as exc:
        return Check("notify", False, str(exc))
    return Check("notify", True, "; ".join(f"{t.name}: " + ", ".join(redacted(u) for u in t.urls) for t in targets)
                 + " (pidetect notify-test sends a test message)")


def _probe_camera(config: Config) -> Check:
    from ..capture.sources import SourceError, make_source

    try:
        source = make_source(config)
    except PidetectError as exc:
        return Check("camera", False, str(exc))
    outcome: dict = {}

    def probe() -> None:
        try:
            source.open()
            image = source.read()
            outcome["result"] = (image is not None, f"{source.name}: " + (
                f"delivers {image.shape[1]}x{image.shape[0]} frames" if image is not None else "opened, but no frame"))
        except SourceError as exc:
            outcome["result"] = (False, f"{source.name}: {exc}")
        finally:
            source.close()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(config.open_timeout + config.read_timeout + 2)
    ok, detail = outcome.get("result", (False, f"{config.source}: no answer within "
                                                f"{config.open_timeout + config.read_timeout:.0f} s"))
    return Check("camera", ok, detail)


def _probe_display(name: str, config: Config) -> Check:
    from ..outputs.display import DisplayUnavailable
    from ..daemon.wiring import make_display

    try:
        display = make_display(name, config)
        if name == "fb":
            display.open()
            info = display.info
            detail = f"{config.fb_device}: {info.width}x{info.height} {info.pixel_format}, stride {info.stride}"
        elif name == "mjpeg":
            detail = f"can serve {display.url}"
        else:
            detail = "window available"
        display.close()
        return Check(f"display {name}", True, detail)
    except DisplayUnavailable as exc:
        return Check(f"display {name}", False, str(exc))


def _probe_mqtt(config: Config) -> Check:
    """The broker answers and takes the credentials (the daemon itself never fails on the broker)."""
    from ..outputs.mqtt import probe_broker, settings_from_config

    try:
        ok, detail = probe_broker(settings_from_config(config))
    except PidetectError as exc:
        ok, detail = False, str(exc)
    return Check("mqtt", ok, detail)


def run_checks(config: Config, make_detector: Callable) -> List[Check]:
    from ..inference.backends import resolve_backend
    from ..inference.edgetpu import EdgeTpuLibraryMissing, EdgeTpuMismatch, EdgeTpuNoDevice
    from ..daemon.logs import journal_sender
    from ..daemon.metrics import PiHealth
    from ..daemon.service import check_model_labels
    from ..daemon.wiring import web_ui_on

    checks = [Check("system", True, f"{platform.machine()} {platform.system()} {platform.release()}, "
                                    f"Python {platform.python_version()}, {os.cpu_count()} cores", needed=False)]
    backend: Optional[object] = None
    try:
        backend = resolve_backend(config.backend)
        checks.append(Check("backend", True, f"{backend.name} {backend.version}"))
    except PidetectError as exc:
        checks.append(Check("backend", False, str(exc)))
    if backend is not None:
        try:
            detector = make_detector(config)
            check_model_labels(config, detector.labels.values())  # the daemon refuses labels the model lacks
            via = f" via {detector.delegate.library}" if detector.delegate is not None else ""
            checks.append(Check("accelerator", True, detector.accelerator + via + (
                f" ({detector.accelerator_note})" if detector.accelerator_note else ""), needed=False))
            checks.append(Check("model", True, f"{detector.model_path} ({detector.family.name}, "
                                               f"{detector.numeric_format}, {detector.input_width}x"
                                               f"{detector.input_height}, {len(detector.labels)} labels)"))
        except (EdgeTpuLibraryMissing, EdgeTpuNoDevice, EdgeTpuMismatch) as exc:
            checks.append(Check("accelerator", False, str(exc), exit_code=exc.exit_code))
        except PidetectError as exc:
            checks.append(Check("model", False, str(exc)))
    checks.append(_probe_camera(config))
    for name in config.display:
        if name != "none":
            checks.append(_probe_display(name, config))
    if web_ui_on(config):
        checks.append(_check_web(config))
    if config.record:
        checks.append(_check_recording(config))
    if config.mqtt_host:
        checks.append(_probe_mqtt(config))
    if config.notify:
        checks.append(_check_notify(config))
    journal = journal_sender() is not None
    checks.append(Check("journal", journal, "systemd journal reachable" if journal else
                        "not available (systemd-python missing or no journald); logs go to stderr",
                        needed=config.log_format == "journal"))
    health = PiHealth()
    temp, throttled = health.temperature_c(), health.throttled()
    checks.append(Check("pi health", temp is not None, f"SoC {temp} °C, throttled {throttled}" if temp is not None else
                        "no SoC temperature sensor here (not a Raspberry Pi?)", needed=False))
    return checks


def _check_web(config: Config) -> Check:
    """The web UI's password rule and its event store, as the daemon would find them at start."""
    from ..daemon.wiring import check_web, is_loopback
    from ..store.sink import store_path

    try:
        check_web(config)
    except PidetectError as exc:
        return Check("web UI", False, str(exc))
    who = "password (HTTP Basic)" if config.web_password_file else (
        "no password: this Pi only" if is_loopback(config.mjpeg_address) else "no password (web_auth = none)")
    return Check("web UI", True, f"http://{config.mjpeg_address}:{config.mjpeg_port}/ ({who}); events in "
                                 f"{store_path(config.state_dir)}")


def _check_recording(config: Config) -> Check:
    """FFmpeg, the clip folder and the pre-roll in RAM, as the daemon checks them at start; the encoder it picks."""
    from ..outputs.encoder import pick_encoder
    from ..daemon.wiring import check_recording, record_buffer_dir

    try:
        ffmpeg = check_recording(config)
    except PidetectError as exc:
        return Check("recording", False, str(exc))
    return Check("recording", True, f"{pick_encoder(config.record_encoder, ffmpeg)} via {ffmpeg}; clips in "
                                    f"{config.record_dir}, pre-roll in {record_buffer_dir(config)}")


def exit_code_for(checks: List[Check]) -> int:
    failed = [c for c in checks if c.needed and not c.ok]
    if not failed:
        return 0
    own = [c.exit_code for c in failed if c.exit_code]
    if own:
        return own[0]
    return EX_CONFIG if any(c.name in ("model", "web UI", "recording") for c in failed) else EX_UNAVAILABLE


def format_check(check: Check) -> str:
    mark = "ok  " if check.ok else ("FAIL" if check.needed else "--  ")
    return f"{mark} {check.name:<14} {check.detail}"
