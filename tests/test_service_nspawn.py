"""The shipped unit and installer: systemd-analyze on a staged root, and the real thing under a real
systemd PID 1 in a throw-away container (tests/nspawn/checks.sh does the checking inside)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, SHARED
from nspawn_container import boot, media_with_clip, passed_checks
from pidetect.outputs.mqtt import slug
from pidetect.tools.demo import write_scene_video

UNIT = REPO / "systemd" / "pidetect.service"
TEMPLATE = REPO / "systemd" / "pidetect@.service"
MAX_EXPOSURE = 2.5
# what a camera of several changes in the template: its name, its config file and its own folders
PER_CAMERA = ("Description=", "ExecStart=", "StateDirectory=", "RuntimeDirectory=", "WorkingDirectory=", "ExecReload=")

needs_root_systemd = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-analyze") is None,
                                        reason="needs root and systemd-analyze")


@pytest.fixture(scope="module")
def staged_root(tmp_path_factory):
    """An install root as deploy/install.sh leaves it, plus the distribution's units."""
    root = tmp_path_factory.mktemp("stage")
    (root / "opt/pidetect/venv/bin").mkdir(parents=True)
    binary = root / "opt/pidetect/venv/bin/pidetect"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/pidetect.service")
    shutil.copy(TEMPLATE, root / "etc/systemd/system/pidetect@.service")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    return root


def analyze(root, *args, unit="pidetect.service"):
    script = "mount -t tmpfs tmpfs /run/systemd && exec systemd-analyze \"$@\""
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *args, f"--root={root}",
                           f"/etc/systemd/system/{unit}"], capture_output=True, text=True, timeout=60)


def exposure(root, unit):
    done = analyze(root, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", unit=unit)
    score = float(re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", done.stdout).group(1))
    assert done.returncode == 0, done.stdout[-3000:]
    return score


@needs_root_systemd
@pytest.mark.parametrize("unit", ["pidetect.service", "pidetect@door.service"])
def test_unit_verifies_cleanly(staged_root, unit):
    done = analyze(staged_root, "verify", unit=unit)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr


@needs_root_systemd
def test_unit_exposure_is_low(staged_root):
    single, camera = exposure(staged_root, "pidetect.service"), exposure(staged_root, "pidetect@door.service")
    print(f"exposure: pidetect.service {single}, pidetect@door.service {camera}")
    assert single <= MAX_EXPOSURE
    assert camera <= single, "a camera of several is no less hardened than the one camera"


def test_template_has_the_units_hardening():
    """Every line of pidetect.service is in the template, but the few that name the camera's own files."""
    def settings(path):
        return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]

    single, camera = settings(UNIT), settings(TEMPLATE)
    assert [line for line in single if not line.startswith(PER_CAMERA)] == \
        [line for line in camera if not line.startswith(PER_CAMERA)]
    for line in ("ExecStart=/opt/pidetect/venv/bin/pidetect run --config /etc/pidetect/%i.toml --camera-name %i",
                 "ExecReload=/opt/pidetect/venv/bin/pidetect reload --config /etc/pidetect/%i.toml --camera-name %i "
                 "--pid $MAINPID",
                 "StateDirectory=pidetect/%i", "RuntimeDirectory=pidetect-%i", "WorkingDirectory=/var/lib/pidetect/%i"):
        assert line in camera, line


def test_unit_contract():
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "RestartPreventExitStatus=78 72", "Restart=on-failure",
                 "User=pidetect", "SupplementaryGroups=video render tty", "StateDirectory=pidetect",
                 "ConfigurationDirectory=pidetect", "ProtectSystem=strict", "DevicePolicy=closed",
                 "AmbientCapabilities=CAP_SYS_TTY_CONFIG", "SystemCallFilter=@system-service"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert "Conflicts=getty@tty1" not in text  # only the installer's drop-in, and only with display fb


def test_installer_refuses_bad_arguments():
    for args, needle in ((["--display", "hdmi"], "--display must be fb, mjpeg, none or fb,mjpeg"),
                         (["--bogus"], "unknown option '--bogus'"),
                         (["--purge"], "--purge only goes with --uninstall"),
                         (["--model", "/nonexistent/best.tflite"], "--model /nonexistent/best.tflite: no such file"),
                         (["--mqtt", "bad host!"], "--mqtt must be a host name or address"),
                         (["--instance", "door/2"], "--instance must be 1 to 64 letters, digits"),
                         (["--instance", "pidetect"], "would share /etc/pidetect/pidetect.toml"),
                         (["--instance"], "--instance needs a camera name"),
                         (["--coral-runtime", "/nonexistent/libedgetpu1-std.deb"], "no such file"),
                         (["--coral-runtime", str(REPO / "README.md")], "not a .deb package")):
        done = subprocess.run(["bash", str(REPO / "deploy/install.sh"), *args], capture_output=True, text=True)
        assert done.returncode == 2 and needle in done.stderr, (args, done.stderr)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
                    reason="needs root and systemd-nspawn (apt-get install systemd-container)")
def test_service_under_real_systemd(tmp_path, model_paths):
    out, media = media_with_clip(tmp_path, 640, 480, fps=10, frames_per_scene=10, blank_frames=8)
    # the second camera of the two-camera checks (pidetect@garden): other objects than the first's cat and person
    write_scene_video(media / "clip2.avi", 640, 480, fps=10, frames_per_scene=10, blank_frames=8,
                      scenes=[("horse.png", "horse"), ("coffee.png", "cup")])
    (media / "clip2.avi").chmod(0o644)
    # the Edge TPU checks: the stand-in libedgetpu.so.1, a real LiteRT delegate without the accelerator
    compiler = shutil.which("cc")
    if compiler:
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(media / "libedgetpu.so.1"),
                        str(REPO / "tests" / "edgetpu_standin.c")], check=True)
    # a broker on the host's loopback (the container shares it): the hardened unit must reach it
    from mqtt_broker import Broker, Subscriber

    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port)
    (media / "mqtt_port").write_text(str(broker.port))
    (media / "mqtt_port").chmod(0o644)
    env = dict(os.environ, NSPAWN_TIMEOUT="900")
    yolo = SHARED / "models" / "yolov8n"  # the own-model checks run when ../shared is here (always in CI)
    extra = [f"{yolo}:/yolo"] if yolo.is_dir() else []
    done = boot("nspawn", out, [f"{media}:/media", *extra], env, timeout=1000)
    subscriber.stop()
    broker.stop()
    passed = passed_checks(out, done)
    expected = {"install", "headless-web", "config-each-key-once", "install-says-url", "path-root", "path-user",
                "web-all-interfaces", "config-folder-writable", "web-zone-save", "web-zone-save-said", "reload-refused", "reload-refused-running", "reload-refused-said", "reload-ok",
                "reload-ok-said", "started", "status-fps", "journal-cat", "journal-person", "user", "group-video",
                "group-render", "group-tty", "no-new-privs", "no-write-opt", "no-write-etc", "watchdog-restart",
                "config-78", "config-no-loop", "stop-clean", "reinstall-keeps-config", "uninstall-unit",
                "uninstall-venv", "uninstall-keeps-config", "mjpeg-view", "snapshots", "hdmi-dropin",
                "fb-absent-running", "private-tmp", "no-home", "display-nice", "web-password",
                "record-config", "ring-in-ram", "clips", "journal-clip",
                # several cameras: the template, two instances
                "instance-configs", "instance-plain-untouched", "instances-active", "journal-door", "journal-garden",
                "journals-apart", "journal-unit-camera", "instance-state", "no-shared-file", "instance-runtime",
                "instance-web", "stop-one", "garden-goes-on", "fb-second-refused", "fb-second-says-why",
                "uninstall-instance", "uninstall-instances"}
    if compiler or os.environ.get("PIDETECT_REQUIRE_ALL") == "1":
        expected |= {"coral-says-missing", "coral-runtime-refused", "coral-runtime", "coral-found", "coral-udev", "coral-group", "coral-dropin",
                     "coral-auto-config", "coral-edgetpu", "coral-edgetpu-model", "coral-running", "coral-fallback",
                     "coral-fallback-once"}
    if extra or os.environ.get("PIDETECT_REQUIRE_ALL") == "1":
        expected |= {"model-installed", "model-refused", "model-runs"}
    assert expected <= passed, expected - passed
    events = [json.loads(p) for p in subscriber.on("pd/nspawn/events")]
    assert any(e["label"] == "cat" and e["state"] == "entered" for e in events), "events from the unit reached MQTT"
    assert b"online" in subscriber.on("pd/nspawn/available")
    # the two cameras: two Home Assistant devices, events on each camera's own topics
    host = (out / "hostname").read_text().strip()
    devices = {}
    for topic, payload, _retained in subscriber.messages:
        if topic.startswith("homeassistant/") and topic.endswith("/config") and payload:
            device = json.loads(payload)["device"]
            devices[device["identifiers"][0]] = device["name"]
    assert devices.get(slug(f"pidetect-{host}-door")) == f"pidetect {host} door", devices
    assert devices.get(slug(f"pidetect-{host}-garden")) == f"pidetect {host} garden", devices
    garden = [json.loads(p) for p in subscriber.on(f"pidetect/{host}/garden/events")]
    door = [json.loads(p) for p in subscriber.on(f"pidetect/{host}/door/events")]
    assert any(e["label"] == "horse" for e in garden) and not any(e["label"] == "cat" for e in garden)
    assert any(e["label"] == "cat" for e in door) and not any(e["label"] == "horse" for e in door)
    print((out / "written.txt").read_text())
    print((out / "ready_time").read_text(), (out / "status_text").read_text())
