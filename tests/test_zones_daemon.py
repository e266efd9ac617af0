"""Zones, filters and masks in the real daemon, on a scene built from real photos (tests/porch_scene.py).

The scene is read frame by frame (no --realtime), so every run sees the same frames and a test's
expectations come from frame counts, never from this machine's speed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import porch_scene
from conftest import REPO, run_pidetect, shared_path
from daemon import Daemon, of, run_daemon
from pidetect.geometry import Polygon, contains

TOOLS = REPO / "tests" / "tools"
ZONE = f'''[zones.porch]
points = {porch_scene.PORCH}
objects = ["person"]
'''
MIN_AREA = '''
[filters.person]
min_area = 0.02
'''
SMALL_BOX_TOP = 40  # the flickering small person stands in the top-left corner: its box ends above this


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    images = shared_path("datasets", "coco-train128", "images")
    return porch_scene.build(tmp_path_factory.mktemp("porch"), images)


def config(tmp_path, text, name="pidetect.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run(tmp_path, scene, text, *args):
    code, records, stderr = run_daemon("--config", config(tmp_path, text), "--source", scene, *args, timeout=120)
    assert code == 0, stderr[-2000:]
    return records


def events(records):
    """What a run said about objects, without the wall-clock times (and snapshot paths)."""
    keep = ("event", "state", "label", "zone", "zones", "track_id", "box", "frame_seq")
    return [{k: r[k] for k in keep if k in r} for r in records if r.get("event") in ("detection", "zone")]


def small(record):
    return record["box"][1] < SMALL_BOX_TOP and record["box"][0] < 100


def crossing_frame():
    """The first frame whose pasted person has its bottom centre in the porch (from the scene, not the model)."""
    porch = Polygon(tuple(map(tuple, porch_scene.PORCH))).to_pixels(porch_scene.WIDTH, porch_scene.HEIGHT)
    for index in range(porch_scene.FRAMES):
        x = porch_scene.person_left(index) + 138 / 2  # the person crop is 138 px wide
        if contains(porch, x, 530):
            return index + 1  # frame_seq counts from 1
    raise AssertionError("the person never reaches the porch")


def test_the_porch_scene_gives_one_zone_entry_and_exit_for_the_person_only(tmp_path, scene):
    records = run(tmp_path, scene, ZONE + MIN_AREA)
    zone = of(records, "zone")
    assert [(r["state"], r["zone"], r["label"]) for r in zone] == [("entered", "porch", "person"),
                                                                   ("left", "porch", "person")], zone
    walker = zone[0]["track_id"]
    assert zone[1]["track_id"] == walker
    # entry within a few frames of the bottom centre crossing the edge (inertia 3: the third look inside)
    crossing = crossing_frame()
    assert crossing <= zone[0]["frame_seq"] <= crossing + 3 + 1, (crossing, zone[0]["frame_seq"])
    detections = of(records, "detection")
    labels = sorted({(r["label"], r["state"]) for r in detections})
    assert labels == [("car", "entered"), ("car", "left"), ("cat", "entered"), ("cat", "left"),
                      ("person", "entered"), ("person", "left")], labels
    car = of(records, "detection", label="car")
    assert all(r["zones"] == [] for r in car)  # parked inside the porch, but the porch counts people only
    assert not [r for r in detections if small(r)]  # min_area removed the flickering small person
    walker_left = of(records, "detection", label="person", state="left")
    assert walker_left[0]["zones"] == [] and walker_left[0]["frame_seq"] > zone[1]["frame_seq"]
    assert not [r for r in of(records, "log") if r["level"] == "error"]


def test_without_the_filter_the_flicker_is_an_event_and_threshold_removes_it_too(tmp_path, scene):
    # the whole frame squeezed into the model (regions off): the small person is then the low-score flicker the
    # threshold is for (with regions the model sees it at its own scale, and scores it as the person it is)
    unfiltered = run(tmp_path, scene, ZONE, "--regions", "off")
    assert [r for r in of(unfiltered, "detection", state="entered") if small(r)], "the flicker must be seen"
    by_threshold = run(tmp_path, scene, ZONE + "\n[filters.person]\nthreshold = 0.7\n", "--regions", "off")
    assert not [r for r in of(by_threshold, "detection") if small(r)]
    assert [(r["state"], r["zone"]) for r in of(by_threshold, "zone")] == [("entered", "porch"), ("left", "porch")]


def test_the_same_run_twice_gives_the_same_records(tmp_path, scene):
    first = events(run(tmp_path, scene, ZONE + MIN_AREA))
    second = events(run(tmp_path, scene, ZONE + MIN_AREA))
    assert first == second and len(first) >= 8


def test_an_object_mask_removes_the_parked_car(tmp_path, scene):
    left, bottom = porch_scene.CAR_AT
    x = (left + 100) / porch_scene.WIDTH  # around the car's bottom centre
    mask = f"object_mask = [[[{x - 0.05:.3f}, 0.85], [{x + 0.05:.3f}, 0.85], [{x + 0.05:.3f}, 1.0], [{x - 0.05:.3f}, 1.0]]]\n"
    records = run(tmp_path, scene, mask + ZONE + MIN_AREA)
    assert not of(records, "detection", label="car")
    assert of(records, "detection", label="cat") and len(of(records, "zone")) == 2


def test_a_zone_for_every_label_counts_the_car_too(tmp_path, scene):
    # entered at its second look (an image sequence runs at 25 frames a second: 0.04 s apart), before the zone's
    # inertia of 3 looks counts it there
    records = run(tmp_path, scene, f"[zones.drive]\npoints = {porch_scene.PORCH}\n" + MIN_AREA, "--enter-seconds",
                  "0.04")
    zone = of(records, "zone", zone="drive")
    assert sorted((r["label"], r["state"]) for r in zone) == [("car", "entered"), ("car", "left"),
                                                              ("person", "entered"), ("person", "left")]
    car_entered = of(records, "detection", label="car", state="entered")[0]
    assert car_entered["zones"] == []  # inertia 3: not yet on its first event
    car_left = of(records, "detection", label="car", state="left")[0]
    assert car_left["zones"] == ["drive"]  # the end of the file: it leaves its zone, then the picture
    order = [(r["event"], r["label"], r["state"]) for r in records if r.get("event") in ("zone", "detection")
             and r["label"] == "car"]
    assert order[-2:] == [("zone", "car", "left"), ("detection", "car", "left")]


def test_required_zones_take_the_snapshot_when_the_person_reaches_the_porch(tmp_path, scene):
    snaps = tmp_path / "snaps"
    records = run(tmp_path, scene, 'required_zones = ["porch"]\n' + ZONE + MIN_AREA,
                  "--snapshots", "--snapshot-dir", snaps)
    entered = of(records, "zone", state="entered")
    assert len(entered) == 1 and entered[0].get("snapshot")
    assert not [r for r in of(records, "detection") if r.get("snapshot")]
    files = sorted(snaps.glob("*.jpg"))
    assert [str(f) for f in files] == [entered[0]["snapshot"]]
    # the saved frame shows the zone tinted (occupied) and outlined in amber
    image = cv2.imread(str(files[0]))
    original = cv2.imread(str(scene) % (entered[0]["frame_seq"] - 1))
    inside = (300, 480)  # a pixel of the porch, away from the person, the car and every label
    before, after = original[inside[1], inside[0]].astype(int), image[inside[1], inside[0]].astype(int)
    tint = np.array((0, 200, 255))
    assert np.abs(after - (before * 0.72 + tint * 0.28)).max() < 12, (before, after)  # JPEG error only
    outside = (100, 200)
    assert np.abs(image[outside[1], outside[0]].astype(int) - original[outside[1], outside[0]]).max() < 12
    edge_y = 400
    porch = Polygon(tuple(map(tuple, porch_scene.PORCH))).to_pixels(porch_scene.WIDTH, porch_scene.HEIGHT)
    left_edge_x = round(porch[0][0] + (porch[3][0] - porch[0][0]) * (edge_y - porch[0][1]) / (porch[3][1] - porch[0][1]))
    amber = image[edge_y, left_edge_x - 1:left_edge_x + 2].astype(int)
    assert (np.abs(amber - tint).sum(axis=1) < 90).any(), amber


def test_unknown_labels_in_zones_and_filters_are_a_config_error_with_the_line(tmp_path, scene):
    path = config(tmp_path, "threshold = 0.5\n\n" + ZONE.replace('"person"', '"persn"'))
    done = run_pidetect("run", "--config", path, "--source", scene, "--log-format", "text")
    assert done.returncode == 78, done.stderr
    assert f"{path}:5: zones.porch objects: the model has no label 'persn' (did you mean person?)" in done.stderr
    assert "Traceback" not in done.stderr
    path = config(tmp_path, ZONE + "\n[filters.cars]\nmin_area = 0.1\n")
    done = run_pidetect("run", "--config", path, "--source", scene, "--log-format", "text")
    assert done.returncode == 78 and f"{path}:5: [filters.cars]" in done.stderr and "did you mean car" in done.stderr


def test_sighup_reloads_zones_filters_and_masks(tmp_path, scene):
    path = config(tmp_path, ZONE + MIN_AREA)
    daemon = Daemon("--config", path, "--source", scene, "--loop", "--realtime")
    try:
        daemon.wait_for(lambda r: r.get("event") == "zone" and r["zone"] == "porch", timeout=60, what="porch")
        renamed = ZONE.replace("[zones.porch]", "[zones.steps]")
        mask = "object_mask = [[[0.55, 0.7], [0.95, 0.7], [0.95, 1.0], [0.55, 1.0]]]\n"
        path.write_text(mask + renamed + MIN_AREA)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r["state"] == "reloaded", timeout=30,
                        what="reloaded")
        reloaded_at = len(daemon.records)
        daemon.wait_for(lambda r: r.get("event") == "zone" and r["zone"] == "steps" and r["state"] == "left",
                        timeout=60, what="the renamed zone")
        after = daemon.records[reloaded_at:]
        assert not [r for r in after if r.get("event") == "zone" and r["zone"] == "porch"]
        assert not [r for r in after if r.get("event") == "detection" and r["label"] == "car"
                    and r["state"] == "entered"]  # the new object mask hides it
    finally:
        code, _seconds = daemon.stop()
    assert code == 0


# --- the motion mask --------------------------------------------------------------------------------------------
def motion_clip(path, cat_y, frames=150, fps=25, empty=25):
    """A still grass scene where, after `empty` frames, the cat photo slides across at height cat_y (its top row).

    The first frames are empty so the gate's first look (always inferred) sees nothing: from then on only
    motion (or the keep-alive every detect_interval, 10 s, longer than the clip) wakes the model."""
    from skimage import data

    grass = data.grass()
    background = cv2.resize(cv2.cvtColor(grass, cv2.COLOR_GRAY2BGR), (640, 360))
    cat = cv2.resize(cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR), (160, 120))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 360))
    for index in range(frames):
        frame = background.copy()
        if index >= empty:
            x = 20 + (index - empty) * 3
            frame[cat_y:cat_y + 120, x:x + 160] = cat
        writer.write(frame)
    writer.release()
    return path


TOP_BAND_MASK = "motion_mask = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.4], [0.0, 0.4]]]\n"  # the top 144 of 360 rows


def inferred(records):
    return of(records, "lifecycle", state="stopped")[0]["frames"]


def test_motion_only_inside_the_motion_mask_does_not_wake_the_model(tmp_path):
    top = motion_clip(tmp_path / "top.avi", cat_y=10)  # the cat moves within rows 10..130: inside the mask
    unmasked = run(tmp_path, top, "", "--motion", "on")
    masked = run(tmp_path, top, TOP_BAND_MASK, "--motion", "on")
    assert inferred(unmasked) > 50 and of(unmasked, "detection", label="cat", state="entered")
    assert inferred(masked) == 1, inferred(masked)  # the first look only: no keep-alive is due within 6 s
    assert not of(masked, "detection")
    # motion outside the mask still wakes the model, mask or not
    bottom = motion_clip(tmp_path / "bottom.avi", cat_y=220)  # rows 220..340: below the mask
    masked_bottom = run(tmp_path, bottom, TOP_BAND_MASK, "--motion", "on")
    assert inferred(masked_bottom) > 50 and of(masked_bottom, "detection", label="cat", state="entered")


# --- the journal ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/lib/systemd/systemd-journald").exists()
                    or shutil.which("journalctl") is None, reason="needs root and systemd-journald")
def test_journalctl_event_zone_zone_porch_is_a_feed_of_the_porch(tmp_path, scene):
    try:
        from systemd import journal  # noqa: F401
    except ImportError:
        pytest.skip("systemd-python not installed (apt-get install libsystemd-dev pkg-config; make test)")
    path = config(tmp_path, ZONE + MIN_AREA)
    work = tmp_path / "journal"
    script = f"{sys.executable} -m pidetect run --log-format journal --config {path} --source '{scene}'"
    done = subprocess.run([str(TOOLS / "with-journald.sh"), str(work), "--unit", "pidetect.service", "--",
                           "sh", "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    directory = work / "run-log" / "journal" / Path("/etc/machine-id").read_text().strip()
    out = subprocess.run(["journalctl", "--directory", str(directory), "-o", "json", "--no-pager", "-u", "pidetect",
                          "EVENT=zone", "ZONE=porch"], capture_output=True, text=True, check=True).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["STATE"], e["LABEL"]) for e in entries] == [("entered", "person"), ("left", "person")]
    assert entries[0]["MESSAGE"].startswith("person entered zone porch (track ")


# --- MQTT and Home Assistant ------------------------------------------------------------------------------------
def run_with_broker(tmp_path, scene, text, prefix):
    """The scene once with MQTT to a real Mosquitto; (records, every message the subscriber saw)."""
    from mqtt_broker import Broker, Subscriber

    broker = Broker(tmp_path / "broker").start()
    try:
        subscriber = Subscriber(broker.port)
        time.sleep(0.5)
        records = run(tmp_path, scene, text, "--mqtt-host", "127.0.0.1", "--mqtt-port", broker.port,
                      "--mqtt-topic-prefix", prefix, "--mqtt-client-id", "pidetect-" + prefix.split("/")[-1])
        subscriber.wait_for(lambda m: any(t == f"{prefix}/available" and p == b"offline" for t, p, _r in m),
                            what="offline on stop")
        time.sleep(0.3)
        subscriber.stop()
    finally:
        broker.stop()
    return records, subscriber


def test_zone_counts_and_home_assistant_entities_on_a_real_broker(tmp_path, scene):
    records, subscriber = run_with_broker(tmp_path, scene, 'mqtt_labels = ["person", "car"]\n' + ZONE +
                                          f"\n[zones.drive]\npoints = {porch_scene.PORCH}\nobjects = [\"car\"]\n"
                                          + MIN_AREA, "pd/zones")
    configs = {t: json.loads(p) for t, p, _r in subscriber.messages if t.startswith("homeassistant/")}
    base = "homeassistant/{}/pidetect-zones/{}/config"
    porch = configs[base.format("binary_sensor", "porch_person_occupancy")]
    assert porch["state_topic"] == "pd/zones/zones/porch/person" and porch["device_class"] == "occupancy"
    assert porch["unique_id"] == "pidetect-zones_porch_person_occupancy" and porch["name"] == "person in porch"
    assert configs[base.format("sensor", "porch_person_count")]["state_topic"] == "pd/zones/zones/porch/person"
    assert configs[base.format("sensor", "drive_car_count")]["state_topic"] == "pd/zones/zones/drive/car"
    assert base.format("sensor", "porch_car_count") not in configs  # the porch counts people only
    assert [int(p) for p in subscriber.on("pd/zones/zones/porch/person")] == [0, 1, 0]
    assert [int(p) for p in subscriber.on("pd/zones/zones/drive/car")] == [0, 1, 0]
    assert [int(p) for p in subscriber.on("pd/zones/zones/porch")] == [0, 1, 0]
    retained = {t: r for t, _p, r in subscriber.messages}
    assert retained["pd/zones/zones/porch/person"] is not None
    # the events topic carries the zone records as the journal has them
    sent = [json.loads(p) for p in subscriber.on("pd/zones/events")]
    assert [m for m in sent if m["event"] == "zone"] == of(records, "zone")
    assert [m for m in sent if m["event"] == "detection"] == of(records, "detection")


def test_required_zones_limit_the_events_topic_to_those_zones(tmp_path, scene):
    records, subscriber = run_with_broker(tmp_path, scene, 'required_zones = ["porch"]\n' + ZONE +
                                          f"\n[zones.drive]\npoints = {porch_scene.PORCH}\n" + MIN_AREA, "pd/req")
    sent = [json.loads(p) for p in subscriber.on("pd/req/events")]
    assert [(m["event"], m["zone"], m["state"]) for m in sent] == [("zone", "porch", "entered"),
                                                                   ("zone", "porch", "left")]
    assert len(of(records, "zone", zone="drive")) == 4  # the journal still has everything
    assert [int(p) for p in subscriber.on("pd/req/person")][-1] == 0  # whole-picture counts as before
