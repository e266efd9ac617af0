"""The MJPEG view read by OpenCV and by headless Chromium, and event snapshots with pruning."""

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon import Daemon, of, run_daemon
from pidetect.tools.measure import free_port
from pidetect.tools.demo import write_scene_video
from pidetect.outputs.overlay import class_colour


@pytest.fixture(scope="module")
def cat_loop(tmp_path_factory):
    path = tmp_path_factory.mktemp("mjpeg") / "cat.avi"
    write_scene_video(path, 640, 480, fps=15, frames_per_scene=30, blank_frames=0,
                      scenes=[("chelsea.png", "cat")], trailing_blank=False)
    return path


def colour_near(image, colour, tolerance=60):
    diff = np.abs(image.astype(int) - np.array(colour, int)).max(axis=2)
    return diff <= tolerance


def read_frames(url, count, out):
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000,
                                                   cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000])
    while len(out) < count:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(frame)
    capture.release()


def test_mjpeg_stream_shows_the_box_to_two_viewers_and_frees_the_port(cat_loop, model_paths, tmp_path):
    port = free_port()
    daemon = Daemon("--source", cat_loop, "--realtime", "--loop", "--display", "mjpeg", "--mjpeg-port", port)
    try:
        entered = daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "cat", what="cat")[0]
        url = f"http://127.0.0.1:{port}/stream.mjpg"
        first, second = [], []
        viewers = [threading.Thread(target=read_frames, args=(url, 10, frames)) for frames in (first, second)]
        for viewer in viewers:
            viewer.start()
        for viewer in viewers:
            viewer.join(30)
        assert len(first) == 10 and len(second) == 10, (len(first), len(second))
        frame = first[-1]
        assert frame.shape == (480, 640, 3)
        x1, y1, x2, y2 = entered["box"]
        left_edge = frame[y1 + 40: y2 - 40, max(0, x1 - 2): x1 + 3]
        share = colour_near(left_edge, class_colour(entered["class_id"])).any(axis=1).mean()
        assert share > 0.9, f"box edge in the cat's colour on only {share:.0%} of rows"
        inside = frame[y1 + 60: y2 - 60, x1 + 60: x2 - 60]
        assert not colour_near(inside, class_colour(entered["class_id"]), 30).all(axis=1).any()
        # headless Chromium renders the index page with the live image in it
        if shutil.which("chromium") is None:
            pytest.skip("chromium not installed (apt-get install chromium)")
        shot = tmp_path / "page.png"
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=800,600",
                        "--virtual-time-budget=3000", f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                       capture_output=True, timeout=90)
        page = cv2.imread(str(shot))
        assert page is not None, "no screenshot"
        assert colour_near(page, class_colour(entered["class_id"]), 40).sum() > 200, "no box colour on the page"
        cat_fur = colour_near(page, (80, 110, 140), 60).sum()
        assert cat_fur > 10000, "the page does not show the camera image"
        code, elapsed = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and elapsed < 2.0
    with socket.socket() as probe:  # nobody listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with socket.socket() as again:  # and a new server can take the port (TIME_WAIT needs SO_REUSEADDR, as always)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def scenes_clip(tmp_path_factory):
    """The five photos with blank frames between them: five objects enter, one after another."""
    path = tmp_path_factory.mktemp("snapshots") / "scenes.avi"
    write_scene_video(path, 640, 480, fps=10, frames_per_scene=8, blank_frames=7)
    return path


def test_snapshots_on_entered_with_count_cap(tmp_path, scenes_clip, model_paths):
    clip = scenes_clip
    folder = tmp_path / "snapshots"
    code, records, stderr = run_daemon("--source", clip, "--snapshots", "--snapshot-dir", folder,
                                       "--snapshot-max-files", 3)
    assert code == 0, stderr
    entered = of(records, "detection", state="entered")
    assert len(entered) >= 5 and all(Path(r["snapshot"]).parent == folder for r in entered)
    assert all("snapshot" not in r for r in of(records, "detection", state="left"))
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == sorted(Path(r["snapshot"]).name for r in entered[-3:])  # oldest pruned first
    horse = [r for r in entered if r["label"] == "horse"][0]
    image = cv2.imread(horse["snapshot"])
    assert image.shape == (480, 640, 3)
    x1, y1, x2, y2 = horse["box"]
    assert colour_near(image[y1 + 30:y2 - 30, x1 - 1:x1 + 3], class_colour(horse["class_id"])).any(axis=1).mean() > 0.9


def test_snapshot_size_cap_and_unwritable_folder(tmp_path, scenes_clip, model_paths):
    clip = scenes_clip
    folder = tmp_path / "snaps"
    code, records, _ = run_daemon("--source", clip, "--snapshots", "--snapshot-dir", folder,
                                  "--snapshot-max-mb", 0.08)
    assert code == 0
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert 0 < total <= 0.08 * 2**20 and len(list(folder.iterdir())) < len(of(records, "detection", state="entered"))
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    code, records, stderr = run_daemon("--source", clip, "--snapshots", "--snapshot-dir", blocked / "sub")
    assert code == 0, stderr
    errors = [r["message"] for r in records if r.get("level") == "error"]
    assert len(errors) == 1 and "cannot write snapshots to" in errors[0]
    assert len(of(records, "detection", state="entered")) >= 5  # detection carried on


def test_mjpeg_http_routes_errors_and_viewer_count():
    """The small HTTP server behind the view: page, snapshot, stream, and clear answers to anything else."""
    import http.client
    import time

    from pidetect.web.mjpeg import MjpegDisplay
    from pidetect.web.server import BOUNDARY
    from pidetect.frames import Detection, Frame, Result

    display = MjpegDisplay("127.0.0.1", free_port())
    port = display.server.server_address[1]
    image = np.full((48, 64, 3), 90, np.uint8)
    running = threading.Event()

    def camera():
        seq = 0
        while not running.is_set():
            seq += 1
            display.show(Result(Frame(image, seq, time.time()), (Detection("cat", 16, 0.9, (5, 5, 40, 40)),), 7.0))
            time.sleep(0.02)

    feeder = threading.Thread(target=camera, daemon=True)
    feeder.start()

    def get(path, method="GET"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read() if method != "HEAD" else b""
        conn.close()
        return response.status, response.getheader("Content-Type"), body

    try:
        status, kind, body = get("/")
        assert status == 200 and kind.startswith("text/html") and b"/stream.mjpg" in body
        status, kind, body = get("/snapshot.jpg?t=1")
        assert status == 200 and kind == "image/jpeg"
        snapshot = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert snapshot.shape == (48, 64, 3)
        assert colour_near(snapshot[20:30, 3:8], class_colour(16)).any(), "the box is drawn on the snapshot"
        assert get("/nothing")[0] == 404
        assert get("/", "POST")[0] == 405
        status, kind, _ = get("/stream.mjpg", "HEAD")
        assert status == 200 and kind == f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"nonsense\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.0 400 ")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as viewer:
            viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
            received = b""
            while received.count(b"--" + BOUNDARY) < 3:
                received += viewer.recv(65536)
            assert received.startswith(b"HTTP/1.0 200 OK\r\n") and display.latest.viewers == 1
        deadline = time.monotonic() + 5
        while display.latest.viewers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert display.latest.viewers == 0, "a viewer that left must stop the encoding"
    finally:
        running.set()
        feeder.join(5)
        display.close()
