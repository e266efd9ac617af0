"""The event store and the web UI: SQLite rows for events, the review page, the JSON API, /metrics, the password.

The daemon runs on the porch scene built from real photos (tests/porch_scene.py), paced like a camera
(--realtime, looping), with the web UI on its own port and its state in the test's folder.
"""

import base64
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import porch_scene
from conftest import REPO, run_pidetect, shared_path, small_tmpfs
from daemon import Daemon, of
from pidetect.errors import ConfigError
from pidetect.store.events import EventStore

CHROMIUM = "/usr/bin/chromium"
ZONE = f'''[zones.porch]
points = {porch_scene.PORCH}
objects = ["person"]

[filters.person]
min_area = 0.02
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, headers=None, method="GET", timeout=10):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return porch_scene.build(tmp_path_factory.mktemp("porch"), shared_path("datasets", "coco-train128", "images"))


class Live:
    def __init__(self, tmp_path, scene, *extra, config=ZONE, port=None, headers=None):
        self.folder, self.headers = tmp_path, headers
        self.state = tmp_path / "state"
        self.snaps = tmp_path / "snaps"
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        path = tmp_path / "pidetect.toml"
        path.write_text(config)
        self.daemon = Daemon("--config", path, "--source", scene, "--loop", "--realtime", "--display", "mjpeg",
                             "--mjpeg-port", self.port, "--state-dir", self.state, "--snapshots", "--snapshot-dir",
                             self.snaps, "--metrics-interval", "1", *extra)
        self.daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r["state"] == "ready", timeout=60,
                             what="ready")

    def entered(self):
        return of(self.daemon.records, "detection", state="entered")

    def wait_events(self, count, timeout=60):
        self.daemon.wait_for(lambda r: len(self.entered()) >= count, timeout=timeout, what=f"{count} events")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the store's writer thread follows the records closely
            events = json.loads(get(self.base + "/api/events?limit=1000", self.headers)[2])
            if len(events) >= count:
                return events
            time.sleep(0.1)
        raise AssertionError(f"the store has {len(events)} events, the journal {len(self.entered())}")

    def stop(self):
        return self.daemon.stop()[0]


# --- the store on its own --------------------------------------------------------------------------------------
def test_the_store_keeps_rows_and_answers_queries(tmp_path):
    store = EventStore(tmp_path / "events.db")
    first = store.open_event("person", 0, 7, 1000.0, 0.7, (), "20261201-090000.000-person-7.jpg")
    second = store.open_event("car", 2, 8, 2000.0, 0.9)
    store.add_zone(first, "porch")
    store.add_zone(first, "porch")
    store.close_event(first, 1012.5, 0.95)
    assert [e.id for e in store.list()] == [second, first]  # newest first
    assert [e.id for e in store.list(label="person")] == [first]
    assert [e.id for e in store.list(after=1500)] == [second] and [e.id for e in store.list(before=1500)] == [first]
    event = store.get(first).as_dict()
    assert event == {"id": first, "label": "person", "class_id": 0, "track_id": 7, "start": 1000.0, "end": 1012.5,
                     "duration": 12.5, "score": 0.95, "zones": ["porch"],
                     "snapshot": f"/api/events/{first}/snapshot.jpg", "clip": None, "review": None,
                     "stationary": False, "box": None, "thumbnail": None}
    assert store.labels() == ["car", "person"]
    store.close()
    # an event still open when the process died is closed when a writer starts again (a reload's check that only
    # opens the file must not touch rows the running pipeline still has open)
    again = EventStore(tmp_path / "events.db")
    assert again.get(second).end is None
    assert again.close_interrupted() == 1
    assert again.get(second).end == 2000.0 and again.count() == 2
    assert again.delete(first).label == "person" and again.get(first) is None and again.delete(first) is None
    again.close()


def test_retention_removes_only_old_rows_and_a_pruned_snapshot_leaves_its_event(tmp_path):
    """Issue 33: retention deleted every row whose snapshot was not in its own snapshot_dir — a full card (snapshots
    freed for room), a changed snapshot_dir or a shared state_dir wiped the review history. Only age removes rows."""
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    store = EventStore(tmp_path / "events.db")
    names = [f"20261201-0900{i:02d}.000-person-{i}.jpg" for i in range(4)]
    for i, name in enumerate(names):
        (snaps / name).write_bytes(b"jpeg")
        store.open_event("person", 0, i, 1000.0 + i, 0.8, (), name)
    (snaps / names[0]).unlink()  # the snapshot caps removed the oldest, and said so
    store.forget_snapshot(names[0])
    (snaps / names[1]).unlink()  # gone without a word (another folder, a hand): proves nothing
    assert store.prune(None) == [] and store.count() == 4
    assert [e.snapshot for e in sorted(store.list(), key=lambda e: e.start)] == [None, *names[1:]]
    assert store.prune(1003.0) == names[1:3] and store.count() == 1  # by age, with their files to remove
    store.close()


def test_the_wal_is_cut_back_and_never_grows_without_bound(tmp_path):
    from pidetect.store.events import JOURNAL_SIZE_LIMIT

    store = EventStore(tmp_path / "events.db")
    for number in range(3000):
        store.open_event("person", 0, number, 1000.0 + number, 0.8, ("porch", "drive"), "x" * 200)
    store.prune(None)
    assert (tmp_path / "events.db-wal").stat().st_size <= JOURNAL_SIZE_LIMIT
    store.close()


def test_a_damaged_store_is_moved_aside_whole_and_a_new_one_started(tmp_path):
    """Issue 33: a damaged events.db crashed the daemon in close_interrupted (exit 1: a restart loop)."""
    path = tmp_path / "events.db"
    store = EventStore(path)
    for number in range(400):
        store.open_event("person", 0, number, 1000.0 + number, 0.8, (), None)
    store.checkpoint()
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2:page * 2 + 200] = b"\xff" * 200  # a page in the middle: the header is intact
    path.write_bytes(bytes(data))
    fresh = EventStore(path)
    assert fresh.moved_aside is not None and fresh.moved_aside.read_bytes() == bytes(data)
    assert fresh.count() == 0 and fresh.open_event("cat", 15, 1, 5.0, 0.9) > 0
    fresh.close()


def test_a_foreign_or_corrupt_file_is_refused_and_left_as_it_is(tmp_path):
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.execute("INSERT INTO recipes VALUES ('soup')")
    before = foreign.read_bytes()
    with pytest.raises(ConfigError, match="not pidetect's event store"):
        EventStore(foreign)
    assert foreign.read_bytes() == before
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is a text file, not a database\n" * 200)
    before = corrupt.read_bytes()
    with pytest.raises(ConfigError, match="not an SQLite database"):
        EventStore(corrupt)
    assert corrupt.read_bytes() == before
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        EventStore(folder)


def test_the_daemon_refuses_a_foreign_store_with_exit_78(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "events.db").write_bytes(b"\x00garbage" * 100)
    done = run_pidetect("run", "--source", "/dev/null", "--display", "mjpeg", "--mjpeg-port", free_port(),
                        "--state-dir", state, "--log-format", "text")
    assert done.returncode == 78 and "not an SQLite database" in done.stderr and "Traceback" not in done.stderr
    assert (state / "events.db").read_bytes() == b"\x00garbage" * 100


# --- the daemon: API, snapshots, metrics ----------------------------------------------------------------------
def test_api_lists_every_event_with_a_snapshot_and_metrics_count_them(tmp_path, scene):
    from prometheus_client.parser import text_string_to_metric_families

    live = Live(tmp_path, scene)
    try:
        events = live.wait_events(6)
        entered = live.entered()
        by_id = {e["id"]: e for e in events}
        for event in events:
            assert set(event) >= {"id", "label", "start", "end", "score", "snapshot", "zones", "duration"}
            status, kind, body = get(live.base + event["snapshot"])
            assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
            assert get(live.base + f"/api/events/{event['id']}")[2] == json.dumps(event).encode() or \
                json.loads(get(live.base + f"/api/events/{event['id']}")[2])["id"] == event["id"]
        assert sorted(e["label"] for e in events[-3:]) == ["car", "cat", "person"]  # the first three, together
        persons = json.loads(get(live.base + "/api/events?label=person")[2])
        assert persons and all(e["label"] == "person" for e in persons)
        assert any("porch" in e["zones"] for e in persons)
        first = min(by_id)
        assert by_id[first]["end"] is not None and by_id[first]["duration"] >= 0  # left when the clip looped
        status, kind, text = get(live.base + "/metrics")
        assert status == 200 and kind.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text.decode())}
        counted = {s.labels["label"]: s.value for s in families["pidetect_detections"].samples
                   if s.name == "pidetect_detections_total"}
        journal = {}
        for record in live.entered():
            journal[record["label"]] = journal.get(record["label"], 0) + 1
        for label in ("car", "cat", "person"):
            assert 1 <= counted[label] <= journal[label], (counted, journal)  # the page is read after the records
        assert families["pidetect_inference_seconds"].samples and families["pidetect_capture_fps"]
        zone = [s for s in families["pidetect_zone_entries"].samples if s.name == "pidetect_zone_entries_total"]
        assert zone and zone[0].labels == {"zone": "porch", "label": "person"}
        assert len(entered) >= 6
    finally:
        assert live.stop() == 0


def test_bad_parameters_and_paths_are_answered_plainly(tmp_path, scene):
    live = Live(tmp_path, scene)
    try:
        live.wait_events(3)
        for query, words in (("limit=0", b"limit"), ("limit=x", b"limit"), ("after=yesterday", b"after"),
                             ("bogus=1", b"unknown parameter"), ("label=" + "x" * 300, b"longer than")):
            status, _kind, body = get(live.base + "/api/events?" + query)
            assert status == 400 and words in body, (query, body)
        assert get(live.base + "/api/events?after=2026-01-01&before=2099-01-01&limit=5")[0] == 200
        for path in ("/api/events/99999", "/api/events/99999/snapshot.jpg", "/api/events/1/../../../etc/passwd",
                     "/api/events/%2e%2e/%2e%2e/etc/passwd", "/api/events/1%2f..%2f..%2fetc%2fpasswd",
                     "/..%2f..%2fetc/passwd", "/api/events/-1", "/api/events/1/snapshot.jpg/../../x",
                     "/" + "a" * 5000):
            status, _kind, body = get(live.base + path)
            assert status in (404, 414) and b"root:" not in body, (path, status)
        # a link placed in the snapshot folder under a snapshot's name is never followed
        events = json.loads(get(live.base + "/api/events")[2])
        victim = next(e for e in events if e["snapshot"])
        name = next(p.name for p in live.snaps.iterdir() if p.name.endswith(f"-{victim['label']}-"
                                                                             f"{json.loads(get(live.base + '/api/events/' + str(victim['id']))[2])['track_id']}.jpg"))
        target = live.snaps / name
        target.unlink()
        target.symlink_to("/etc/passwd")
        status, _kind, body = get(live.base + victim["snapshot"])
        assert status == 404 and b"root:" not in body
        # a request with a body, a huge header, garbage: answered or closed, and the server goes on
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
            raw.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.0 431")
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
            raw.sendall(b"DELETE /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\nabc")
            assert raw.recv(100).startswith(b"HTTP/1.0 405")
        assert get(live.base + "/api/events")[0] == 200
    finally:
        assert live.stop() == 0


def test_kill_9_while_writing_loses_no_event(tmp_path, scene):
    live = Live(tmp_path, scene)
    live.wait_events(9)
    before = {e["id"]: e for e in json.loads(get(live.base + "/api/events?limit=1000")[2])}
    os.killpg(live.daemon.proc.pid, signal.SIGKILL)  # while the scene loops: events are being written
    live.daemon.proc.wait(10)
    with sqlite3.connect(live.state / "events.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = Live(tmp_path, scene, port=free_port())
    try:
        events = again.wait_events(len(before) + 3)
        after = {e["id"]: e for e in events}
        assert set(before) <= set(after), sorted(set(before) - set(after))
        for event_id, event in before.items():
            assert after[event_id]["label"] == event["label"] and after[event_id]["start"] == event["start"]
            assert after[event_id]["end"] is not None  # rows open at the kill were closed on opening
    finally:
        assert again.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_loses_no_row_and_detection_goes_on(tmp_path, scene):
    with small_tmpfs(tmp_path / "state", "512k") as state:
        live = Live(tmp_path, scene)
        try:
            live.wait_events(3)
            filler = state / "filler"
            with open(filler, "wb") as out:  # fill the card
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass
            count = len(live.entered())
            live.daemon.wait_for(lambda r: r.get("event") == "log" and "cannot write the event store" in r["message"],
                                 timeout=60, what="the full disk said")
            live.daemon.wait_for(lambda r: len(live.entered()) >= count + 6, timeout=60, what="detection goes on")
            said = [r for r in live.daemon.records if r.get("event") == "log" and "cannot write the event store"
                    in r.get("message", "")]
            assert len(said) == 1  # once per episode
            filler.unlink()
            live.daemon.wait_for(lambda r: r.get("event") == "log" and "is written again" in r.get("message", ""),
                                 timeout=60, what="writing again")
        finally:
            assert live.stop() == 0
        with sqlite3.connect(state / "events.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = db.execute("SELECT label, start, score FROM events").fetchall()
        assert rows and all(label and start and score for label, start, score in rows)  # no half-written row


# --- who may look --------------------------------------------------------------------------------------------
def test_off_loopback_without_a_password_is_refused_with_exit_78(tmp_path):
    done = run_pidetect("run", "--source", "/dev/null", "--display", "mjpeg", "--mjpeg-address", "0.0.0.0",
                        "--mjpeg-port", free_port(), "--state-dir", tmp_path, "--log-format", "text")
    assert done.returncode == 78, done.stderr
    assert "without a password: set web_password_file" in done.stderr and "Traceback" not in done.stderr


def test_with_a_password_401_without_credentials_200_with_and_the_password_never_shows(tmp_path, scene):
    secret = "correct-horse-7f3a"
    password_file = tmp_path / "web.password"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o600)
    good = {"Authorization": "Basic " + base64.b64encode(f"viewer:{secret}".encode()).decode()}
    live = Live(tmp_path, scene, "--mjpeg-address", "0.0.0.0", "--web-password-file", password_file,
                "--web-user", "viewer", "--log-level", "debug", headers=good)
    try:
        for path in ("/", "/events", "/api/events", "/metrics", "/zones", "/snapshot.jpg", "/stream.mjpg"):
            status, _kind, _body = get(live.base + path)
            assert status == 401, path
        wrong = base64.b64encode(b"viewer:wrong").decode()
        assert get(live.base + "/api/events", {"Authorization": f"Basic {wrong}"})[0] == 401
        live.wait_events(1)
        status, _kind, body = get(live.base + "/api/events", good)
        assert status == 200 and json.loads(body)
        assert get(live.base + "/metrics", good)[0] == 200
        args = Path(f"/proc/{live.daemon.proc.pid}/cmdline").read_bytes()
        assert secret.encode() not in args
    finally:
        assert live.stop() == 0
    logged = json.dumps(live.daemon.records) + live.daemon.proc.stderr.read()
    assert secret not in logged
    assert secret not in run_pidetect("run", "--help").stdout


def test_fifty_slow_clients_neither_stall_detection_nor_the_server(tmp_path, scene):
    live = Live(tmp_path, scene)
    slow = []
    try:
        live.wait_events(3)

        def rate():
            """Frames inferred over the next 3 metrics records (paced input: the rate the camera allows)."""
            start = len(of(live.daemon.records, "metrics"))
            live.daemon.wait_for(lambda r: len(of(live.daemon.records, "metrics")) >= start + 3, timeout=30,
                                 what="metrics")
            return sum(m["inference_fps"] for m in of(live.daemon.records, "metrics")[start:start + 3]) / 3

        calm = rate()
        for _ in range(50):  # each sends half a request and then nothing
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        busy = rate()
        assert busy >= 0.8 * calm, (calm, busy)
        # the server still answers everyone else (the slow address itself is held to MAX_PER_CLIENT connections)
        with socket.create_connection(("127.0.0.1", live.port), timeout=5, source_address=("127.0.0.2", 0)) as other:
            other.sendall(b"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while chunk := other.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and json.loads(body), head
    finally:
        for sock in slow:
            sock.close()
        assert live.stop() == 0


# --- the review page in a real browser --------------------------------------------------------------------------
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("PIDETECT_REQUIRE_ALL"),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_the_review_page_lists_filters_and_deletes_in_chromium(tmp_path, scene):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    live = Live(tmp_path, scene)
    screenshot = Path(os.environ.get("PIDETECT_SCREENSHOTS", tmp_path)) / "review-page.png"
    try:
        live.wait_events(6)

        def ids(query=""):
            return [e["id"] for e in json.loads(get(live.base + "/api/events?limit=500" + query)[2])]

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 430, "height": 900})  # a phone
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            before = ids()  # the daemon keeps writing events: what the page shows lies between two reads
            page.goto(live.base + "/events")
            page.wait_for_function(f"document.querySelectorAll('#events li').length >= {len(before)}")
            shown = page.eval_on_selector_all("#events li", "items => items.map(i => Number(i.dataset.id))")
            after = ids()
            assert set(before) <= set(shown) <= set(after), (before, shown, after)
            assert shown == [i for i in after if i in set(shown)]  # newest first, as the API orders them
            page.wait_for_function("[...document.querySelectorAll('#events img')].every(i => i.complete && "
                                   "i.naturalWidth > 0)")
            page.screenshot(path=str(screenshot), full_page=False)
            cars_before = ids("&label=car")
            page.select_option("#label", "car")
            page.wait_for_function("[...document.querySelectorAll('#events li')].every(i => i.dataset.label === "
                                   f"'car') && document.querySelectorAll('#events li').length >= {len(cars_before)}")
            cars = page.eval_on_selector_all("#events li", "items => items.map(i => Number(i.dataset.id))")
            assert set(cars_before) <= set(cars) <= set(ids("&label=car"))
            victim = cars[-1]  # the oldest car: its snapshot is on disk
            snapshot_files_before = set(p.name for p in live.snaps.iterdir())
            page.on("dialog", lambda dialog: dialog.accept())
            page.click(f"#events li[data-id='{victim}'] button.delete")
            page.wait_for_function(f"!document.querySelector(\"#events li[data-id='{victim}']\")")
            browser.close()
        assert not errors, errors
        assert get(live.base + f"/api/events/{victim}")[0] == 404 and victim not in ids()
        gone = snapshot_files_before - set(p.name for p in live.snaps.iterdir())
        assert any(name.endswith(".jpg") and "-car-" in name for name in gone), gone  # its snapshot went with it
    finally:
        assert live.stop() == 0
    assert screenshot.stat().st_size > 10_000


def test_only_pidetects_own_snapshots_are_ever_removed(tmp_path):
    from pidetect.outputs.snapshots import remove_own_snapshot

    own = tmp_path / "20261201-090000.000-person-7.jpg"
    own.write_bytes(b"jpeg")
    theirs = tmp_path / "holiday.jpg"
    theirs.write_bytes(b"mine")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep")
    link = tmp_path / "20261201-090001.000-person-8.jpg"
    link.symlink_to(outside)
    for name in ("holiday.jpg", "../" + outside.name, link.name, "20261201-090000.000-person-7.jpg/.."):
        remove_own_snapshot(tmp_path, name)
    assert theirs.exists() and outside.read_text() == "keep" and link.is_symlink()
    remove_own_snapshot(tmp_path, own.name)
    assert not own.exists()


@pytest.mark.parametrize("args, words", [
    (["--web-user", "a:b"], "--web-user 'a:b': must be a user name without ':'"),
    (["--web-auth", "maybe"], "must be password or none"),
    (["--event-max-days", "-1"], "--event-max-days -1.0: must be between 0 and 36500"),
])
def test_web_settings_are_checked(args, words):
    done = run_pidetect("run", "--source", "/dev/null", *args)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_an_empty_or_unreadable_password_file_is_a_config_error(tmp_path):
    empty = tmp_path / "empty.password"
    empty.write_text("\n")
    huge = tmp_path / "huge.password"
    huge.write_bytes(b"x" * 5000)
    for path, words in ((empty, "the first line is empty"), (tmp_path / "missing", "cannot read it"),
                        (tmp_path, "not a regular"), (huge, "larger than 4096 bytes")):
        done = run_pidetect("run", "--source", "/dev/null", "--display", "mjpeg", "--mjpeg-port", free_port(),
                            "--web-password-file", path, "--state-dir", tmp_path / "state", "--log-format", "text")
        assert done.returncode == 78 and words in done.stderr, (path, done.stderr)


def test_a_password_file_gives_its_first_line_in_nfc(tmp_path):
    """Issue 33: a file `secret1\n# note` locked everyone out (the whole file was the password); a password typed
    in another normalisation (NFD) was refused."""
    from pidetect.files import read_password_file

    noted = tmp_path / "noted"
    noted.write_text("secret1  \n# rotated 2026-12-01\n")
    decomposed = tmp_path / "nfd"
    decomposed.write_text("cafe\u0301\n")
    assert read_password_file(str(noted), "k") == "secret1"
    assert read_password_file(str(decomposed), "k") == "caf\u00e9"


def test_check_reports_the_web_ui(tmp_path):
    done = run_pidetect("check", "--display", "mjpeg", "--mjpeg-address", "0.0.0.0", "--state-dir", tmp_path)
    assert done.returncode == 78 and "FAIL web UI" in done.stdout + done.stderr
    done = run_pidetect("check", "--display", "mjpeg", "--state-dir", tmp_path)
    assert "ok   web UI" in done.stdout + done.stderr and str(tmp_path / "events.db") in done.stdout + done.stderr
