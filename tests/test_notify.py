"""Notifications through Apprise, all local: a push service and an SMTP server on 127.0.0.1 started here.

The sink's rules (labels, zones, score, cooldown, the clip follow-up, never blocking) on records with a stand-in
helper; Apprise itself through the real helper process to a JSON webhook and to e-mail; the daemon end to end
on scenes built from real photos; secrets never printed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import clip_scene
import porch_scene
from conftest import run_pidetect, shared_path
from daemon import of, run_daemon
from push_server import PushServer, free_port
from pidetect.config import build_config
from pidetect.config_tables import NotifySpec
from pidetect.errors import ConfigError
from pidetect.outputs.notify import Helper, NotifySink, Target, check_urls, read_targets

SECRET = "S3CRETtoken42"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def entered(label="person", track=1, score=0.9, zone="", snapshot=None):
    record = {"event": "zone" if zone else "detection", "state": "entered", "label": label, "track_id": track,
              "score": score, "ts": time.time()}
    if zone:
        record["zone"] = zone
    if snapshot:
        record["snapshot"] = str(snapshot)
    return record


class FakeHelper:
    """Stands in for the Apprise helper: keeps what it was asked; `gate` holds every send until it is set."""

    def __init__(self, ok=True):
        self.asked, self.ok, self.gate = [], ok, threading.Event()
        self.gate.set()
        self.running, self.last_used = False, 0.0

    def ask(self, request, timeout=30.0):
        self.gate.wait()
        self.asked.append(request)
        return [{"ok": self.ok, "error": "" if self.ok else "refused"} for _ in request.get("send", [])]

    def close(self):
        pass


def sink_with(*specs, helper=None, records=None):
    targets = [Target(spec, spec.urls) for spec in specs]
    return NotifySink(targets, lambda record, priority=6: (records if records is not None else []).append(record),
                      "http://pi.local:8080", helper=helper or FakeHelper())


def settle(sink, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(sink.helper.asked) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return sink.helper.asked


# --- the rules, on records -----------------------------------------------------------------------------------
def test_labels_zones_score_and_cooldown_decide_what_is_sent():
    anywhere = NotifySpec("phone", ("json://x/a",), labels=("person",), min_score=0.6, cooldown=60)
    porch = NotifySpec("porch", ("json://x/b",), zones=("porch",), cooldown=0)
    sink = sink_with(anywhere, porch)
    sink.publish_record(entered("car"))  # not a label of phone, not in a zone for porch
    sink.publish_record(entered("person", 1, score=0.5))  # under min_score
    sink.publish_record(entered("person", 2))  # sent
    sink.publish_record(entered("person", 3))  # within phone's cooldown: grouped with the first
    sink.publish_record(entered("car", 4, zone="porch"))  # porch: every label, in its zone
    sink.publish_record(entered("car", 5, zone="drive"))  # another zone
    asked = settle(sink, 2)
    sink.close()
    assert [(a["send"], a["title"]) for a in asked] == [(["json://x/a"], "Person"), (["json://x/b"], "Car in porch")]
    assert "http://pi.local:8080/events" in asked[0]["body"]


def test_after_the_cooldown_the_next_visitor_is_told(monkeypatch):
    import pidetect.outputs.notify as notify

    clock = [1000.0]
    monkeypatch.setattr(notify.time, "monotonic", lambda: clock[0])
    sink = sink_with(NotifySpec("phone", ("json://x/a",), cooldown=60))
    sink.publish_record(entered("person", 1))
    clock[0] += 59
    sink.publish_record(entered("person", 2))
    clock[0] += 2
    sink.publish_record(entered("person", 3))
    asked = settle(sink, 2)
    sink.close()
    assert len(asked) == 2  # the second visitor (59 s later) was grouped with the first, the third (61 s) told


def test_the_snapshot_first_and_the_clip_after(tmp_path):
    snapshot = tmp_path / "snap.jpg"
    cv2.imwrite(str(snapshot), np.zeros((10, 10, 3), np.uint8))
    sink = sink_with(NotifySpec("phone", ("json://x/a",)))
    sink.publish_record(entered("person", 7, snapshot=snapshot))
    sink.publish_record({"event": "clip", "state": "saved", "track_ids": [7], "labels": ["person"],
                         "duration": 12.0, "clip": "c.mp4"})
    sink.publish_record({"event": "clip", "state": "saved", "track_ids": [8], "labels": ["cat"], "duration": 3})
    asked = settle(sink, 2)
    sink.close()
    assert asked[0]["attach"] == str(snapshot) and asked[1]["attach"] is None
    assert asked[1]["title"] == "Clip: person" and "12 s" in asked[1]["body"]
    assert len(asked) == 2  # the cat was never notified: no follow-up for its clip


def test_a_hung_service_never_blocks_the_records():
    helper = FakeHelper()
    helper.gate.clear()  # every send hangs
    sink = sink_with(NotifySpec("phone", ("json://x/a",), cooldown=0), helper=helper)
    for track in range(1, 200):  # the caller (the pipeline's emit) returns at once, the queue stays bounded
        sink.publish_record(entered("person", track))
    assert sink.metrics_fields()["notify_queued"] <= 100 and sink.dropped >= 98
    helper.gate.set()
    sink.close(timeout=1.0)


def test_a_failing_target_is_said_once_retried_and_said_again_when_it_works(monkeypatch):
    import pidetect.outputs.notify as notify

    monkeypatch.setattr(notify, "BACKOFF", (0.05,))
    records = []
    helper = FakeHelper(ok=False)
    sink = sink_with(NotifySpec("phone", ("json://x/a",), cooldown=0), helper=helper, records=records)
    sink.publish_record(entered("person", 1))
    settle(sink, 5)  # the same message, retried
    assert [r["state"] for r in records if r.get("event") == "notify"] == ["failing"]
    helper.ok = True
    deadline = time.monotonic() + 5
    while sink.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.close()
    assert sink.sent == 1 and [r["state"] for r in records if r.get("event") == "notify"] == ["failing", "recovered"]
    assert sink.last_delivery["phone"]["ok"] is True


# --- config ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table, message", [
    ('[notify.phone]\nlabels = ["person"]\n', "needs urls"),
    ('[notify.phone]\nurls = ["ntfy://a/b"]\nurls_file = "/x"\n', "one of them"),
    ('[notify.phone]\nurls = ["not a url"]\n', "list of Apprise URLs"),
    ('[notify.phone]\nurls = ["ntfy://a/b"]\nattach = "clip"\n', "attach = 'clip': must be snapshot or none"),
    ('[notify.phone]\nurls = ["ntfy://a/b"]\nzones = ["porch"]\n', "zone that is not configured: porch"),
    ('[notify.phone]\nurls = ["ntfy://a/b"]\ncooldown = -1\n', "cooldown = -1: must be between 0"),
    ('[notify.phone]\nurl = ["ntfy://a/b"]\n', "unknown key 'url'"),
])
def test_notify_tables_are_checked(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        build_config(write(tmp_path / "pidetect.toml", table), {})


def test_a_snapshot_attachment_turns_snapshots_on(tmp_path):
    config = build_config(write(tmp_path / "p.toml", '[notify.phone]\nurls = ["ntfy://a/b"]\n'), {})
    assert config.snapshots
    config = build_config(write(tmp_path / "p.toml", '[notify.phone]\nurls = ["ntfy://a/b"]\nattach = "none"\n'), {})
    assert not config.snapshots


def test_urls_file_problems_are_config_errors(tmp_path):
    spec = NotifySpec("phone", urls_file=str(tmp_path / "missing.urls"), where="p.toml:3")
    with pytest.raises(ConfigError, match="does not exist"):
        read_targets([spec])
    empty = write(tmp_path / "empty.urls", "# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no Apprise URL"):
        read_targets([NotifySpec("phone", urls_file=str(empty))])
    good = write(tmp_path / "good.urls", f"# the porch\nntfy://ntfy.sh/{SECRET}\n\n")
    assert read_targets([NotifySpec("phone", urls_file=str(good))])[0].urls == (f"ntfy://ntfy.sh/{SECRET}",)


def test_an_unknown_service_is_named_by_its_scheme_without_the_secret():
    with pytest.raises(ConfigError) as error:
        check_urls([Target(NotifySpec("phone", where="p.toml:2"), (f"nosuch://{SECRET}@host/x",))])
    assert "notify.phone: nosuch://…" in str(error.value) and SECRET not in str(error.value)


# --- Apprise for real, through the helper ----------------------------------------------------------------------------
def test_the_helper_delivers_a_webhook_with_the_picture(tmp_path):
    server = PushServer().start()
    picture = tmp_path / "p.jpg"
    cv2.imwrite(str(picture), np.full((20, 30, 3), 200, np.uint8))
    helper = Helper()
    try:
        [result] = helper.ask({"send": [server.url(secret=SECRET)], "title": "T", "body": "B",
                               "attach": str(picture)})
    finally:
        helper.close()
        server.stop()
    assert result == {"ok": True, "error": ""}
    [message] = server.received
    assert (message["title"], message["message"]) == ("T", "B")
    assert cv2.imdecode(np.frombuffer(PushServer.attachment(message), np.uint8), cv2.IMREAD_COLOR).shape == (20, 30, 3)


def test_e_mail_through_a_local_smtp_server_carries_the_attachment(tmp_path):
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            self.messages.append(envelope.content)
            return "250 OK"

    handler = Keep()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    picture = tmp_path / "porch.jpg"
    cv2.imwrite(str(picture), np.full((20, 30, 3), 90, np.uint8))
    sink = NotifySink([Target(NotifySpec("mail", cooldown=0), (f"mailto://127.0.0.1:{port}?from=pi@example.com&"
                                                                "to=owner@example.com",))], lambda *a: None)
    try:
        sink.publish_record(entered("person", 3, snapshot=picture))
        deadline = time.monotonic() + 30
        while not handler.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sink.close()
        controller.stop()
    import email

    [raw] = handler.messages
    mail = email.message_from_bytes(raw)
    assert mail["Subject"] == "Person" and mail["To"] == "owner@example.com"
    parts = [part for part in mail.walk() if part.get_filename()]
    assert [part.get_filename() for part in parts] == ["porch.jpg"]
    assert cv2.imdecode(np.frombuffer(parts[0].get_payload(decode=True), np.uint8), cv2.IMREAD_COLOR) is not None


def test_a_service_that_is_down_then_back_gets_the_message(monkeypatch):
    import pidetect.outputs.notify as notify

    monkeypatch.setattr(notify, "BACKOFF", (0.2,))
    port = free_port()
    records = []
    sink = NotifySink([Target(NotifySpec("phone", cooldown=0), (f"json://127.0.0.1:{port}/hook?token={SECRET}",))],
                      lambda record, priority=6: records.append(record))
    server = PushServer(port)
    try:
        sink.publish_record(entered("person", 1))
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            time.sleep(0.05)
        server.start()  # the service is back
        server.wait_for(1, timeout=30)
    finally:
        sink.close()
        server.stop()
    assert len(server.received) == 1 and server.received[0]["title"] == "Person"
    assert [r["state"] for r in records if r.get("event") == "notify"] == ["failing", "recovered"]
    assert SECRET not in repr(records)


# --- the daemon, end to end -------------------------------------------------------------------------------------
def test_a_person_walking_into_the_zone_is_one_message_with_its_picture_and_the_parked_car_none(tmp_path):
    from pidetect.inference.detector import Detector

    scene = porch_scene.build(tmp_path / "porch", shared_path("datasets", "coco-train128", "images"))
    server = PushServer().start()
    config = write(tmp_path / "pidetect.toml", f"""
[zones.walk]
points = [[0.0, 0.6], [0.45, 0.6], [0.45, 1.0], [0.0, 1.0]]

[notify.phone]
urls_file = "{write(tmp_path / 'notify.urls', server.url(secret=SECRET) + chr(10))}"
labels = ["person", "car"]
zones = ["walk"]
""")
    try:
        code, records, stderr = run_daemon("--config", config, "--source", scene, "--state-dir", tmp_path / "state",
                                           "--snapshot-dir", tmp_path / "snaps", "--required-zones", "walk")
        server.wait_for(1, timeout=10)
    finally:
        server.stop()
    assert code == 0, stderr[-2000:]
    assert of(records, "zone", state="entered", label="person") and of(records, "detection", label="car")
    assert [m["title"] for m in server.received] == ["Person in walk"]
    picture = cv2.imdecode(np.frombuffer(PushServer.attachment(server.received[0]), np.uint8), cv2.IMREAD_COLOR)
    found = Detector(*_model()).detect_image(picture).detections
    assert "person" in [d.label for d in found], found
    assert SECRET not in stderr and SECRET not in repr(records)


def _model():
    from pidetect.inference.model_paths import resolve_model_paths

    return resolve_model_paths(None, None)


def test_cooldown_groups_visitors_and_the_clip_follows(tmp_path):
    scene = clip_scene.build(tmp_path / "camera.mp4", shared_path("datasets", "coco-train128", "images"))
    once, each = PushServer().start(), PushServer().start()
    config = write(tmp_path / "pidetect.toml", f"""
[notify.once]
urls = ["{once.url()}"]
labels = ["person"]
cooldown = 60

[notify.each]
urls = ["{each.url()}"]
labels = ["person"]
cooldown = 5
attach = "none"
""")
    try:
        # paced like a camera: the cooldown is wall-clock time, and the visits are 10 s apart (5 s of margin)
        code, records, stderr = run_daemon("--config", config, "--source", scene, "--realtime", "--state-dir",
                                           tmp_path / "state", "--snapshot-dir", tmp_path / "snaps", "--record",
                                           "--record-dir", tmp_path / "clips", "--pre-capture", "1", "--post-capture",
                                           "1", timeout=180)
    finally:
        once.stop()
        each.stop()
    assert code == 0, stderr[-2000:]
    people = of(records, "detection", state="entered", label="person")
    assert len(people) == 2  # the scene's two visits, 10 s apart
    titles = [m["title"] for m in once.received]
    assert titles.count("Person") == 1 and "Clip: person" in titles  # one message, then its clip
    assert titles.index("Person") < titles.index("Clip: person")
    assert [m["title"] for m in each.received].count("Person") == 2  # past a 5 s cooldown: both visitors
    assert all(not m.get("attachments") for m in each.received)  # attach = none
    assert once.received[0].get("attachments")


def test_notify_test_sends_a_picture_and_says_per_url_what_happened(tmp_path):
    server = PushServer().start()
    down = free_port()
    config = write(tmp_path / "pidetect.toml", f"""
[notify.phone]
urls = ["{server.url(secret=SECRET)}", "json://127.0.0.1:{down}/x?token={SECRET}"]
""")
    try:
        done = run_pidetect("notify-test", "--config", config)
    finally:
        server.stop()
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "phone: json://… sent" and lines[1].startswith("phone: json://… FAILED: ")
    assert SECRET not in done.stdout + done.stderr
    assert PushServer.attachment(server.received[0])[:2] == b"\xff\xd8"  # a JPEG
    done = run_pidetect("notify-test", "garden", "--config", config)
    assert done.returncode == 2 and "no [notify.garden] target" in done.stderr


def test_check_names_the_targets_without_their_secrets(tmp_path):
    config = write(tmp_path / "pidetect.toml", f'source = "{tmp_path / "none.mp4"}"\n[notify.phone]\n'
                                               f'urls = ["ntfy://ntfy.sh/{SECRET}", "tgram://123456789:AAH{SECRET}/12345"]\n')
    (tmp_path / "none.mp4").write_bytes(b"")
    done = run_pidetect("check", "--config", config)
    line = [l for l in done.stdout.splitlines() if "notify" in l]
    assert line and "phone: ntfy://…, tgram://…" in line[0], done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_a_slow_service_costs_detection_nothing(tmp_path):
    """10 s a request: the run reads every frame and says the same events as without notifications, and at its
    end the message still on its way is dropped and counted, never waited for."""
    scene = porch_scene.build(tmp_path / "porch", shared_path("datasets", "coco-train128", "images"))
    slow = PushServer(delay=10.0).start()
    config = write(tmp_path / "pidetect.toml", f'[notify.phone]\nurls = ["{slow.url()}"]\ncooldown = 0\n')
    try:
        common = ("--source", scene, "--state-dir", tmp_path / "state", "--snapshots", "--snapshot-dir",
                  tmp_path / "snaps", "--per-frame", "--log-level", "debug")
        code, notified, stderr = run_daemon("--config", config, *common)
        plain_code, plain, _ = run_daemon(*common)
    finally:
        slow.stop()
    assert code == 0 and plain_code == 0, stderr[-2000:]

    def events(records):
        return [(r["event"], r["state"], r["label"], r["frame_seq"]) for r in records if r.get("event") == "detection"]

    assert events(notified) == events(plain) and events(plain)
    assert len(of(notified, "frame")) == len(of(plain, "frame")) == porch_scene.FRAMES  # every frame looked at
    assert of(notified, "lifecycle", state="stopped")
    assert any("notification(s) were dropped" in r.get("message", "") for r in of(notified, "log"))


def test_the_web_ui_shows_the_last_delivery_per_target_without_the_url(tmp_path):
    import json as json_module
    import urllib.request

    from daemon import Daemon

    scene = porch_scene.build(tmp_path / "porch", shared_path("datasets", "coco-train128", "images"))
    server = PushServer().start()
    port = free_port()
    config = write(tmp_path / "pidetect.toml", f'[notify.phone]\nurls = ["{server.url(secret=SECRET)}"]\n'
                                               f'labels = ["person"]\n')
    daemon = Daemon("--config", config, "--source", scene, "--loop", "--realtime", "--display", "mjpeg",
                    "--mjpeg-port", port, "--state-dir", tmp_path / "state", "--snapshot-dir", tmp_path / "snaps")
    try:
        server.wait_for(1, timeout=60)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            status = json_module.loads(urllib.request.urlopen(f"{base}/api/notify", timeout=10).read())
            if status["targets"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        pages = b"".join(urllib.request.urlopen(f"{base}{path}", timeout=10).read()
                         for path in ("/api/notify", "/events", "/api/events", "/api/zones", "/metrics"))
    finally:
        assert daemon.stop()[0] == 0
        server.stop()
    assert status["targets"]["phone"]["ok"] is True and status["targets"]["phone"]["at"] > 0
    assert SECRET.encode() not in pages


def test_ntfy_gets_the_picture_as_the_ntfy_server_takes_it(tmp_path):
    """Apprise's ntfy:// pointed at a local stand-in: the snapshot is the body of the request to the topic, the
    title, message and file name in its query (as the ntfy server takes them)."""
    server = PushServer().start()
    picture = tmp_path / "porch.jpg"
    cv2.imwrite(str(picture), np.full((20, 30, 3), 60, np.uint8))
    helper = Helper()
    try:
        [result] = helper.ask({"send": [f"ntfy://127.0.0.1:{server.port}/porch-{SECRET}"], "title": "Person in porch",
                               "body": "person in porch at 09:14:02", "attach": str(picture)})
    finally:
        helper.close()
        server.stop()
    assert result["ok"], result
    [message] = server.received
    from urllib.parse import parse_qs, urlsplit

    where = urlsplit(message["_path"])
    query = {key: values[0] for key, values in parse_qs(where.query).items()}
    assert message["_method"] in ("PUT", "POST") and where.path == f"/porch-{SECRET}"
    assert query["title"] == "Person in porch" and "09:14:02" in query["message"] and query["filename"] == "porch.jpg"
    assert cv2.imdecode(np.frombuffer(message["_raw"], np.uint8), cv2.IMREAD_COLOR).shape == (20, 30, 3)


def test_a_reload_moves_the_messages_to_the_new_target(tmp_path):
    import os
    import signal

    from daemon import Daemon

    scene = porch_scene.build(tmp_path / "porch", shared_path("datasets", "coco-train128", "images"))
    first, second = PushServer().start(), PushServer().start()
    config = tmp_path / "pidetect.toml"
    write(config, f'[notify.phone]\nurls = ["{first.url()}"]\nlabels = ["person"]\ncooldown = 0\n')
    daemon = Daemon("--config", config, "--source", scene, "--loop", "--realtime", "--state-dir", tmp_path / "state",
                    "--snapshot-dir", tmp_path / "snaps")
    try:
        first.wait_for(1, timeout=60)
        write(config, f'[notify.phone]\nurls = ["{second.url()}"]\nlabels = ["person"]\ncooldown = 0\n')
        os.kill(daemon.proc.pid, signal.SIGHUP)
        daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r.get("state") == "reloaded", what="reloaded")
        before = len(first.received)
        second.wait_for(1, timeout=60)
    finally:
        assert daemon.stop()[0] == 0
        first.stop()
        second.stop()
    assert first.received and second.received and len(first.received) == before
