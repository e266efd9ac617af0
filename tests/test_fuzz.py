"""Property-based tests: what users and networks send gets a clear error or a correct result.

Never a traceback (an exception other than pidetect's own errors), a hang, or a write outside the
folders pidetect owns. Example counts are bounded (FUZZ_EXAMPLES, default 150 per property) so the
suite stays within CI's time; raise PIDETECT_FUZZ_EXAMPLES for a longer hunt.
"""

import hashlib
import io
import json
import math
import os
import socket
import stat
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pidetect.capture.image_files import ImageFileError, read_header, read_image
from pidetect.capture.sources import make_source
from pidetect.config import FIELDS, Config, build_config
from pidetect.errors import PidetectError
from pidetect.inference.labels import parse_labels
from pidetect.outputs.snapshots import OWN_NAME, Snapshots
from pidetect.tools.measure import free_port
from pidetect.tools.demo import load_photo

EXAMPLES = int(os.environ.get("PIDETECT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
text_no_surrogates = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


# --- config files ------------------------------------------------------------------------------------
def toml_value(value) -> str:
    """A TOML literal for a generated value (json's string escapes are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), text_no_surrogates)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(text_no_surrogates, scalars, max_size=2))
keys = st.one_of(st.sampled_from(sorted(FIELDS)), st.from_regex(r"[a-z_]{1,20}", fullmatch=True))


def load(text_or_bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pidetect.toml"
        if isinstance(text_or_bytes, bytes):
            path.write_bytes(text_or_bytes)
        else:
            path.write_text(text_or_bytes, encoding="utf-8")
        try:
            config = build_config(path, {}, path_required=True)
        except PidetectError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip() and len(message) < 2000, message
            return
        assert isinstance(config, Config)


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_config_documents_of_every_key_and_type(document):
    load("".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in document.items()))


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_config_files_of_random_bytes_and_text(content):
    load(content)


@FUZZ
@given(st.sampled_from(sorted(FIELDS)), st.text(max_size=30))
def test_every_flag_with_random_text(key, value):
    try:
        config = build_config(None, {key: value})
    except PidetectError as exc:
        assert str(exc)
        return
    assert isinstance(config, Config)


# --- source specs ----------------------------------------------------------------------------------
spec_parts = st.sampled_from(["pipe:", "rtsp://", "http://", "/dev/video", "picamera2:", "auto", "%04d", "!",
                              "appsink", "'", '"', " ", "0", "/", "x.mp4", "%", "\\", "\x00", "-"])


@FUZZ
@given(st.lists(st.one_of(spec_parts, text_no_surrogates), max_size=5).map("".join),
       st.integers(0, 5000), st.integers(0, 5000))
def test_source_specs(spec, width, height):
    try:
        config = build_config(None, {"source": spec, "width": width, "height": height})
        source = make_source(config)
    except PidetectError as exc:
        assert str(exc)
        return
    except ValueError as exc:  # only the NUL byte, which no path or command can hold
        assert "\x00" in spec and "null" in str(exc).lower(), exc
        return
    assert source.name


# --- label files -----------------------------------------------------------------------------------
label_lines = st.one_of(st.from_regex(r"\s*\d{1,6}[\s:,]+\w{1,10}\s*", fullmatch=True), st.just("???"),
                        text_no_surrogates)


@FUZZ
@given(st.lists(label_lines, max_size=8).map("\n".join))
def test_label_files(text):
    try:
        labels = parse_labels(text, "fuzz.txt")
    except PidetectError as exc:
        assert str(exc).startswith("fuzz.txt")
        return
    assert labels and all(isinstance(k, int) and isinstance(v, str) and v for k, v in labels.items())


# --- image files -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoded_images():
    photo = cv2.resize(load_photo("chelsea.png"), (96, 64))
    return {ext: cv2.imencode(ext, photo)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm")}


def check_image(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except ImageFileError as exc:
            assert str(path) in str(exc)
            return
        header = read_header(path)
        assert image.ndim == 3 and image.shape[2] == 3
        assert image.shape[:2] == (header.height, header.width)


@FUZZ
@given(st.binary(max_size=300))
def test_images_of_random_bytes(data):
    check_image(data)


@FUZZ
@given(st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"]), st.floats(0, 1),
       st.binary(max_size=8), st.integers(0, 40))
def test_truncated_and_damaged_images(encoded_images, ext, keep, noise, where):
    data = encoded_images[ext]
    cut = data[: int(len(data) * keep)]
    damaged = cut[:where] + noise + cut[where + len(noise):]
    check_image(damaged)


@FUZZ
@given(st.sampled_from([".png", ".bmp", ".ppm", ".jpg"]), st.integers(1, 70000), st.integers(1, 70000))
def test_headers_that_claim_huge_sizes(encoded_images, ext, width, height):
    """The real header with its size fields rewritten: refused by size, or decoded within the limit."""
    import struct

    data = bytearray(encoded_images[ext])
    if ext == ".png":
        data[16:24] = struct.pack(">II", width, height)
    elif ext == ".bmp":
        data[18:26] = struct.pack("<ii", width, height)
    elif ext == ".ppm":
        data = bytearray(f"P6\n{width} {height}\n255\n".encode() + bytes(data[data.index(b"255\n") + 4:]))
    else:
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    started = time.monotonic()
    check_image(bytes(data))
    assert time.monotonic() - started < 10


# --- the MJPEG HTTP request parser -----------------------------------------------------------------
@pytest.fixture(scope="module")
def mjpeg_server():
    from pidetect.web.mjpeg import LatestJpeg
    from pidetect.web.server import WebApp, WebServer

    latest = LatestJpeg()
    latest.publish(cv2.imencode(".jpg", load_photo("chelsea.png"))[1].tobytes())
    server = WebServer(("127.0.0.1", free_port()), WebApp(latest))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    latest.closed = True
    server.shutdown()
    server.server_close()


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything
        reply = b""
        sock.settimeout(timeout)
        try:
            while len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
        return reply


request_parts = st.sampled_from([b"GET ", b"HEAD ", b"POST ", b"/", b"/index.html", b"/snapshot.jpg", b"?", b" ",
                                 b"HTTP/1.0", b"HTTP/1.1", b"\r\n", b"\n", b"Host: x\r\n", b"\x00", b"\xff", b"%"])


@settings(FUZZ, max_examples=min(EXAMPLES, 80))
@given(st.lists(st.one_of(request_parts, st.binary(max_size=30)), max_size=10).map(b"".join))
def test_http_requests(mjpeg_server, request):
    port = mjpeg_server.server_address[1]
    reply = exchange(port, request)
    assert reply == b"" or reply.startswith(b"HTTP/1.0 "), reply[:80]
    if reply:
        status = int(reply.split()[1])
        assert status in (200, 400, 403, 404, 405, 408, 414, 431, 503)  # 403: a Host not this Pi's
    # and the server still answers a good request
    assert exchange(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 OK")


# --- snapshot pruning over random folder contents ---------------------------------------------------
own_like = st.from_regex(r"\d{8}-\d{6}\.\d{3}-[a-z]{1,6}-\d{1,3}\.jpg", fullmatch=True)
near_misses = st.one_of(own_like.map(lambda n: n + ".bak"), own_like.map(lambda n: "x" + n),
                        own_like.map(lambda n: n.upper()), own_like.map(lambda n: "." + n + ".tmpx"))
user_names = st.from_regex(r"[A-Za-z0-9_. -]{1,20}", fullmatch=True).filter(lambda n: n not in (".", ".."))
entries = st.lists(st.tuples(st.one_of(own_like, near_misses, user_names),
                             st.sampled_from(["file", "dir", "link", "fifo", "link-to-own"])),
                   max_size=12, unique_by=lambda e: e[0])


def fingerprint(folder: Path):
    """Every entry below `folder` with its type and, for files, a hash of its bytes."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else os.readlink(path) \
                if stat.S_ISLNK(mode) else ""
            found[str(path.relative_to(folder))] = (stat.S_IFMT(mode), digest)
    return found


@FUZZ
@given(entries, st.integers(1, 4), st.integers(0, 5))
def test_snapshot_pruning_touches_only_its_own_files(entries, max_files, saves):
    from pidetect.frames import Frame, Result

    class Track:
        label, track_id = "cat", 7

    image = np.full((48, 64, 3), 90, np.uint8)
    with tempfile.TemporaryDirectory() as top:
        folder, outside = Path(top) / "snaps", Path(top) / "outside"
        folder.mkdir()
        outside.mkdir()
        (outside / "precious.jpg").write_bytes(b"user data")
        own_before = set()
        for name, kind in entries:
            path = folder / name
            if kind == "file":
                path.write_bytes(name.encode())
                if OWN_NAME.fullmatch(name):
                    own_before.add(name)
            elif kind == "dir":
                path.mkdir()
                (path / "inside.jpg").write_bytes(b"keep")
            elif kind == "link":
                path.symlink_to(outside / "precious.jpg")
            elif kind == "link-to-own":
                path.symlink_to(folder / "20000101-000000.000-cat-1.jpg")
            else:
                os.mkfifo(path)
        foreign_before = {k: v for k, v in fingerprint(folder).items() if k.split("/")[0] not in own_before}
        outside_before = fingerprint(outside)
        snapshots = Snapshots(folder, max_files=max_files, max_mb=100)
        written = [snapshots.save(Result(Frame(image, s, 2e9 + s, "fuzz"), [], 1.0), Track()) for s in range(saves)]
        assert all(written)
        after = fingerprint(folder)
        for key, value in foreign_before.items():
            assert after.get(key) == value, f"{key} was changed or removed"
        assert fingerprint(outside) == outside_before
        own_after = [k for k in after if "/" not in k and OWN_NAME.fullmatch(k) and stat.S_ISREG(after[k][0])
                     and k not in foreign_before]
        if saves:
            assert len(own_after) <= max_files


# --- issue 19: the new parsers and ranges ----------------------------------------------------------------
from pidetect.config import NUMERIC_RANGES, OPEN_BELOW  # noqa: E402
from pidetect.errors import ConfigError, UsageError  # noqa: E402


def near(low, high):
    """Values at, just inside and beyond a range's ends, and the ones that broke it before."""
    span = max(abs(high - low), 1.0)
    return st.one_of(st.sampled_from([low, high, low - 1, high + 1, high * 10, float("inf"), float("-inf"),
                                      float("nan"), 1e300, -1e300, low + span * 1e-9, high - span * 1e-9]),
                     st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70))


@FUZZ
@given(st.data())
def test_numeric_keys_at_and_beyond_their_ranges(data):
    key, low, high = data.draw(st.sampled_from(NUMERIC_RANGES))
    value = data.draw(near(low, high))
    flag = repr(value) if isinstance(value, float) else str(value)
    for where in ("flag", "file"):
        try:
            if where == "flag":
                config = build_config(None, {key: flag})
            else:
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "pidetect.toml"
                    path.write_text(f"{key} = {toml_value(value)}\n")
                    config = build_config(path, {})
        except (UsageError, ConfigError) as exc:
            assert key in str(exc) or key.replace("_", "-") in str(exc), exc
            continue
        got = getattr(config, key)
        assert (low < got if key in OPEN_BELOW else low <= got) and got <= high, (key, got)


yolo_line = st.one_of(
    st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-5, 100)), min_size=0, max_size=7)
    .map(lambda values: " ".join(repr(v) if isinstance(v, float) else str(v) for v in values)),
    text_no_surrogates)


@FUZZ
@given(st.lists(yolo_line, max_size=6).map("\n".join), st.lists(text_no_surrogates, min_size=1, max_size=4))
def test_yolo_datasets(labels, names):
    from pidetect.models.datasets import load_dataset

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "images").mkdir()
        (root / "labels").mkdir()
        cv2.imwrite(str(root / "images" / "a.png"), np.zeros((20, 30, 3), np.uint8))
        (root / "labels" / "a.txt").write_text(labels, encoding="utf-8")
        (root / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        try:
            dataset = load_dataset(root)
        except PidetectError:
            return
        for image in dataset.images:
            for box in image.boxes:
                assert all(math.isfinite(v) for v in box.box) and box.box[2] > box.box[0] and box.box[3] > box.box[1]


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False),
                                     text_no_surrogates),
                           lambda children: st.one_of(st.lists(children, max_size=4),
                                                      st.dictionaries(text_no_surrogates, children, max_size=4)),
                           max_leaves=12)
annotation_fields = st.fixed_dictionaries({}, optional={
    "id": json_values, "image_id": st.one_of(st.just(1), json_values), "category_id": st.one_of(st.just(1), json_values),
    "bbox": st.one_of(st.lists(st.one_of(st.floats(), st.integers()), min_size=4, max_size=4), json_values),
    "iscrowd": st.one_of(st.sampled_from([0, 1]), json_values), "area": json_values})


@FUZZ
@given(st.lists(annotation_fields, max_size=4), json_values)
def test_coco_documents(annotations, categories):
    from pidetect.models.datasets import load_dataset

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cv2.imwrite(str(root / "a.png"), np.zeros((20, 30, 3), np.uint8))
        document = {"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
                    "annotations": annotations,
                    "categories": categories if not isinstance(categories, str) else [{"id": 1, "name": "cat"}]}
        (root / "instances_x.json").write_text(json.dumps(document))
        try:
            load_dataset(root / "instances_x.json")
        except PidetectError:
            pass


voc_parts = st.sampled_from(["<annotation>", "</annotation>", "<object>", "</object>", "<name>cat</name>",
                             "<bndbox>", "</bndbox>", "<xmin>1</xmin>", "<ymin>x</ymin>", "<xmax>1e400</xmax>",
                             "<ymax>-5</ymax>", "<filename>a.png</filename>", "<size><width>0</width></size>",
                             "<difficult>1</difficult>", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "&a;", "<"])


@FUZZ
@given(st.lists(st.one_of(voc_parts, text_no_surrogates), max_size=12).map("".join))
def test_voc_documents(text):
    from pidetect.models.datasets import load_dataset

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cv2.imwrite(str(root / "a.png"), np.zeros((20, 30, 3), np.uint8))
        (root / "a.xml").write_text(text, encoding="utf-8")
        try:
            load_dataset(root)
        except PidetectError:
            pass


meta_texts = st.one_of(text_no_surrogates, st.builds(repr, json_values),
                       st.builds(lambda names: repr({"names": names, "task": "detect"}),
                                 st.one_of(st.dictionaries(st.integers(-3, 100), text_no_surrogates, max_size=5),
                                           st.lists(text_no_surrogates, max_size=5), json_values)))


@FUZZ
@given(st.dictionaries(st.sampled_from(["temp_meta.txt", "labels.txt", "x.txt", "dir/", "a.bin"]),
                       st.one_of(meta_texts.map(lambda t: t.encode("utf-8")), st.binary(max_size=64)), max_size=3),
       st.integers(0, 3), st.integers(0, 200))
def test_metadata_archives(members, damage, where):
    from pidetect.errors import ModelError
    from pidetect.inference.model_metadata import read_embedded_metadata

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = bytearray(b"TFL3" + bytes(60) + archive.getvalue())
    if damage and len(data) > 64:
        position = 64 + where % (len(data) - 64)
        data[position] = (data[position] + 1 + damage) % 256  # one damaged byte somewhere in the archive
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.tflite"
        path.write_bytes(bytes(data))
        try:
            meta = read_embedded_metadata(path)
        except ModelError as exc:
            assert str(exc)
            return
        for name in (meta.names or {}).values():
            assert name and "\n" not in name


@FUZZ
@given(st.lists(st.text(max_size=12), max_size=12, unique=True))
def test_mqtt_topic_keys_of_arbitrary_labels(labels):
    from pidetect.outputs.mqtt import slug

    keys = [slug(label) for label in labels]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key and len(key) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in key), key


# --- zones, filters and masks ------------------------------------------------------------------------------------
table_values = st.one_of(scalars, st.lists(scalars, max_size=4),
                         st.lists(st.lists(st.one_of(st.floats(allow_nan=True), st.integers(-5, 3000), st.booleans(),
                                                     text_no_surrogates), max_size=3), max_size=6))
zone_tables = st.dictionaries(st.sampled_from(["points", "objects", "inertia", "loiter_seconds", "pointz"]),
                              table_values, max_size=4)
filter_tables = st.dictionaries(st.sampled_from(["min_area", "max_area", "min_ratio", "max_ratio", "min_score",
                                                 "threshold", "min_ares"]), table_values, max_size=4)


@FUZZ
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_ é-]{1,12}", fullmatch=True), zone_tables, max_size=3),
       st.dictionaries(st.from_regex(r"[a-z ]{1,12}", fullmatch=True), filter_tables, max_size=3),
       st.one_of(st.none(), table_values))
def test_zone_filter_and_mask_tables(zones, filters, mask):
    lines = [] if mask is None else [f"object_mask = {toml_value(mask)}"]
    for name, table in zones.items():
        lines.append(f"[zones.{json.dumps(name)}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    for label, table in filters.items():
        lines.append(f"[filters.{json.dumps(label)}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    load("\n".join(lines) + "\n")
