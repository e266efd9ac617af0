"""First contact (issue 34): the demo that waits, the live page that says when the stream stopped, the start-up
log a person reads, a config reference that cannot drift, help in groups, errors that name the fix."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_pidetect
from daemon import Daemon, of
from mjpeg_server import MjpegCamera
from pidetect.tools.demo import skimage_data_dir
from test_web import CHROMIUM, free_port


def test_the_configuration_reference_is_generated_from_the_code_and_current():
    from pidetect.config import FIELDS, GROUPS, TABLE_KEYS
    from pidetect.tools.config_reference import reference

    grouped = [key for _title, keys in GROUPS for key in keys]
    assert sorted(grouped) == sorted(set(FIELDS) - set(TABLE_KEYS)), "every key in exactly one group"
    written = (REPO / "docs" / "configuration.md").read_text()
    assert written == reference(), ("docs/configuration.md is out of date: "
                                    "python -m pidetect.tools.config_reference > docs/configuration.md")
    for key in grouped:
        assert f"| `{key}` |" in written


def test_run_help_is_grouped_with_defaults_and_choices_and_check_says_it_takes_runs_options():
    text = run_pidetect("run", "--help").stdout
    for group in ("camera:", "model:", "motion:", "tracking:", "display and web:", "snapshots and recording:",
                  "MQTT:", "logging and service:"):
        assert f"\n{group}\n" in text, group
    assert "--display {none,fb,mjpeg,window},…" in text and "--log-format {auto,journal,text,json}" in text
    assert "[default 0.5; between 0 and 1]" in re.sub(r"\s+", " ", text)  # threshold
    assert text.startswith("usage: pidetect run [--config FILE] [OPTION ...]")
    check = run_pidetect("check", "--help").stdout
    assert "Takes the same options as run" in check and "\ncamera:\n" in check


@pytest.mark.parametrize("args, words", [
    (["run", "--thresold", "0.3"], "did you mean --threshold?"),
    (["run", "--dispaly", "mjpeg"], "did you mean --display?"),
    (["detect", "x.jpg", "--jsn"], "did you mean --json?"),
])
def test_a_misspelled_flag_gets_did_you_mean(args, words):
    done = run_pidetect(*args)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) <= 3, "a short usage line, not the whole option list"


def test_the_installed_config_has_each_key_once_and_uncommenting_a_line_never_traps(tmp_path):
    """Issue 34: the installer wrote its keys on top and the commented example below; uncommenting `source` gave
    "Cannot overwrite a value (at line 22, column 23)" naming no key."""
    from pidetect.config import build_config

    done = subprocess.run([sys.executable, "-m", "pidetect.tools.installed_config", str(REPO / "deploy/pidetect.toml"),
                           "source=/dev/video0", "display=mjpeg", "mjpeg_address=0.0.0.0", "snapshots=true",
                           "web_password_file=/etc/pidetect/web.password"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for key, value in (("source", '"/dev/video0"'), ("display", '"mjpeg"'), ("mjpeg_address", '"0.0.0.0"')):
        assert len(re.findall(rf"^#? ?{key} = ", text, re.M)) == 1, key
        assert f"\n{key} = {value}\n" in text
    path = tmp_path / "pidetect.toml"
    path.write_text(text)
    assert build_config(path, {}, path_required=True).source == "/dev/video0"
    # the owner uncomments another key: fine; adds `source` a second time: the error names it and both lines
    path.write_text(text.replace("# threshold = 0.5", "threshold = 0.6"))
    assert build_config(path, {}, path_required=True).threshold == 0.6
    path.write_text(text.replace("# threshold = 0.5", "threshold = 0.6\nsource = \"auto\""))
    done = run_pidetect("run", "--config", path)
    first = text.splitlines().index('source = "/dev/video0"') + 1
    assert done.returncode == 78 and f"source is set twice (lines {first} and" in done.stderr, done.stderr


def test_installer_errors_end_without_a_stray_exit_code():
    done = subprocess.run(["bash", str(REPO / "deploy/install.sh"), "--dispaly", "mjpeg"], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.rstrip().endswith("pidetect-install: error: unknown option '--dispaly'"), done.stderr[-300:]


def test_make_run_keeps_the_demo_under_build_and_waits():
    done = subprocess.run(["make", "-n", "run"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    demo = next(line for line in done.stdout.splitlines() if "--source $(DEMO)" in line or "demo.avi" in line)
    assert "--loop" in demo and "--realtime" in demo and "--snapshots" in demo
    for key in ("--state-dir build/demo-state", "--snapshot-dir build/demo-state/snapshots",
                "--config build/demo-state/demo.toml"):
        assert key in done.stdout, key
    assert "/var/lib" not in done.stdout


def test_the_startup_log_says_each_fact_once_and_no_coral_unless_asked(tmp_path):
    clip = tmp_path / "clip.avi"
    from pidetect.tools.demo import write_scene_video

    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    done = run_pidetect("run", "--source", clip, "--log-format", "text", "--display", "mjpeg", "--mjpeg-port",
                        free_port(), "--state-dir", tmp_path / "state", env={"PIDETECT_EDGETPU_LIBRARY": "/nonexistent"})
    assert done.returncode == 0, done.stderr[-2000:]
    head = [line for line in done.stderr.splitlines() if "entered" not in line and "left" not in line][:8]
    model = str(REPO / "models" / "mobilenet_ssd_v2_coco_quant_postprocess_int8.tflite")
    assert sum(model in line for line in head) == 1, head
    assert not [line for line in head if "Edge TPU" in line or "edgetpu" in line.lower()], head
    assert any("web UI on http://127.0.0.1:" in line for line in head), head


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_live_page_says_when_the_camera_is_lost_and_when_the_daemon_stopped(tmp_path):
    """Issue 34: the page froze on the last frame still saying "10.1 fps"; reloading gave "connection refused"."""
    import cv2
    from playwright.sync_api import sync_playwright

    images = [cv2.imread(str(skimage_data_dir() / "chelsea.png"))] * 3
    camera = MjpegCamera(images, fps=10).start()
    port = free_port()
    daemon = Daemon("--source", camera.url, "--display", "mjpeg", "--mjpeg-port", port, "--state-dir",
                    tmp_path / "state", "--read-timeout", "1", "--metrics-interval", "1")
    try:
        daemon.wait_for(lambda r: r.get("event") == "source" and r.get("state") == "opened", timeout=60,
                        what="camera opened")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                errors = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("document.getElementById('state').textContent.includes('camera delivering')",
                                       timeout=20000)
                page.wait_for_function("document.getElementById('inview').textContent.includes('cat')", timeout=20000)
                camera.stop()
                page.wait_for_function("document.getElementById('state').textContent.includes('camera lost') || "
                                       "document.getElementById('state').textContent.includes('not available')",
                                       timeout=30000)
                assert "stream stopped" in page.locator("#state").inner_text()
                before_stop = list(errors)
                daemon.stop()
                page.wait_for_function("document.getElementById('state').textContent.includes('does not answer')",
                                       timeout=20000)
            finally:
                browser.close()
        assert not before_stop, before_stop  # after the stop, the page's polls are refused: that is what it says
    finally:
        daemon.kill()
        camera.stop()
