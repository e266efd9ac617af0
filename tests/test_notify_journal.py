"""systemd integration without systemd: a real notify datagram socket, and a private real journald."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO
from daemon import parse_records
from mjpeg_server import MjpegCamera
from pidetect.tools.demo import load_photo, write_scene_video

TOOLS = Path(__file__).parent / "tools"


class NotifySocket:
    """Binds $NOTIFY_SOCKET like systemd does and records (time, sender pid, message)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.messages = []
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        creds_size = struct.calcsize("3i")
        while not self.closed:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds_size))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_size])[0]
            self.messages.append((time.monotonic(), pid, data.decode()))

    def times(self, needle):
        return [t for t, _pid, message in self.messages if needle in message.split("\n")]

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.sock.close()


def start_daemon(args, env):
    """Started through sh so WATCHDOG_PID can be the daemon's own PID (exec keeps it), as systemd sets it."""
    command = " ".join(["exec", sys.executable, "-m", "pidetect", "run", "--log-format", "json", *args])
    return subprocess.Popen(["sh", "-c", f"export WATCHDOG_PID=$$; {command}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env), cwd=REPO)


def test_ready_watchdog_stall_and_stopping(tmp_path, model_paths):
    notify = NotifySocket(tmp_path / "notify.sock")
    camera = MjpegCamera([load_photo("chelsea.png")], fps=20, first_frame_delay=2.0).start()
    started = time.monotonic()
    proc = start_daemon(["--source", camera.url, "--ready-timeout", "10", "--motion", "off"],
                        {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000",
                         "PIDETECT_TEST_STALL_AFTER_FRAMES": "60"})
    try:
        deadline = time.monotonic() + 30
        while not notify.times("READY=1") and time.monotonic() < deadline:
            time.sleep(0.05)
        ready_at = notify.times("READY=1")[0]
        assert ready_at - started >= 2.0, "READY must wait for the first frame (the camera delays it 2 s)"
        assert any(m.startswith("STATUS=waiting for camera") for _t, _p, m in notify.messages if _t < ready_at)
        time.sleep(2.5)
        pings = [t for t in notify.times("WATCHDOG=1") if t > ready_at]
        assert len(pings) >= 3, "WATCHDOG=1 every WATCHDOG_USEC/2 = 0.5 s while the worker runs"
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert min(gaps) >= 0.45 and max(gaps) <= 1.0, gaps
        # the worker stalls after 60 frames (20 fps camera: ~3 s after READY); pings must stop
        deadline = time.monotonic() + 15
        stall_seen = False
        while time.monotonic() < deadline:
            recent = [t for t in notify.times("WATCHDOG=1") if t > time.monotonic() - 3.0]
            if not recent:
                stall_seen = True
                break
            time.sleep(0.2)
        assert stall_seen, "pings continued although the worker is stalled"
        statuses = [m for _t, _p, m in notify.messages if m.startswith("STATUS=") and "fps inference" in m]
        assert statuses and "last: cat" in statuses[-1]
        proc.send_signal(signal.SIGTERM)
        stop_sent = time.monotonic()
        code = proc.wait(10)
        assert time.monotonic() - stop_sent < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
        camera.stop()
        notify.close()
    assert code == 0
    assert notify.times("STOPPING=1")
    assert {pid for _t, pid, _m in notify.messages} == {proc.pid}  # NotifyAccess=main holds
    records = parse_records(proc.stdout.read())
    assert records[-1] == {**records[-1], "event": "lifecycle", "state": "stopped"}
    metrics = [r for r in records if r.get("event") == "metrics"]
    assert metrics and records.index(metrics[-1]) > [r.get("state") for r in records].index("stopping")
    logs = [r["message"] for r in records if r.get("event") == "log"]
    assert any("watchdog pings withheld" in m for m in logs)


def test_notify_failures_never_crash(tmp_path, model_paths):
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    proc = start_daemon(["--source", str(clip)], {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock"),
                                                  "WATCHDOG_USEC": "200000"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


needs_journald = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/lib/systemd/systemd-journald").exists() or shutil.which("journalctl") is None,
    reason="needs root and systemd-journald")


def journal_available():
    try:
        from systemd import journal  # noqa: F401
        return True
    except ImportError:
        return False


@needs_journald
def test_journal_fields_and_priorities(tmp_path, model_paths):
    if not journal_available():
        pytest.skip("systemd-python not installed (apt-get install libsystemd-dev pkg-config; make test)")
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, fps=10, frames_per_scene=8, blank_frames=6)
    work = tmp_path / "journal"
    # JOURNAL_STREAM set and the journal reachable: --log-format auto picks the journal, as under systemd
    script = (f"JOURNAL_STREAM=8:1 {sys.executable} -m pidetect run --source {clip} && "
              f"{sys.executable} -m pidetect run --log-format journal --source /dev/video99 "
              f"--duration 2.5 --ready-timeout 0.5")
    done = subprocess.run([str(TOOLS / "with-journald.sh"), str(work), "--unit", "pidetect.service", "--",
                           "sh", "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    machine_id = Path("/etc/machine-id").read_text().strip()
    directory = work / "run-log" / "journal" / machine_id

    def journal(*matches):
        out = subprocess.run(["journalctl", "--directory", str(directory), "-o", "json", "--no-pager", *matches],
                             capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    cats = journal("-u", "pidetect", "EVENT=detection", "LABEL=cat")
    assert [e["STATE"] for e in cats] == ["entered", "left"]
    entry = cats[0]
    assert entry["_SYSTEMD_UNIT"] == "pidetect.service" and entry["SYSLOG_IDENTIFIER"] == "pidetect"
    assert entry["PRIORITY"] == "6" and entry["CLASS_ID"] == "16" and float(entry["SCORE"]) > 0.5
    assert len(json.loads(entry["BOX"])) == 4 and entry["TRACK_ID"] and entry["FRAME_SEQ"]
    assert entry["MESSAGE"].startswith("cat entered (track ")
    metrics = journal("-u", "pidetect", "EVENT=metrics")
    assert metrics and float(metrics[0]["INFERENCE_FPS"]) > 0 and float(metrics[0]["RSS_MB"]) > 20
    has_sensor = Path("/sys/class/thermal/thermal_zone0/temp").exists()
    assert ("TEMP_C" in metrics[0]) == has_sensor  # null values are left out of the journal entry
    retrying = journal("-u", "pidetect", "EVENT=source", "STATE=retrying")
    assert retrying and all(e["PRIORITY"] == "4" for e in retrying)
    assert "does not exist" in retrying[0]["DETAIL"]  # an absent camera is retried (a missing file is a typo: 78)
    assert journal("-u", "pidetect", "EVENT=lifecycle", "STATE=stopped")
