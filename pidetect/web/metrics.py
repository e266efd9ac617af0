"""/metrics: the journal's metrics records as Prometheus metrics, in Prometheus's text format.

A record sink like MQTT (fed every record, from any thread): `metrics` records give the gauges and
add to the counters, `detection` and `zone` records count arrivals by label and zone, and every
inference's time is counted into histogram buckets (`observe_inference`, from the inference pool's
callback). The figures are kept here as plain numbers and written out on each scrape by
`prometheus_text` (why not prometheus_client: see there).
"""

from __future__ import annotations

import bisect
import threading
from typing import Dict, List, Optional, Tuple

from . import prometheus_text

# inference time buckets, seconds: a Pi 5 runs the default model in ~10-20 ms, a Pi 4 in ~30-60 ms
BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
GAUGES = (  # (metric name, help, metrics record key, scale)
    ("pidetect_capture_fps", "Frames a second the source delivered (last interval)", "capture_fps", 1.0),
    ("pidetect_inference_fps", "Frames a second the model looked at (last interval)", "inference_fps", 1.0),
    ("pidetect_motion_share", "Share of frames looked at with motion (last interval)", "motion_share", 1.0),
    ("pidetect_cpu_percent", "CPU use of the daemon, percent of one core", "cpu_percent", 1.0),
    ("pidetect_resident_memory_bytes", "Resident memory of the daemon", "rss_mb", 2.0 ** 20),
    ("pidetect_soc_temperature_celsius", "SoC temperature", "temp_c", 1.0),
)
COUNTERS = (  # (metric name without _total, help, metrics record key of the per-interval count)
    ("pidetect_frames_dropped", "Frames replaced before the model could look at them", "frames_dropped"),
    ("pidetect_frames_gated", "Frames the motion gate kept from the model", "frames_gated"),
)


class PrometheusMetrics:
    name = "metrics"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: Dict[str, float] = {}
        self._counters: Dict[str, float] = {name: 0.0 for name, _help, _key in COUNTERS}
        self._throttled: Optional[int] = None
        self._buckets = [0] * (len(BUCKETS) + 1)  # the last one: above every bound
        self._inference_sum = 0.0
        self._detections: Dict[str, int] = {}
        self._in_view: Dict[str, int] = {}
        self._zone_entries: Dict[Tuple[str, str], int] = {}

    # --- figures in (any thread) ----------------------------------------------------------------
    def observe_inference(self, inference_ms: float) -> None:
        seconds = inference_ms / 1000.0
        with self._lock:
            self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._inference_sum += seconds

    def publish_record(self, record: dict) -> None:
        event = record.get("event")
        with self._lock:
            if event == "metrics":
                for name, _help, key, scale in GAUGES:
                    if record.get(key) is not None:
                        self._gauges[name] = float(record[key]) * scale
                for name, _help, key in COUNTERS:
                    self._counters[name] += max(0, record.get(key) or 0)
                try:
                    self._throttled = int(record["throttled"], 16) if record.get("throttled") else self._throttled
                except (TypeError, ValueError):
                    pass
            elif event == "detection" and record.get("state") in ("entered", "left"):
                label = record["label"]
                if record["state"] == "entered":
                    self._detections[label] = self._detections.get(label, 0) + 1
                    self._in_view[label] = self._in_view.get(label, 0) + 1
                else:
                    self._in_view[label] = max(0, self._in_view.get(label, 0) - 1)
            elif event == "zone" and record.get("state") == "entered":
                key = (record["zone"], record["label"])
                self._zone_entries[key] = self._zone_entries.get(key, 0) + 1

    def metrics_fields(self) -> dict:
        return {}

    def close(self) -> None:
        """Nothing to release: the figures live as long as the service (counters survive reloads)."""

    # --- the page -------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return prometheus_text.exposition(self.families())

    def families(self) -> List[prometheus_text.Family]:
        with self._lock:
            families = [prometheus_text.gauge(name, text, self._gauges[name])
                        for name, text, _key, _scale in GAUGES if name in self._gauges]
            families += [prometheus_text.counter(name, text, self._counters[name]) for name, text, _key in COUNTERS]
            if self._throttled is not None:
                families.append(prometheus_text.gauge("pidetect_throttled_flags",
                                                      "The Pi's get_throttled flags (0 = all fine)", self._throttled))
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), self._buckets):
                cumulative += count
                buckets.append((bound, cumulative))
            families.append(prometheus_text.histogram(
                "pidetect_inference_seconds", "Time of one inference (preprocess, invoke, decode)", buckets,
                self._inference_sum))
            detections = prometheus_text.Family("pidetect_detections", "Objects that entered the picture, by label",
                                                "counter")
            for label, count in sorted(self._detections.items()):
                detections.add(count, "_total", label=label)
            in_view = prometheus_text.Family("pidetect_objects_in_view", "Objects in view now, by label", "gauge")
            for label, count in sorted(self._in_view.items()):
                in_view.add(count, label=label)
            zones = prometheus_text.Family("pidetect_zone_entries", "Objects that started counting in a zone",
                                           "counter")
            for (zone, label), count in sorted(self._zone_entries.items()):
                zones.add(count, "_total", zone=zone, label=label)
            return families + [detections, in_view, zones]
