"""Event clips with pre-roll: H.264 MP4 per review item, served with Range requests, played in Chromium.

The daemon runs on a 20-second camera built from real photos (tests/clip_scene.py), paced like a camera
(--realtime), pre/post 1 s, with the web UI on. FFmpeg (Debian's, libx264) encodes; ffprobe checks.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import clip_scene
from conftest import run_pidetect, shared_path, small_tmpfs
from daemon import Daemon, of
from test_web import CHROMIUM, free_port, get

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("PIDETECT_REQUIRE_ALL"),
                                reason="needs FFmpeg (apt-get install ffmpeg)")


def saved_clips(daemon):
    """Oldest first (each is finalised on a thread of its own: the records may come in another order)."""
    return sorted(of(daemon.records, "clip", state="saved"), key=lambda r: r["start"])


def probe(path):
    done = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height:format=duration",
                           "-of", "json", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{path} does not play: {done.stderr}"
    info = json.loads(done.stdout)
    return info["streams"][0]["codec_name"], float(info["format"]["duration"])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return clip_scene.build(tmp_path_factory.mktemp("clips") / "camera.mp4",
                            shared_path("datasets", "coco-train128", "images"))


def recording(tmp_path, scene, *extra, port=None):
    port = port or free_port()
    daemon = Daemon("--source", scene, "--realtime", "--record", "--record-dir", tmp_path / "clips",
                    "--pre-capture", "1", "--post-capture", "1", "--display", "mjpeg", "--mjpeg-port", port,
                    "--state-dir", tmp_path / "state", "--snapshots", "--snapshot-dir", tmp_path / "snaps",
                    "--metrics-interval", "1", *extra)
    daemon.base = f"http://127.0.0.1:{port}"
    return daemon


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, scene):
    """One run over the whole scene: its records, and the daemon's web UI kept up for the API and the page;
    its records also go to a real MQTT broker."""
    from mqtt_broker import Broker, Subscriber

    folder = tmp_path_factory.mktemp("recorded")
    broker = Broker(folder / "broker").start()
    subscriber = Subscriber(broker.port)
    daemon = recording(folder, scene, "--loop", "--duration", "120", "--mqtt-host", "127.0.0.1", "--mqtt-port",
                       broker.port, "--mqtt-topic-prefix", "pd/clips", "--mqtt-client-id", "pidetect-clips")
    daemon.subscriber = subscriber
    try:
        daemon.wait_for(lambda r: len(of(daemon.records, "clip", state="saved")) >= 3, timeout=90, what="three clips")
        yield daemon, folder
    finally:
        assert daemon.stop()[0] == 0
        broker.stop()


def test_one_clip_per_review_item_h264_with_pre_and_post_roll(recorded):
    daemon, folder = recorded
    clips = saved_clips(daemon)[:3]
    entered = {r["track_id"]: r for r in of(daemon.records, "detection", state="entered")}
    left = {r["track_id"]: r for r in of(daemon.records, "detection", state="left")}
    assert [sorted(c["labels"]) for c in clips] == [["person"], ["cat"], ["cat", "person"]]
    assert [len(c["track_ids"]) for c in clips] == [1, 1, 2]  # the last person and cat share one clip
    for clip in clips:
        codec, duration = probe(clip["path"])
        assert codec == "h264"
        first = min(entered[t]["ts"] for t in clip["track_ids"])
        last = max(left[t]["ts"] for t in clip["track_ids"])
        expected = (last - first) + 1 + 1  # pre + the object(s) in view + post
        assert abs(clip["duration"] - expected) < 0.5, (clip, expected)
        assert abs(duration - clip["duration"]) <= 0.1, (duration, clip)  # the file is what the record says
        assert clip["start"] <= first - 1 + 0.05 and clip["end"] == pytest.approx(last + 1, abs=0.1)
        assert Path(clip["path"]).parent == folder / "clips" and Path(clip["path"]).name == clip["clip"]
    # the middle frame of a one-object clip shows the object
    for clip, label in ((clips[0], "person"), (clips[1], "cat")):
        middle = folder / f"middle-{label}.png"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{clip['duration'] / 2:.2f}", "-i", clip["path"],
                        "-frames:v", "1", str(middle)], check=True, timeout=30)
        done = run_pidetect("detect", middle, "--json")
        assert done.returncode == 0, done.stderr
        assert label in [d["label"] for d in json.loads(done.stdout)["detections"]], done.stdout
    # nothing but finished clips in record_dir, and the pre-roll ring lives in RAM (/dev/shm here), not there
    assert {p.name for p in (folder / "clips").iterdir()} >= {c["clip"] for c in clips}
    # the clip records went to MQTT's events topic as the journal has them
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sent = [json.loads(p) for p in daemon.subscriber.on("pd/clips/events")]
        sent = sorted((m for m in sent if m.get("event") == "clip"), key=lambda m: m["start"])[:3]
        if len(sent) == 3:
            break
        time.sleep(0.1)
    assert sent == clips
    from pidetect.daemon.logs import describe

    assert describe(clips[2]).startswith("clip of ") and "tracks " in describe(clips[2])
    metrics = [r for r in of(daemon.records, "metrics") if "record_ring_mb" in r]
    assert metrics and 0 < max(r["record_ring_mb"] for r in metrics) < 20


def test_the_api_serves_each_clip_with_range_requests(recorded):
    daemon, folder = recorded
    clips = saved_clips(daemon)[:3]
    events = json.loads(get(daemon.base + "/api/events?limit=1000")[2])
    by_track = {e["track_id"]: e for e in events}
    for clip in clips:
        rows = [by_track[t] for t in clip["track_ids"]]
        assert all(row["clip"] == f"/api/events/{row['id']}/clip.mp4" for row in rows)
        assert len({row["review"] for row in rows}) == 1  # one review item
        data = Path(clip["path"]).read_bytes()
        status, kind, body = get(daemon.base + rows[0]["clip"])
        assert (status, kind, body) == (200, "video/mp4", data)
        import urllib.request

        request = urllib.request.Request(daemon.base + rows[0]["clip"], headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 206 and reply.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
            assert reply.read() == data[1000:2000]
    first = by_track[clips[0]["track_ids"][0]]["clip"]
    size = Path(clips[0]["path"]).stat().st_size
    for wanted, status, part in (("bytes=-100", 206, slice(size - 100, size)), ("bytes=0-", 206, slice(0, size)),
                                 (f"bytes={size}-", 416, None), ("bytes=5-1", 416, None),
                                 ("bytes=0-1,5-9", 200, slice(0, size)), ("pages=1-2", 200, slice(0, size))):
        got = get(daemon.base + first, headers={"Range": wanted})
        assert got[0] == status, wanted
        if part is not None:
            assert got[2] == Path(clips[0]["path"]).read_bytes()[part], wanted
    assert get(daemon.base + "/api/events/999999/clip.mp4")[0] == 404
    assert get(daemon.base + "/api/events/1/clip.mp4/../../etc/passwd")[0] == 404


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("PIDETECT_REQUIRE_ALL"),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_the_review_page_plays_the_clip_in_chromium(recorded, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    daemon, folder = recorded
    clips = saved_clips(daemon)[:3]
    screenshot = Path(os.environ.get("PIDETECT_SCREENSHOTS", tmp_path)) / "review-clips.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--mute-audio"])
        page = browser.new_page(viewport={"width": 430, "height": 1400})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(daemon.base + "/events")
        page.wait_for_function("document.querySelectorAll('#events li video').length >= 3")
        grouped = page.eval_on_selector_all("#events li.grouped", "items => items.map(i => i.dataset.review)")
        assert grouped, "the second object of the shared clip is shown as part of its review item"
        played = page.evaluate("""async () => {
            const results = [];
            for (const video of document.querySelectorAll('#events li video')) {
                video.muted = true;
                const ready = new Promise((resolve, reject) => {
                    video.addEventListener('loadedmetadata', resolve, {once: true});
                    video.addEventListener('error', () => reject(String(video.error && video.error.code)), {once: true});
                });
                video.preload = 'auto';
                video.load();
                await ready;
                video.currentTime = video.duration / 2;   // a seek: a Range request
                await new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
                await video.play();
                await new Promise(resolve => setTimeout(resolve, 300));
                video.pause();
                results.push({src: video.src, readyState: video.readyState, duration: video.duration,
                              width: video.videoWidth, time: video.currentTime, error: video.error});
            }
            return results;
        }""")
        page.screenshot(path=str(screenshot))
        browser.close()
    assert not errors, errors
    durations = [probe(c["path"])[1] for c in clips]
    assert len(played) >= 3
    for video in played:
        assert video["error"] is None and video["readyState"] >= 2 and video["width"] == clip_scene.WIDTH, video
        assert video["time"] > video["duration"] / 2 - 0.1  # it played on from the middle
    assert all(any(abs(v["duration"] - d) < 0.15 for d in durations) for v in played[:3]), (played, durations)
    assert screenshot.stat().st_size > 10_000


def test_kill_9_mid_clip_loses_no_earlier_clip_and_lists_only_playable_ones(tmp_path, scene):
    daemon = recording(tmp_path, scene, "--loop")
    daemon.wait_for(lambda r: len(of(daemon.records, "clip", state="saved")) >= 1, timeout=60, what="a clip")
    saved = len(of(daemon.records, "clip", state="saved"))
    # in the middle of the next clip: the cat (or the person) is in view, and its part file is being written
    daemon.wait_for(lambda r: len(of(daemon.records, "detection", state="entered")) >= saved + 1, timeout=60,
                    what="the next object")
    deadline = time.monotonic() + 10
    while not list((tmp_path / "clips").glob(".*.part.ts")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((tmp_path / "clips").glob(".*.part.ts")), "a clip is being written"
    daemon.kill()
    clips_before = [r["clip"] for r in of(daemon.records, "clip", state="saved")]
    again = recording(tmp_path, scene, "--duration", "4")
    again.wait_for(lambda r: r.get("event") == "lifecycle" and r["state"] == "ready", timeout=60, what="ready")
    events = json.loads(get(again.base + "/api/events?limit=1000")[2])
    assert again.stop()[0] == 0
    listed = {e["review"] + ".mp4" for e in events if e["clip"]}
    assert set(clips_before) <= listed  # no earlier clip lost
    for name in listed:  # and every listed clip plays
        assert probe(tmp_path / "clips" / name)[0] == "h264"
    assert not [p for p in (tmp_path / "clips").iterdir() if p.name.endswith(".mp4") and p.name not in listed]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_card_lists_no_partial_clip_says_so_once_and_detection_goes_on(tmp_path, scene):
    with small_tmpfs(tmp_path / "clips", "3m") as clips:
        daemon = recording(tmp_path, scene, "--loop")
        try:  # 3 MB: the first clip (2.3 MB) fits, the next does not
            said = daemon.wait_for(lambda r: r.get("event") == "log" and "cannot write clips" in r["message"],
                                   timeout=120, what="the full card said")
            objects = len(of(daemon.records, "detection", state="entered"))
            daemon.wait_for(lambda r: len(of(daemon.records, "detection", state="entered")) >= objects + 2,
                            timeout=60, what="two more objects")
        finally:
            assert daemon.stop()[0] == 0
        said = [r for r in daemon.records if r.get("event") == "log" and "cannot write clips" in r["message"]]
        episodes = [r for r in daemon.records if r.get("event") == "log" and "clips are written again" in r["message"]]
        assert len(said) <= len(episodes) + 1  # once per episode
        entered_after = [r for r in of(daemon.records, "detection", state="entered") if r["ts"] > said[0]["ts"]]
        assert entered_after, "detection went on"
        names = {p.name for p in clips.iterdir()}
        assert not [n for n in names if not n.endswith(".mp4")], names  # no part or temporary file left
        for name in names:
            assert probe(clips / name)[0] == "h264"
        saved = {r["clip"] for r in of(daemon.records, "clip", state="saved")}
        removed = {r["clip"] for r in of(daemon.records, "clip", state="removed")}
        assert names == saved - removed  # every clip there was said saved, and the ones removed were said too


def test_retention_removes_only_pidetects_own_clips(tmp_path):
    from pidetect.outputs.clips import ClipFolder

    folder = tmp_path / "clips"
    folder.mkdir()
    now = time.time()
    own = []
    for age_days in (20, 10, 3, 2, 1):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now - age_days * 86400))
        path = folder / f"{stamp}.000-{age_days}.mp4"
        path.write_bytes(b"\0" * 400_000)
        own.append(path.name)
    theirs = folder / "holiday.mp4"
    theirs.write_bytes(b"\0" * 10_000_000)
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"keep")
    (folder / "20200101-000000.000-9.mp4").symlink_to(outside)  # a link with pidetect's name: never followed
    (folder / "20200101-000000.000-8.mp4").mkdir()  # a folder with pidetect's name
    writing = folder / f".{own[-1][:-4]}-77.mp4.part.ts"
    writing.write_bytes(b"\0" * 1000)  # a clip being written (fresh): never pruned
    stale = folder / ".20200101-000000.000-5.mp4.part.ts"
    stale.write_bytes(b"\0")
    os.utime(stale, (now - 3600, now - 3600))  # a crash's leftover, an hour old
    removed = []
    ClipFolder(folder, max_gb=0.001, max_days=7, ffmpeg="ffmpeg").prune(removed.append)  # 1 MB cap
    # 20 and 10 days: too old; then 3 days: the remaining 1.2 MB are over 1 MB
    assert removed == own[:3]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        own[3:] + ["holiday.mp4", "20200101-000000.000-9.mp4", "20200101-000000.000-8.mp4", writing.name])
    assert outside.read_bytes() == b"keep" and theirs.stat().st_size == 10_000_000


def test_recording_needs_ffmpeg_and_a_pre_roll_in_ram(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    done = run_pidetect("run", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "clips",
                        "--log-format", "text", env={"PATH": str(bare)})
    assert done.returncode == 78 and "needs FFmpeg" in done.stderr and "apt install ffmpeg" in done.stderr
    assert "Traceback" not in done.stderr
    disk = tmp_path / "on-disk"
    disk.mkdir()
    from pidetect.files import file_system_type

    if file_system_type(disk) not in ("tmpfs", "ramfs"):
        done = run_pidetect("run", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "clips",
                            "--record-buffer-dir", disk, "--log-format", "text")
        assert done.returncode == 78 and "not in RAM" in done.stderr and "record_buffer_dir" in done.stderr
    done = run_pidetect("check", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "clips",
                        env={"PATH": str(bare)})
    assert done.returncode == 78 and "FAIL recording" in done.stdout + done.stderr, done.stdout + done.stderr
    done = run_pidetect("check", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "clips")
    assert "ok   recording      libx264 via" in done.stdout + done.stderr, done.stdout + done.stderr
    (tmp_path / "afile").write_text("x")
    done = run_pidetect("run", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "afile",
                        "--log-format", "text")
    assert done.returncode == 78 and "record_dir" in done.stderr and "is a file" in done.stderr
    done = run_pidetect("run", "--source", "/dev/null", "--record", "--pre-capture", "-1", "--log-format", "text")
    assert done.returncode == 2 and "pre_capture" in done.stderr.replace("-", "_")


# --- the recorder on its own: frames numbered in their pixels, events at chosen frames ----------------------------
def numbered(n, width=320, height=240):
    """A frame showing its number as 8 black/white bars, readable after H.264 compression."""
    import numpy as np

    image = np.full((height, width, 3), 128, np.uint8)
    for bit in range(8):
        image[:, bit * 40:(bit + 1) * 40] = 255 if n >> bit & 1 else 0
    return image


def read_numbers(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    numbers = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        numbers.append(sum(1 << bit for bit in range(8) if image[120, bit * 40 + 20].mean() > 128))
    return numbers


def run_recorder(tmp_path, frames, events_at, gap_after=None, required_zones=()):
    """Feed `frames` frames at 15 fps of capture clock (paced by the recorder, so none is dropped), the events
    of `events_at` {frame: [TrackEvent]} after their frame; return the records."""
    from pidetect.frames import Frame, Result, SourceGap
    from pidetect.outputs.clips import ClipFolder
    from pidetect.outputs.recorder import MAX_QUEUED_FRAMES, Recorder

    records = []
    ring = Path("/dev/shm")
    recorder = Recorder(ClipFolder(tmp_path / "clips", 1, 0, "ffmpeg"), ring, "ffmpeg", "libx264", 1.0, 1.0,
                        lambda record, priority=None: records.append(record), required_zones)
    for n in range(frames):
        while recorder._queued_frames >= MAX_QUEUED_FRAMES - 1:
            time.sleep(0.002)
        frame = Frame(numbered(n), n + 1, 1_800_000_000 + n / 15, "test", clock=n / 15)
        recorder.feed(frame, 15.0)
        if n in events_at:
            recorder.handle(Result(frame, (), 1.0, events=tuple(events_at[n])))
        if gap_after == n:
            recorder.source_gap(SourceGap(n + 1, frame.ts))
    recorder.close()
    assert recorder.frames_dropped == 0
    assert not list(ring.glob(f"pidetect-ring-{os.getpid()}-*")), "the ring is removed with the recorder"
    return records


def track_event(kind, state, track, label="person", zone=""):
    from pidetect.frames import TrackEvent

    return TrackEvent(kind, state, track, label, 0, 0.9, (0, 0, 10, 10), 0, zone=zone)


def test_the_recorder_cuts_the_clip_from_pre_roll_to_post_roll(tmp_path):
    # entered at frame 47 (3.13 s) and left at frame 75 (5.0 s), pre and post 1 s: the clip starts at the
    # keyframe at or before 2.13 s (frame 30: keyframes every 6 frames at 15 fps) and ends before frame 90
    records = run_recorder(tmp_path, 150, {47: [track_event("detection", "entered", 1)],
                                           75: [track_event("detection", "left", 1)]})
    clips = sorted((r for r in records if r.get("event") == "clip"), key=lambda r: r["start"])  # finished in any order
    assert len(clips) == 1 and clips[0]["track_ids"] == [1] and clips[0]["labels"] == ["person"]
    assert read_numbers(clips[0]["path"]) == list(range(30, 90))
    assert clips[0]["duration"] == pytest.approx(4.0, abs=0.01)
    assert probe(clips[0]["path"])[1] == pytest.approx(4.0, abs=0.07)


def test_overlapping_objects_share_a_clip_and_a_gap_ends_it(tmp_path):
    # a person 3-5 s, a cat entering 0.5 s after it left (within post + pre): one review item; another person
    # from 8 s, and the camera lost at frame 140: that clip ends with the last frame recorded
    records = run_recorder(tmp_path, 150, {
        45: [track_event("detection", "entered", 1)], 75: [track_event("detection", "left", 1)],
        82: [track_event("detection", "entered", 2, "cat")], 95: [track_event("detection", "left", 2, "cat")],
        120: [track_event("detection", "entered", 3)]}, gap_after=140)
    clips = sorted((r for r in records if r.get("event") == "clip"), key=lambda r: r["start"])  # finished in any order
    assert [(c["track_ids"], c["labels"]) for c in clips] == [([1, 2], ["person", "cat"]), ([3], ["person"])]
    assert read_numbers(clips[0]["path"]) == list(range(30, 110))  # 2.0 s .. 95/15 + 1 s
    second = read_numbers(clips[1]["path"])
    assert second[0] == 102 and second[-1] == 140  # the keyframe before 7 s, then up to the gap


def test_with_required_zones_only_objects_in_them_make_clips(tmp_path):
    records = run_recorder(tmp_path, 120, {
        20: [track_event("detection", "entered", 1)],  # in view, never in the porch: no clip
        40: [track_event("detection", "left", 1)],
        60: [track_event("detection", "entered", 2)], 66: [track_event("zone", "entered", 2, zone="porch")],
        90: [track_event("detection", "left", 2)]}, required_zones=("porch",))
    clips = sorted((r for r in records if r.get("event") == "clip"), key=lambda r: r["start"])  # finished in any order
    assert len(clips) == 1 and clips[0]["track_ids"] == [2] and clips[0]["zones"] == ["porch"]
    assert read_numbers(clips[0]["path"])[0] == 48  # the keyframe at or before 66/15 - 1 s


def frame_hashes(path):
    """The MD5 of every decoded picture: a copied stream decodes to exactly the camera's pictures, an encoded
    one never does (the container's framing may differ: MPEG-TS adds access unit delimiters)."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
                          capture_output=True, text=True, timeout=60, check=True)
    return [line.rsplit(",", 1)[1].strip() for line in done.stdout.splitlines() if line and not line.startswith("#")]


def test_an_h264_pipe_is_stored_as_the_camera_sent_it(tmp_path, scene):
    # rpicam-vid --codec h264 (or ffmpeg copying an RTSP camera) stands in as ffmpeg copying an H.264 file at
    # its pace; no B-frames and a keyframe a second, as the Pi's encoder makes them
    camera = tmp_path / "camera-h264.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(scene), "-c:v", "libx264", "-preset", "veryfast", "-bf", "0",
                    "-x264-params", "keyint=15:min-keyint=15:scenecut=0", "-pix_fmt", "yuv420p", str(camera)],
                   check=True, timeout=120)
    daemon = Daemon("--source", f"pipe:ffmpeg -v error -re -i {camera} -c copy -f h264 -", "--pipe-codec", "h264",
                    "--width", clip_scene.WIDTH, "--height", clip_scene.HEIGHT, "--fps", clip_scene.FPS,
                    "--record", "--record-dir", tmp_path / "clips", "--pre-capture", "1", "--post-capture", "1",
                    "--state-dir", tmp_path / "state", "--metrics-interval", "1",
                    # the scene's 2.5 s gap holds a 1 s post-roll, a pre-roll of up to 2 s (the camera's keyframes
                    # are 1 s apart) and the person's leaving: 5 frames at 15 fps, as the scene was built for
                    "--max-disappeared", "0.33")
    try:
        daemon.wait_for(lambda r: len(of(daemon.records, "clip", state="saved")) >= 2, timeout=60, what="two clips")
    finally:
        assert daemon.stop()[0] == 0
    clips = saved_clips(daemon)
    assert [c["labels"] for c in clips[:2]] == [["person"], ["cat"]]
    camera_frames = frame_hashes(camera)
    for clip in clips[:2]:
        assert probe(clip["path"])[0] == "h264"
        frames = frame_hashes(clip["path"])
        # the clip's pictures are a run of the camera's, bit for bit: nothing was encoded again
        starts = [i for i in range(len(camera_frames) - len(frames) + 1)
                  if camera_frames[i:i + len(frames)] == frames]
        assert starts, "the clip is not the camera's own stream"
        assert starts[0] % 15 == 0  # it begins at one of the camera's keyframes
        entered = of(daemon.records, "detection", state="entered", track_id=clip["track_ids"][0])[0]
        # the camera's keyframes are 1 s apart: the pre-roll is at least 1 s and less than 2 s
        assert 1 - 0.1 <= entered["ts"] - clip["start"] < 2 + 0.1


def test_a_broken_encoder_is_said_once_and_retried(tmp_path, monkeypatch):
    from pidetect.frames import Frame
    from pidetect.outputs import recorder as recorder_module
    from pidetect.outputs.clips import ClipFolder

    monkeypatch.setattr(recorder_module, "RESTART_DELAY_S", 0.0)  # retried at every frame
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    broken.chmod(0o755)
    records = []
    recorder = recorder_module.Recorder(ClipFolder(tmp_path / "clips", 1, 0, str(broken)), Path("/dev/shm"),
                                        str(broken), "libx264", 1.0, 1.0, lambda record, priority=None:
                                        records.append(record))
    for n in range(40):
        while recorder._queued_frames >= recorder_module.MAX_QUEUED_FRAMES - 1:
            time.sleep(0.002)
        recorder.feed(Frame(numbered(n), n + 1, time.time(), "test", clock=n / 15), 15.0)
        time.sleep(0.01)
    recorder.close()
    said = [r for r in records if r.get("event") == "log" and "encoder (ffmpeg) stopped" in r["message"]]
    assert len(said) == 1 and "Unknown encoder libx264" in said[0]["message"], records[:3]
    assert not list((tmp_path / "clips").glob("*")) if (tmp_path / "clips").exists() else True


def test_a_clip_gets_its_name_only_when_its_mp4_is_complete(tmp_path):
    """FFmpeg 5.1 exits 0 when a full card stops it writing the MP4 index ("Error writing trailer"): the clip
    was named, said saved and served without its moov. A stand-in FFmpeg doing exactly that (exit 0, the file cut
    short) must leave no clip and no file; the real FFmpeg gives a clip whose duration reads back."""
    from pidetect.outputs.clips import ClipFile, ClipWriteError
    from pidetect.outputs.encoder import Segment
    from pidetect.outputs.mp4 import mp4_duration

    segment = tmp_path / "segment.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=10", "-t", "2", "-c:v", "libx264", "-f", "mpegts", str(segment)],
                   check=True, timeout=60)
    real = shutil.which("ffmpeg")
    cut_short = tmp_path / "ffmpeg-trailer-fails"
    cut_short.write_text(f"#!/bin/sh\nfor last; do :; done\n{real} \"$@\" || exit $?\n"
                         "size=$(stat -c %s \"$last\")\ntruncate -s $((size * 2 / 3)) \"$last\"\n"
                         "echo \"[mp4 @ 0x1] Error writing trailer\" >&2\nexit 0\n")
    cut_short.chmod(0o755)
    folder = tmp_path / "clips"
    clip = ClipFile(folder, "20261207-100000.000-1.mp4", str(cut_short))
    clip.append(Segment(segment, 0.0, 2.0))
    with pytest.raises(ClipWriteError, match="cannot write clips to .*Error writing trailer"):
        clip.finish(2.0)
    assert list(folder.iterdir()) == [], "nothing named, no part or temporary file left"

    clip = ClipFile(folder, "20261207-100000.000-2.mp4", real)
    clip.append(Segment(segment, 0.0, 2.0))
    path = clip.finish(2.0)
    assert [p.name for p in folder.iterdir()] == [path.name]
    assert mp4_duration(path) == pytest.approx(2.0, abs=0.15) and probe(path)[0] == "h264"


def test_the_mp4_check_reads_boxes_not_names(tmp_path):
    from pidetect.outputs.mp4 import mp4_duration

    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=10", "-t", "1", "-c:v", "libx264", str(whole)], check=True, timeout=60)
    data = whole.read_bytes()
    assert mp4_duration(whole) == pytest.approx(1.0, abs=0.15)
    no_index = tmp_path / "no-index.mp4"
    no_index.write_bytes(data[:data.find(b"moov") - 4])  # moov at the end (no faststart): cut before it
    empty, text = tmp_path / "empty.mp4", tmp_path / "text.mp4"
    empty.write_bytes(b"")
    text.write_text("not a movie at all\n")
    assert [mp4_duration(p) for p in (no_index, empty, text, tmp_path / "missing.mp4")] == [None] * 4
