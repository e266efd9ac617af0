"""The benchmark and soak scripts run and report every figure (their numbers are judged by
`pidetect bench --check` and the soak script, never by unit tests)."""

import json
import subprocess
import sys

from conftest import REPO, run_pidetect


def test_bench_json_has_every_section(model_paths):
    done = run_pidetect("bench", "--frames", 12, "--runs", 10, "--size", "320x240", "--process-seconds", 2,
                        "--threads", "1", "--json", "--check", timeout=300)
    assert done.returncode in (0, 1), done.stderr  # 1 = a target missed at this toy size, still a full report
    report = json.loads(done.stdout)
    assert {"machine", "backend", "model", "source", "ceiling", "stages", "serial", "pipeline", "process",
            "ratios", "targets"} <= set(report)
    assert report["source"]["size"] == "320x240"
    assert set(report["stages"]) == {"capture_decode", "preprocess", "invoke", "postprocess", "tracking", "overlay",
                                     "encode_jpeg", "fb_1080p_rgb565"}
    assert all(p["frames"] == 12 for p in report["pipeline"])
    assert {p["display"] for p in report["pipeline"]} == {"none", "fb", "mjpeg"}
    for p in report["process"]:
        assert p["exit_code"] == 0 and 0 < p["start_to_ready_s"] < 30 and p["peak_rss_mb"] > 30
    assert len(report["targets"]) == 5 and all(isinstance(t["pass"], bool) for t in report["targets"])


def test_soak_script_reports_growth(model_paths):
    done = subprocess.run([sys.executable, "-m", "pidetect.soak", "--minutes", "0.2", "--warmup-seconds", "2",
                           "--sample-seconds", "0.5", "--json"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["pass"] else 1)
    assert report["rss_private_first_minute_mb"] > 30
    assert abs(report["growth_mb"] - (report["rss_private_last_minute_mb"] - report["rss_private_first_minute_mb"])) < 0.1


def test_bench_bad_arguments_are_usage_errors():
    for args, needle in ((["--size", "big"], "--size 'big': give WIDTHxHEIGHT"),
                         (["--source", REPO / "README.md"], "not a video file OpenCV can read"),
                         (["--threads", "one"], "--threads 'one': give numbers like 1,2,4")):
        done = run_pidetect("bench", *args)
        assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
