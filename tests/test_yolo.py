"""YOLO model families: real Ultralytics exports from ../shared, and synthetic heads for the other layouts."""

import json

import cv2
import numpy as np
import pytest

from conftest import run_pidetect, shared_path
from daemon import of, run_daemon
from pidetect.inference.detector import Detector, DetectorOptions
from pidetect.tools.measure import free_port
from pidetect.tools.demo import load_photo, write_scene_video
from test_photos import PHOTOS, iou
from tflite_builder import constant_outputs_model, with_ultralytics_metadata

VARIANTS = ["yolov8n_full_integer_quant.tflite", "yolov8n_integer_quant.tflite", "yolov8n_int8.tflite"]
# YOLOv8n sees the horse silhouette as nothing: the photos it does see
YOLO_PHOTOS = [p for p in PHOTOS if p[0] != "horse.png"]


@pytest.fixture(scope="module")
def yolo_detectors():
    return {name: Detector(shared_path("models", "yolov8n", name), None, DetectorOptions(threshold=0.25))
            for name in VARIANTS}


def test_family_format_and_labels_are_read_from_the_file(yolo_detectors):
    formats = {name: (d.family.name, d.numeric_format, len(d.labels), d.labels[0], d.labels[79])
               for name, d in yolo_detectors.items()}
    assert formats == {
        "yolov8n_full_integer_quant.tflite": ("yolov8", "int8 per-tensor", 80, "person", "toothbrush"),
        "yolov8n_integer_quant.tflite": ("yolov8", "int8 per-tensor, float I/O", 80, "person", "toothbrush"),
        "yolov8n_int8.tflite": ("yolov8", "dynamic-range int8", 80, "person", "toothbrush"),
    }
    assert all("temp_meta.txt" in d.labels_from for d in yolo_detectors.values())


@pytest.mark.parametrize("photo,label,region,inside", YOLO_PHOTOS, ids=[p[0] for p in YOLO_PHOTOS])
def test_boxes_land_on_the_objects_and_the_variants_agree(yolo_detectors, photo, label, region, inside):
    image = load_photo(photo)
    best = {}
    for name, detector in yolo_detectors.items():
        found = [d for d in detector.detect_image(image).detections if d.label == label]
        assert found, f"{name} on {photo}: no {label}"
        best[name] = found[0]
        assert iou(found[0].box, region) >= 0.7, f"{name} on {photo}: {found[0].box} vs hand-set {region}"
        x, y = inside
        assert found[0].box[0] <= x <= found[0].box[2] and found[0].box[1] <= y <= found[0].box[3]
    # int8 inside, int8 or float at the edges: the same network, the same boxes to the pixel or two
    full, integer, dynamic = (best[name] for name in VARIANTS)
    assert max(abs(a - b) for a, b in zip(full.box, integer.box)) <= 2
    # dynamic range (float activations) against full int8 (per-tensor): the same object, well overlapped
    assert iou(full.box, dynamic.box) >= 0.85


def test_boxes_are_in_pixels_of_non_square_frames(yolo_detectors):
    """The same 741x500 photo at twice the size: the model sees the same letterboxed input, boxes double."""
    detector = yolo_detectors["yolov8n_int8.tflite"]
    image = load_photo("motorcycle_left.png")
    small = [d for d in detector.detect_image(image).detections if d.label == "motorcycle"][0].box
    big_image = cv2.resize(image, None, fx=2, fy=2)
    big = [d for d in detector.detect_image(big_image).detections if d.label == "motorcycle"][0].box
    assert all(abs(b - 2 * s) <= 6 for s, b in zip(small, big)), (small, big)
    assert big[2] <= big_image.shape[1] - 1 and big[3] <= big_image.shape[0] - 1


def test_detect_cli_with_a_yolo_model_needs_no_labels_file(tmp_path):
    model = shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite")
    photo = tmp_path / "motorcycle.png"
    cv2.imwrite(str(photo), load_photo("motorcycle_left.png"))
    done = run_pidetect("detect", "--model", model, "--json", "--threshold", "0.25", "--max-results", "3", photo)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["detections"]
    assert found[0]["label"] == "motorcycle" and found[0]["class_id"] == 3 and len(found) <= 3


def test_daemon_runs_a_yolo_model_on_a_video(tmp_path):
    model = shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite")
    clip = tmp_path / "scenes.avi"
    write_scene_video(clip, 640, 480, fps=30, frames_per_scene=6, blank_frames=4, repeat=1)
    code, records, stderr = run_daemon("--source", clip, "--model", model, "--threshold", "0.4",
                                       "--display", "mjpeg", "--mjpeg-port", free_port(), "--snapshots",
                                       "--snapshot-dir", tmp_path / "snaps", timeout=180)
    assert code == 0, stderr[-2000:]
    loaded = of(records, "lifecycle", state="model_loaded")[0]
    assert loaded["model"].endswith("yolov8n_full_integer_quant.tflite")
    entered = {r["label"] for r in of(records, "detection", state="entered")}
    left = {r["label"] for r in of(records, "detection", state="left")}
    assert {"cat", "person", "motorcycle"} <= entered and entered == left
    assert of(records, "metrics") and list((tmp_path / "snaps").glob("*.jpg"))


# --- synthetic heads: layouts no real file here has -----------------------------------------------
def head(rows, features_first, candidates=32):
    """A raw head [1, N, F] (or [1, F, N]) holding `rows`, padded with empty candidates to N."""
    values = np.zeros((1, candidates, len(rows[0])), np.float32)
    values[0, :len(rows)] = rows
    return values.transpose(0, 2, 1) if features_first else values


def write_model(tmp_path, name, outputs, names=None, task="detect", **kwargs):
    data = constant_outputs_model(outputs, **kwargs)
    if names is not None:
        data = with_ultralytics_metadata(data, {"names": dict(enumerate(names)), "task": task, "imgsz": [64, 64]})
    path = tmp_path / name
    path.write_bytes(data)
    return path


def expected_box(cx, cy, w, h, frame_w, frame_h, side=64):
    """Map a box in letterboxed input pixels back by hand: scale to fit, centred padding."""
    ratio = min(side / frame_w, side / frame_h)
    new_w, new_h = round(frame_w * ratio), round(frame_h * ratio)
    left, top = round((side - new_w) / 2 - 0.1), round((side - new_h) / 2 - 0.1)
    sx, sy = new_w / frame_w, new_h / frame_h
    return ((cx - w / 2 - left) / sx, (cy - h / 2 - top) / sy, (cx + w / 2 - left) / sx, (cy + h / 2 - top) / sy)


@pytest.mark.parametrize("layout", ["yolov5", "yolov8-float16", "yolov8-pixels", "yolov8-rows"])
def test_synthetic_heads_decode_to_frame_pixels(tmp_path, layout):
    names = ["person", "car", "dog"]
    # candidates in normalised input coordinates: cx, cy, w, h (+ objectness) + 3 class scores
    boxes = [(0.5, 0.5, 0.5, 0.25), (0.52, 0.5, 0.5, 0.25), (0.25, 0.75, 0.125, 0.125), (0.9, 0.1, 0.1, 0.1)]
    classes = [(0.1, 0.9, 0.0), (0.1, 0.8, 0.0), (0.0, 0.0, 0.7), (0.2, 0.1, 0.0)]
    if layout == "yolov5":
        rows = [list(b) + [1.0] + list(c) for b, c in zip(boxes, classes)]
        rows[2][4] = 0.5  # objectness halves the dog's score: 0.35
        model = write_model(tmp_path, "v5.tflite", [head(rows, features_first=False)], names)
    else:
        scale = 64 if layout == "yolov8-pixels" else 1
        rows = [[v * scale for v in b] + list(c) for b, c in zip(boxes, classes)]
        model = write_model(tmp_path, "v8.tflite", [head(rows, features_first=layout != "yolov8-rows")], names,
                            float16=layout == "yolov8-float16")
    detector = Detector(model, None, DetectorOptions(threshold=0.3, nms_iou=0.45))
    assert detector.family.name == ("yolov5" if layout == "yolov5" else "yolov8")
    frame = np.zeros((300, 400, 3), np.uint8)  # 4:3, letterboxed into 64x64 with bars top and bottom
    found = detector.detect_image(frame).detections
    labels = [d.label for d in found]
    assert labels == ["car", "dog"] if layout != "yolov5" else labels == ["car", "dog"], labels
    car = expected_box(32, 32, 32, 16, 400, 300)
    dog = expected_box(16, 48, 8, 8, 400, 300)
    for detection, want in zip(found, (car, dog)):
        assert all(abs(a - b) <= 1.0 for a, b in zip(detection.box, want)), (layout, detection.box, want)
    scores = {d.label: d.score for d in found}
    assert scores["car"] == pytest.approx(0.9, abs=0.01)
    assert scores["dog"] == pytest.approx(0.35 if layout == "yolov5" else 0.7, abs=0.01)


def test_non_finite_values_in_a_head_are_dropped(tmp_path):
    rows = [[0.5, 0.5, 0.2, 0.2, 0.9], [np.inf, 0.5, 0.2, 0.2, 0.95], [0.3, 0.3, np.nan, 0.2, 0.8],
            [0.7, 0.7, 0.1, 0.1, np.nan]]
    model = write_model(tmp_path, "inf.tflite", [head(rows, True)], ["thing"])
    found = Detector(model, None, DetectorOptions(threshold=0.5)).detect_image(np.zeros((64, 64, 3), np.uint8))
    assert [d.score for d in found.detections] == [pytest.approx(0.9)]


def test_ssd_outputs_with_inf_and_fractional_class_ids(tmp_path, model_paths):
    """A float SSD whose outputs hold inf/nan must not crash detect; class 60.98 is class 61."""
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, np.inf, 0.6], [0.3, 0.3, 0.6, 0.6], [0, 0, 1, 1]]])
    classes = np.array([[16.0, 1.0, 60.98, 3.0]])
    scores = np.array([[0.9, 0.8, 0.7, np.nan]])
    outputs = [("TFLite_Detection_PostProcess", boxes), ("TFLite_Detection_PostProcess:1", classes),
               ("TFLite_Detection_PostProcess:2", scores), ("TFLite_Detection_PostProcess:3", np.array([4.0]))]
    model = write_model(tmp_path, "ssd_inf.tflite", outputs)
    photo = tmp_path / "frame.png"
    cv2.imwrite(str(photo), np.zeros((100, 200, 3), np.uint8))
    done = run_pidetect("detect", "--model", model, "--labels", model_paths[1], "--json", photo)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["detections"]
    names = dict(line.split(maxsplit=1) for line in model_paths[1].read_text().splitlines())
    assert [(d["label"], d["class_id"]) for d in found] == [("cat", 16), (names["61"].strip(), 61)], found


# --- what is refused, and how ---------------------------------------------------------------------
def test_segmentation_export_is_not_a_detection_model(tmp_path):
    model = write_model(tmp_path, "seg.tflite", [np.zeros((1, 116, 84)), np.zeros((1, 16, 16, 32))],
                        [f"c{i}" for i in range(80)], task="segment")
    done = run_pidetect("detect", "--model", model, load_photo_path(tmp_path))
    assert done.returncode == 78 and "not a detection model" in done.stderr and "'segment'" in done.stderr


def test_classifier_without_metadata_says_what_each_family_expects(tmp_path):
    model = write_model(tmp_path, "cls.tflite", [np.zeros((1, 1000))])  # a classifier's [1, classes]
    done = run_pidetect("detect", "--model", model, load_photo_path(tmp_path))
    assert done.returncode == 78 and "output_0 [1, 1000]" in done.stderr
    assert "SSD:" in done.stderr and "YOLO:" in done.stderr and "Traceback" not in done.stderr


def test_classifier_export_with_metadata(tmp_path):
    model = write_model(tmp_path, "cls_meta.tflite", [np.zeros((1, 1000))], ["a"] * 1000, task="classify")
    done = run_pidetect("detect", "--model", model, load_photo_path(tmp_path))
    assert done.returncode == 78 and "task 'classify'" in done.stderr


def test_metadata_naming_fewer_classes_than_the_output(tmp_path):
    model = write_model(tmp_path, "short.tflite", [np.zeros((1, 4 + 80, 200))], ["person", "bicycle"])
    done = run_pidetect("detect", "--model", model, load_photo_path(tmp_path))
    assert done.returncode == 78, done.stderr
    assert "names 2 classes" in done.stderr and "ids 0..79" in done.stderr


def test_corrupt_metadata_zip(tmp_path):
    good = with_ultralytics_metadata(constant_outputs_model([np.zeros((1, 7, 84))]),
                                     {"names": {0: "a", 1: "b", 2: "c"}})
    start = good.index(b"PK\x03\x04")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(good[:start + 30] + b"\x00" * 20 + good[start + 50:])
    done = run_pidetect("detect", "--model", broken, load_photo_path(tmp_path))
    assert done.returncode == 78 and "metadata archive appended to the model is damaged" in done.stderr
    assert "--labels" in done.stderr and "Traceback" not in done.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    done = run_pidetect("detect", "--model", broken, "--labels", labels, load_photo_path(tmp_path))
    assert done.returncode == 0 and "damaged" in done.stderr  # a warning, and the user's labels are used


def test_yolo_model_without_labels_asks_for_them(tmp_path):
    model = write_model(tmp_path, "bare.tflite", [np.zeros((1, 7, 84))])
    done = run_pidetect("detect", "--model", model, load_photo_path(tmp_path))
    assert done.returncode == 78 and "carries no labels" in done.stderr and "--labels" in done.stderr


def load_photo_path(tmp_path):
    path = tmp_path / "photo.png"
    if not path.exists():
        cv2.imwrite(str(path), load_photo("chelsea.png"))
    return path


def test_mjpeg_view_draws_the_yolo_boxes(tmp_path):
    import urllib.request

    from daemon import Daemon
    from pidetect.outputs.overlay import class_colour

    model = shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite")
    clip = tmp_path / "cat.avi"
    write_scene_video(clip, 640, 480, fps=15, frames_per_scene=30, blank_frames=0,
                      scenes=[("chelsea.png", "cat")], trailing_blank=False)
    port = free_port()
    daemon = Daemon("--source", clip, "--model", model, "--threshold", "0.4", "--realtime", "--loop",
                    "--display", "mjpeg", "--mjpeg-port", port)
    try:
        entered = daemon.wait_for(lambda r: r.get("event") == "detection" and r.get("label") == "cat",
                                  timeout=60, what="cat entered")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/snapshot.jpg", timeout=10) as reply:
            frame = cv2.imdecode(np.frombuffer(reply.read(), np.uint8), cv2.IMREAD_COLOR)
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and frame.shape == (480, 640, 3)
    x1, y1, x2, y2 = entered["box"]
    edge = frame[y1 + 40: y2 - 40, max(0, x1 - 2): x1 + 3]
    colour = np.array(class_colour(entered["class_id"]), int)
    share = (np.abs(edge.astype(int) - colour).max(axis=2) < 60).any(axis=1).mean()
    assert share > 0.9, f"the cat's box is drawn on only {share:.0%} of its left edge"
