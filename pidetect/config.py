"""Configuration: one flat TOML file (/etc/pidetect/pidetect.toml) whose every key is also a CLI flag.

Flat on purpose: `threshold = 0.6` in the file is `--threshold 0.6` on the command line, so the
README, the example config and `--help` describe one thing. Unknown keys are errors (a typo must
not silently fall back to a default), and every error names the file, the line and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from .config_tables import (TABLE_KEYS, FilterSpec, NotifySpec, ZoneSpec, check_notify_zones, check_required_zones,
                            parse_filters, parse_masks, parse_notify, parse_zones)
from .errors import ConfigError, UsageError
from .geometry import Polygon

DEFAULT_CONFIG_PATH = Path("/etc/pidetect/pidetect.toml")
DISPLAYS = ("none", "fb", "mjpeg", "window")
LOG_FORMATS = ("auto", "journal", "text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
ON_OFF_AUTO = ("motion", "regions")  # string keys that also take true / false
CAMERA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Folders that move under /var/lib/pidetect/<camera_name> when a camera has a name and they are left unset
PER_CAMERA_FOLDERS = {"state_dir": "", "snapshot_dir": "snapshots", "record_dir": "clips"}
ACCELERATORS = ("auto", "cpu", "edgetpu")
EDGETPU_DEVICE = re.compile(r"(usb|pci)?(:\d{1,3})?")  # libedgetpu's own names: "", usb, usb:N, pci, pci:N, :N
EDGETPU_DEVICE_RULE = "must be empty (the first Edge TPU found), usb, usb:N, pci, pci:N or :N (N counts from 0)"


@dataclass(frozen=True)
class Config:
    # camera / input
    camera_name: str = ""
    source: str = "auto"
    width: int = 0
    height: int = 0
    fps: float = 0.0
    pipe_codec: str = "yuv420"
    realtime: bool = False
    loop: bool = False
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    reconnect_max_delay: float = 30.0
    # model
    model: str = ""
    labels: str = ""
    backend: str = "auto"
    accelerator: str = "auto"
    edgetpu_device: str = ""
    threads: int = 0
    interpreters: int = 1
    threshold: float = 0.5
    max_results: int = 10
    nms_iou: float = 0.45
    only: Tuple[str, ...] = ()
    ignore: Tuple[str, ...] = ()
    regions: str = "auto"
    max_regions: int = 3
    # motion gate
    motion: str = "auto"
    motion_threshold: int = 25
    motion_min_area: float = 0.002
    detect_interval: float = 10.0
    stationary_interval: float = 1.0
    idle_motion_fps: float = 5.0
    show_motion: bool = False
    # tracking: lifetimes in seconds of the capture's clock (tracking/tracker.py)
    enter_seconds: float = 0.5
    max_disappeared: float = 3.0
    stationary_after: float = 10.0
    stationary_max_disappeared: float = 60.0
    track_iou: float = 0.2
    weak_threshold: float = 0.0
    enter_frames: int = 0  # the old keys, in frames: read, translated to seconds, and warned about
    leave_frames: int = 0
    per_frame: bool = False
    # output
    display: Tuple[str, ...] = ("none",)
    display_nice: int = 10
    fb_device: str = "/dev/fb0"
    fb_tty: str = "/dev/tty1"
    fb_format: str = "auto"
    mjpeg_address: str = "127.0.0.1"
    mjpeg_port: int = 8080
    # web UI (on the live view's address and port): who may look, where events are kept
    web_auth: str = "password"
    web_user: str = "pidetect"
    web_password_file: str = ""
    web_hosts: Tuple[str, ...] = ()
    web_best_effort: bool = False
    state_dir: str = "/var/lib/pidetect"
    event_max_days: float = 30.0
    snapshots: bool = False
    snapshot_dir: str = "/var/lib/pidetect/snapshots"
    snapshot_max_files: int = 500
    snapshot_max_mb: float = 200.0
    required_zones: Tuple[str, ...] = ()
    # clips of events (outputs/recorder.py)
    record: bool = False
    record_dir: str = "/var/lib/pidetect/clips"
    record_max_gb: float = 4.0
    record_max_days: float = 14.0
    pre_capture: float = 5.0
    post_capture: float = 5.0
    record_encoder: str = "auto"
    record_buffer_dir: str = ""
    # MQTT (and Home Assistant discovery)
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password_file: str = ""
    mqtt_tls: bool = False
    mqtt_ca_file: str = ""
    mqtt_client_id: str = ""
    mqtt_topic_prefix: str = ""
    mqtt_qos: int = 1
    mqtt_discovery: bool = True
    mqtt_discovery_prefix: str = "homeassistant"
    mqtt_labels: Tuple[str, ...] = ("person", "car", "cat", "dog")
    mqtt_queue: int = 1000
    # notifications ([notify.NAME] tables; outputs/notify.py)
    web_base_url: str = ""
    log_format: str = "auto"
    log_level: str = "info"
    metrics_interval: float = 30.0
    # service
    ready_timeout: float = 10.0
    max_frames: int = 0
    duration: float = 0.0
    # zones, object filters and masks: written in the file only, as tables after the flat keys (config_tables.py)
    zones: Tuple[ZoneSpec, ...] = ()
    filters: Tuple[FilterSpec, ...] = ()
    object_mask: Tuple[Polygon, ...] = ()
    motion_mask: Tuple[Polygon, ...] = ()
    notify: Tuple[NotifySpec, ...] = ()


HELP: Dict[str, str] = {
    "camera_name": "this camera's name when one Pi runs several (pidetect@NAME.service passes its NAME): the "
                   "journal's CAMERA field, its own MQTT/Home Assistant device and topics, and, unless set, "
                   "state_dir, snapshot_dir and record_dir under /var/lib/pidetect/NAME ('' = the only camera)",
    "source": "camera or stream: auto, 0, /dev/video0, picamera2, file.mp4, rtsp://…, http://…, "
              "'pipe:rpicam-vid … -o -', a GStreamer pipeline ending in appsink",
    "width": "requested capture width (0: camera default; required for pipe:)",
    "height": "requested capture height (0: camera default; required for pipe:)",
    "pipe_codec": "what a pipe: command writes: yuv420 (raw I420 frames, rpicam-vid --codec yuv420) or h264 "
                  "(rpicam-vid --codec h264, or ffmpeg copying an RTSP camera: decoded by FFmpeg, and clips store "
                  "the camera's own H.264 without encoding again)",
    "fps": "requested capture frame rate (0: camera default)",
    "realtime": "pace a file source at its native FPS like a camera (stale frames are dropped)",
    "loop": "restart a file source at its end instead of exiting",
    "open_timeout": "seconds to wait when opening a network stream",
    "read_timeout": "seconds without a frame before a live source counts as lost",
    "reconnect_max_delay": "cap of the exponential backoff between reconnect attempts, seconds",
    "model": "TFLite detection model: SSD with post-processing, or an Ultralytics YOLOv5/v8/11 export "
             "(default: the fetched Coral SSD MobileNetV2)",
    "labels": "labels file (default: the labels the model carries, else coco_labels.txt beside the model)",
    "backend": "auto, ai_edge_litert, tflite_runtime or tensorflow.lite",
    "accelerator": "auto (the Coral Edge TPU when one answers, else the CPU; said once in the log), cpu, or "
                   "edgetpu (only the Edge TPU: the default model's Edge TPU build, or a model compiled with "
                   "edgetpu_compiler, *_edgetpu.tflite)",
    "edgetpu_device": "which Edge TPU: empty for the first found, usb, usb:N, pci or pci:N (N counts from 0)",
    "threads": "threads per interpreter (0: the cores divided between the interpreters)",
    "interpreters": "inference workers, each with its own interpreter, on alternating frames (see docs/performance.md: "
                    "2 can beat 1 on throughput, at the cost of memory and per-frame latency)",
    "threshold": "minimum detection score, 0..1",
    "max_results": "at most this many detections per frame",
    "nms_iou": "overlap (IoU) above which NMS keeps only the best box of a class, 0..1 (YOLO models; SSD "
               "does NMS inside the model)",
    "regions": "run the model on square regions at its own scale around motion and followed objects (and the "
               "whole frame every detect_interval), so small, distant objects are seen: auto (on when the frame's short side is "
               "at least 1.5 times the model's input), on or off (the whole frame squeezed into the model's input)",
    "max_regions": "at most this many model runs a frame with regions on (each costs one inference)",
    "only": "report only these labels (comma-separated on the command line)",
    "ignore": "never report these labels",
    "motion": "run the model only when something moves: auto (on for cameras and streams, off for files), "
              "on or off",
    "motion_threshold": "grey levels (1..255) a pixel must change by to count as motion",
    "motion_min_area": "smallest moving blob, as a share of the frame (0.002 = 0.2 percent)",
    "detect_interval": "with motion on and nothing moving or in view, still look every this many seconds; with "
                       "regions on, the whole frame is looked at this often too",
    "stationary_interval": "with motion on, re-check objects in view that stand still every this many seconds",
    "idle_motion_fps": "with motion on and nothing moving, look for motion in this many frames a second (the others "
                       "are not decoded where the camera allows; 0 = every frame)",
    "show_motion": "draw the motion gate's boxes on the overlay (thin grey)",
    "enter_seconds": "an object must be seen for this many seconds (and at least twice) before it is 'entered'; "
                     "one-look flickers never reach the log",
    "max_disappeared": "seconds an object may go unseen (the model missing it, the motion gate resting, or the "
                       "object gone) before it has 'left'",
    "stationary_after": "seconds an object's box must stay put before it is stationary (a parked car): it is then "
                        "kept while unseen unless motion covers its place",
    "stationary_max_disappeared": "seconds a stationary object may go unseen, motion or not, before it has 'left'",
    "track_iou": "overlap (IoU) of a detection with an object's predicted box needed to continue it, 0..1",
    "weak_threshold": "detections scored from this up to threshold only keep objects already followed alive "
                      "(partly hidden people); they never start one (0: half of threshold; equal to threshold: off)",
    "enter_frames": "old key (frames): use enter_seconds; read as (enter_frames - 1) / 5 seconds",
    "leave_frames": "old key (frames): use max_disappeared; read as leave_frames / 5 seconds",
    "per_frame": "also log every frame's detections (event=frame); verbose",
    "display": "where to show the overlay: none, fb, mjpeg, window (comma-separated for several)",
    "display_nice": "CPU priority of the drawing thread only, as a nice value 0..19: 10 lets detection keep its "
                    "rate on a busy CPU and the screen take what is left; 0 shares the CPU equally (smoother "
                    "screen, slower detection)",
    "fb_device": "framebuffer device for --display fb",
    "fb_format": "framebuffer pixel layout: auto (read from the kernel), rgb565, bgr565, xrgb8888 or xbgr8888; "
                 "set it only if colours look swapped",
    "fb_tty": "console switched to graphics mode while drawing on the framebuffer ('' to leave it)",
    "mjpeg_address": "address the MJPEG view binds to (0.0.0.0 for the whole network)",
    "mjpeg_port": "port of the MJPEG view",
    "web_auth": "password: the web UI (live view, /events, API, /metrics) asks for web_user and the password in "
                "web_password_file when set, and refuses to listen beyond this Pi without one; none: anyone on the "
                "network may look (set it only on a network you trust)",
    "web_user": "user name of the web UI's password (HTTP Basic)",
    "web_password_file": "file holding the web UI's password (never the password itself in the config)",
    "web_hosts": "other names the web UI is reached by (a reverse proxy's, a DNS name): requests naming any other "
                 "host are refused (DNS rebinding); this Pi's own name, NAME.local, its addresses and localhost are "
                 "always accepted",
    "web_best_effort": "when the web UI's port is taken, go on detecting without it (default: exit 69, and systemd "
                       "tries again)",
    "state_dir": "folder of pidetect's own data: the event store (events.db)",
    "event_max_days": "keep events (and their snapshots) this many days (0: forever); a snapshot the caps remove leaves its event",
    "snapshots": "save a JPEG of the overlaid frame when an object enters",
    "snapshot_dir": "folder for snapshots",
    "snapshot_max_files": "keep at most this many snapshots (oldest removed first)",
    "snapshot_max_mb": "keep snapshots under this many megabytes",
    "record": "keep an H.264 clip (MP4) of every event, from pre_capture seconds before the object appeared to "
              "post_capture seconds after it left (needs FFmpeg: sudo apt install ffmpeg)",
    "record_dir": "folder for clips",
    "record_max_gb": "keep clips under this many gigabytes (oldest removed first; 0: no size cap)",
    "record_max_days": "keep clips this many days (0: until record_max_gb removes them)",
    "pre_capture": "seconds of video before the object appeared that its clip starts with",
    "post_capture": "seconds of video after the object left that its clip ends with",
    "record_encoder": "H.264 encoder: auto (the Pi 4's hardware h264_v4l2m2m when present, else libx264), "
                      "libx264 or h264_v4l2m2m",
    "record_buffer_dir": "tmpfs folder of the pre-roll (the last seconds of video, kept in RAM; default: the "
                         "service's runtime directory, else /dev/shm)",
    "required_zones": "notify only about objects in one of these zones: snapshots are taken when the object starts "
                      "counting in one, and MQTT's events topic gets those zones' records instead of every "
                      "detection ('' = everything notifies)",
    "mqtt_host": "MQTT broker to publish events to ('' = off), e.g. 192.168.1.10 or homeassistant.local",
    "mqtt_port": "MQTT broker port (1883; 8883 is the usual TLS port)",
    "mqtt_username": "MQTT user name ('' = anonymous)",
    "mqtt_password_file": "file holding the MQTT password (never the password itself in the config)",
    "mqtt_tls": "connect to the broker over TLS",
    "mqtt_ca_file": "CA certificate that signed the broker's certificate (implies mqtt_tls)",
    "mqtt_client_id": "MQTT client id and Home Assistant device id (default pidetect-<hostname>, "
                      "pidetect-<hostname>-<camera_name> for a named camera)",
    "mqtt_topic_prefix": "topics go under this prefix (default pidetect/<hostname>, "
                         "pidetect/<hostname>/<camera_name> for a named camera)",
    "mqtt_qos": "QoS of event messages, 0 or 1",
    "mqtt_discovery": "publish Home Assistant MQTT discovery configs",
    "mqtt_discovery_prefix": "Home Assistant's discovery prefix",
    "mqtt_labels": "labels that get Home Assistant entities (occupancy, count, last snapshot)",
    "mqtt_queue": "events kept while the broker is away (the oldest beyond this are dropped and counted)",
    "web_base_url": "the web UI's address as a phone reaches it, for links in notifications, e.g. "
                    "http://pi.local:8080 ('' = no links)",
    "log_format": "auto (journal under systemd, else text), journal, text or json",
    "log_level": "debug, info, warning or error",
    "metrics_interval": "seconds between metrics records",
    "ready_timeout": "seconds to wait for the first frame before telling systemd READY anyway",
    "max_frames": "stop after this many inferred frames (0: no limit)",
    "duration": "stop after this many seconds (0: no limit)",
}

# The keys by what they are about: `run --help` lists its options in these groups and docs/configuration.md
# (made by `python -m pidetect.tools.config_reference`) is written from them; a test fails when a key is missing.
GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("camera", ("camera_name", "source", "width", "height", "fps", "pipe_codec", "realtime", "loop", "open_timeout",
                "read_timeout", "reconnect_max_delay")),
    ("model", ("model", "labels", "backend", "accelerator", "edgetpu_device", "threads", "interpreters", "threshold",
               "max_results", "nms_iou", "only", "ignore", "regions", "max_regions")),
    ("motion", ("motion", "motion_threshold", "motion_min_area", "detect_interval", "stationary_interval",
                "idle_motion_fps", "show_motion")),
    ("tracking", ("enter_seconds", "max_disappeared", "stationary_after", "stationary_max_disappeared", "track_iou",
                  "weak_threshold", "enter_frames", "leave_frames", "per_frame")),
    ("display and web", ("display", "display_nice", "fb_device", "fb_tty", "fb_format", "mjpeg_address",
                         "mjpeg_port", "web_auth", "web_user", "web_password_file", "web_hosts", "web_best_effort",
                         "web_base_url", "state_dir", "event_max_days")),
    ("snapshots and recording", ("snapshots", "snapshot_dir", "snapshot_max_files", "snapshot_max_mb",
                                 "required_zones", "record", "record_dir", "record_max_gb", "record_max_days",
                                 "pre_capture", "post_capture", "record_encoder", "record_buffer_dir")),
    ("MQTT", ("mqtt_host", "mqtt_port", "mqtt_username", "mqtt_password_file", "mqtt_tls", "mqtt_ca_file",
              "mqtt_client_id", "mqtt_topic_prefix", "mqtt_qos", "mqtt_discovery", "mqtt_discovery_prefix",
              "mqtt_labels", "mqtt_queue")),
    ("logging and service", ("log_format", "log_level", "metrics_interval", "ready_timeout", "max_frames",
                             "duration")),
)
# Keys that take one of a few words (or numbers): `run --help` and the reference list them
CHOICES: Dict[str, Tuple[Any, ...]] = {
    "pipe_codec": ("yuv420", "h264"), "backend": ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow.lite"),
    "accelerator": ACCELERATORS, "regions": ("auto", "on", "off"), "motion": ("auto", "on", "off"),
    "display": DISPLAYS, "fb_format": ("auto", "rgb565", "bgr565", "xrgb8888", "xbgr8888"),
    "web_auth": ("password", "none"), "record_encoder": ("auto", "libx264", "h264_v4l2m2m"), "mqtt_qos": (0, 1),
    "log_format": LOG_FORMATS, "log_level": LOG_LEVELS,
}
PORT_KEYS = ("mjpeg_port", "mqtt_port")
RULES = {  # the checks of `check` that are not a plain range or a choice, as the reference says them
    "threshold": "between 0 and 1", "track_iou": "between 0 and 1", "nms_iou": "more than 0 and at most 1",
    "motion_threshold": "between 1 and 255", "motion_min_area": "more than 0 and less than 1",
    "display_nice": "between 0 and 19", "camera_name": "1 to 64 letters, digits, - or _",
    "edgetpu_device": EDGETPU_DEVICE_RULE.replace("must be ", ""),
    "mjpeg_address": "an IP address: 127.0.0.1 (this Pi only), 0.0.0.0 or :: (the whole network)",
}


def allowed_text(key: str) -> str:
    """What a key takes, in a few words: its choices or its range ('' when any text of its kind)."""
    if key in CHOICES:
        return ("one or more of " if key == "display" else "one of ") + ", ".join(map(str, CHOICES[key]))
    if key in PORT_KEYS:
        return "a port number 1..65535"
    if key in RULES:
        return RULES[key]
    for name, low, high in NUMERIC_RANGES:
        if name == key:
            return _range_text(key, low, high)
    return ""


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def default_text(key: str) -> str:
    """A key's default as it is written in the file."""
    value = FIELDS[key].default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)

FLAG_FIELDS = {name: f for name, f in FIELDS.items() if name not in TABLE_KEYS}  # every key that is also a flag


TOP_LEVEL_KEYS = frozenset(FIELDS)


def sysfs_root() -> Path:
    """/sys, or a stand-in folder named by $PIDETECT_SYSFS (tests, containers): fb geometry, Pi health."""
    return Path(os.environ.get("PIDETECT_SYSFS", "/sys"))


def _line_of(text: str, key: str) -> Optional[int]:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*({re.escape(key)}\s*=|\[\s*{re.escape(key)}\s*\])", line):
            return number
    return None


def _expected_type(name: str) -> type:
    default = FIELDS[name].default
    return type(default)


def coerce(name: str, value: Any) -> Any:
    """Convert a TOML or CLI value to the field's type; raise ValueError saying what is allowed."""
    if name in TABLE_KEYS:
        raise ValueError("is written in the config file only (a table or a list of polygons), see "
                         "deploy/pidetect.toml")
    kind = _expected_type(name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("must be a whole number")
        try:
            return int(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("must be a number")
        try:
            return float(value)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",")]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise ValueError("must be a list of strings, e.g. [\"person\", \"cat\"]")
        return tuple(v for v in items if v)
    if name in ON_OFF_AUTO:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return "on" if value.lower() in ("true", "yes", "1") else "off"
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError("must be a string")
    return str(value)


def check(config: Config) -> List[Tuple[str, str]]:
    """(key, problem) for every value out of range; empty when the config can run."""
    problems = []

    def need(ok: bool, key: str, text: str) -> None:
        if not ok:
            problems.append((key, text))

    c = config
    need(0.0 <= c.threshold <= 1.0, "threshold", "must be between 0 and 1")
    need(0.0 <= c.track_iou <= 1.0, "track_iou", "must be between 0 and 1")
    need(c.weak_threshold <= c.threshold, "weak_threshold",
         f"must be at most threshold ({c.threshold:g}): weak detections are those under it")
    need(0.0 < c.nms_iou <= 1.0, "nms_iou", "must be more than 0 and at most 1")
    need(1 <= c.mqtt_port <= 65535, "mqtt_port", "must be a port number 1..65535")
    need(c.mqtt_qos in (0, 1), "mqtt_qos", "must be 0 or 1")
    need(not c.mqtt_host or re.fullmatch(r"[A-Za-z0-9._:\-\[\]]+", c.mqtt_host) is not None, "mqtt_host",
         "must be a host name or an IP address")
    need(c.mqtt_topic_prefix == "" or not any(ch in c.mqtt_topic_prefix for ch in "#+"), "mqtt_topic_prefix",
         "must not contain the MQTT wildcards # or +")
    need(c.motion in ("auto", "on", "off"), "motion", "must be auto, on or off (true and false work too)")
    need(c.regions in ("auto", "on", "off"), "regions", "must be auto, on or off (true and false work too)")
    need(1 <= c.motion_threshold <= 255, "motion_threshold", "must be between 1 and 255")
    need(0.0 < c.motion_min_area < 1.0, "motion_min_area", "must be a share of the frame between 0 and 1")
    need(c.mqtt_discovery_prefix != "" and not any(ch in c.mqtt_discovery_prefix for ch in "#+"),
         "mqtt_discovery_prefix", "must be a topic without the MQTT wildcards # or + (Home Assistant's is homeassistant)")
    for key, low, high in NUMERIC_RANGES:
        value = getattr(c, key)
        # written so that NaN fails too (every comparison with NaN is false)
        ok = (low < value if key in OPEN_BELOW else low <= value) and value <= high
        need(ok, key, f"must be {_range_text(key, low, high)}")
    need(1 <= c.mjpeg_port <= 65535, "mjpeg_port", "must be a port number 1..65535")
    need(0 <= c.display_nice <= 19, "display_nice", "must be between 0 and 19")
    need(c.pipe_codec in ("yuv420", "h264"), "pipe_codec", "must be yuv420 or h264")
    need(c.record_encoder in ("auto", "libx264", "h264_v4l2m2m"), "record_encoder",
         "must be auto, libx264 or h264_v4l2m2m")
    need(bool(c.display) and all(d in DISPLAYS for d in c.display), "display",
         "must be one or more of " + ", ".join(DISPLAYS))
    need(not ("none" in c.display and len(c.display) > 1), "display", "'none' cannot be combined with a display")
    need(c.fb_format in ("auto", "rgb565", "bgr565", "xrgb8888", "xbgr8888"), "fb_format",
         "must be auto, rgb565, bgr565, xrgb8888 or xbgr8888")
    need(c.web_auth in ("password", "none"), "web_auth", "must be password or none")
    need(bool(c.web_user) and ":" not in c.web_user and c.web_user.isprintable(), "web_user",
         "must be a user name without ':' (HTTP Basic)")
    need(bool(c.state_dir.strip()), "state_dir", "must be a folder, e.g. /var/lib/pidetect")
    need(bool(c.snapshot_dir.strip()), "snapshot_dir", "must be a folder, e.g. /var/lib/pidetect/snapshots (an empty "
         "value would write into whatever folder pidetect was started in)")
    need(bool(c.record_dir.strip()), "record_dir", "must be a folder, e.g. /var/lib/pidetect/clips (an empty value "
         "would write into whatever folder pidetect was started in)")
    need(c.log_format in LOG_FORMATS, "log_format", "must be one of " + ", ".join(LOG_FORMATS))
    need(c.log_level in LOG_LEVELS, "log_level", "must be one of " + ", ".join(LOG_LEVELS))
    need(c.backend in ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow.lite"), "backend",
         "must be auto, ai_edge_litert, tflite_runtime or tensorflow.lite")
    need(c.camera_name == "" or CAMERA_NAME.fullmatch(c.camera_name) is not None, "camera_name",
         "must be 1 to 64 letters, digits, '-' or '_' (it names the journal field, MQTT topics and folders)")
    need(c.accelerator in ACCELERATORS, "accelerator", "must be " + ", ".join(ACCELERATORS[:-1]) + " or "
         + ACCELERATORS[-1])
    need(EDGETPU_DEVICE.fullmatch(c.edgetpu_device) is not None, "edgetpu_device", EDGETPU_DEVICE_RULE)
    need(not (c.accelerator == "edgetpu" and c.interpreters > 1), "interpreters",
         "must be 1 with accelerator = edgetpu (one Edge TPU runs one model at a time)")
    need(bool(c.source.strip()), "source", "must not be empty (use auto to find a camera)")
    need(c.web_base_url == "" or re.fullmatch(r"https?://[^\s/]+(/\S*)?", c.web_base_url) is not None, "web_base_url",
         "must be the web UI's address as a phone reaches it, e.g. http://pi.local:8080 ('' = no links)")
    need(valid_bind_address(c.mjpeg_address), "mjpeg_address",
         "must be an IP address to listen on: 127.0.0.1 (this Pi only), 0.0.0.0 or :: (the whole network)")
    if c.source.startswith("pipe:"):
        need(c.width > 0 and c.height > 0, "width", "a pipe: source needs width and height (raw frames have no header)")
        need(c.width % 2 == 0 and c.height % 2 == 0, "width",
             f"a pipe: source reads I420 frames, whose width and height must be even (got {c.width}x{c.height})")
    return problems


# Every numeric key's range: (key, lowest, highest). Out of range is a config error naming the key (never an
# OverflowError, a 56 GiB buffer or a timeout that never ends). Keys in OPEN_BELOW must be more than `lowest`.
DAY = 86400.0
NUMERIC_RANGES = (
    ("width", 0, 16384), ("height", 0, 16384), ("fps", 0, 1000),
    ("open_timeout", 0, 3600), ("read_timeout", 0, 3600), ("reconnect_max_delay", 0, 3600),
    ("threads", 0, 256), ("interpreters", 1, 8), ("max_results", 1, 1000), ("max_regions", 1, 16),
    ("detect_interval", 0, DAY), ("stationary_interval", 0, DAY), ("idle_motion_fps", 0, 1000),
    ("enter_frames", 0, 100000), ("leave_frames", 0, 100000), ("enter_seconds", 0, 3600),
    ("max_disappeared", 0, DAY), ("stationary_after", 0, DAY), ("stationary_max_disappeared", 0, DAY),
    ("weak_threshold", 0, 1),
    ("snapshot_max_files", 1, 10_000_000), ("snapshot_max_mb", 0, 100_000_000),
    ("record_max_gb", 0, 1_000_000), ("record_max_days", 0, 36500), ("pre_capture", 0, 60), ("post_capture", 0, 600),
    ("mqtt_queue", 1, 1_000_000), ("metrics_interval", 0, DAY), ("ready_timeout", 0, 3600),
    ("max_frames", 0, 2**53), ("duration", 0, 100 * 365 * DAY), ("event_max_days", 0, 36500),
)
OPEN_BELOW = {"max_disappeared", "stationary_after", "stationary_max_disappeared", "open_timeout", "read_timeout", "reconnect_max_delay", "detect_interval", "stationary_interval",
              "snapshot_max_mb", "metrics_interval", "ready_timeout"}


def _range_text(key: str, low: float, high: float) -> str:
    def show(value: float) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return (f"more than {show(low)} and at most {show(high)}" if key in OPEN_BELOW
            else f"between {show(low)} and {show(high)}")


OLD_FRAME_RATE = 5.0  # frames a second the old frame-counted keys are read at: a Pi 4's rate on the default model


def tracking_lifetimes(config: Config) -> Tuple[float, float, List[str]]:
    """(enter_seconds, max_disappeared, warnings): the old frame-counted keys, when set, translated at
    OLD_FRAME_RATE, each with one warning saying what to write instead."""
    enter, gone, warnings = config.enter_seconds, config.max_disappeared, []
    if config.enter_frames:
        enter = (config.enter_frames - 1) / OLD_FRAME_RATE
        warnings.append(f"enter_frames = {config.enter_frames} counts frames, which run at different rates on "
                        f"different machines: read as enter_seconds = {enter:g}; write enter_seconds instead")
    if config.leave_frames:
        gone = config.leave_frames / OLD_FRAME_RATE
        warnings.append(f"leave_frames = {config.leave_frames} counts frames, which run at different rates on "
                        f"different machines: read as max_disappeared = {gone:g}; write max_disappeared instead")
    return enter, gone, warnings


def weak_floor(config: Config) -> float:
    """The score from which detections are weak ones (0 in the config: half of threshold)."""
    return config.weak_threshold if config.weak_threshold > 0 else config.threshold / 2


def valid_bind_address(address: str) -> bool:
    """An IPv4/IPv6 literal or 'localhost'. Empty is refused: it would silently mean every interface."""
    import ipaddress

    if address == "localhost":
        return True
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def nearest_key(key: str) -> Optional[str]:
    """The key a typo meant: the same letters without separators (mqttHost), else the closest spelling."""
    import difflib

    same = [k for k in FIELDS if k.replace("_", "") == key.replace("_", "").replace("-", "").lower()]
    if same:
        return same[0]
    close = difflib.get_close_matches(key.lower().replace("-", "_"), list(FIELDS), n=1, cutoff=0.75)
    return close[0] if close else None


KEY_LINE = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")
TABLE_LINE = re.compile(r"\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")


def duplicate_key(text: str) -> Optional[Tuple[str, str, int, int]]:
    """(key, table, first line, second line) of a key written twice in one table, the usual cause of tomllib's
    "Cannot overwrite a value": an uncommented example line below the installer's own."""
    seen: Dict[Tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = TABLE_LINE.match(line)
        if header and not line.lstrip().startswith("[["):
            table = header.group(1)
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        key = match.group(1).strip('"')
        if (table, key) in seen:
            return key, table, seen[(table, key)], number
        seen[(table, key)] = number
    return None


def load_file(path: Path) -> Tuple[Dict[str, Any], str]:
    """The file's values, coerced and checked for unknown keys; and its text (for line numbers)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: Windows editors start files with a BOM
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (create it from deploy/pidetect.toml, or pass "
                          "--config PATH)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; pass the TOML file itself") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        twice = duplicate_key(text)
        if twice:  # tomllib says only "Cannot overwrite a value (at line 22, column 23)"
            key, table, first, second = twice
            place = f" in [{table}]" if table else ""
            raise ConfigError(f"{path}:{second}: {key} is set twice{place} (lines {first} and {second}); keep one "
                              "(in the installed file, change the line that is not commented out)") from None
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    values = {}
    for key, value in raw.items():
        where = f"{path}:{_line_of(text, key) or '?'}"
        if key == "zones":
            values[key] = parse_zones(value, text, str(path), TOP_LEVEL_KEYS)
            continue
        if key == "filters":
            values[key] = parse_filters(value, text, str(path), TOP_LEVEL_KEYS)
            continue
        if key == "notify":
            values[key] = parse_notify(value, text, str(path), TOP_LEVEL_KEYS)
            continue
        if key in ("object_mask", "motion_mask"):
            values[key] = parse_masks(value, key, where)
            continue
        if key not in FIELDS:
            close = nearest_key(key)
            hint = f"; did you mean '{close}'?" if close else "; every key is in docs/configuration.md"
            kind = "section" if isinstance(value, dict) else "key"
            raise ConfigError(f"{where}: unknown {kind} '{key}'{hint}")
        try:
            values[key] = coerce(key, value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} = {_show(value)}: {exc}") from None
    return values, text


def build_config(path: Optional[Path], overrides: Dict[str, Any], path_required: bool = False) -> Config:
    """Defaults < file < command line. A missing default file is fine; a named one must exist."""
    values: Dict[str, Any] = {}
    text, origin = "", "command line"
    if path is not None and (path_required or Path(path).exists()):
        values, text = load_file(path)
        origin = str(path)
    for key, value in overrides.items():
        if value is None:
            continue
        try:
            values[key] = coerce(key, value)
        except ValueError as exc:
            raise UsageError(f"--{key.replace('_', '-')} {_show(value)}: {exc}") from None
    config = Config(**values)
    if config.camera_name and CAMERA_NAME.fullmatch(config.camera_name):
        config = with_camera_folders(config, values)
    if config.required_zones:
        flag = overrides.get("required_zones") is not None
        where = "--required-zones" if flag else f"{origin}:{_line_of(text, 'required_zones') or '?'}"
        try:
            check_required_zones(config.required_zones, config.zones, where)
        except ConfigError as exc:
            raise (UsageError(str(exc)) if flag else exc) from None
    if config.notify:
        check_notify_zones(config.notify, config.zones)
        if any(spec.attach == "snapshot" for spec in config.notify) and not config.snapshots:
            config = dataclasses.replace(config, snapshots=True)  # the picture a notification carries
    config = with_home_expanded(config)
    problems = check(config)
    if problems:
        key, problem = problems[0]
        if key in overrides and overrides[key] is not None:
            raise UsageError(f"--{key.replace('_', '-')} {_show(getattr(config, key))}: {problem}")
        where = f"{origin}:{_line_of(text, key) or '?'}: {key}" if text else key
        raise ConfigError(f"{where} = {_show(getattr(config, key))}: {problem}")
    return config


# Keys naming a file or folder: `~` is the user's home in each (a literal "~" folder in the working directory
# is a trap: `rm -rf ~` there deletes the home folder)
PATH_KEYS = ("model", "labels", "web_password_file", "state_dir", "snapshot_dir", "record_dir", "record_buffer_dir",
             "mqtt_password_file", "mqtt_ca_file")


def with_home_expanded(config: Config) -> Config:
    expanded = {key: os.path.expanduser(getattr(config, key)) for key in PATH_KEYS
                if getattr(config, key).startswith("~")}
    return dataclasses.replace(config, **expanded) if expanded else config


def with_camera_folders(config: Config, given: Dict[str, Any]) -> Config:
    """A named camera's own folders for the ones not given: two cameras on one Pi never share a file."""
    home = Path("/var/lib/pidetect") / config.camera_name
    moved = {key: str(home / sub) if sub else str(home) for key, sub in PER_CAMERA_FOLDERS.items() if key not in given}
    return dataclasses.replace(config, **moved)


def _show(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it, cut short: a 10 MB value must not become a 10 MB error line."""
    text = ",".join(value) if isinstance(value, tuple) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
