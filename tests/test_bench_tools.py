"""The benchmark and soak scripts run and report every figure (their numbers are judged by
`pidetect bench --check` and the soak script, never by unit tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_pidetect

TFLITE_PYTHON = os.environ.get("PIDETECT_TFLITE_PYTHON", "")


def test_bench_json_has_every_section(model_paths):
    done = run_pidetect("bench", "--frames", 12, "--runs", 10, "--size", "320x240", "--process-seconds", 2,
                        "--threads", "1", "--rounds", 2, "--json", "--check", timeout=400)
    assert done.returncode in (0, 1), done.stderr  # 1 = a target missed at this toy size, still a full report
    report = json.loads(done.stdout)
    assert {"machine", "backend", "model", "source", "ceiling", "stages", "serial", "pipeline", "process",
            "ratios", "targets", "rounds", "backends", "models", "zones"} <= set(report)
    litert = [b for b in report["backends"] if b["backend"] == "ai_edge_litert"]
    assert litert and litert[0]["available"] and litert[0]["inferences_per_s"] > 0
    by_name = {m["model"]: m for m in report["models"]}
    assert by_name["mobilenet_ssd_v2_coco_quant_postprocess.tflite"]["runs"]
    assert "Edge TPU" in by_name["mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite"]["detail"]
    assert len(report["rounds"]) == 2 and all(len(r["pipeline"]) == len(report["pipeline"]) for r in report["rounds"])
    assert report["ratios"]["serial_headroom"] > 0
    assert report["source"]["size"] == "320x240"
    assert set(report["stages"]) == {"capture_decode", "motion", "preprocess", "invoke", "postprocess",
                                     "postprocess_eval", "tracking", "overlay", "encode_jpeg", "fb_1080p_rgb565"}
    gate = report["gate"]
    assert gate["motion_off"]["frames_gated"] == 0 and gate["motion_on"]["frames"] > 0
    assert gate["motion_on"]["inferences"] + gate["motion_on"]["frames_gated"] >= gate["motion_on"]["frames"] - 2
    assert all(p["frames"] == 12 for p in report["pipeline"])
    assert {p["display"] for p in report["pipeline"]} == {"none", "fb", "mjpeg"}
    assert {p["display"] for p in report["process"]} == {"none", "fb", "mjpeg", "all", "all+fb", "all+notify"}
    assert "web_ui_mb" in report
    for p in report["process"]:
        assert p["exit_code"] == 0 and 0 < p["start_to_ready_s"] < 30 and p["peak_rss_mb"] > 30
        assert 10 < p["peak_anon_mb"] < p["peak_rss_mb"] and 10 < p["peak_file_mb"] < p["peak_rss_mb"]
        # the 1920x1080 RGB565 stand-in is written whole every frame: all 4 MB of it are resident
        assert (3.5 < p["fb_standin_rss_mb"] < 4.5) if p["display"] in ("fb", "all+fb") else p["fb_standin_rss_mb"] == 0
    assert len(report["targets"]) == 13 and all(isinstance(t["pass"], bool) for t in report["targets"])
    zones = report["zones"]  # the tracking stage really ran with its zones: objects kept crossing their edges
    assert zones["zones"] == 10 and zones["objects"] == 20 and zones["zone_events"] > 100
    assert zones["stage_median_ms"] > 0 and zones["tracker_median_ms"] > 0
    # the tracker's cost was measured with 5, 20 and 50 objects, each followed as one object to the end
    assert [(row["objects"], row["followed"]) for row in report["tracker"]] == [(5, 5), (20, 20), (50, 50)]
    assert all(row["median_ms"] > 0 for row in report["tracker"])
    regions = report["regions"]  # every frame looked at both ways, the regions counted
    assert regions["frames"] > 0 and 1 <= regions["model_calls_per_frame"] <= 3 and regions["ratio"] > 0


def test_rounds_are_summarized_as_medians_of_per_round_ratios():
    """A slow round (the machine busy) must not skew ratios: each ratio is taken within its round."""
    from pidetect.tools.bench import summarize_rounds

    def one_round(ceiling, serial, none, fb):
        pipelines = [{"interpreters": 1, "display": d, "frames": 300, "frames_per_s": v, "cpu_percent": 150.0}
                     for d, v in (("none", none), ("fb", fb))]
        return {"ceiling_per_s": ceiling, "serial": {"frames_per_s": serial}, "pipeline": pipelines}

    summary = summarize_rounds([one_round(40, 36, 38, 32), one_round(20, 18, 19, 16), one_round(40, 34, 38, 34)])
    ratios = summary["ratios"]
    assert ratios["ceiling_all_cores_per_s"] == 40
    assert ratios["serial_to_ceiling"] == 0.9  # 0.9, 0.9, 0.85
    assert ratios["pipeline_1x_none_to_ceiling"] == 0.95  # 0.95, 0.95, 0.95
    assert ratios["pipeline_1x_fb_to_ceiling"] == 0.8  # 0.8, 0.8, 0.85
    assert ratios["pipeline_1x_over_serial"] == round(38 / 36, 3)  # 1.056, 1.056, 1.118
    assert ratios["serial_headroom"] == round(40 / 36, 3)
    assert [p["frames_per_s"] for p in summary["pipeline"]] == [38, 32]


@pytest.mark.skipif(not (TFLITE_PYTHON and Path(TFLITE_PYTHON).exists()),
                    reason="no tflite-runtime venv (make test builds .venv-tflite; PIDETECT_TFLITE_PYTHON)")
def test_backends_of_another_python_are_measured_in_it(model_paths):
    """tflite-runtime needs numpy<2, so the bench measures it in its own venv, beside LiteRT here."""
    from pidetect.tools.bench_model import compare_backends

    rows = compare_backends(*model_paths, threads=1, runs=3, other_pythons=[Path(TFLITE_PYTHON)])
    here = [r for r in rows if r["interpreter"] == sys.executable]
    there = {r["backend"]: r for r in rows if r["interpreter"] == os.path.abspath(TFLITE_PYTHON)}
    assert {r["backend"] for r in here} == {"ai_edge_litert", "tflite_runtime", "tensorflow.lite"}
    assert there["tflite_runtime"]["available"] and there["tflite_runtime"]["version"].startswith("2.14")
    assert there["tflite_runtime"]["numpy"].startswith("1.") and there["tflite_runtime"]["inferences_per_s"] > 0


def test_soak_script_reports_growth(model_paths):
    done = subprocess.run([sys.executable, "-m", "pidetect.tools.soak", "--minutes", "0.2", "--warmup-seconds", "2",
                           "--sample-seconds", "0.5", "--json"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["pass"] else 1)
    assert report["rss_private_first_minute_mb"] > 30
    assert abs(report["growth_mb"] - (report["rss_private_last_minute_mb"] - report["rss_private_first_minute_mb"])) < 0.1
    from pidetect.tools.soak import summary

    line = summary(dict(report, mqtt_event_messages=7))
    assert f"private RSS {report['rss_private_first_minute_mb']:.1f} MB" in line and "{" not in line
    assert "7 MQTT event messages" in line and line.endswith("PASS" if report["pass"] else "FAIL")


def test_bench_bad_arguments_are_usage_errors():
    for args, needle in ((["--size", "big"], "--size 'big': give WIDTHxHEIGHT"),
                         (["--source", REPO / "README.md"], "not a video file OpenCV can read"),
                         (["--threads", "one"], "--threads 'one': give numbers like 1,2,4"),
                         (["--rounds", "0"], "--rounds must be at least 1"),
                         (["--also-python", REPO / "README.md"], "not an executable Python")):
        done = run_pidetect("bench", *args)
        assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
