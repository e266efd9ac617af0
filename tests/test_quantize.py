"""pidetect quantize and the int8 default: data-free requantization, calibrated int8, verification, errors."""

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import REPO, interruptible, run_pidetect, shared_path
from pidetect.inference.detector import Detector, DetectorOptions
from pidetect.inference.model_paths import default_model_dir, load_manifest, resolve_model_paths
from pidetect.models.datasets import Dataset, load_dataset
from pidetect.models.evaluate import evaluate_model
from pidetect.models.requantize import requantize_int8
from pidetect.tools.demo import load_photo


@pytest.fixture(scope="module")
def uint8_model():
    manifest = load_manifest()
    derived = manifest.derived[0]
    path = default_model_dir() / derived.source
    if not path.is_file():
        pytest.fail(f"{path} missing: run 'make models'")
    return path


@pytest.fixture(scope="module")
def coco_halves():
    """coco-train128's COCO JSON split in two: the first 64 images calibrate, the other 64 measure."""
    dataset = load_dataset(shared_path("datasets", "coco-train128", "annotations", "instances_train2017.json"))
    first = Dataset(dataset.format, dataset.source, dataset.class_names, dataset.images[:64])
    second = Dataset(dataset.format, dataset.source, dataset.class_names, dataset.images[64:])
    return first, second


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory, coco_halves):
    folder = tmp_path_factory.mktemp("calibration")
    for image in coco_halves[0].images:
        (folder / image.path.name).symlink_to(image.path)
    return folder


def test_the_default_is_the_requantized_int8_model(uint8_model):
    manifest = load_manifest()
    model, labels = resolve_model_paths()
    assert model.name == manifest.default_model == manifest.derived[0].name and labels is None
    assert hashlib.sha256(model.read_bytes()).hexdigest() == manifest.derived[0].sha256
    detector = Detector(model, None, DetectorOptions())
    assert detector.numeric_format == "int8 per-channel" and detector.input_dtype == np.int8
    assert detector.labels_from.endswith("coco_labels.txt")


def test_requantization_is_deterministic(uint8_model):
    first, report = requantize_int8(uint8_model.read_bytes())
    second, _ = requantize_int8(uint8_model.read_bytes())
    assert first == second
    assert hashlib.sha256(first).hexdigest() == load_manifest().derived[0].sha256
    assert report.weights == 72 and report.biases == 72 and report.activations == 99


def test_int8_default_agrees_with_the_uint8_on_photos(uint8_model):
    reference = Detector(uint8_model, None, DetectorOptions(threshold=0.5))
    int8 = Detector(resolve_model_paths()[0], None, DetectorOptions(threshold=0.5))
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "horse.png"):
        image = load_photo(name)
        a, b = reference.detect_image(image).detections, int8.detect_image(image).detections
        assert [d.label for d in a][:1] == [d.label for d in b][:1], name
        assert max(abs(x - y) for x, y in zip(a[0].box, b[0].box)) <= 12, (name, a[0].box, b[0].box)


def test_int8_default_keeps_the_accuracy(uint8_model):
    dataset = load_dataset(shared_path("datasets", "coco-train128", "annotations", "instances_train2017.json"))
    uint8 = evaluate_model(dataset, uint8_model, None, 0.5)
    int8 = evaluate_model(dataset, resolve_model_paths()[0], None, 0.5)
    assert abs(int8.map - uint8.map) <= 0.005, (uint8.map, int8.map)


def test_calibrated_float_ssd_keeps_the_accuracy(tmp_path, calibration_folder, coco_halves, model_paths):
    source = shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
    out = tmp_path / "ssd_int8.tflite"
    done = run_pidetect("quantize", source, "-o", out, "--labels", model_paths[1], "--calibration",
                        calibration_folder, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "static int8 calibrated on 64 image(s)" in done.stdout and "verified:" in done.stdout
    quantized = Detector(out, model_paths[1], DetectorOptions())
    assert quantized.numeric_format == "int8 per-channel" and quantized.input_dtype == np.int8
    assert [np.dtype(o["dtype"]) for o in quantized.interpreter.get_output_details()] == [np.float32] * 4
    float_map = evaluate_model(coco_halves[1], source, model_paths[1], 0.5).map
    int8_map = evaluate_model(coco_halves[1], out, model_paths[1], 0.5).map
    assert abs(int8_map - float_map) <= 0.015, (float_map, int8_map)


def test_calibrated_yolo_beats_ultralytics_full_int8(tmp_path, calibration_folder, coco_halves):
    source = shared_path("models", "float", "yolov8n_float.tflite")
    labels = tmp_path / "coco80.txt"
    names = Detector(shared_path("models", "yolov8n", "yolov8n_int8.tflite"), None, DetectorOptions()).labels
    labels.write_text("".join(names[i] + "\n" for i in sorted(names)))
    out = tmp_path / "yolo_int8.tflite"
    done = run_pidetect("quantize", source, "-o", out, "--labels", labels, "--calibration", calibration_folder,
                        timeout=900)
    assert done.returncode == 0, done.stderr
    ours = evaluate_model(coco_halves[1], out, labels, 0.5).map
    theirs = evaluate_model(coco_halves[1], shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite"),
                            None, 0.5).map
    assert ours > theirs, (ours, theirs)


def test_dynamic_range_model_takes_the_float_path(tmp_path, calibration_folder):
    source = shared_path("models", "yolov8n", "yolov8n_int8.tflite")
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(calibration_folder.iterdir())[:12]:
        (few / path.name).symlink_to(path.resolve())
    out = tmp_path / "from_dynamic.tflite"
    done = run_pidetect("quantize", source, "-o", out, "--calibration", few, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "dynamic-range" in done.stdout and "dequantized to float" in done.stdout
    assert Detector(out, None, DetectorOptions()).numeric_format == "int8 per-channel"


def test_calibration_from_a_video_file_is_spread_over_it(tmp_path):
    from pidetect.models.calibration import frames_from_source

    clip = tmp_path / "ramp.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for index in range(50):  # frame i is a flat grey of 5 * i: its brightness says where it came from
        writer.write(np.full((48, 64, 3), 5 * index, np.uint8))
    writer.release()
    frames = frames_from_source(str(clip), 5)
    levels = [round(float(f.mean()) / 5) for f in frames]
    assert levels == [0, 12, 24, 37, 49], levels  # evenly spread, first to last, not five neighbours


def test_calibration_from_the_local_mjpeg_camera(tmp_path, uint8_model):
    from mjpeg_server import MjpegCamera

    camera = MjpegCamera([load_photo("chelsea.png"), load_photo("astronaut.png")], fps=10).start()
    try:
        out = tmp_path / "cam_int8.tflite"
        done = run_pidetect("quantize", uint8_model, "-o", out, "--calibration-source", camera.url, "--frames", 12,
                            "--frame-spacing", 0.1, timeout=300)
    finally:
        camera.stop()
    assert done.returncode == 0, done.stderr
    assert "12 calibration frame(s) from http://" in done.stderr and out.is_file()


# --- errors ----------------------------------------------------------------------------------------
def test_output_exists_needs_force(tmp_path, uint8_model):
    out = tmp_path / "x.tflite"
    out.write_bytes(b"keep me")
    done = run_pidetect("quantize", uint8_model, "-o", out)
    assert done.returncode == 2 and "exists; pass --force" in done.stderr and out.read_bytes() == b"keep me"
    done = run_pidetect("quantize", uint8_model, "-o", out, "--force", timeout=300)
    assert done.returncode == 0 and out.read_bytes()[4:8] == b"TFL3"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask, "readable like any new file, not mkstemp's 0600"


def test_calibration_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    source = shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
    done = run_pidetect("quantize", source, "-o", tmp_path / "o.tflite", "--calibration", empty)
    assert done.returncode == 2 and "no images found" in done.stderr


def test_few_calibration_images_warn(tmp_path, calibration_folder, model_paths):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(calibration_folder.iterdir())[:4]:
        (few / path.name).symlink_to(path.resolve())
    source = shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
    done = run_pidetect("quantize", source, "-o", tmp_path / "o.tflite", "--labels", model_paths[1],
                        "--calibration", few, timeout=300)
    assert "warning: only 4 calibration image(s)" in done.stderr


def test_float_model_without_calibration_says_what_to_give(tmp_path):
    source = shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
    done = run_pidetect("quantize", source, "-o", tmp_path / "o.tflite")
    assert done.returncode == 2 and "--calibration DIR" in done.stderr


def test_edge_tpu_build_and_non_tflite_are_refused(tmp_path, model_paths):
    edgetpu = model_paths[0].parent / "mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite"
    done = run_pidetect("quantize", edgetpu, "-o", tmp_path / "o.tflite")
    assert done.returncode == 2 and "Edge TPU build" in done.stderr
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    done = run_pidetect("quantize", text, "-o", tmp_path / "o.tflite")
    assert done.returncode == 2 and "not a TFLite model" in done.stderr
    done = run_pidetect("quantize", resolve_model_paths()[0], "-o", tmp_path / "o.tflite")
    assert done.returncode == 2 and "already int8 with per-channel weights" in done.stderr
    assert not list(tmp_path.glob("o.tflite*")) and not list(tmp_path.glob(".o.tflite*"))


def test_missing_extra_names_the_install_command(tmp_path, calibration_folder, model_paths):
    for name in ("litert_quantizer", "ai_edge_quantizer"):  # the package's new name and its old one
        blocker = tmp_path / "blocker" / name
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    source = shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
    done = run_pidetect("quantize", source, "-o", tmp_path / "o.tflite", "--labels", model_paths[1],
                        "--calibration", calibration_folder, env={"PYTHONPATH": f"{blocker.parent}:{REPO}"})
    assert done.returncode == 69 and 'pip install "pidetect[quantize]"' in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_during_calibration_leaves_no_file(tmp_path, calibration_folder):
    source = shared_path("models", "float", "yolov8n_float.tflite")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(80)))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pidetect", "quantize", str(source), "-o", str(out / "q.tflite"),
                             "--labels", str(labels), "--calibration", str(calibration_folder)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    said = ""
    while "calibrating on" not in said:  # images read, calibration under way (a sleep failed on a loaded machine)
        line = proc.stderr.readline()
        assert line, f"quantize ended before calibrating: {said[-2000:]}"
        said += line
    time.sleep(1)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert list(out.iterdir()) == [], list(out.iterdir())
