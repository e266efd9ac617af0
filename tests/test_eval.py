"""pidetect eval: dataset formats, agreement with pycocotools used directly, hand-worked values, errors."""

import io
import json
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, interruptible, run_pidetect, shared_path
from pidetect.models.class_match import match_classes
from pidetect.models.datasets import Dataset, GroundTruth, LabelledImage, load_dataset
from pidetect.models.evaluate import evaluate_model, score

COCO128 = ("datasets", "coco-train128")


@pytest.fixture(scope="module")
def coco_json():
    return shared_path(*COCO128, "annotations", "instances_train2017.json")


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory, coco_json):
    """The COCO JSON's non-crowd boxes written as COCO JSON, YOLO text files and Pascal VOC XML."""
    data = json.loads(coco_json.read_text())
    images_folder = coco_json.parent.parent / "images"
    root = tmp_path_factory.mktemp("formats")
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    index = {c["id"]: names.index(c["name"]) for c in data["categories"]}
    kept = [a for a in data["annotations"] if not a["iscrowd"]]
    # COCO
    coco = root / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "images").symlink_to(images_folder)
    (coco / "annotations" / "instances_val.json").write_text(json.dumps(dict(data, annotations=kept)))
    # YOLO
    yolo = root / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "images").symlink_to(images_folder)
    (yolo / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    # VOC, as LabelImg writes it: one XML beside each image
    voc = root / "voc"
    voc.mkdir()
    by_image = {}
    for a in kept:
        by_image.setdefault(a["image_id"], []).append(a)
    for image in data["images"]:
        boxes = by_image.get(image["id"], [])
        w, h = image["width"], image["height"]
        lines = [f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / w!r} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / h!r} {a['bbox'][2] / w!r} {a['bbox'][3] / h!r}" for a in boxes]
        (yolo / "labels" / (Path(image["file_name"]).stem + ".txt")).write_text("\n".join(lines))
        (voc / image["file_name"]).symlink_to(images_folder / image["file_name"])
        objects = "".join(
            f"<object><name>{names[index[a['category_id']]]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{a['bbox'][0] + 1!r}</xmin><ymin>{a['bbox'][1] + 1!r}</ymin>"
            f"<xmax>{a['bbox'][0] + a['bbox'][2]!r}</xmax><ymax>{a['bbox'][1] + a['bbox'][3]!r}</ymax></bndbox></object>"
            for a in boxes)
        (voc / (Path(image["file_name"]).stem + ".xml")).write_text(
            f"<annotation><filename>{image['file_name']}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    return {"COCO JSON": coco, "YOLO": yolo, "Pascal VOC": voc}


def test_the_three_formats_give_the_same_map(three_formats, model_paths):
    results = {}
    for kind, folder in three_formats.items():
        dataset = load_dataset(folder)
        assert dataset.format == kind and len(dataset.images) == 128
        results[kind] = evaluate_model(dataset, model_paths[0], None, 0.5)
    maps = {kind: (r.map, r.map50, r.recall) for kind, r in results.items()}
    reference = maps["COCO JSON"]
    for kind, values in maps.items():
        assert all(abs(a - b) < 1e-3 for a, b in zip(values, reference)), (kind, values, reference)
    assert 0.2 < reference[0] < 0.4
    # Precision differs by design where the class lists differ: COCO JSON and data.yaml list all 80
    # classes, so a detection of a class no image holds is a false positive; VOC XML only names the
    # classes that occur, and detections of the others are left out (with the class, from the mean too).
    assert abs(results["YOLO"].precision - results["COCO JSON"].precision) < 1e-3
    assert abs(results["Pascal VOC"].precision - results["COCO JSON"].precision) < 0.01


def test_shipped_labels_differ_only_by_crowd_boxes_and_two_label_files(coco_json, model_paths):
    """COCO JSON (with 10 crowd boxes, which COCOeval ignores) against the shipped YOLO labels (no crowd
    flag; two label files whose images are not in the set, skipped): close, and not equal for those reasons."""
    coco = load_dataset(coco_json)
    with pytest.raises(Exception) as refused:
        load_dataset(coco_json.parent.parent / "data.yaml")
    assert "2 label files without an image" in str(refused.value) and "--skip-missing" in str(refused.value)
    yolo = load_dataset(coco_json.parent.parent / "data.yaml", skip_missing=True)
    assert sum(b.crowd for i in coco.images for b in i.boxes) == 10 and len(yolo.missing) == 2
    a = evaluate_model(coco, model_paths[0], None, 0.5)
    b = evaluate_model(yolo, model_paths[0], None, 0.5)
    assert abs(a.map - b.map) < 0.01


def test_eval_agrees_with_pycocotools_used_directly(coco_json, model_paths):
    """The same detections, given straight to the library against the original JSON, score the same."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from pidetect.inference.detector import Detector, DetectorOptions
    from pidetect.models.evaluate import EVAL_MAX_DETECTIONS, EVAL_NMS_IOU, EVAL_SCORE_FLOOR, detect_dataset

    dataset = load_dataset(coco_json).limited(48)
    detector = Detector(model_paths[0], None, DetectorOptions(threshold=EVAL_SCORE_FLOOR,
                                                              max_results=EVAL_MAX_DETECTIONS, nms_iou=EVAL_NMS_IOU))
    match = match_classes(dataset.class_names, detector.labels.values())
    records, _, _ = detect_dataset(dataset, detector, match)
    ours = score(dataset, records, match, 0.5)
    data = json.loads(coco_json.read_text())
    by_name = {c["name"]: c["id"] for c in data["categories"]}
    by_file = {i["file_name"]: i["id"] for i in data["images"]}
    direct = [dict(r, category_id=by_name[dataset.class_names[r["category_id"] - 1]],
                   image_id=by_file[dataset.images[r["image_id"] - 1].path.name]) for r in records]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(coco_json))
        evaluation = COCOeval(truth, truth.loadRes(direct), "bbox")
        evaluation.params.imgIds = [by_file[i.path.name] for i in dataset.images]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert ours["map"] == pytest.approx(evaluation.stats[0], abs=1e-9)
    assert ours["map50"] == pytest.approx(evaluation.stats[1], abs=1e-9)


def hand_dataset():
    images = (LabelledImage(Path("a.jpg"), 100, 100, (GroundTruth("cat", (10, 10, 50, 50)),)),
              LabelledImage(Path("b.jpg"), 100, 100, (GroundTruth("cat", (20, 20, 60, 60)),)))
    return Dataset("COCO JSON", Path("hand"), ("cat", "dog"), images)


def test_precision_recall_and_ap_worked_out_by_hand():
    """Image a: a cat found at 0.9 (exact) and a false box at 0.8; image b: its cat found at 0.6 (exact).

    At threshold 0.7: 2 boxes, 1 right -> precision 1/2; 1 of 2 cats -> recall 1/2.
    AP (101-point interpolated): precision 1 up to recall 0.5 (51 points), then 2/3 up to recall 1
    (50 points): (51 + 50 * 2/3) / 101 = 0.83498; boxes are exact, so every IoU threshold agrees.
    """
    dataset = hand_dataset()
    match = match_classes(dataset.class_names, ["cat", "dog"])
    records = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [70, 70, 20, 20], "score": 0.8},
               {"image_id": 2, "category_id": 1, "bbox": [20, 20, 40, 40], "score": 0.6}]
    result = score(dataset, records, match, 0.7)
    assert result["precision"] == pytest.approx(0.5) and result["recall"] == pytest.approx(0.5)
    expected_ap = (51 + 50 * 2 / 3) / 101
    assert result["map"] == pytest.approx(expected_ap, abs=1e-6)
    assert result["map50"] == pytest.approx(expected_ap, abs=1e-6)
    assert result["per_class"]["cat"] == pytest.approx(expected_ap, abs=1e-6)
    assert "dog" not in result["per_class"] or np.isnan(result["per_class"]["dog"])
    low = score(dataset, records, match, 0.5)
    assert low["precision"] == pytest.approx(2 / 3) and low["recall"] == pytest.approx(1.0)


def test_class_names_meet_through_aliases_and_by_hand():
    match = match_classes(["tvmonitor", "Motorbike", "traffic_light", "unicorn", "person"],
                          ["person", "tv", "motorcycle", "traffic light", "horse"], {"unicorn": "horse"})
    assert match.model_to_dataset == {"tv": "tvmonitor", "motorcycle": "Motorbike", "traffic light": "traffic_light",
                                      "horse": "unicorn", "person": "person"}
    match = match_classes(["unicorn", "person"], ["person"])
    assert match.left_out == ("unicorn",)


# --- the command, as a user runs it ---------------------------------------------------------------
def test_eval_cli_json_and_plot(tmp_path, coco_json, model_paths):
    plot = tmp_path / "eval.png"
    yolo = shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite")
    done = run_pidetect("eval", coco_json.parent.parent, "--model", model_paths[0], "--model", yolo, "--limit", 16,
                        "--json", "--plot", plot, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    keys = {"model", "map", "map50", "precision", "recall", "threshold", "images", "latency_ms_p50",
            "latency_ms_p95", "size_bytes", "format", "per_class"}
    assert len(rows) == 2 and all(keys <= set(r) for r in rows)
    assert [r["format"] for r in rows] == ["int8 per-channel", "int8 per-tensor"]  # the default, YOLO
    assert all(r["images"] == 16 and r["size_bytes"] > 1e6 and 0 < r["map"] < 1 for r in rows)
    assert "COCO JSON dataset" in done.stderr and "16 images" in done.stderr
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[1] > 1000
    table = run_pidetect("eval", coco_json, "--limit", 8, timeout=300)  # no --model: the int8 default
    assert table.returncode == 0 and "mAP50-95" in table.stdout and "int8 per-channel" in table.stdout


def test_yolo_models_score_as_the_reference_decode(coco_json):
    """Acceptance of the YOLO family: reference decode 0.454 (_int8) and 0.369 (_full_integer_quant)
    against the YOLO-format labels; a wrong letterbox or box mapping loses far more than the margin."""
    labels = load_dataset(coco_json.parent.parent / "data.yaml", skip_missing=True)
    for name, floor in (("yolov8n_int8.tflite", 0.44), ("yolov8n_full_integer_quant.tflite", 0.36)):
        report = evaluate_model(labels, shared_path("models", "yolov8n", name), None, 0.5)
        assert report.map >= floor, (name, report.map)


def test_plot_without_matplotlib_names_the_extra(tmp_path, coco_json):
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    done = run_pidetect("eval", coco_json, "--limit", 2, "--plot", tmp_path / "x.png",
                        env={"PYTHONPATH": f"{blocker.parent}:{REPO}"}, timeout=300)
    assert done.returncode == 69 and 'pip install "pidetect[plot]"' in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", ["empty", "labels without images", "missing image", "four fields",
                                  "class out of range", "no shared name", "not a dataset"])
def test_bad_datasets_get_one_clear_line_and_exit_2(tmp_path, case, coco_json, model_paths):
    folder = tmp_path / "set"
    folder.mkdir()
    args = []
    expect = ""
    photo = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    if case == "empty":
        expect = "found no labels"
    elif case == "labels without images":
        (folder / "labels").mkdir()
        (folder / "images").mkdir()
        (folder / "classes.txt").write_text("cat\n")
        (folder / "labels" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        expect = "no images"
    elif case == "missing image":
        data = json.loads(coco_json.read_text())
        data["images"] = data["images"][:3]
        (folder / "images").mkdir()
        for image in data["images"][:2]:
            (folder / "images" / image["file_name"]).symlink_to(coco_json.parent.parent / "images" / image["file_name"])
        (folder / "instances_val.json").write_text(json.dumps(data))
        expect = data["images"][2]["file_name"]
        skipped = run_pidetect("eval", folder, "--skip-missing", timeout=300)
        assert skipped.returncode == 0 and "1 listed image(s) missing and skipped" in skipped.stderr, skipped.stderr
    elif case in ("four fields", "class out of range"):
        (folder / "images").mkdir()
        (folder / "labels").mkdir()
        (folder / "images" / "a.jpg").write_bytes(photo)
        (folder / "classes.txt").write_text("cat\ndog\n")
        line = "0 0.5 0.5 0.2" if case == "four fields" else "7 0.5 0.5 0.2 0.2"
        (folder / "labels" / "a.txt").write_text("1 0.5 0.5 0.1 0.1\n" + line + "\n")
        expect = "a.txt:2: " + ("expected 'class cx cy w h' (5 fields), found 4" if case == "four fields"
                                else "class id 7 is out of range")
    elif case == "no shared name":
        (folder / "images").mkdir()
        (folder / "labels").mkdir()
        (folder / "images" / "a.jpg").write_bytes(photo)
        (folder / "classes.txt").write_text("widget\ngizmo\n")
        (folder / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        expect = "share no name"
    else:
        (folder / "notes.txt").write_text("hello")
        expect = "found no labels"
    done = run_pidetect("eval", folder, *args, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("pidetect: error")]
    assert len(lines) == 1 and expect in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_eval_cleanly(coco_json):
    slow = str(shared_path("models", "yolov8n", "yolov8n_int8.tflite"))  # about 5 s a pass here
    proc = subprocess.Popen([sys.executable, "-m", "pidetect", "eval", str(coco_json), "--model", slow, "--model", slow,
                             "--model", slow], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    first = proc.stderr.readline()  # the dataset's summary: eval is under way (a sleep failed on a loaded machine)
    assert "images" in first, first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-1000:]
    assert _out == ""  # stopped before any table: nothing half-printed


def test_eval_adds_nothing_to_the_daemons_imports():
    code = ("import sys, pidetect.cli, pidetect.daemon.service, pidetect.daemon.wiring; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pycocotools', 'yaml', 'matplotlib') "
            "or m.startswith('pidetect.models') or m.startswith('pidetect.tools')]; print(bad); assert not bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
