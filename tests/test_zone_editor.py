"""The zone editor in a real browser (Debian's Chromium driven by Playwright), and the overlay's zones.

Playwright's package drives the system's /usr/bin/chromium (no browser download: `playwright install`
is never run); the clicks are real mouse events on the page.
"""

import json
import os
import socket
import time
import tomllib
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import porch_scene
from conftest import shared_path
from daemon import Daemon
from pidetect.config import build_config
from pidetect.frames import Area, Detection, Frame, Result
from pidetect.geometry import Polygon
from pidetect.outputs.overlay import OCCUPIED_TINT, ZONE_COLOUR, Overlay
from pidetect.web.zone_editor import ZoneLayout, layout_toml

CHROMIUM = "/usr/bin/chromium"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return porch_scene.build(tmp_path_factory.mktemp("porch"), shared_path("datasets", "coco-train128", "images"))


@pytest.fixture
def live(tmp_path, scene):
    """A daemon on the porch scene (looping, paced) with the MJPEG view and two zones and a mask configured."""
    config = tmp_path / "pidetect.toml"
    config.write_text(f'''motion_mask = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 0.1]]]

[zones.porch]
points = {porch_scene.PORCH}
objects = ["person"]

[zones.gate]
points = [[10.0, 10.0], [200.0, 10.0], [200.0, 150.0]]
inertia = 2
loiter_seconds = 1.5
''')
    port = free_port()
    daemon = Daemon("--config", config, "--source", scene, "--loop", "--realtime", "--display", "mjpeg",
                    "--mjpeg-port", port)
    daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r["state"] == "ready", timeout=60, what="ready")
    base = f"http://127.0.0.1:{port}"
    daemon.wait_for(lambda r: r.get("event") == "detection", timeout=60, what="a frame shown")
    for _ in range(100):  # the display thread has the frame a moment after the first detection
        try:
            if get(base + "/frame.jpg")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    yield base, config
    daemon.stop()


def test_api_and_frame_routes(live):
    base, config = live
    status, kind, body = get(base + "/frame.jpg")
    assert status == 200 and kind == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (porch_scene.HEIGHT, porch_scene.WIDTH, 3)  # the frame itself, not a thumbnail
    status, kind, body = get(base + "/api/zones")
    data = json.loads(body)
    assert kind == "application/json" and data["frame"] == {"width": 960, "height": 540}
    porch, gate = data["zones"]
    assert porch["name"] == "porch" and porch["objects"] == ["person"] and porch["relative"]
    assert porch["pixels"][0] == [0.30 * 960, 0.55 * 540]
    assert gate["relative"] is False and gate["pixels"] == gate["points"] and gate["loiter_seconds"] == 1.5
    assert len(data["motion_mask"]) == 1 and data["object_mask"] == []
    # the TOML of what is configured reads back as the same zones and masks
    (config.parent / "again.toml").write_text(data["toml"])
    again = build_config(config.parent / "again.toml", {}, path_required=True)
    original = build_config(config, {}, path_required=True)
    assert (again.zones, again.motion_mask, again.object_mask) == (original.zones, original.motion_mask, ())
    status, kind, body = get(base + "/zones")
    assert kind.startswith("text/html") and b"Zones and masks" in body


def test_layout_toml_round_trips_every_kind_of_polygon(tmp_path):
    from pidetect.config_tables import ZoneSpec

    # a custom model's labels may be any text: a non-BMP one was written as a surrogate pair, invalid TOML
    layout = ZoneLayout((ZoneSpec("a-1", Polygon(((0.1, 0.2), (0.3333, 0.2), (0.5, 0.9))),
                                  ("person", "traffic light", "\U0001F408 cat", 'quote " and \\'), 4, 2.5),
                         ZoneSpec("px", Polygon(((10.0, 20.0), (640.0, 20.0), (640.0, 480.0))))),
                        (Polygon(((0.8, 0.1), (0.95, 0.1), (0.95, 0.35))),), ())
    path = tmp_path / "layout.toml"
    path.write_text(layout_toml(layout))
    config = build_config(path, {}, path_required=True)
    assert config.zones == layout.zones and config.object_mask == layout.object_mask


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("PIDETECT_REQUIRE_ALL"),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_drawing_a_zone_with_real_clicks_in_chromium(live, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    base, _config = live
    screenshot = Path(os.environ.get("PIDETECT_SCREENSHOTS", tmp_path)) / "zone-editor.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(base + "/zones")
            page.wait_for_function("document.getElementById('frame').naturalWidth > 0 && "
                                   "document.getElementById('current').textContent.includes('[zones.porch]')")
            assert "[zones.gate]" in page.locator("#current").text_content()
            assert page.locator("#shapes polygon").count() == 3  # two zones and the motion mask, drawn
            box = page.locator("#frame").bounding_box()
            natural = page.evaluate("[document.getElementById('frame').naturalWidth, "
                                    "document.getElementById('frame').naturalHeight]")
            assert natural == [960, 540]
            clicks = [(round(box["x"] + fx * box["width"]), round(box["y"] + fy * box["height"]))
                      for fx, fy in ((0.12, 0.40), (0.48, 0.42), (0.55, 0.95), (0.08, 0.90))]
            for x, y in clicks:
                page.mouse.click(x, y)
            assert page.locator("#shapes circle").count() == 4
            assert page.input_value("#name") == "porch2"  # a free name ("porch" is taken)
            page.fill("#name", "")
            page.keyboard.type("steps")
            page.fill("#objects", "person, dog")
            page.wait_for_function("document.getElementById('toml').textContent.includes('person', 'dog') && "
                                   "document.getElementById('toml').textContent.includes('dog')")
            text = page.locator("#toml").text_content()
            page.screenshot(path=str(screenshot))
            # a fifth click and an undo leave the same four points
            page.mouse.click(round(box["x"] + 10), round(box["y"] + 10))
            page.click("#undo")
            page.wait_for_function(f"document.getElementById('toml').textContent === {json.dumps(text)}")
            # what the daemon would refuse is said on the page, and no TOML is offered for it (issue 33)
            for name, objects, words in (("porch", "person", "already in the config file"),
                                         ("steps", "unicorn", "no label 'unicorn'"),
                                         ("steps", "\U0001F408", "no label")):
                page.fill("#name", name)
                page.fill("#objects", objects)
                page.wait_for_function(f"document.getElementById('message').textContent.includes({json.dumps(words)})")
                assert page.locator("#toml").text_content() == ""
            page.fill("#name", "steps")
            page.fill("#objects", "person")
            page.click("#clear")
            for fx, fy in ((0.1, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5)):  # out of order: edges cross
                page.mouse.click(round(box["x"] + fx * box["width"]), round(box["y"] + fy * box["height"]))
            page.wait_for_function("document.getElementById('message').textContent.includes('self-crossing')")
            assert page.locator("#toml").text_content() == ""
            page.click("#clear")
            for fx, fy in ((0.1, 0.1), (0.5, 0.1), (0.5, 0.1), (0.3, 0.5)):  # a double click: a repeated point
                page.mouse.click(round(box["x"] + fx * box["width"]), round(box["y"] + fy * box["height"]))
            page.wait_for_function("document.getElementById('message').textContent.includes('repeats the point')")
            assert page.locator("#toml").text_content() == ""
        finally:
            browser.close()
    assert not errors, errors
    parsed = tomllib.loads(text)
    zone = parsed["zones"]["steps"]
    assert zone["objects"] == ["person", "dog"] and zone["inertia"] == 3
    expected = [((x - box["x"]) * 960 / box["width"], (y - box["y"]) * 540 / box["height"]) for x, y in clicks]
    got = [(px * 960, py * 540) for px, py in zone["points"]]
    assert len(got) == 4
    for (gx, gy), (ex, ey) in zip(got, expected):
        assert abs(gx - ex) <= 1 and abs(gy - ey) <= 1, (got, expected)
    # what the page shows is a config the daemon accepts
    path = tmp_path / "pasted.toml"
    path.write_text(text)
    assert build_config(path, {}, path_required=True).zones[0].name == "steps"
    assert screenshot.stat().st_size > 10_000


# --- the overlay ------------------------------------------------------------------------------------------------
def test_the_overlay_outlines_every_zone_and_tints_an_occupied_one():
    image = np.full((480, 640, 3), 100, np.uint8)
    square = ((100.0, 100.0), (300.0, 100.0), (300.0, 300.0), (100.0, 300.0))
    right = ((400.0, 100.0), (600.0, 100.0), (600.0, 300.0), (400.0, 300.0))
    result = Result(Frame(image, 1, 0.0), (Detection("person", 0, 0.9, (150, 150, 200, 290)),), 5.0,
                    areas=(Area("zone", "porch", square, 1), Area("zone", "drive", right, 0),
                           Area("motion_mask", "motion mask", ((0.0, 400.0), (640.0, 400.0), (640.0, 479.0)))))
    drawn = Overlay(show_timestamp=False).draw(result).copy()
    tinted = np.round(100 * (1 - OCCUPIED_TINT) + np.array(ZONE_COLOUR) * OCCUPIED_TINT)
    assert np.abs(drawn[250, 250].astype(int) - tinted).max() <= 1  # inside the occupied zone
    assert (drawn[250, 500] == 100).all()  # inside the empty zone: not tinted
    def outlined(y, x):  # anti-aliased: the nearest of three pixels across the edge is the zone colour
        return (np.abs(drawn[y, x - 1:x + 2].astype(int) - ZONE_COLOUR).sum(axis=1) < 60).any()

    assert outlined(200, 300) and outlined(200, 400) and not outlined(200, 350)  # both zones outlined
    assert (drawn[420, 600] != 100).any()  # the mask is shaded
    assert (image == 100).all()  # the frame the detector used is never written to
    # the framebuffer draws in bands: the same shapes, band by band, give the same picture
    overlay = Overlay(show_timestamp=False)
    shapes = overlay.layout(result, None, (640, 480))
    banded = image.copy()
    for top in range(0, 480, 64):
        overlay.render(shapes, banded[top:top + 64], top)
    whole = image.copy()
    overlay.render(shapes, whole)
    assert np.abs(banded.astype(int) - whole).max() <= 1


def test_the_editors_picture_is_kept_encoded_and_fresh_only_while_asked_for():
    """The picture holds no reference to a frame (the capture's pool would need one more 2.6 MB buffer); it is
    encoded every IDLE_S until someone asks, then every FRESH_S; an ask finding an old picture waits for the next."""
    import sys
    import threading

    from pidetect.web.mjpeg import LatestPicture

    now = [100.0]
    picture = LatestPicture(clock=lambda: now[0])
    picture.WAIT_S = 0.2
    encodes = []

    def offer(value):
        frame = np.full((48, 64, 3), value, np.uint8)
        references = sys.getrefcount(frame)
        before = picture._encoded_at
        picture.offer(frame)
        assert sys.getrefcount(frame) == references  # not kept
        if picture._encoded_at != before:
            encodes.append(value)

    def shade():
        return int(cv2.imdecode(np.frombuffer(picture.jpeg(), np.uint8), cv2.IMREAD_GRAYSCALE).mean())

    assert picture.jpeg() is None and picture.size is None  # nothing shown yet: no picture (after WAIT_S)
    for second in range(0, 61):  # a frame a second, nobody asked for WANTED_S: one encode per IDLE_S
        now[0] = 200.0 + picture.WANTED_S + second
        offer(second)
    assert encodes == [0, 30, 60] and picture.size == (64, 48)
    start = 200.0 + picture.WANTED_S + 60
    now[0] = start + 1
    assert abs(shade() - 60) <= 2  # an old picture (1 s is fresh enough) is served at once
    now[0] = start + 5  # older than FRESH_S: the ask waits for the next frame shown
    got = []
    asker = threading.Thread(target=lambda: got.append(shade()))
    picture.WAIT_S = 5.0
    asker.start()
    for _ in range(100):
        if picture._asked_at == start + 5:
            break
        time.sleep(0.01)
    offer(200)
    asker.join(5)
    assert got and abs(got[0] - 200) <= 2
    encodes.clear()
    for second in range(1, 11):  # asked for: a fresh picture every FRESH_S
        now[0] = start + 5 + second
        offer(second)
    assert encodes == [2, 4, 6, 8, 10]
    now[0] = start + 15 + picture.WANTED_S  # nobody asked for WANTED_S: back to IDLE_S
    encodes.clear()
    for second in range(0, 31):
        now[0] += 1
        offer(second)
    assert encodes == [0, 30]
