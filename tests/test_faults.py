"""Faults a Pi sees in real life: a camera that drops out, one that never appears, damaged files."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from daemon import Daemon, of, run_daemon
from mjpeg_server import MjpegCamera
from pidetect.tools.measure import free_port
from pidetect.tools.demo import load_photo, write_scene_video

FAST_RETRY = ["--read-timeout", "1", "--open-timeout", "2", "--reconnect-max-delay", "1", "--metrics-interval", "1"]


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_mjpeg_camera_stopped_and_restarted(model_paths):
    camera = MjpegCamera([load_photo("chelsea.png")], fps=10).start()
    daemon = Daemon("--source", camera.url, *FAST_RETRY)
    try:
        daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "cat", what="cat")
        fds_after_first_open = fd_count(daemon.proc.pid)
        port = camera.port
        for cycle in range(3):
            camera.stop()
            daemon.wait_for(lambda r: r.get("event") == "source" and r.get("state") == "lost", what="lost")
            daemon.wait_for(lambda r: r.get("event") == "source" and r.get("state") == "retrying", what="retrying")
            opened_before = len(of(daemon.records, "source", state="opened"))
            camera = MjpegCamera([load_photo("astronaut.png" if cycle == 2 else "chelsea.png")], fps=10, port=port)
            camera.start()
            daemon.wait_for(lambda r: len(of(daemon.records, "source", state="opened")) > opened_before,
                            timeout=20, what="reopened")
            if cycle < 2:  # the same cat, seen again after the reconnect, enters again
                daemon.wait_for(lambda r: len(of(daemon.records, "detection", label="cat", state="entered"))
                                == cycle + 2, timeout=20, what="cat entered again")
        daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "person", what="person after reconnect")
        time.sleep(0.5)
        fds_now = fd_count(daemon.proc.pid)
        assert fds_now <= fds_after_first_open + 2, (fds_after_first_open, fds_now)
        code, elapsed = daemon.stop()
    finally:
        daemon.kill()
        camera.stop()
    assert code == 0 and elapsed < 2.0
    states = [r["state"] for r in of(daemon.records, "source")]
    assert states[0] == "opened" and states.count("lost") == 3 and states.count("opened") == 4
    # a lost camera makes everything in view leave; each reconnect sees the cat enter again
    cats = [r["state"] for r in of(daemon.records, "detection", label="cat")]
    assert cats == ["entered", "left"] * 3, cats


def test_source_that_never_exists_keeps_retrying(model_paths):
    daemon = Daemon("--source", "/dev/video42", "--reconnect-max-delay", "2", "--ready-timeout", "1")
    try:
        daemon.wait_for(lambda r: len(of(daemon.records, "source", state="retrying")) >= 3, timeout=20,
                        what="three retries")
        assert daemon.proc.poll() is None
        ready = of(daemon.records, "lifecycle", state="ready")
        assert ready and ready[0]["first_frame"] is False  # READY after the bounded wait, not never
        code, elapsed = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and elapsed < 2.0
    retries = of(daemon.records, "source", state="retrying")
    assert all(r["source"] == "/dev/video42" for r in retries)
    assert "attempt 1, next in 1 s" in retries[0]["detail"] and "next in 2 s" in retries[1]["detail"]
    assert "Traceback" not in daemon.proc.stderr.read()


def test_truncated_and_corrupt_video(tmp_path, model_paths):
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, fps=10, frames_per_scene=8, blank_frames=4)
    data = bytearray(clip.read_bytes())
    for offset in range(len(data) // 4, len(data) // 2, 997):  # damage JPEG data in the middle
        data[offset] ^= 0xFF
    clip.write_bytes(bytes(data[: int(len(data) * 0.8)]))  # and cut the end off
    code, records, stderr = run_daemon("--source", clip)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert [r["state"] for r in of(records, "source")] == ["opened", "eof"]
    assert of(records, "detection", label="cat", state="entered")  # the intact start is still processed


def test_corrupt_model_exits_78(tmp_path, model_paths):
    broken = tmp_path / "model.tflite"
    broken.write_bytes(model_paths[0].read_bytes()[:50000])
    code, records, stderr = run_daemon("--source", "x.avi", "--model", broken, "--labels", model_paths[1])
    assert code == 78
    assert "cannot load this model" in stderr and "Traceback" not in stderr
    failed = of(records, "lifecycle", state="failed")
    assert failed and failed[0]["exit_code"] == 78


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (apt-get install ffmpeg)")
def test_pipe_source_with_ffmpeg_standing_in_for_rpicam_vid(tmp_path, model_paths):
    """rpicam-vid --codec yuv420 -o - writes raw I420; ffmpeg does the same from a picture."""
    photo = tmp_path / "cat.png"
    import cv2

    cv2.imwrite(str(photo), cv2.resize(load_photo("chelsea.png"), (640, 480)))
    command = (f"ffmpeg -loglevel error -re -loop 1 -i {photo} -t 3 -r 10 -pix_fmt yuv420p "
               f"-s 640x480 -f rawvideo -")
    code, records, stderr = run_daemon("--source", f"pipe:{command}", "--width", 640, "--height", 480,
                                       "--duration", 2.5, "--read-timeout", 2)
    assert code == 0, stderr
    assert of(records, "source", state="opened")
    entered = of(records, "detection", state="entered")
    assert entered and entered[0]["label"] == "cat"
    assert entered[0]["box"][2] <= 639 and entered[0]["box"][3] <= 479


def first_retry_detail(*args):
    """Start the daemon on a source that cannot open; return the detail of its first 'retrying' record."""
    daemon = Daemon(*args, "--ready-timeout", "1")
    try:
        daemon.wait_for(lambda r: r.get("event") == "source" and r.get("state") == "retrying", what="retrying")
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    return of(daemon.records, "source", state="retrying")[0]["detail"]


def test_pipe_source_command_missing_keeps_retrying(model_paths):
    detail = first_retry_detail("--source", "pipe:rpicam-vid-not-installed -o -", "--width", "640", "--height", "480")
    assert "cannot start 'rpicam-vid-not-installed'" in detail


def test_no_camera_for_auto_says_so(model_paths):
    detail = first_retry_detail("--source", "auto")
    assert detail.startswith("no camera found (picamera2:0: the CSI camera needs Picamera2 from Raspberry Pi OS: "
                             "sudo apt install python3-picamera2"), detail


def rtsp_server_usable():
    return subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                           "from gi.repository import GstRtspServer"], capture_output=True).returncode == 0


@pytest.mark.skipif(not Path("/usr/bin/python3").exists() or not rtsp_server_usable(),
                    reason="needs Debian's python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good")
def test_rtsp_camera_lost_and_back(tmp_path, model_paths):
    import cv2

    picture = tmp_path / "cat.jpg"
    cv2.imwrite(str(picture), cv2.resize(load_photo("chelsea.png"), (640, 426)))
    port = free_port()
    server_script = Path(__file__).parent / "tools" / "rtsp_server.py"

    def start_server():
        server = subprocess.Popen(["/usr/bin/python3", str(server_script), str(picture), str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert server.stdout.readline().strip() == "ready"
        return server

    server = start_server()
    daemon = Daemon("--source", f"rtsp://127.0.0.1:{port}/cam", *FAST_RETRY)
    try:
        daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "cat", what="cat over RTSP")
        server.kill()
        server.wait()
        daemon.wait_for(lambda r: r.get("event") == "source" and r.get("state") == "retrying", timeout=30,
                        what="retrying after the RTSP server went away")
        server = start_server()
        daemon.wait_for(lambda r: len(of(daemon.records, "source", state="opened")) >= 2, timeout=30,
                        what="reopened")
        daemon.wait_for(lambda r: len(of(daemon.records, "detection", label="cat", state="entered")) >= 2,
                        timeout=30, what="cat again after the reconnect")
        code, elapsed = daemon.stop()
    finally:
        daemon.kill()
        server.kill()
    assert code == 0 and elapsed < 2.0
    assert "lost" in [r["state"] for r in of(daemon.records, "source")]
    cats = [r["state"] for r in of(daemon.records, "detection", label="cat")]
    assert cats[:3] == ["entered", "left", "entered"], cats  # left when the stream broke
