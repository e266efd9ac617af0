"""Reliability, third pass (issue 33): what a full card, a damaged or read-only store, a shared state_dir and a
changed snapshot_dir did to the review history, and the answers the owner gets instead. Each test here failed on
the main branch before its fix (said in the issue's closing note)."""
import errno
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

import porch_scene
from conftest import REPO, run_pidetect, shared_path
from daemon import Daemon, of, parse_records
from test_web import free_port


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return porch_scene.build(tmp_path_factory.mktemp("porch"), shared_path("datasets", "coco-train128", "images"))


def web_run(scene, state, *extra):
    """The scene once through, as fast as it decodes, with the web UI (and so the event store) on."""
    return run_pidetect("run", "--source", scene, "--display", "mjpeg", "--mjpeg-port", free_port(), "--state-dir",
                        state, "--log-format", "json", "--enter-seconds", "0.1", "--max-disappeared", "0.5", *extra)


def rows(state):
    with sqlite3.connect(state / "events.db") as db:
        return db.execute("SELECT label, snapshot FROM events ORDER BY id").fetchall()


def test_a_changed_snapshot_dir_keeps_every_event(tmp_path, scene):
    """Changing snapshot_dir lost 200 events every 50 writes: retention dropped rows whose snapshot was not in the
    new folder."""
    state = tmp_path / "state"
    first = web_run(scene, state, "--snapshots", "--snapshot-dir", tmp_path / "snaps-a")
    assert first.returncode == 0, first.stderr[-2000:]
    before = rows(state)
    assert before and all(snapshot for _label, snapshot in before)
    again = web_run(scene, state, "--snapshots", "--snapshot-dir", tmp_path / "snaps-b")
    assert again.returncode == 0, again.stderr[-2000:]
    after = rows(state)
    assert after[:len(before)] == before and len(after) == 2 * len(before)


def test_a_second_daemon_on_one_state_dir_is_refused_and_the_first_keeps_its_events(tmp_path, scene):
    """Camera B started on camera A's state_dir closed A's open rows and took its events 6 -> 0."""
    state = tmp_path / "state"
    port = free_port()
    first = Daemon("--source", scene, "--realtime", "--loop", "--display", "mjpeg", "--mjpeg-port", port,
                   "--state-dir", state, "--metrics-interval", "1")
    try:
        first.wait_for(lambda r: r.get("event") == "detection" and r.get("state") == "entered", timeout=60,
                       what="an event")
        second = web_run(scene, state)
        assert second.returncode == 78, second.stderr[-2000:]
        assert f"another pidetect (pid {first.proc.pid}) writes the event store" in second.stderr
        assert "Traceback" not in second.stderr
        check = run_pidetect("check", "--source", scene, "--display", "mjpeg", "--mjpeg-port", free_port(),
                             "--state-dir", state)
        assert check.returncode == 78 and "another pidetect" in check.stdout + check.stderr
        entered = len(of(first.records, "detection", state="entered"))
        first.wait_for(lambda r: len(of(first.records, "detection", state="entered")) > entered, timeout=60,
                       what="the first daemon going on")
    finally:
        assert first.stop()[0] == 0
    assert len(rows(state)) >= len(of(first.records, "detection", state="entered")) - 1


def test_a_damaged_store_is_moved_aside_and_the_daemon_runs_not_loops(tmp_path, scene):
    """A damaged events.db made the daemon exit 1 with a traceback from close_interrupted: a restart loop."""
    state = tmp_path / "state"
    state.mkdir()
    path = state / "events.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 1885619574")  # pidetect's
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL, class_id "
                   "INTEGER NOT NULL, track_id INTEGER NOT NULL, start REAL NOT NULL, end REAL, score REAL NOT NULL, "
                   "zones TEXT NOT NULL DEFAULT '[]', snapshot TEXT, clip TEXT, stationary INTEGER NOT NULL DEFAULT 0)")
        db.executemany("INSERT INTO events (label, class_id, track_id, start, score) VALUES ('person', 0, ?, ?, 0.8)",
                       [(n, 1000.0 + n) for n in range(2000)])
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 3 + 300] = b"\xff" * 300  # a table page in the middle; the header is intact
    path.write_bytes(bytes(data))
    done = web_run(scene, state)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    records = parse_records(done.stdout)
    said = [r["message"] for r in of(records, "log") if "was damaged" in r.get("message", "")]
    assert said and "moved aside to" in said[0], [r.get("message") for r in of(records, "log")]
    aside = [p for p in state.iterdir() if p.name.startswith("events.db.damaged-")]
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [bytes(data)]
    assert rows(state), "the new store has this run's events"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a read-only mount")
def test_a_read_only_card_keeps_detecting_and_says_what_it_is(tmp_path, scene):
    """A healthy events.db on a read-only mount was called "not an SQLite database ... move it away" (exit 78)."""
    place = tmp_path / "card"
    place.mkdir()
    make = (f"import sqlite3, sys; sys.path.insert(0, {str(REPO)!r}); from pidetect.store.events import EventStore; "
            f"s = EventStore(__import__('pathlib').Path({str(place / 'events.db')!r})); "
            "s.open_event('person', 0, 1, 1000.0, 0.8); s.close()")
    script = (f"mount -t tmpfs tmpfs {place} && {sys.executable} -c \"{make}\" && mount -o remount,ro {place} && "
              f"{sys.executable} -m pidetect run --source '{scene}' --display mjpeg --mjpeg-port {free_port()} "
              f"--state-dir {place} --log-format json --enter-seconds 0.1 --max-disappeared 0.5; echo run=$?")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=180)
    assert "run=0" in done.stdout, done.stdout[-1000:] + done.stderr[-2000:]
    records = parse_records(done.stdout)
    assert of(records, "detection", state="entered"), "detection went on"
    said = [r["message"] for r in of(records, "log") if "cannot be written" in r.get("message", "")]
    assert len(said) == 1 and "read-only file system" in said[0], said
    assert "not an SQLite database" not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_full_card_frees_snapshot_room_once_per_episode_never_all(tmp_path, monkeypatch):
    """Each failed snapshot freed "the oldest tenth" again, the store's WAL took the room back, until all ~750
    snapshots were gone. Room is made once per episode of failures; each removal is told to the event store."""
    import numpy as np

    from pidetect.frames import Frame, Result
    from pidetect.outputs import snapshots as snapshots_module

    folder = tmp_path / "snaps"
    folder.mkdir()
    for number in range(50):
        (folder / f"20261201-0900{number:02d}.000-person-{number}.jpg").write_bytes(b"jpeg")
    removed = []
    snapshots = snapshots_module.Snapshots(folder, 1000, 1000, on_removed=removed.append)

    def full(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshots_module.Snapshots, "_write", full)
    frame = Frame(image=np.zeros((120, 160, 3), np.uint8), seq=1, ts=1_800_000_000.0)

    class Track:
        label, track_id = "person", 1

    for _ in range(30):
        assert snapshots.save(Result(frame=frame, detections=[], inference_ms=1.0), Track()) is None
    assert len(removed) == 5 and len(list(folder.iterdir())) == 45  # a tenth, once
    monkeypatch.undo()
    assert snapshots.save(Result(frame=frame, detections=[], inference_ms=1.0), Track())  # room again: a new episode
