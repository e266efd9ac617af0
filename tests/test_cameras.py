"""Several cameras on one Pi, in-process and as real child processes (the systemd side: tests/nspawn).

What keeps two cameras apart: camera_name (journal field, MQTT ids and topics, folders) and the one HDMI
screen a machine has (claimed by one camera, refused to the next at start).
"""

import signal
import time

import pytest

from conftest import run_pidetect
from daemon import Daemon, of
from pidetect.config import Config, build_config
from pidetect.daemon.logs import RecordLog, journal_fields
from pidetect.errors import ConfigError
from pidetect.outputs.fb import claim_screen
from pidetect.outputs.mqtt import discovery_messages, settings_from_config
from pidetect.tools.measure import fake_framebuffer
from pidetect.tools.demo import write_scene_video


def test_a_named_camera_gets_its_own_folders_unless_set(tmp_path):
    config = build_config(None, {"camera_name": "door"})
    assert (config.state_dir, config.snapshot_dir, config.record_dir) == (
        "/var/lib/pidetect/door", "/var/lib/pidetect/door/snapshots", "/var/lib/pidetect/door/clips")
    file = tmp_path / "door.toml"
    file.write_text('camera_name = "door"\nsnapshot_dir = "/srv/door-pictures"\n')
    config = build_config(file, {}, path_required=True)
    assert config.snapshot_dir == "/srv/door-pictures" and config.state_dir == "/var/lib/pidetect/door"
    plain = build_config(None, {})
    assert (plain.state_dir, plain.snapshot_dir) == (Config().state_dir, Config().snapshot_dir)
    file.write_text('camera_name = "front door"\n')
    with pytest.raises(ConfigError, match=r"door.toml:1: camera_name = 'front door': must be 1 to 64 letters"):
        build_config(file, {}, path_required=True)
    done = run_pidetect("run", "--camera-name", "a/b")
    assert done.returncode == 2 and "--camera-name 'a/b': must be 1 to 64 letters" in done.stderr


def test_every_record_carries_the_camera():
    sent = []
    records = RecordLog("journal", journal_send=lambda **fields: sent.append(fields), camera="door")
    records.emit({"event": "detection", "label": "cat", "state": "entered", "track_id": 1, "score": 0.9,
                  "box": [1, 2, 3, 4], "frame_seq": 5})
    records.emit({"event": "lifecycle", "state": "ready"})
    assert [fields["CAMERA"] for fields in sent] == ["door", "door"]
    assert sent[1]["MESSAGE"] == "ready"  # the camera is a field, not noise in the message
    assert "CAMERA" not in journal_fields({"event": "lifecycle", "state": "ready"}, 6)  # unnamed: no field


def test_two_cameras_are_two_home_assistant_devices():
    door = settings_from_config(build_config(None, {"camera_name": "door", "mqtt_host": "broker"}))
    garden = settings_from_config(build_config(None, {"camera_name": "garden", "mqtt_host": "broker"}))
    single = settings_from_config(build_config(None, {"mqtt_host": "broker"}))
    assert len({door.node, garden.node, single.node}) == 3 and door.node.endswith("-door")
    assert door.prefix.endswith("/door") and garden.prefix.endswith("/garden")
    devices = {}
    topics = set()
    for settings in (door, garden):
        for topic, config in discovery_messages(settings):
            devices.setdefault(settings.node, set()).add(config["device"]["name"])
            assert topic not in topics, "two cameras never share a discovery topic"
            topics.add(topic)
    assert devices[door.node] == {door.device_name} and door.device_name.endswith(" door")
    assert devices[garden.node] == {garden.device_name} and garden.device_name != door.device_name


def test_one_screen_one_claim():
    first = claim_screen("/dev/fb7")
    with pytest.raises(ConfigError, match=r"another pidetect already draws on /dev/fb7 .* set display = \"mjpeg\""):
        claim_screen("/dev/fb7")
    other = claim_screen("/dev/fb8")  # another screen is another claim
    first.close()
    claim_screen("/dev/fb7").close()  # freed with its owner
    other.close()


def test_a_second_camera_on_the_hdmi_screen_is_refused_at_start(tmp_path):
    fb, sysfs = fake_framebuffer(tmp_path, 320, 240)
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    common = ["--source", clip, "--realtime", "--loop", "--display", "fb", "--fb-device", fb, "--fb-tty", "",
              "--state-dir", tmp_path / "state"]
    env = {"PIDETECT_SYSFS": str(sysfs)}
    door = Daemon(*common, "--camera-name", "door", env=env)
    try:
        door.wait_for(lambda r: r.get("event") == "lifecycle" and r.get("state") == "ready", what="door ready")
        garden = run_pidetect("run", *common, "--camera-name", "garden", "--log-format", "json", env=env, timeout=60)
        assert garden.returncode == 78, garden.stderr
        assert f"another pidetect already draws on {fb} (display fb)" in garden.stdout + garden.stderr
        assert door.proc.poll() is None, "the first camera keeps its screen and runs on"
        door.proc.send_signal(signal.SIGKILL)  # even a killed owner leaves no stale claim behind
        door.proc.wait(10)
    finally:
        door.kill()
    started = time.monotonic()
    garden = Daemon(*common, "--camera-name", "garden", "--duration", "3", env=env)
    garden.wait_for(lambda r: r.get("event") == "lifecycle" and r.get("state") == "stopped", timeout=60,
                    what="garden to run and stop")
    code, _elapsed = garden.stop()
    assert code == 0 and time.monotonic() - started < 60
    ready = of(garden.records, "lifecycle", state="ready")
    assert ready and ready[0]["camera"] == "garden"
