"""Pi health read from sysfs (stand-in folder here), and how throttling shows in the records."""

from pidetect.daemon.logs import journal_fields
from pidetect.daemon.metrics import Metrics, PiHealth, throttle_flags, throttled_now


def fake_pi(tmp_path, temp_millideg="61234", throttled="50005"):
    thermal = tmp_path / "class/thermal/thermal_zone0"
    thermal.mkdir(parents=True)
    (thermal / "temp").write_text(temp_millideg + "\n")
    firmware = tmp_path / "devices/platform/soc/soc:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text(throttled + "\n")
    return tmp_path


def test_temperature_and_throttling_from_sysfs(tmp_path):
    health = PiHealth(fake_pi(tmp_path))
    assert health.temperature_c() == 61.2
    assert health.throttled() == "0x50005"
    assert throttle_flags("0x50005") == ["under-voltage", "throttled", "under-voltage-occurred",
                                         "throttled-occurred"]
    assert throttled_now("0x50005") and not throttled_now("0x50000") and not throttled_now("0x0")


def test_no_sensor_means_null(tmp_path):
    health = PiHealth(tmp_path)
    health.vcgencmd = None
    assert health.temperature_c() is None and health.throttled() is None
    record = Metrics(health).take(0, 0)
    assert record["temp_c"] is None and record["throttled"] is None
    assert "TEMP_C" not in journal_fields(record, 6) and "THROTTLED" not in journal_fields(record, 6)


def test_metrics_record_counts_interval_rates(tmp_path):
    metrics = Metrics(PiHealth(fake_pi(tmp_path, throttled="0")))
    for ms in (10.0, 20.0, 30.0, 40.0):
        metrics.add_inference(ms, ms + 5)
    record = metrics.take(captured_total=6, dropped_total=2)
    assert record["inference_ms_p50"] == 25.0 and record["inference_ms_p95"] > 38
    assert record["frames_dropped"] == 2 and record["throttled"] == "0x0" and record["temp_c"] == 61.2
    assert record["inference_fps"] > 0 and record["capture_fps"] >= record["inference_fps"]
    again = metrics.take(captured_total=6, dropped_total=2)
    assert again["inference_fps"] == 0 and again["frames_dropped"] == 0 and again["inference_ms_p50"] is None


def test_daemon_reports_pi_health_and_warns_when_throttled(tmp_path, model_paths):
    from conftest import run_pidetect
    from pidetect.tools.demo import write_scene_video

    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=3, blank_frames=2)
    sysfs = fake_pi(tmp_path / "sys")
    done = run_pidetect("run", "--source", clip, "--log-format", "text", env={"PIDETECT_SYSFS": str(sysfs)})
    assert done.returncode == 0, done.stderr
    metrics_lines = [line for line in done.stderr.splitlines() if "metrics:" in line]
    assert metrics_lines and all("warning: metrics:" in line for line in metrics_lines)
    assert "61.2°C" in metrics_lines[-1] and "throttled 0x50005" in metrics_lines[-1]
