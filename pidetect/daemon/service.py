"""The daemon: builds the pipeline from a Config, owns its threads, and talks to systemd.

Lifecycle: starting -> (model loaded, first frame or ready_timeout) READY=1 -> running, with
metrics every interval, STATUS lines and WATCHDOG=1 pings only while the inference worker makes
progress -> SIGTERM/SIGINT: STOPPING=1, 'left' for objects still in view, final metrics, exit 0.
SIGHUP re-reads the config file and restarts the pipeline with it (a bad file is reported and
the running pipeline kept).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ..config import FIELDS, Config, build_config, tracking_lifetimes, weak_floor
from ..config_tables import check_table_labels
from ..inference.accelerator import AcceleratorSettings, open_detector
from ..inference.detector import Detector, DetectorOptions, check_label_names
from ..errors import PidetectError
from .events import EventLogSink
from ..tracking.filters import ObjectFilters
from ..tracking.stage import TrackingStage
from ..tracking.tracker import Tracker, TrackerSettings
from ..tracking.zones import Zones
from .logs import ERR, INFO, WARNING, Notifier, RecordLog, log_record, watchdog_interval
from .memory import fix_mmap_threshold
from .metrics import Metrics, throttled_now
from ..inference.model_paths import resolve_model_paths
from ..inference.regions import RegionSettings
from ..slots import FollowedBoxes, InView, LatestFrameSlot
from .pipeline import CaptureThread, InferencePool
from ..capture.gate import GateSettings, MotionGate
from ..capture.motion import MotionDetector, MotionSettings
from ..capture.sources import H264PipeSource, make_source, redact_url

log = logging.getLogger(__name__)

STATUS_INTERVAL = 5.0
JOIN_TIMEOUT = 1.0
CORAL_UDEV_RULE = Path("/etc/udev/rules.d/60-pidetect-coral.rules")  # deploy/install.sh --coral writes it


def model_paths(config: Config):
    return resolve_model_paths(config.model or None, config.labels or None)


def make_detector(config: Config, accelerator: Optional[str] = None) -> Detector:
    """A Detector as configured; `accelerator` overrides the config's (the CPU after a lost Edge TPU)."""
    cores = os.cpu_count() or 1
    options = DetectorOptions(threshold=config.threshold, max_results=config.max_results,
                              allow=frozenset(config.only), deny=frozenset(config.ignore),
                              num_threads=config.threads or max(1, cores // config.interpreters),
                              backend=config.backend, nms_iou=config.nms_iou, weak_threshold=weak_floor(config))
    model, labels = config.model or None, config.labels or None
    settings = AcceleratorSettings(accelerator or config.accelerator, config.edgetpu_device)
    return open_detector(Path(model) if model else None, Path(labels) if labels else None, options, settings)


def make_gate(config: Config, source, in_view: InView) -> Optional[MotionGate]:
    """The motion gate, on for cameras and streams unless `motion = off`, for files only with `motion = on`."""
    if config.motion == "off" or (config.motion == "auto" and not source.live):
        return None
    settings = GateSettings(config.detect_interval, config.stationary_interval, config.idle_motion_fps,
                            MotionSettings(threshold=config.motion_threshold, min_area=config.motion_min_area,
                                           mask=config.motion_mask))
    return MotionGate(settings, in_view)


def tracker_settings(config: Config, warn: bool = False) -> TrackerSettings:
    """The tracker's settings; `warn`: say once that old frame-counted keys were translated."""
    enter, gone, warnings = tracking_lifetimes(config)
    if warn:
        for text in warnings:
            log.warning("%s", text)
    return TrackerSettings(config.track_iou, enter, gone, config.stationary_after, config.stationary_max_disappeared)


def make_motion(config: Config) -> MotionDetector:
    """A motion detector for regions when no gate runs (a file): the same settings as the gate's."""
    return MotionDetector(MotionSettings(threshold=config.motion_threshold, min_area=config.motion_min_area,
                                         mask=config.motion_mask))


def make_tracking(config: Config, in_view: Optional[InView] = None, warn: bool = False,
                  followed: Optional[FollowedBoxes] = None) -> TrackingStage:
    """Filters and the object mask, the tracker (with the filters' per-label thresholds), the zones."""
    filters = ObjectFilters(config.filters, config.object_mask)
    tracker = Tracker(tracker_settings(config, warn), threshold=filters.threshold)
    drawn_masks = [("motion_mask", polygon) for polygon in config.motion_mask] + \
        [("object_mask", polygon) for polygon in config.object_mask] if config.show_motion else []
    return TrackingStage(tracker, filters, Zones(config.zones), in_view, drawn_masks, followed)


def preflight(config: Config, writer_pid: Optional[int] = None) -> None:
    """Raise the ConfigError that starting a pipeline with `config` would raise, without starting anything.

    Why: a reload must find a bad snapshot_dir, an unreadable mqtt_password_file or a pipe: source with
    an unbalanced quote while the running pipeline still runs, not after it was stopped.
    """
    from .wiring import check_outputs, check_record_sinks, check_web

    make_source(config).close()
    check_outputs(config)
    check_record_sinks(config)
    check_web(config, writer_pid)


def check_model_labels(config: Config, model_labels) -> Config:
    """Every label the config names must be the model's: zones' objects, [filters.LABEL], mqtt_labels."""
    check_table_labels(config.zones, config.filters, model_labels, config.notify)
    return check_mqtt_labels(config, model_labels)


def check_mqtt_labels(config: Config, model_labels) -> Config:
    """mqtt_labels must be labels the model has (a typo would be an entity that never turns on).

    The default list (person, car, cat, dog) is cut to what the model has instead: a user's own
    model without cars must not need a config change to start.
    """
    if not config.mqtt_host:
        return config
    if config.mqtt_labels == FIELDS["mqtt_labels"].default:
        known = set(model_labels)
        kept = tuple(label for label in config.mqtt_labels if label in known)
        return dataclasses.replace(config, mqtt_labels=kept)
    check_label_names(model_labels, {"mqtt_labels": frozenset(config.mqtt_labels)})
    return config


def make_detectors(config: Config) -> List[Detector]:
    """One Detector (interpreter) per inference worker; the cores are split between them.

    On the Edge TPU one: the device runs one model at a time, and a second delegate cannot open it.
    """
    first = make_detector(config)
    if first.delegate is not None:
        if config.interpreters > 1:
            log.info("interpreters = %d: one on the Edge TPU, which runs one model at a time", config.interpreters)
        return [first]
    return [first] + [make_detector(config, "cpu") for _ in range(config.interpreters - 1)]


def detector_settings(config: Config) -> tuple:
    """What a reload must rebuild the interpreters for."""
    return (model_paths(config), config.threads, config.backend, config.interpreters, config.threshold,
            config.only, config.ignore, config.max_results, config.nms_iou, config.accelerator,
            config.edgetpu_device, weak_floor(config))


@dataclass
class Running:
    """One pipeline instance (rebuilt on SIGHUP)."""

    config: Config
    stop: threading.Event
    slot: LatestFrameSlot
    capture: CaptureThread
    inference: InferencePool
    tracking: TrackingStage
    events: EventLogSink
    outputs: List
    gate: Optional[MotionGate] = None


class Service:
    def __init__(self, config: Config, records: RecordLog, config_path: Optional[Path] = None,
                 overrides: Optional[dict] = None, notifier: Optional[Notifier] = None):
        self.config, self.records, self.config_path = config, records, config_path
        self.overrides = overrides or {}
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.wake = threading.Event()
        self.stop_requested = False
        self.reload_requested = False
        self.reloads = 0  # SIGHUPs acted on: numbers the verdicts `pidetect reload` waits for
        self.stall_after = int(os.environ.get("PIDETECT_TEST_STALL_AFTER_FRAMES", "0") or 0)
        self.running: Optional[Running] = None
        self._counted_captured = self._counted_dropped = 0  # totals of pipelines replaced by a reload
        self._gate_seen: Optional[dict] = None  # the motion gate's counters at the last metrics record
        self.record_sinks: List = []  # fed every record, like the journal (MQTT, the event store, /metrics)
        self.prometheus = None  # web/metrics.py, with the web UI on

    # --- records and notifications -------------------------------------------------------------
    def emit(self, record: dict, priority: int = INFO) -> None:
        self.records.emit(record, priority)
        for sink in list(self.record_sinks):  # MQTT: they only queue, from any thread; a copy: a failing one is removed
            try:
                sink.publish_record(record)
            except Exception as exc:  # a broken sink must never stop detection
                self.record_sinks.remove(sink)
                self.records.emit(log_record("error", "pidetect.service", f"{sink.name} failed and was disabled: "
                                             f"{type(exc).__name__}: {exc}"), ERR)

    def emit_metrics(self, running: "Running") -> None:
        """The interval's metrics record; a warning while the Pi is throttled or under-volted."""
        record = self.metrics.take(self._counted_captured + running.capture.seq,
                                   self._counted_dropped + running.slot.dropped)
        if running.gate is not None:
            record.update(self._gate_interval(running.gate))
        for sink in self.record_sinks:
            record.update(sink.metrics_fields())
        for output in running.outputs:
            if output.name == "recorder":
                record.update(output.metrics_fields())
        self.emit(record, WARNING if throttled_now(record["throttled"]) else INFO)

    def _gate_interval(self, gate: MotionGate) -> dict:
        """What the motion gate did since the last metrics record: the CPU it saved is `frames_gated`."""
        now = gate.counters.totals()
        before = self._gate_seen if self._gate_seen is not None and self._gate_seen["frames"] <= now["frames"] \
            else {key: 0 for key in now}
        self._gate_seen = now
        looked = now["looked"] - before["looked"]
        return {"motion_share": round((now["motion_frames"] - before["motion_frames"]) / looked, 3) if looked else 0.0,
                "frames_gated": now["gated"] - before["gated"], "frames_skipped": now["skipped"] - before["skipped"],
                "keepalive_inferences": now["keepalive"] - before["keepalive"],
                "lighting_changes": now["lighting_changes"] - before["lighting_changes"]}

    def lifecycle(self, state: str, priority: int = INFO, **extra) -> None:
        self.emit({"event": "lifecycle", "state": state, **extra}, priority)

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested = True
        else:
            self.stop_requested = True
        self.wake.set()

    def install_signal_handlers(self, already_received: Sequence[int] = ()) -> None:
        """Take over SIGTERM/SIGINT/SIGHUP; signals received before (while starting) are acted on too."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for signum in list(already_received):
            self._on_signal(signum, None)

    # --- building ------------------------------------------------------------------------------
    def _start(self, config: Config, detectors: List[Detector]) -> Running:
        from .wiring import build_outputs, build_record_sinks, build_web, web_ui_on

        stop = threading.Event()
        slot = LatestFrameSlot()
        source = make_source(config)
        if web_ui_on(config) and self.prometheus is None:
            from ..web.metrics import PrometheusMetrics

            self.prometheus = PrometheusMetrics()  # one for the service's life: counters survive reloads
        first = detectors[0]
        model = {"model": str(first.model_path), "backend": first.backend.name,
                 "backend_version": first.backend.version, "accelerator": first.accelerator,
                 "interpreters": len(detectors), "threads": first.num_threads}
        web_sinks, web = build_web(config, self.emit, self.prometheus, tuple(first.labels.values()), model,
                                   self.config_path)
        try:
            outputs, snapshots = build_outputs(config, self.emit, web)
        except BaseException:
            self._close_sinks(web_sinks)
            raise
        try:
            self.record_sinks = build_record_sinks(config, self.emit, web) + web_sinks
        except BaseException:
            self._close_outputs(outputs)  # a display holds its port: free it for the pipeline started instead
            self._close_sinks(web_sinks)
            raise
        store_writer = next((sink for sink in web_sinks if hasattr(sink, "forget_snapshot")), None)
        if snapshots is not None and store_writer is not None:
            snapshots.on_removed = store_writer.forget_snapshot  # its event stays, marked without a snapshot
        in_view = InView()
        gate = make_gate(config, source, in_view)
        regions = RegionSettings(config.regions, config.max_regions, config.detect_interval, config.show_motion) \
            if config.regions != "off" else None
        followed = FollowedBoxes() if regions is not None else None
        tracking = make_tracking(config, in_view, warn=True, followed=followed)
        events = EventLogSink(self.emit, config.per_frame, snapshots, config.required_zones)
        recorder = next((output for output in outputs if output.name == "recorder"), None)
        if recorder is not None and isinstance(source, H264PipeSource):
            source.h264_tap = recorder.feed_h264  # clips keep the camera's own H.264
        capture = CaptureThread(source, slot, self.emit, stop, realtime=config.realtime, loop=config.loop,
                                max_delay=config.reconnect_max_delay, gate=gate,
                                keep_motion_boxes=config.show_motion,
                                every_frame=recorder.feed if recorder is not None else None,
                                motion=make_motion(config) if regions is not None and gate is None else None)
        inference = InferencePool(detectors, slot, tracking, [events, *outputs], self.emit, stop,
                                  self._on_inference, max_frames=config.max_frames,
                                  stall_after_frames=self.stall_after,
                                  recover=lambda error, beat: self._recover_accelerator(config, stop, error, beat),
                                  regions=regions, followed=followed)
        capture.start()
        inference.start()
        return Running(config, stop, slot, capture, inference, tracking, events, outputs, gate)

    def _recover_accelerator(self, config: Config, stop: threading.Event, error: Exception,
                             beat) -> Optional[Detector]:
        """The Edge TPU failed mid-run. auto: go on on the CPU now (a restart tries the TPU again). edgetpu: try
        it again with the lost camera's backoff (1 s doubling to reconnect_max_delay), the heartbeat kept fresh
        meanwhile: waiting for a device is not a hang. None when the service stops first."""
        self.emit({"event": "accelerator", "state": "lost", "accelerator": "edgetpu", "error": str(error)}, WARNING)
        if config.accelerator == "auto":
            try:
                detector = make_detector(config, "cpu")
            except PidetectError as exc:  # an Edge TPU build and nothing else: only the TPU can run it
                self.emit(log_record("warning", "pidetect.service", f"cannot go on on the CPU ({exc}); "
                                     "waiting for the Edge TPU"), WARNING)
            else:
                self.emit({"event": "accelerator", "state": "fallback", "accelerator": "cpu",
                           "model": str(detector.model_path)}, WARNING)
                return detector
        delay, attempt = 1.0, 0
        while not stop.is_set():
            attempt += 1
            try:
                detector = make_detector(config)
            except PidetectError as exc:
                self.emit({"event": "accelerator", "state": "retrying", "attempt": attempt, "retry_in_s": delay,
                           "error": str(exc)}, WARNING)
                until = time.monotonic() + delay
                while not stop.is_set() and time.monotonic() < until:
                    beat()
                    stop.wait(min(0.25, max(0.0, until - time.monotonic())))
                delay = min(delay * 2, config.reconnect_max_delay)
                continue
            self.emit({"event": "accelerator", "state": "recovered", "accelerator": detector.accelerator,
                       "attempts": attempt}, INFO)
            return detector
        return None

    def _shutdown(self, running: Running) -> None:
        running.stop.set()
        running.slot.close()
        running.capture.source.cancel()
        running.inference.join(JOIN_TIMEOUT)
        running.capture.join(JOIN_TIMEOUT)
        with running.inference.delivering():  # a worker that missed the join must not track at the same time
            running.events.write(running.tracking.flush(running.events.last_seq), time.time())
        running.events.close()
        self._close_outputs(running.outputs)

    @staticmethod
    def _close_outputs(outputs: List) -> None:
        for output in outputs:
            try:
                output.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", output.name, exc)

    def _on_inference(self, inference_ms: float, age_ms: float, model_calls: int = 1) -> None:
        self.metrics.add_inference(inference_ms, age_ms, model_calls)
        if self.prometheus is not None:
            self.prometheus.observe_inference(inference_ms)

    def _close_record_sinks(self) -> None:
        """After the last records of a pipeline ('left' events, final metrics), so they are published too."""
        sinks, self.record_sinks = self.record_sinks, []
        self._close_sinks(sinks)

    @staticmethod
    def _close_sinks(sinks: List) -> None:
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing %s failed: %s", sink.name, exc)

    def _reload(self, running: Running, detectors: List[Detector]):
        """SIGHUP: re-read the config; restart the pipeline with it, or keep (or restore) the running one.

        Everything start-up validates is checked before anything is stopped; should the new pipeline
        still fail to start, the previous configuration is started again: a reload never ends the service.
        """
        self.reload_requested = False
        self.reloads += 1
        if self.config_path is None:
            log.warning("SIGHUP ignored: no config file in use")
            self._verdict(False, "no config file in use: nothing to reload")
            return running, detectors
        try:
            # path_required: a config file gone, unreadable or replaced by a folder is an error, never
            # a silent fall back to the defaults
            config = build_config(self.config_path, self.overrides, path_required=True)
            preflight(config)
            new_detectors = detectors
            if detector_settings(config) != detector_settings(running.config):
                new_detectors = make_detectors(config)
            config = check_model_labels(config, new_detectors[0].labels.values())
        except PidetectError as exc:
            message = f"reload failed, keeping the running configuration: {exc}"
            self.emit(log_record("error", "pidetect.service", message), ERR)
            self._verdict(False, message)
            return running, detectors
        self.notifier.send(RELOADING=1, STATUS="reloading configuration",
                           MONOTONIC_USEC=int(time.monotonic() * 1e6))
        self._shutdown(running)
        self._close_record_sinks()
        self._counted_captured += running.capture.seq  # the new pipeline's capture thread counts from zero
        self._counted_dropped += running.slot.dropped
        try:
            started = self._start(config, new_detectors)
        except PidetectError as exc:
            message = f"reload failed, restarting the previous configuration: {exc}"
            self.emit(log_record("error", "pidetect.service", message), ERR)
            started = self._start(running.config, detectors)
            self.notifier.send(READY=1, STATUS="reload failed; running the previous configuration")
            self._verdict(False, message)
            return started, detectors
        self.config = config
        self.lifecycle("reloaded", config=str(self.config_path))
        self.notifier.send(READY=1, STATUS="configuration reloaded")
        self._verdict(True, f"configuration {self.config_path} reloaded")
        return started, new_detectors

    def _asked_for(self, key: str) -> bool:
        """The owner set `key` (a flag, or a line of the config file), rather than leaving its default."""
        if self.overrides.get(key) is not None:
            return True
        if self.config_path is None:
            return False
        try:
            from ..config import load_file

            return key in load_file(self.config_path)[0]
        except PidetectError:
            return False

    def _verdict(self, ok: bool, detail: str) -> None:
        """For `pidetect reload` (the unit's ExecReload), waiting to say whether the new file was taken."""
        from ..reload_verdict import verdict_path, write_verdict

        write_verdict(verdict_path(self.config.state_dir), self.reloads, ok, detail)

    # --- the main loop -------------------------------------------------------------------------
    def run(self) -> int:
        started = time.monotonic()
        fix_mmap_threshold()  # frames freed go back to the kernel: flat memory over days (daemon/memory.py)
        self.lifecycle("starting", pid=os.getpid(), source=redact_url(self.config.source))  # no camera password in the log
        self.notifier.send(STATUS="loading model")
        detectors = make_detectors(self.config)
        first = detectors[0]
        self.config = check_model_labels(self.config, first.labels.values())
        self.lifecycle("model_loaded", model=str(first.model_path), backend=first.backend.name,
                       backend_version=first.backend.version, accelerator=first.accelerator,
                       interpreters=len(detectors), threads=first.num_threads)
        if first.accelerator_note and (not first.accelerator_missing_runtime or self._asked_for("accelerator")
                                       or CORAL_UDEV_RULE.exists()):
            # a Pi without a Coral is the usual case: "no Edge TPU runtime" is said only to an owner who asked for
            # one (set accelerator, or installed Coral support: the installer's --coral udev rule); everything
            # else about a Coral is always said
            self.emit(log_record("info", "pidetect.service", first.accelerator_note))
        self.running = self._start(self.config, detectors)
        exit_code = 0
        try:
            self._wait_ready(self.running, started)
            exit_code = self._supervise(detectors, started)
        finally:
            self.notifier.send(STOPPING=1, STATUS="stopping")
            self.lifecycle("stopping")
            self._shutdown(self.running)  # the current pipeline: a reload replaces self.running
            self.emit_metrics(self.running)
            self.lifecycle("stopped", frames=self.metrics.total_inferred,
                           uptime_s=round(time.monotonic() - started, 1))
            self._close_record_sinks()
            self.notifier.close()
        return exit_code

    def _wait_ready(self, running: Running, started: float) -> None:
        deadline = started + self.config.ready_timeout
        told_waiting = False
        if self.config.duration:
            deadline = min(deadline, started + self.config.duration)
        while not running.capture.first_frame.is_set() and not self.stop_requested:
            if running.inference.finished.is_set():
                break
            if time.monotonic() >= deadline:
                break
            if not told_waiting and time.monotonic() - started > 1.0:
                self.notifier.send(STATUS=f"waiting for camera {self.config.source}")
                told_waiting = True
            running.capture.first_frame.wait(0.05)
        have_frame = running.capture.first_frame.is_set()
        self.notifier.send(READY=1, STATUS="running" if have_frame else
                           f"running; waiting for camera {self.config.source}")
        self.lifecycle("ready", waited_s=round(time.monotonic() - started, 2), first_frame=have_frame)

    def _supervise(self, detectors: List[Detector], started: float) -> int:
        running = self.running
        ping_every = watchdog_interval()
        stall_limit = max(2.0, ping_every or 0.0)
        next_metrics = time.monotonic() + self.config.metrics_interval
        next_status = time.monotonic() + 1.0
        last_ping = 0.0
        status_mark = (time.monotonic(), 0, 0)
        stalled_reported = False
        while True:
            self.wake.wait(0.2)
            self.wake.clear()
            now = time.monotonic()
            if self.stop_requested:
                return 0
            if self.reload_requested:
                running, detectors = self._reload(running, detectors)
                self.running = running
                status_mark = (time.monotonic(), 0, 0)
                continue
            if running.capture.failed:
                message = "the capture thread failed (see the error above); exiting so systemd restarts"
                self.emit(log_record("error", "pidetect.service", message), ERR)
                return 1
            if running.events not in running.inference.sinks:
                message = "the events sink failed (see the error above); exiting so systemd restarts"
                self.emit(log_record("error", "pidetect.service", message), ERR)
                return 1
            if running.inference.finished.is_set():
                if not running.inference.failed:
                    return 0
                message = "the inference worker stopped unexpectedly; exiting so systemd restarts"
                self.emit(log_record("error", "pidetect.service", message), ERR)
                return 1
            if self.config.duration and now - started >= self.config.duration:
                return 0
            healthy = now - running.inference.heartbeat < stall_limit
            if not healthy and not stalled_reported:
                message = (f"inference worker made no progress for {now - running.inference.heartbeat:.1f} s; "
                           "watchdog pings withheld")
                self.emit(log_record("error", "pidetect.service", message), ERR)
                stalled_reported = True
            if healthy:
                stalled_reported = False
                if ping_every and now - last_ping >= ping_every:
                    self.notifier.send(WATCHDOG=1)
                    last_ping = now
            if now >= next_metrics:
                self.emit_metrics(running)
                next_metrics = now + self.config.metrics_interval
            if now >= next_status:
                mark_time, mark_frames, mark_captured = status_mark
                span = max(now - mark_time, 1e-6)
                fps = (running.inference.processed - mark_frames) / span
                cap_fps = (running.capture.seq - mark_captured) / span
                status_mark = (now, running.inference.processed, running.capture.seq)
                last = running.events.last_entered or "none yet"
                self.notifier.send(STATUS=f"{fps:.1f} fps inference, {cap_fps:.1f} fps capture; last: {last}")
                next_status = now + STATUS_INTERVAL
