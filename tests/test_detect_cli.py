"""`pidetect detect` as a user runs it: output formats, and every user mistake -> message + exit code."""

import json

import pytest

from conftest import run_pidetect
from pidetect.tools.demo import skimage_data_dir
from tflite_builder import classifier_model

PHOTOS = skimage_data_dir()


def test_json_lines_exactly_as_documented(model_paths):
    done = run_pidetect("detect", "--json", PHOTOS / "chelsea.png", PHOTOS / "rocket.jpg")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(PHOTOS / "chelsea.png"), str(PHOTOS / "rocket.jpg")]
    cat = lines[0]
    assert set(cat) == {"image", "detections", "inference_ms"}
    assert cat["inference_ms"] > 0
    first = cat["detections"][0]
    assert set(first) == {"label", "class_id", "score", "box"}
    assert first["label"] == "cat" and first["class_id"] == 16 and first["score"] > 0.8
    x1, y1, x2, y2 = first["box"]
    assert all(isinstance(v, int) for v in first["box"]) and 0 <= x1 < x2 <= 450 and 0 <= y1 < y2 <= 299
    assert lines[1]["detections"] == []


def test_text_form_is_readable(model_paths):
    done = run_pidetect("detect", PHOTOS / "coffee.png", "--threshold", "0.9")
    assert done.returncode == 0, done.stderr
    assert "coffee.png (600x400): 1 object(s)" in done.stdout
    assert "cup" in done.stdout and "dining table" not in done.stdout


def test_model_path_missing(tmp_path):
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", tmp_path / "nope.tflite")
    assert done.returncode == 78
    assert f"model file not found: {tmp_path / 'nope.tflite'}" in done.stderr
    assert "pidetect models fetch" in done.stderr and "Traceback" not in done.stderr


def test_file_that_is_not_a_tflite_model(tmp_path, model_paths):
    fake = tmp_path / "model.tflite"
    fake.write_text("<html>404 Not Found</html>")
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", fake, "--labels", model_paths[1])
    assert done.returncode == 78
    assert "is not a TFLite model" in done.stderr and "Traceback" not in done.stderr


def test_truncated_model_is_a_model_error(tmp_path, model_paths):
    broken = tmp_path / "model.tflite"
    broken.write_bytes(model_paths[0].read_bytes()[:100000])
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", broken, "--labels", model_paths[1])
    assert done.returncode == 78
    assert "cannot load this model" in done.stderr and "Traceback" not in done.stderr


def test_classifier_is_not_an_ssd_detector(tmp_path, model_paths):
    classifier = tmp_path / "mobilenet_v2_classifier.tflite"
    classifier.write_bytes(classifier_model())
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", classifier, "--labels", model_paths[1])
    assert done.returncode == 78
    assert "not a detection model pidetect can read" in done.stderr
    assert "MobilenetV2/Predictions/Softmax [1, 192]" in done.stderr  # what was found
    assert "boxes [1,N,4]" in done.stderr  # what was expected


def test_edgetpu_build_explains_the_delegate(model_paths):
    """No Edge TPU runtime here: an Edge TPU build (accelerator auto) has nothing to run on: 69, and why."""
    edgetpu = model_paths[0].parent / "mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite"
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", edgetpu, "--labels", model_paths[1],
                        env={"PIDETECT_EDGETPU_LIBRARY": "libedgetpu-not-here.so.1"})
    assert done.returncode == 69, done.stderr
    assert "compiled for the Edge TPU and there is none to run it" in done.stderr
    assert "libedgetpu-not-here.so.1 cannot be loaded" in done.stderr
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", edgetpu, "--accelerator", "cpu")
    assert done.returncode == 78 and "accelerator = cpu cannot run" in done.stderr


def test_labels_missing(tmp_path, model_paths):
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", model_paths[0], "--labels", tmp_path / "x.txt")
    assert done.returncode == 78
    assert f"labels file not found: {tmp_path / 'x.txt'}" in done.stderr


def test_labels_shorter_than_model_classes(tmp_path, model_paths):
    short = tmp_path / "labels.txt"
    short.write_text("person\nbicycle\ncar\n")
    done = run_pidetect("detect", PHOTOS / "chelsea.png", "--model", model_paths[0], "--labels", short)
    assert done.returncode == 78
    assert "has 3 entries" in done.stderr and "class ids up to 89" in done.stderr


def test_image_unreadable(tmp_path, model_paths):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    done = run_pidetect("detect", PHOTOS / "chelsea.png", not_image, tmp_path / "gone.png")
    assert done.returncode == 2
    assert f"cannot read image {not_image}: not an image pidetect can read" in done.stderr
    assert f"cannot read image {tmp_path / 'gone.png'}: no such file" in done.stderr
    assert "chelsea.png" in done.stdout  # the good image is still processed


def test_no_backend_installed(tmp_path, model_paths):
    """Shadow every backend with a package that fails to import, as on a machine without any."""
    for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('No module named {name!r}')\n")
    done = run_pidetect("detect", PHOTOS / "chelsea.png", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 69
    assert "pip install ai-edge-litert" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args,needle", [
    (["--threshold", "1.5"], "--threshold 1.5: must be between 0 and 1"),
    (["--threads", "0"], "--threads 0: must be 1 or more"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_usage_errors(args, needle):
    done = run_pidetect("detect", PHOTOS / "chelsea.png", *args)
    assert done.returncode == 2 and needle in done.stderr


def test_check_reports_each_part_and_fails_without_camera(tmp_path, model_paths):
    from pidetect.tools.demo import write_scene_video

    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=2, blank_frames=1)
    done = run_pidetect("check", "--source", clip)
    assert done.returncode == 0, done.stdout
    lines = {line[5:19].strip(): line[:4].strip() for line in done.stdout.splitlines() if len(line) > 20}
    assert lines["backend"] == "ok" and lines["model"] == "ok" and lines["camera"] == "ok"
    assert "delivers 320x240 frames" in done.stdout
    missing = run_pidetect("check", "--source", "/dev/video42", "--open-timeout", "1", "--read-timeout", "1")
    assert missing.returncode == 69 and "FAIL camera" in missing.stdout
    bad_model = run_pidetect("check", "--source", clip, "--model", tmp_path / "none.tflite")
    assert bad_model.returncode == 78 and "FAIL model" in bad_model.stdout and "model file not found" in bad_model.stdout


def test_tiles_find_small_objects_the_squeezed_photo_misses(tmp_path, model_paths):
    """A cat photo shrunk to a corner of a large grey photo: squeezed whole into 300x300 it is a few pixels;
    tiles at the model's scale see it as it is."""
    import cv2
    import numpy as np

    cat = cv2.imread(str(PHOTOS / "chelsea.png"))
    small = cv2.resize(cat, (cat.shape[1] // 2, cat.shape[0] // 2))
    canvas = np.full((1500, 2000, 3), 120, np.uint8)
    canvas[1100:1100 + small.shape[0], 1500:1500 + small.shape[1]] = small
    photo = tmp_path / "far.png"
    cv2.imwrite(str(photo), canvas)
    plain = json.loads(run_pidetect("detect", "--json", photo).stdout)
    done = run_pidetect("detect", "--json", "--tiles", photo)
    assert done.returncode == 0, done.stderr
    tiled = json.loads(done.stdout)
    assert "cat" not in [d["label"] for d in plain["detections"]]
    cats = [d for d in tiled["detections"] if d["label"] == "cat"]
    assert len(cats) == 1 and tiled["model_calls"] > 1
    x1, y1, x2, y2 = cats[0]["box"]  # in the big photo's pixels, around where the cat was pasted
    assert 1450 <= x1 <= 1560 and 1050 <= y1 <= 1160 and x2 <= 1500 + small.shape[1] + 40


def test_save_draws_the_boxes_of_folders_and_patterns_and_never_overwrites(model_paths, tmp_path):
    """Issue 34: `detect photo.jpg` could not draw the boxes (the tutorial and `yolo predict` both give the picture)."""
    import shutil

    import cv2
    import numpy as np

    from pidetect.outputs.overlay import class_colour

    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(PHOTOS / name, shots / name)
    (shots / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    out.mkdir()
    (out / "chelsea.png").write_bytes(b"the owner's own file")
    done = run_pidetect("detect", "--json", "--save", out, shots, str(PHOTOS / "rock*.jpg"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(shots / "chelsea.png"), str(shots / "coffee.png"),
                                                 str(PHOTOS / "rocket.jpg")]
    assert [line["saved"] for line in lines] == [str(out / "chelsea-2.png"), str(out / "coffee.png"),
                                                 str(out / "rocket.jpg")]
    assert (out / "chelsea.png").read_bytes() == b"the owner's own file"
    drawn = cv2.imread(str(out / "chelsea-2.png"))
    original = cv2.imread(str(PHOTOS / "chelsea.png"))
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = lines[0]["detections"][0]["box"]
    colour = np.array(class_colour(16), np.int16)  # the cat's box in the overlay's own colour
    edge = drawn[y1 + 40:y2 - 40, max(0, x1 - 1):x1 + 2].reshape(-1, 3).astype(np.int16)
    assert (np.abs(edge - colour).sum(axis=1) < 60).mean() > 0.8, "the box is drawn where the detection is"
    done = run_pidetect("detect", "--save", shots, shots)
    assert done.returncode == 2 and "the photos are read from there" in done.stderr
    done = run_pidetect("detect", str(tmp_path / "nothing-*.jpg"))
    assert done.returncode == 2 and "no file matches this pattern" in done.stderr and "Traceback" not in done.stderr
