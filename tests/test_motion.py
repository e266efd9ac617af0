"""The motion detector on synthetic frames, and the gate's decisions on a fake clock."""

import cv2
import numpy as np
import pytest

from daemon import of, run_daemon
from pidetect.capture.gate import GateSettings, MotionGate
from pidetect.capture.motion import MotionDetector, MotionSettings
from pidetect.slots import InView
from pidetect.tools.demo import load_photo


def scene(seed=0):
    """A still 1280x720 scene from a real photo, as a fixed camera sees it."""
    photo = cv2.resize(load_photo("coffee.png"), (1280, 720))
    return photo


def noisy(image, rng, sigma=4.0, jpeg=70):
    """Sensor noise and a JPEG round trip, as a cheap camera delivers every frame."""
    noise = rng.normal(0, sigma, image.shape)
    frame = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg])[1], cv2.IMREAD_COLOR)


def test_noise_and_jpeg_artefacts_are_not_motion():
    rng = np.random.default_rng(0)
    still = scene()
    detector = MotionDetector()
    results = [detector.update(noisy(still, rng)) for _ in range(60)]
    assert not any(r.moving for r in results), [r.changed_share for r in results if r.moving]


def test_a_moving_block_is_motion_with_the_right_box():
    rng = np.random.default_rng(1)
    still = scene()
    detector = MotionDetector()
    for _ in range(10):
        detector.update(noisy(still, rng))
    boxes = []
    for step in range(10):
        frame = still.copy()
        x = 200 + step * 40
        cv2.rectangle(frame, (x, 300), (x + 160, 500), (20, 200, 240), cv2.FILLED)
        result = detector.update(noisy(frame, rng))
        assert result.moving, step
        boxes.append(result.boxes)
    x1, y1, x2, y2 = max(boxes[-1], key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    # the block is at x 560..720, y 300..500 (plus its trail into the learned background, and dilation)
    assert 300 <= x1 <= 580 and 700 <= x2 <= 760 and 270 <= y1 <= 310 and 490 <= y2 <= 540, (x1, y1, x2, y2)


def test_a_light_switched_on_is_no_detection_storm():
    rng = np.random.default_rng(2)
    still = scene()
    detector = MotionDetector()
    for _ in range(10):
        detector.update(noisy(still, rng))
    brighter = cv2.convertScaleAbs(still, alpha=1.0, beta=60)
    results = [detector.update(noisy(brighter, rng)) for _ in range(30)]
    assert results[0].lighting_change and not results[0].moving
    assert not any(r.moving for r in results), "after a lighting change the new scene is the background"
    darker = cv2.convertScaleAbs(still, alpha=0.5, beta=0)  # the sun behind a cloud
    results = [detector.update(noisy(darker, rng)) for _ in range(30)]
    assert results[0].lighting_change and not any(r.moving for r in results)


def test_small_blobs_are_ignored():
    rng = np.random.default_rng(3)
    still = scene()
    detector = MotionDetector(MotionSettings(min_area=0.01))
    for _ in range(5):
        detector.update(noisy(still, rng))
    frame = still.copy()
    cv2.circle(frame, (640, 360), 12, (0, 0, 0), cv2.FILLED)  # a moth on the lens: 0.05 % of the frame
    assert not detector.update(noisy(frame, rng)).moving


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_gate_decisions_motion_tracked_keepalive():
    rng = np.random.default_rng(4)
    still = scene()
    clock, in_view = Clock(), InView()
    gate = MotionGate(GateSettings(detect_interval=10.0, stationary_interval=1.0), in_view, clock)
    decisions = []
    for frame_number in range(300):  # 10 s of a still scene at 30 fps, nothing in view
        clock.now = frame_number / 30
        decisions.append(gate.decide(noisy(still, rng))[0])
    assert decisions[0] and sum(decisions) == 1, "one look at start, then nothing until detect_interval"
    clock.now = 10.01
    assert gate.decide(noisy(still, rng))[0], "keep-alive after detect_interval"
    in_view.set(1)  # a parked car: re-checked once a second, not on every frame
    passed = []
    for frame_number in range(1, 91):
        clock.now = 10.01 + frame_number / 30
        passed.append(gate.decide(noisy(still, rng))[0])
    assert sum(passed) == 3, sum(passed)
    moving = still.copy()
    cv2.rectangle(moving, (100, 100), (400, 400), (255, 255, 255), cv2.FILLED)
    clock.now += 1 / 30
    infer, boxes = gate.decide(noisy(moving, rng))
    assert infer and boxes
    counters = gate.counters
    assert counters.frames == 392 and counters.passed == 1 + 1 + 3 + 1
    assert counters.keepalive == 2  # the first look, and the one after detect_interval
    assert counters.gated == counters.frames - counters.passed


def still_scene_clip(path, seconds=6, fps=15, enter_at=2.0):
    """A still noisy scene; a cat photo slides in from the left at `enter_at` and stays."""
    rng = np.random.default_rng(5)
    background = cv2.resize(load_photo("coffee.png"), (640, 360))
    cat = cv2.resize(load_photo("chelsea.png"), (300, 200))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    for number in range(int(seconds * fps)):
        frame = background.copy()
        t = number / fps
        if t >= enter_at:
            x = int(min(300, -300 + (t - enter_at) * 600))
            left = max(0, x)
            frame[100:300, left:x + 300] = cat[:, left - x:]
        writer.write(noisy(frame, rng))
    writer.release()


def test_gated_run_on_a_clip_sees_the_cat_and_rests_otherwise(tmp_path):
    clip = tmp_path / "still.avi"
    still_scene_clip(clip, seconds=12)
    code, records, stderr = run_daemon("--source", clip, "--motion", "on", "--realtime", "--metrics-interval", "2",
                                       "--stationary-interval", "1", "--detect-interval", "30", timeout=120)
    assert code == 0, stderr[-2000:]
    entered = of(records, "detection", state="entered")
    assert [r["label"] for r in entered].count("cat") == 1, entered
    assert not of(records, "detection", label="cat", state="left")[:-1], "the still cat never leaves mid-run"
    metrics = of(records, "metrics")
    gated = sum(r["frames_gated"] for r in metrics)
    # 30 frames before the cat, and most of the last 5 s once the still cat became background
    assert gated > 60, [(r.get("motion_share"), r.get("frames_gated")) for r in metrics]
    assert all("motion_share" in r for r in metrics)


def test_motion_off_by_default_for_files(tmp_path):
    clip = tmp_path / "still.avi"
    still_scene_clip(clip, seconds=2)
    code, records, _ = run_daemon("--source", clip, timeout=120)
    assert code == 0 and not any("motion_share" in r for r in of(records, "metrics"))


@pytest.mark.parametrize("value, expected", [("true", "on"), ("false", "off"), ("auto", "auto")])
def test_motion_key_takes_true_false_and_auto(tmp_path, value, expected):
    from pidetect.config import build_config

    path = tmp_path / "c.toml"
    path.write_text(f"motion = {value if value != 'auto' else chr(34) + value + chr(34)}\n")
    assert build_config(path, {}).motion == expected
