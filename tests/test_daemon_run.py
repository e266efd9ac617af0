"""`pidetect run` end to end on a video of real photos, as a child process, reading its JSON records."""

import signal
import threading

import pytest

from daemon import of, run_daemon
from pidetect.tools.demo import write_scene_video

EXPECTED = ["cat", "person", "cup", "motorcycle", "horse"]


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "scenes.avi"
    timeline = write_scene_video(path, 640, 480, fps=10, frames_per_scene=8, blank_frames=7)
    return path, timeline


@pytest.fixture(scope="module")
def scene_run(scene_video, model_paths):
    # paced like a camera (10 fps, about 8 s): several metrics intervals pass on any machine, however fast
    return run_daemon("--source", scene_video[0], "--realtime", "--metrics-interval", "0.5")


def test_each_object_enters_and_leaves_once_in_order(scene_video, scene_run):
    code, records, stderr = scene_run
    assert code == 0, stderr
    events = [(r["state"], r["label"]) for r in of(records, "detection") if r["label"] in EXPECTED]
    assert events == [(state, label) for label in EXPECTED for state in ("entered", "left")]
    # each 'entered' happens inside the frames that show that photo (frame_seq counts from 1)
    segments = {s.label: s for s in scene_video[1] if s.label}
    for record in of(records, "detection", state="entered"):
        if record["label"] in EXPECTED:
            segment = segments[record["label"]]
            assert segment.first_frame < record["frame_seq"] <= segment.first_frame + segment.frames
            assert set(record) >= {"label", "class_id", "score", "box", "track_id", "frame_seq", "ts"}
            assert record["score"] > 0.5
    track_ids = [r["track_id"] for r in of(records, "detection", state="entered")]
    assert len(track_ids) == len(set(track_ids))


def test_metrics_records_are_plausible(scene_video, scene_run):
    code, records, _ = scene_run
    metrics = of(records, "metrics")
    assert len(metrics) >= 2  # at least one periodic record and the one at exit
    for m in metrics:
        assert set(m) >= {"capture_fps", "inference_fps", "frames_dropped", "inference_ms_p50", "inference_ms_p95",
                          "cpu_percent", "rss_mb", "temp_c", "throttled", "ts"}
        assert 20 < m["rss_mb"] < 1000
        assert m["cpu_percent"] >= 0
    busy = [m for m in metrics if m["inference_ms_p50"] is not None]
    assert busy
    for m in busy:
        assert 0 < m["inference_ms_p50"] <= m["inference_ms_p95"] < 5000
        assert m["inference_fps"] > 0
    total_frames = sum(s.frames for s in scene_video[1])
    # the per-interval rates add up to the frames really captured and inferred (unique frames, not loop passes)
    assert abs(sum(m["capture_fps"] * m["interval_s"] for m in metrics) - total_frames) < 3
    # paced: a frame the model had no time for is dropped (counted), never lost from the books
    inferred = of(records, "lifecycle", state="stopped")[0]["frames"]
    dropped = sum(m["frames_dropped"] for m in metrics)
    assert inferred + dropped == total_frames and inferred >= total_frames // 2
    assert abs(sum(m["inference_fps"] * m["interval_s"] for m in metrics) - inferred) < 3
    assert records.index(metrics[-1]) > records.index(of(records, "lifecycle", state="stopping")[0])


def test_lifecycle_and_source_records(scene_run):
    _, records, _ = scene_run
    states = [r["state"] for r in of(records, "lifecycle")]
    assert states == ["starting", "model_loaded", "ready", "stopping", "stopped"]
    problems = [r for r in of(records, "log") if r["level"] in ("warning", "error")]
    assert problems == []  # no warnings, no errors, no thread left behind
    assert [r["state"] for r in of(records, "source")] == ["opened", "eof"]
    assert of(records, "lifecycle", state="ready")[0]["first_frame"] is True


def test_two_interpreters_give_the_same_events_in_capture_order(scene_video, scene_run):
    """Two workers infer alternating frames; results are re-ordered, so events match the single-worker run."""
    code, records, stderr = run_daemon("--source", scene_video[0], "--interpreters", 2)
    assert code == 0, stderr
    assert of(records, "lifecycle", state="model_loaded")[0]["interpreters"] == 2

    def events(recs):
        return [(r["state"], r["label"], r["frame_seq"]) for r in of(recs, "detection")]

    assert events(records) == events(scene_run[1])
    assert of(records, "lifecycle", state="stopped")[0]["frames"] == sum(s.frames for s in scene_video[1])


def test_per_frame_records_and_label_filter(scene_video, model_paths):
    code, records, stderr = run_daemon("--source", scene_video[0], "--per-frame", "--only", "cat,horse")
    assert code == 0, stderr
    frames = of(records, "frame")
    assert len(frames) == sum(s.frames for s in scene_video[1])
    assert {r["label"] for r in of(records, "detection")} == {"cat", "horse"}
    assert all(d["label"] in ("cat", "horse") for f in frames for d in f["detections"])


def test_max_frames_and_loop(scene_video, model_paths):
    total = sum(s.frames for s in scene_video[1])
    code, records, stderr = run_daemon("--source", scene_video[0], "--loop", "--max-frames", total + 20)
    assert code == 0, stderr
    assert [r["state"] for r in of(records, "source")][:3] == ["opened", "eof", "opened"]
    assert of(records, "lifecycle", state="stopped")[0]["frames"] == total + 20


def test_realtime_paces_a_file_like_a_camera(scene_video, model_paths):
    code, records, stderr = run_daemon("--source", scene_video[0], "--realtime")
    assert code == 0, stderr
    clip_seconds = sum(s.frames for s in scene_video[1]) / 10.0
    stopped = of(records, "lifecycle", state="stopped")[0]
    assert stopped["uptime_s"] >= clip_seconds * 0.9  # paced at 10 fps, not as fast as possible
    assert [r["label"] for r in of(records, "detection", state="entered") if r["label"] in EXPECTED] == EXPECTED
    # no backlog: a frame is inferred about one inference + one frame interval after capture, not seconds
    ages = [m["frame_age_ms_p95"] for m in of(records, "metrics") if m["frame_age_ms_p95"] is not None]
    assert ages and max(ages) < 1000, ages


def test_sighup_reloads_the_config_file(tmp_path, scene_video, model_paths):
    from daemon import Daemon

    config = tmp_path / "pidetect.toml"
    config.write_text(f'source = "{scene_video[0]}"\nloop = true\nrealtime = true\nonly = ["cat"]\n')
    daemon = Daemon("--config", config)
    try:
        daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "cat", what="cat")
        config.write_text(f'source = "{scene_video[0]}"\nloop = true\nrealtime = true\nonly = ["horse"]\n')
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r.get("state") == "reloaded", what="reload")
        daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "horse", timeout=40,
                        what="horse after reload")
        config.write_text('only = ["horse"]\nthreshhold = 3\n')  # a typo must not take the daemon down
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda r: r.get("event") == "log" and "reload failed" in r.get("message", ""), what="error")
        assert daemon.proc.poll() is None, "a bad config on reload must not stop the daemon"
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0, daemon.proc.stderr.read()[-2000:]
    reloaded_at = daemon.records.index(of(daemon.records, "lifecycle", state="reloaded")[0])
    after = [r["label"] for r in of(daemon.records[reloaded_at:], "detection", state="entered")]
    assert set(after) == {"horse"}, (after, daemon.records[reloaded_at - 3: reloaded_at + 5])
    assert not [r for r in daemon.records if "threads still running" in r.get("message", "")]
    assert all(m["capture_fps"] >= 0 and m["frames_dropped"] >= 0 for m in of(daemon.records, "metrics"))
    error = [r for r in daemon.records if r.get("event") == "log" and "reload failed" in r["message"]][0]
    assert "unknown key 'threshhold'" in error["message"]


def test_no_pipeline_thread_survives_a_run(scene_video, model_paths):
    """In-process: after Service.run returns, no capture or inference thread is left."""
    import io

    from pidetect.config import Config
    from pidetect.daemon.logs import RecordLog
    from pidetect.daemon.service import Service

    out = io.StringIO()
    config = Config(source=str(scene_video[0]), model=str(model_paths[0]), labels=str(model_paths[1]),
                    max_frames=15)
    assert Service(config, RecordLog("json", stream=out)).run() == 0
    assert [t.name for t in threading.enumerate() if t.name.startswith("pidetect")] == []
    assert '"state": "stopped"' in out.getvalue()
