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
from conftest import run_pidetect, shared_path
from daemon import Daemon, of
from test_web import CHROMIUM, free_port, get

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("PIDETECT_REQUIRE_ALL"),
                                reason="needs FFmpeg (apt-get install ffmpeg)")


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
    """One run over the whole scene: its records, and the daemon's web UI kept up for the API and the page."""
    folder = tmp_path_factory.mktemp("recorded")
    daemon = recording(folder, scene, "--loop", "--duration", "120")
    daemon.wait_for(lambda r: len(of(daemon.records, "clip", state="saved")) >= 3, timeout=90, what="three clips")
    yield daemon, folder
    assert daemon.stop()[0] == 0


def test_one_clip_per_review_item_h264_with_pre_and_post_roll(recorded):
    daemon, folder = recorded
    clips = of(daemon.records, "clip", state="saved")[:3]
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
    metrics = [r for r in of(daemon.records, "metrics") if "record_ring_mb" in r]
    assert metrics and 0 < max(r["record_ring_mb"] for r in metrics) < 20


def test_the_api_serves_each_clip_with_range_requests(recorded):
    daemon, folder = recorded
    clips = of(daemon.records, "clip", state="saved")[:3]
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
    clips = of(daemon.records, "clip", state="saved")[:3]
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
    clips = tmp_path / "clips"
    clips.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(clips)], check=True)
    try:
        daemon = recording(tmp_path, scene, "--loop")
        try:
            daemon.wait_for(lambda r: len(of(daemon.records, "detection", state="entered")) >= 7, timeout=120,
                            what="seven objects")
        finally:
            assert daemon.stop()[0] == 0
        said = [r for r in daemon.records if r.get("event") == "log" and "cannot write clips" in r["message"]]
        assert said, "the full card was said"
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
    finally:
        subprocess.run(["umount", "-l", str(clips)], check=False)


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
    (tmp_path / "afile").write_text("x")
    done = run_pidetect("run", "--source", "/dev/null", "--record", "--record-dir", tmp_path / "afile",
                        "--log-format", "text")
    assert done.returncode == 78 and "record_dir" in done.stderr and "is a file" in done.stderr
    done = run_pidetect("run", "--source", "/dev/null", "--record", "--pre-capture", "-1", "--log-format", "text")
    assert done.returncode == 2 and "pre_capture" in done.stderr.replace("-", "_")
