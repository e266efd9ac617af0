"""Events to an MQTT broker, with Home Assistant discovery: the record stream, published.

Fed from the same records as the journal (entered/left, metrics), never from the pipeline's hot
path: `publish_record` only queues. A publisher thread hands messages to paho-mqtt, whose own
network thread connects, reconnects with backoff (1 s doubling to 30 s) and resends what was in
flight. While the broker is away, events wait in a bounded queue (the oldest beyond `mqtt_queue`
are dropped, counted in the metrics and said once per outage); retained state (counts, metrics,
snapshots, availability) keeps only its newest value per topic and is sent again on reconnect.

Topics, under `mqtt_topic_prefix` (default pidetect/<hostname>, with /<camera_name> for one of several cameras):
  <prefix>/available          online | offline (retained; offline is also the last will)
  <prefix>/events             one JSON message per entered/left (the journal record's fields), QoS 1
  <prefix>/<label>            how many of that label are in view now (retained)
  <prefix>/<label>/snapshot   JPEG of the last one that entered (retained; with snapshots on)
  <prefix>/zones/<zone>/<label>  how many of that label count in the zone now (retained)
  <prefix>/zones/<zone>       how many objects of any label count in the zone now (retained)
The events topic also gets every `zone` record; with `required_zones` it gets only those zones'
records (and no `detection` records): "tell me about people on the porch" and nothing else.
It also gets each `clip` record (saved: its path, start, end, labels, track ids, zones), with or without
required_zones: with them, clips are only made of objects in those zones.
  <prefix>/metrics            the metrics record (retained)
Home Assistant discovery under `mqtt_discovery_prefix` (default homeassistant), sent on connect and
again whenever Home Assistant announces itself on <discovery_prefix>/status.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, Tuple

from .. import __version__
from ..errors import ConfigError, UnavailableError
from ..files import read_password_file
from ..records import ERR, INFO, WARNING

log = logging.getLogger(__name__)
Emit = Callable[[dict, int], None]


@dataclass(frozen=True)
class MqttSettings:
    """The config's mqtt_* keys as the sink uses them; built only by settings_from_config, so the
    defaults live in one place (Config)."""

    host: str
    port: int
    username: str
    password: str  # read from mqtt_password_file
    tls: bool
    ca_file: str
    client_id: str
    topic_prefix: str
    qos: int
    discovery: bool
    discovery_prefix: str
    labels: Tuple[str, ...]
    queue: int
    zones: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # (zone, labels with entities: its objects, else labels)
    required_zones: Tuple[str, ...] = ()
    camera_name: str = ""  # one of several cameras on this Pi: its own client id, topics and device

    @property
    def node(self) -> str:
        camera = f"-{self.camera_name}" if self.camera_name else ""
        return slug(self.client_id or f"pidetect-{socket.gethostname()}{camera}")

    @property
    def prefix(self) -> str:
        camera = f"/{self.camera_name}" if self.camera_name else ""
        return (self.topic_prefix or f"pidetect/{socket.gethostname()}{camera}").rstrip("/")

    @property
    def device_name(self) -> str:
        """Home Assistant's name of the device: the Pi, and the camera when it has several."""
        return f"pidetect {socket.gethostname()}" + (f" {self.camera_name}" if self.camera_name else "")

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"


SIMPLE_NAME = re.compile(r"[A-Za-z0-9-]+( [A-Za-z0-9-]+)*")


def slug(text: str) -> str:
    """A topic level and Home Assistant object id for a label or client id, one-to-one.

    Names of ASCII letters, digits, '-' and single spaces (all of COCO's) keep today's readable
    form: spaces become '_' ('traffic light' -> traffic_light). Any other name is transliterated
    (é -> e; a character with no ASCII form -> its code point, 人 -> u4eba) and given 6 hex digits
    of its SHA-1, so 人, 狗 and 猫, or 'a_b' and 'a b', never share a topic or an entity.
    """
    if SIMPLE_NAME.fullmatch(text):
        return text.replace(" ", "_")
    import hashlib
    import unicodedata

    readable = []
    for char in text:
        if char.isascii() and (char.isalnum() or char == "-"):
            readable.append(char)
            continue
        plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        plain = re.sub(r"[^A-Za-z0-9-]", "", plain)
        readable.append(plain or ("_" if char.isascii() or char.isspace() else f"u{ord(char):x}"))
    stem = re.sub(r"_+", "_", "".join(readable)).strip("_")[:48]
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{stem}_{digest}" if stem else f"x{digest}"


def check_topic_keys(labels, key: str = "mqtt_labels") -> None:
    """Two labels that would share a topic are a config error (slug makes that all but impossible)."""
    seen: Dict[str, str] = {}
    for label in labels:
        other = seen.setdefault(slug(label), label)
        if other != label:
            raise ConfigError(f"{key}: '{other}' and '{label}' would share the MQTT topic {slug(label)}; "
                              "keep one of them")


def settings_from_config(config) -> MqttSettings:
    """The config's mqtt_* keys; the password is read from its file here (never stored in the config)."""
    password = ""
    if config.mqtt_password_file:
        password = read_password_file(config.mqtt_password_file, "mqtt_password_file")
        if not config.mqtt_username:
            raise ConfigError("mqtt_password_file is set but mqtt_username is empty; set both or neither")
    check_topic_keys(config.mqtt_labels)
    if config.mqtt_ca_file and not Path(config.mqtt_ca_file).is_file():
        raise ConfigError(f"mqtt_ca_file {config.mqtt_ca_file}: no such file")
    return MqttSettings(host=config.mqtt_host, port=config.mqtt_port, username=config.mqtt_username,
                        password=password, tls=config.mqtt_tls or bool(config.mqtt_ca_file),
                        ca_file=config.mqtt_ca_file, client_id=config.mqtt_client_id,
                        topic_prefix=config.mqtt_topic_prefix, qos=config.mqtt_qos, discovery=config.mqtt_discovery,
                        discovery_prefix=config.mqtt_discovery_prefix, labels=tuple(config.mqtt_labels),
                        queue=config.mqtt_queue,
                        zones=tuple((zone.name, zone.objects or tuple(config.mqtt_labels)) for zone in config.zones),
                        required_zones=tuple(config.required_zones), camera_name=config.camera_name)


def make_client(settings: MqttSettings):
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise UnavailableError("MQTT needs paho-mqtt: pip install \"paho-mqtt>=2,<3\"") from None
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.node, clean_session=True)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls:
        try:
            client.tls_set(ca_certs=settings.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"mqtt_ca_file {settings.ca_file}: not a usable CA certificate ({exc})") from None
    return client


def discovery_messages(settings: MqttSettings) -> List[Tuple[str, dict]]:
    """Home Assistant MQTT discovery configs: one device, occupancy + count per label, health sensors, images."""
    node, prefix = settings.node, settings.prefix
    device = {"identifiers": [node], "name": settings.device_name, "model": "pidetect",
              "manufacturer": "pidetect", "sw_version": __version__}
    common = {"availability_topic": f"{prefix}/available", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    messages = []

    def occupancy_and_count(object_id: str, occupancy_name: str, count_name: str, state: str) -> None:
        """A binary sensor (on while the count is above 0) and a count sensor, both on one count topic."""
        messages.append((f"{settings.discovery_prefix}/binary_sensor/{node}/{object_id}_occupancy/config", {
            **common, "name": occupancy_name, "unique_id": f"{node}_{object_id}_occupancy", "state_topic": state,
            "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}", "device_class": "occupancy"}))
        messages.append((f"{settings.discovery_prefix}/sensor/{node}/{object_id}_count/config", {
            **common, "name": count_name, "unique_id": f"{node}_{object_id}_count", "state_topic": state,
            "state_class": "measurement", "icon": "mdi:counter"}))

    for label in settings.labels:
        key = slug(label)
        state = f"{prefix}/{key}"
        occupancy_and_count(key, f"{label} in view", f"{label} count", state)
        messages.append((f"{settings.discovery_prefix}/image/{node}/{key}_snapshot/config", {
            **common, "name": f"last {label}", "unique_id": f"{node}_{key}_snapshot",
            "image_topic": f"{state}/snapshot", "content_type": "image/jpeg"}))
    for zone, labels in settings.zones:
        for label in labels:
            key = slug(label)
            occupancy_and_count(f"{zone}_{key}", f"{label} in {zone}", f"{label} count in {zone}",
                                f"{prefix}/zones/{zone}/{key}")
    for key, name, template, extra in (
            ("fps", "inference fps", "{{ value_json.inference_fps }}", {"unit_of_measurement": "fps"}),
            ("inference_ms", "inference time", "{{ value_json.inference_ms_p50 }}",
             {"unit_of_measurement": "ms", "device_class": "duration"}),
            ("cpu", "CPU", "{{ value_json.cpu_percent }}", {"unit_of_measurement": "%"}),
            ("temperature", "SoC temperature", "{{ value_json.temp_c }}",
             {"unit_of_measurement": "°C", "device_class": "temperature"})):
        messages.append((f"{settings.discovery_prefix}/sensor/{node}/{key}/config", {
            **common, "name": name, "unique_id": f"{node}_{key}", "state_topic": f"{prefix}/metrics",
            "value_template": template, "state_class": "measurement", "entity_category": "diagnostic", **extra}))
    return messages


class MqttSink:
    """Receives every record; publishes what the house listens to. Never blocks or raises into the daemon."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, emit: Emit):
        self.settings, self.emit = settings, emit
        self.client = make_client(settings)
        self._cond = threading.Condition()
        self._events: Deque[Tuple[str, bytes]] = collections.deque()
        self._state: Dict[str, Tuple[bytes, bool]] = {}  # retained topic -> (payload, is a file path)
        self._counts: Dict[str, int] = {label: 0 for label in map(slug, settings.labels)}
        # zone -> label slug -> objects counting there; every configured pair starts at 0
        self._zone_counts: Dict[str, Dict[str, int]] = {zone: {slug(label): 0 for label in labels}
                                                        for zone, labels in settings.zones}
        self.connected = False
        self.stopping = False
        self.dropped = 0
        self._dropped_reported = 0
        self._said_error: Optional[str] = None
        self._outage = False
        self._outage_drop_said = False
        self._sent_state: Dict[str, Tuple[bytes, bool]] = {}  # retained values, re-sent after a reconnect
        prefix = settings.prefix
        self.client.will_set(f"{prefix}/available", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        for label in self._counts:
            self._set_state(f"{prefix}/{label}", b"0")
        for zone, counts in self._zone_counts.items():
            self._set_state(f"{prefix}/zones/{zone}", b"0")
            for label in counts:
                self._set_state(f"{prefix}/zones/{zone}/{label}", b"0")
        self.client.connect_async(settings.host, settings.port, keepalive=30)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, name="pidetect-mqtt", daemon=True)
        self._worker.start()

    # --- records in (any thread) ----------------------------------------------------------------
    def publish_record(self, record: dict) -> None:
        event = record.get("event")
        prefix = self.settings.prefix
        if event == "zone" and record.get("state") in ("entered", "left"):
            self._zone_record(record)
        elif event == "detection" and record.get("state") in ("entered", "left"):
            if not self.settings.required_zones:
                self._queue_event(f"{prefix}/events", json.dumps(record, default=str).encode())
            label = slug(record["label"])
            with self._cond:  # records arrive from several threads
                count = _count_after(self._counts, label, record["state"])
            self._set_state(f"{prefix}/{label}", str(count).encode())
            if record["state"] == "entered" and record.get("snapshot"):
                self._set_state(f"{prefix}/{label}/snapshot", record["snapshot"].encode(), is_file=True)
        elif event == "detection" and record.get("state") == "stationary":
            if not self.settings.required_zones:  # the object stays counted: only its state changes
                self._queue_event(f"{prefix}/events", json.dumps(record, default=str).encode())
        elif event == "clip" and record.get("state") == "saved":
            self._queue_event(f"{prefix}/events", json.dumps(record, default=str).encode())
        elif event == "metrics":
            self._set_state(f"{prefix}/metrics", json.dumps(record, default=str).encode())

    def _zone_record(self, record: dict) -> None:
        prefix, zone = self.settings.prefix, record["zone"]
        required = self.settings.required_zones
        if not required or zone in required:
            self._queue_event(f"{prefix}/events", json.dumps(record, default=str).encode())
        label = slug(record["label"])
        with self._cond:
            counts = self._zone_counts.setdefault(zone, {})
            count = _count_after(counts, label, record["state"])
            total = sum(counts.values())
        self._set_state(f"{prefix}/zones/{zone}/{label}", str(count).encode())
        self._set_state(f"{prefix}/zones/{zone}", str(total).encode())
        if record["state"] == "entered" and record.get("snapshot"):
            self._set_state(f"{prefix}/{label}/snapshot", record["snapshot"].encode(), is_file=True)

    def metrics_fields(self) -> dict:
        with self._cond:
            dropped, self._dropped_reported = self.dropped - self._dropped_reported, self.dropped
            return {"mqtt_connected": self.connected, "mqtt_queued": len(self._events), "mqtt_dropped": dropped}

    def _queue_event(self, topic: str, payload: bytes) -> None:
        with self._cond:
            if len(self._events) >= self.settings.queue:
                self._events.popleft()
                self.dropped += 1
                if not self._outage_drop_said:  # once per episode: until the backlog is delivered
                    self._outage_drop_said = True
                    self.emit({"event": "mqtt", "state": "dropping", "broker": self.settings.broker,
                               "detail": f"queue full ({self.settings.queue} events): dropping the oldest until the "
                                         "broker is back"}, WARNING)
            self._events.append((topic, payload))
            self._cond.notify()

    def _set_state(self, topic: str, payload: bytes, is_file: bool = False) -> None:
        with self._cond:
            self._state[topic] = (payload, is_file)
            self._cond.notify()

    # --- paho callbacks (paho's network thread) -------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._error(f"the broker refused the connection: {reason_code}" +
                        ("; check mqtt_username and mqtt_password_file" if "password" in str(reason_code).lower()
                         or "authori" in str(reason_code).lower() else ""))
            return
        prefix = self.settings.prefix
        with self._cond:
            self.connected, self._outage, self._said_error = True, False, None
            self._state[f"{prefix}/available"] = (b"online", False)
            for topic, config in (discovery_messages(self.settings) if self.settings.discovery else []):
                self._state[topic] = (json.dumps(config).encode(), False)
            self._state.update({topic: value for topic, value in self._sent_state.items()
                                if topic not in self._state})
            self._cond.notify()
        if self.settings.discovery:
            client.subscribe(f"{self.settings.discovery_prefix}/status", qos=1)
        self.emit({"event": "mqtt", "state": "connected", "broker": self.settings.broker,
                   "detail": f"topics under {prefix}/"}, INFO)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        with self._cond:
            self.connected = False
        if self.stopping:
            return
        if not self._outage:
            self._outage = True
            self.emit({"event": "mqtt", "state": "lost", "broker": self.settings.broker,
                       "detail": f"{reason_code}; retrying with backoff up to 30 s"}, WARNING)

    def _on_connect_fail(self, _client, _userdata) -> None:
        if not self._outage:
            self._outage = True
            self.emit({"event": "mqtt", "state": "retrying", "broker": self.settings.broker,
                       "detail": "cannot reach the broker (refused, unreachable, or TLS handshake failed); "
                                 "retrying with backoff up to 30 s; detection goes on"}, WARNING)

    def _on_message(self, _client, _userdata, message) -> None:
        if message.payload == b"online" and self.settings.discovery:  # Home Assistant (re)started
            with self._cond:
                for topic, config in discovery_messages(self.settings):
                    self._state[topic] = (json.dumps(config).encode(), False)
                self._cond.notify()

    def _error(self, text: str) -> None:
        if self._said_error != text:
            self._said_error = text
            self.emit({"event": "mqtt", "state": "error", "broker": self.settings.broker, "detail": text}, ERR)

    # --- the publisher thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self.stopping and not (self.connected and (self._events or self._state)):
                    self._cond.wait(0.5)
                if self.stopping and not (self.connected and (self._events or self._state)):
                    return
                state, self._state = self._state, {}
                events = list(self._events)
                self._events.clear()
            unsent_events = self._send_events(events)
            unsent_state = self._send_state(state)
            if not unsent_events:
                with self._cond:
                    if not self._events:  # the backlog is delivered: the next overflow is a new episode
                        self._outage_drop_said = False
            if unsent_events or unsent_state:
                with self._cond:
                    self._events.extendleft(reversed(unsent_events))
                    for topic, value in unsent_state.items():
                        self._state.setdefault(topic, value)
                    self._cond.wait(0.5)

    def _send_events(self, events: List[Tuple[str, bytes]]) -> List[Tuple[str, bytes]]:
        for number, (topic, payload) in enumerate(events):
            if self.client.publish(topic, payload, qos=self.settings.qos, retain=False).rc != 0:
                return events[number:]
        return []

    def _send_state(self, state: Dict[str, Tuple[bytes, bool]]) -> Dict[str, Tuple[bytes, bool]]:
        left = dict(state)
        for topic, (payload, is_file) in state.items():
            data = payload
            if is_file:
                try:
                    data = Path(payload.decode()).read_bytes()
                except OSError as exc:
                    log.warning("snapshot %s not published: %s", payload.decode(), exc.strerror)
                    left.pop(topic)
                    continue
            if self.client.publish(topic, data, qos=1, retain=True).rc != 0:
                return left
            left.pop(topic)
            self._sent_state[topic] = (payload, is_file)
        return left

    def close(self) -> None:
        """A clean stop: flush what is queued (briefly), publish offline ourselves, disconnect."""
        with self._cond:
            self._cond.notify()
        deadline = 2.0
        started = time.monotonic()
        while self.connected and (self._events or self._state) and time.monotonic() - started < deadline:
            time.sleep(0.05)
        with self._cond:
            self.stopping = True
            self._cond.notify()
        self._worker.join(2)
        if self.connected:
            info = self.client.publish(f"{self.settings.prefix}/available", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def _count_after(counts: Dict[str, int], label: str, state: str) -> int:
    """One more on 'entered', one fewer on 'left' (never below 0: a 'left' of a reload's older pipeline)."""
    counts[label] = max(0, counts.get(label, 0) + (1 if state == "entered" else -1))
    return counts[label]


def probe_broker(settings: MqttSettings, timeout: float = 5.0) -> Tuple[bool, str]:
    """For `pidetect check`: connect once, synchronously; (works, what happened)."""
    try:
        client = make_client(settings)
    except (ConfigError, UnavailableError) as exc:
        return False, str(exc)
    outcome: Dict[str, str] = {}
    client.on_connect = lambda _c, _u, _f, code, _p: outcome.setdefault("code", str(code))
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return False, f"{settings.broker}: {exc}"
    client.loop_start()
    deadline = time.monotonic() + timeout
    while "code" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    code = outcome.get("code")
    if code is None:
        return False, f"{settings.broker}: no answer within {timeout:g} s"
    if code != "Success":
        return False, f"{settings.broker}: refused: {code}"
    return True, f"{settings.broker}: connected" + (" with credentials" if settings.username else "") + \
        (" over TLS" if settings.tls else "")
