"""`quantize --max-drop`: the accuracy-budget search, on a synthetic model with one known sensitive layer and on
the real YOLOv8n float rebuild (../shared), with the real quantizer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tflite_builder
from conftest import REPO, interruptible, run_pidetect, shared_path
from pidetect.models.budget import BudgetSearch, Score, detection_head, downstream, model_ops, sensitivity

pytest.importorskip("litert_quantizer", reason="pip install \"pidetect[quantize]\" (litert-quantizer)")


def run_dense(path, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for value in inputs:
        if given["dtype"] != np.float32:
            scale, zero = given["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(given["dtype"])
        interpreter.set_tensor(given["index"], value)
        interpreter.invoke()
        result = interpreter.get_tensor(taken["index"]).astype(np.float32)
        if taken["dtype"] != np.float32:
            scale, zero = taken["quantization"]
            result = (result - zero) * scale
        outputs.append(result)
    return np.concatenate(outputs)


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory):
    """The synthetic model, its calibration samples, and a measure: 1 - the output's error relative to its
    variation, on inputs never used to calibrate."""
    from pidetect.models.quantize import with_signature

    data, signature, input_name = with_signature(tflite_builder.one_sensitive_layer_model())
    rng = np.random.default_rng(1)
    calibration = [{input_name: rng.uniform(-1, 1, (1, 32)).astype(np.float32)} for _ in range(256)]
    test_inputs = [rng.uniform(-1, 1, (1, 32)).astype(np.float32) for _ in range(256)]
    folder = tmp_path_factory.mktemp("sensitive")
    (folder / "float.tflite").write_bytes(data)
    reference = run_dense(folder / "float.tflite", test_inputs)
    measured = []

    def measure(path):
        output = run_dense(path, test_inputs)
        measured.append(path)
        return Score(1 - float(np.linalg.norm(output - reference) / np.linalg.norm(reference - reference.mean(0))),
                     1.0)

    return data, signature, calibration, measure, measured


def test_the_search_keeps_exactly_the_sensitive_layer_float(sensitive):
    data, signature, calibration, measure, _measured = sensitive
    said = []
    search = BudgetSearch(data, signature, calibration, measure, max_drop=0.05, say=said.append)
    try:
        result = search.run()
    finally:
        search.close()
    assert result.trials[0].name == "all int8" and result.trials[0].drop(result.reference) > 0.5  # ruined
    assert result.within_budget
    assert [result.ops[i].outputs for i in result.best.float_ops] == [("dense_middle",)]
    assert result.best.drop(result.reference) <= 0.05
    # the ranking found it first: its block (itself and what follows) was the first candidate
    assert set(result.trials[1].float_ops) == {1, 2}
    assert any("dense_middle" in line for line in said if "add most noise" in line)
    assert not search.folder.exists()  # the candidates' files went with the search


def test_a_budget_of_0_gives_the_float_equivalent_or_says_it_cannot(sensitive):
    data, signature, calibration, measure, _measured = sensitive
    search = BudgetSearch(data, signature, calibration, measure, max_drop=0.0, say=lambda text: None)
    try:
        result = search.run()
    finally:
        search.close()
    if result.within_budget:
        assert result.best.drop(result.reference) <= 0
    else:
        assert result.best is not None and result.best.drop(result.reference) > 0
    # with one trial only: all int8, which misses; the best found is kept and the search says it stopped
    search = BudgetSearch(data, signature, calibration, measure, max_drop=0.0, max_trials=1, say=lambda text: None)
    try:
        result = search.run()
    finally:
        search.close()
    assert not result.within_budget and len(result.trials) == 1 and "--max-trials" in result.stopped


def test_blocks_and_the_detection_head_of_the_real_models():
    from pidetect.models.quantize import with_signature

    yolo = model_ops(with_signature(shared_path("models", "float", "yolov8n_float.tflite").read_bytes())[0])
    head = detection_head(yolo)
    kinds = {yolo[i].kind for i in head}
    assert {"SOFTMAX", "CONV_2D", "SUB", "ADD", "LOGISTIC"} <= kinds and len(head) < 30  # DFL and box decode
    assert yolo[-1].index in head  # reaches the output
    block = downstream(yolo, head[0])
    assert yolo[-1].index in block and set(block) <= set(range(head[0], len(yolo)))
    ssd = model_ops(with_signature(shared_path("models", "float", "ssd_mobilenet_v2_coco_float.tflite")
                                   .read_bytes())[0])
    assert {ssd[i].kind for i in detection_head(ssd)} == {"LOGISTIC", "TFLite_Detection_PostProcess"}
    # a noise share: an op that adds noise costs, one that passes it on does not
    ops = model_ops(tflite_builder.one_sensitive_layer_model())
    cost = sensitivity(ops, {"input": 1e4, "dense_first": 1e3, "dense_middle": 2.0, "dense_last": 2.0})
    assert max(cost, key=cost.get) == 1 and cost[2] == 0


# --- the command on the real YOLOv8n, small sets so that it runs in a test ----------------------------------------
@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    """8 calibration photos and, apart from them, 16 labelled COCO images to measure on."""
    from pidetect.models.datasets import load_dataset

    images = shared_path("datasets", "coco-train128", "images")
    folder = tmp_path_factory.mktemp("calibration")
    names = sorted(p.name for p in images.iterdir())
    for name in names[:8]:
        shutil.copy(images / name, folder / name)
    dataset = load_dataset(shared_path("datasets", "coco-train128"))
    assert not {Path(image.path).name for image in dataset.images[64:80]} & set(names[:8])
    labels = tmp_path_factory.mktemp("labels") / "coco80.txt"
    from pidetect.inference.detector import Detector, DetectorOptions

    names80 = Detector(shared_path("models", "yolov8n", "yolov8n_int8.tflite"), None, DetectorOptions()).labels
    labels.write_text("".join(names80[i] + "\n" for i in sorted(names80)))
    return folder, labels


def budget_command(tmp_path, small_sets, *extra):
    folder, labels = small_sets
    return [sys.executable, "-m", "pidetect", "quantize", str(shared_path("models", "float", "yolov8n_float.tflite")),
            "-o", str(tmp_path / "out" / "budget.tflite"), "--labels", str(labels), "--calibration", str(folder),
            "--eval", str(shared_path("datasets", "coco-train128")), "--eval-skip", "64", "--eval-limit", "16",
            *map(str, extra)]


def test_the_budget_is_checked_on_the_eval_images_and_missed_honestly(tmp_path, small_sets):
    (tmp_path / "out").mkdir()
    done = subprocess.run(budget_command(tmp_path, small_sets, "--max-drop", "0", "--max-trials", "1", "--json"),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "no candidate within 0 mAP" in done.stderr and "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["eval_images"] == 16 and report["calibration_images"] == 8 and report["trials"] == 1
    assert not report["within_budget"] and (tmp_path / "out" / "budget.tflite").is_file()  # the best is kept
    rows = {row["scheme"]: row for row in report["schemes"]}
    assert {"float32", "float16 weights", "dynamic-range int8", "int8 per-tensor", "int8 per-channel"} <= set(rows)
    # the float model's mAP in the report is pidetect eval's on exactly the 16 eval images, not the calibration ones
    folder, labels = small_sets
    done = run_pidetect("eval", shared_path("datasets", "coco-train128"), "--model",
                        shared_path("models", "float", "yolov8n_float.tflite"), "--labels", labels, "--skip", "64",
                        "--limit", "16", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["map"] == pytest.approx(rows["float32"]["map"], abs=1e-4)


def test_bad_budget_arguments_are_one_clear_error(tmp_path, small_sets):
    (tmp_path / "out").mkdir()
    for extra, text in ((["--max-drop", "0.01", "--eval-limit", "-1"], "--eval-limit -1"),
                        (["--max-drop", "2"], "--max-drop 2.0"), (["--max-drop", "0.01", "--max-trials", "0"],
                                                                   "--max-trials 0"),
                        (["--max-drop", "0.01", "--plot", tmp_path / "x.txt"], "give a .png")):
        done = subprocess.run(budget_command(tmp_path, small_sets, *extra), capture_output=True, text=True,
                              timeout=120, cwd=REPO)
        assert done.returncode == 2 and text in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
    eval_at = budget_command(tmp_path, small_sets).index("--eval")
    done = subprocess.run(budget_command(tmp_path, small_sets)[:eval_at] + ["--max-drop", "0.01"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "--max-drop needs --eval DATASET" in done.stderr
    done = run_pidetect("quantize", shared_path("models", "yolov8n", "yolov8n_full_integer_quant.tflite"), "-o",
                        tmp_path / "out" / "x.tflite", "--calibration", small_sets[0], "--eval",
                        shared_path("datasets", "coco-train128"), "--max-drop", "0.01")
    assert done.returncode == 2 and "searches which ops of a float model" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_mid_search_leaves_nothing(tmp_path, small_sets):
    (tmp_path / "out").mkdir()
    before = set(Path("/tmp").glob("pidetect-budget-*"))
    proc = subprocess.Popen(budget_command(tmp_path, small_sets, "--max-drop", "0.001"), cwd=REPO,
                            preexec_fn=interruptible,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the search is under way: the first candidate measured
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("trial 1/"):
            break
    assert any(line.startswith("trial 1/") for line in lines), "".join(lines)[-2000:]
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert list((tmp_path / "out").iterdir()) == []
    assert set(Path("/tmp").glob("pidetect-budget-*")) <= before  # no candidate left behind
