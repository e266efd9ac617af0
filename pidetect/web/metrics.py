"""/metrics: the journal's metrics records as Prometheus metrics, made with prometheus_client.

A record sink like MQTT (fed every record, from any thread): `metrics` records set the gauges and
add to the counters, `detection` and `zone` records count arrivals by label and zone, and every
inference's time goes into a histogram (`observe_inference`, called from the inference pool's
callback). Its own CollectorRegistry, not the library's global one: two pipelines (a reload) never
register twice, and nothing else in the process leaks into the page.
"""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# inference time buckets, seconds: a Pi 5 runs the default model in ~10-20 ms, a Pi 4 in ~30-60 ms
BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class PrometheusMetrics:
    name = "metrics"

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.capture_fps = Gauge("pidetect_capture_fps", "Frames a second the source delivered (last interval)",
                                 registry=r)
        self.inference_fps = Gauge("pidetect_inference_fps", "Frames a second the model looked at (last interval)",
                                   registry=r)
        self.inference = Histogram("pidetect_inference_seconds", "Time of one inference (preprocess, invoke, "
                                   "decode)", buckets=BUCKETS, registry=r)
        self.dropped = Counter("pidetect_frames_dropped", "Frames replaced before the model could look at them",
                               registry=r)
        self.gated = Counter("pidetect_frames_gated", "Frames the motion gate kept from the model", registry=r)
        self.motion_share = Gauge("pidetect_motion_share", "Share of frames looked at with motion (last interval)",
                                  registry=r)
        self.cpu = Gauge("pidetect_cpu_percent", "CPU use of the daemon, percent of one core", registry=r)
        self.rss = Gauge("pidetect_resident_memory_bytes", "Resident memory of the daemon", registry=r)
        self.temperature = Gauge("pidetect_soc_temperature_celsius", "SoC temperature", registry=r)
        self.throttled = Gauge("pidetect_throttled_flags", "The Pi's get_throttled flags (0 = all fine)", registry=r)
        self.detections = Counter("pidetect_detections", "Objects that entered the picture, by label", ["label"],
                                  registry=r)
        self.zone_entries = Counter("pidetect_zone_entries", "Objects that started counting in a zone",
                                    ["zone", "label"], registry=r)
        self.in_view = Gauge("pidetect_objects_in_view", "Objects in view now, by label", ["label"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def observe_inference(self, inference_ms: float) -> None:
        self.inference.observe(inference_ms / 1000.0)

    def publish_record(self, record: dict) -> None:
        event = record.get("event")
        if event == "metrics":
            self._metrics(record)
        elif event == "detection" and record.get("state") in ("entered", "left"):
            entered = record["state"] == "entered"
            if entered:
                self.detections.labels(record["label"]).inc()
                self.in_view.labels(record["label"]).inc()
            else:
                self.in_view.labels(record["label"]).dec()
        elif event == "zone" and record.get("state") == "entered":
            self.zone_entries.labels(record["zone"], record["label"]).inc()

    def _metrics(self, record: dict) -> None:
        self.capture_fps.set(record.get("capture_fps") or 0)
        self.inference_fps.set(record.get("inference_fps") or 0)
        self.dropped.inc(max(0, record.get("frames_dropped") or 0))
        self.gated.inc(max(0, record.get("frames_gated") or 0))
        if "motion_share" in record:
            self.motion_share.set(record["motion_share"])
        self.cpu.set(record.get("cpu_percent") or 0)
        self.rss.set((record.get("rss_mb") or 0) * 2**20)
        if record.get("temp_c") is not None:
            self.temperature.set(record["temp_c"])
        throttled: Optional[str] = record.get("throttled")
        if throttled:
            try:
                self.throttled.set(int(throttled, 16))
            except ValueError:
                pass

    def metrics_fields(self) -> dict:
        return {}

    def close(self) -> None:
        """Nothing to release: the registry goes with the pipeline."""
