"""/metrics is written by pidetect's own few lines (prometheus_client costs 9.4 MB in the daemon); the library is
the oracle here: the same figures through its generate_latest give the same bytes, and its parser reads ours."""

from hypothesis import given, settings, strategies as st

from pidetect.web import prometheus_text
from pidetect.web.metrics import PrometheusMetrics


def library_page(families) -> bytes:
    """The same families written by prometheus_client, as /metrics used to be."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    converted = []
    for family in families:
        if family.kind == "histogram":
            buckets = [(s.labels["le"], s.value) for s in family.samples if s.suffix == "_bucket"]
            total = next(s.value for s in family.samples if s.suffix == "_sum")
            converted.append(HistogramMetricFamily(family.name, family.help, buckets=buckets, sum_value=total))
            continue
        kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
        names = sorted({key for s in family.samples for key in s.labels})
        library_family = kind(family.name, family.help, labels=names)
        for sample in family.samples:
            library_family.add_metric([sample.labels[name] for name in names], sample.value)
        converted.append(library_family)

    class Collector:
        def collect(self):
            return converted

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


def a_day_of_figures() -> PrometheusMetrics:
    metrics = PrometheusMetrics()
    for ms in (3.0, 12.5, 40.0, 3000.0):
        metrics.observe_inference(ms)
    metrics.publish_record({"event": "metrics", "capture_fps": 10.0, "inference_fps": 9.75, "rss_mb": 140.2,
                            "cpu_percent": 41, "frames_dropped": 3, "frames_gated": 120, "throttled": "0x50000",
                            "temp_c": None, "motion_share": 0.25})
    for label in ("person", "cat", 'a "quoted"\\label\nwith a newline', "猫", "🐈"):
        metrics.publish_record({"event": "detection", "state": "entered", "label": label})
    metrics.publish_record({"event": "detection", "state": "left", "label": "cat"})
    metrics.publish_record({"event": "zone", "state": "entered", "zone": "porch", "label": "person"})
    metrics.publish_record({"event": "zone", "state": "entered", "zone": "drive way", "label": "car"})
    return metrics


def test_the_page_is_what_prometheus_client_writes_for_the_same_figures():
    metrics = a_day_of_figures()
    page = metrics.exposition()
    assert page == library_page(metrics.families())
    assert b'pidetect_detections_total{label="a \\"quoted\\"\\\\label\\nwith a newline"} 1.0' in page
    assert b"pidetect_resident_memory_bytes 1.470103552e+08" in page
    assert b'pidetect_inference_seconds_bucket{le="+Inf"} 4.0' in page


def test_the_library_parser_reads_every_figure_back():
    from prometheus_client.parser import text_string_to_metric_families

    metrics = a_day_of_figures()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               for s in family.samples}
    assert samples[("pidetect_frames_gated_total", ())] == 120
    assert samples[("pidetect_objects_in_view", (("label", "cat"),))] == 0
    assert samples[("pidetect_objects_in_view", (("label", "🐈"),))] == 1
    assert samples[("pidetect_zone_entries_total", (("label", "car"), ("zone", "drive way")))] == 1
    assert samples[("pidetect_inference_seconds_count", ())] == 4
    assert abs(samples[("pidetect_inference_seconds_sum", ())] - 3.0555) < 1e-9
    assert samples[("pidetect_throttled_flags", ())] == 0x50000


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12)),
       label=st.text(max_size=12), help=st.text(max_size=20))
def test_any_number_label_or_help_is_written_as_the_library_writes_it(value, label, help):
    gauge = prometheus_text.Family("pidetect_x", help, "gauge")
    gauge.add(value, label=label)
    counter = prometheus_text.counter("pidetect_y", help, abs(value))
    assert prometheus_text.exposition([gauge, counter]) == library_page([gauge, counter])
