"""`pidetect track-eval`: the daemon over a real street camera with MOTChallenge ground truth (PETS09-S2L1, in
../shared), its numbers checked against py-motmetrics' own reading of the same files, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from pidetect.errors import UsageError
from pidetect.models import mot

FRAMES = 120  # the first 12 s of the sequence: people walking, crossing, the parked vehicles


@pytest.fixture(scope="module")
def short_sequence(tmp_path_factory):
    """The first FRAMES frames (lossless) and their ground truth without the don't-care rows, so that
    py-motmetrics' own loader and comparison see exactly what track-eval scores."""
    video = shared_path("datasets", "pets09-s2l1", "pets09-s2l1-f001-400.avi")
    gt = shared_path("datasets", "pets09-s2l1", "gt.txt")
    folder = tmp_path_factory.mktemp("pets")
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    out = folder / "pets-short.mkv"
    writer = None
    for _ in range(FRAMES):
        ok, image = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), fps, image.shape[1::-1])
        writer.write(image)
    writer.release()
    capture.release()
    rows = [line for line in gt.read_text().splitlines()
            if int(line.split(",")[0]) <= FRAMES and float(line.split(",")[6]) != 0]
    short_gt = folder / "gt.txt"
    short_gt.write_text("\n".join(rows) + "\n")
    return out, short_gt


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "pidetect", "track-eval", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_track_eval_numbers_are_py_motmetrics_own(short_sequence, tmp_path):
    video, gt = short_sequence
    results = tmp_path / "results.txt"
    done = run_cli(video, "--gt", gt, "--save-mot", results, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["frames"] == FRAMES and report["identities"] > 3

    # py-motmetrics reads both files itself and compares them its own way
    mm = mot._motmetrics()
    truth = mm.io.loadtxt(str(gt), fmt="mot15-2D", min_confidence=1)
    hypotheses = mm.io.loadtxt(str(results), fmt="mot15-2D")
    accumulator = mm.utils.compare_to_groundtruth(truth, hypotheses, "iou", distth=0.5)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches",
                                                                "num_false_positives", "num_misses"], name="x")
    own = summary.loc["x"]
    assert report["mota"] == pytest.approx(float(own["mota"]), abs=1e-4)
    assert report["idf1"] == pytest.approx(float(own["idf1"]), abs=1e-4)
    assert report["id_switches"] == int(own["num_switches"])
    assert report["false_positives"] == int(own["num_false_positives"])
    assert report["misses"] == int(own["num_misses"])
    # the tracker holds its people: far fewer entries than the old tracker's 14 a person
    assert 0 < report["entered"] <= 2 * report["identities"], report
    assert report["mota"] > 0.2, report


def test_dont_care_boxes_are_dropped_with_the_predictions_on_them():
    truth = mot.MotFile()
    truth.scored[1].append((1, 0, 0, 10, 10))
    truth.ignored[1].append((2, 100, 100, 10, 10))
    kept = mot.drop_dont_care(truth, 1, [(5, 0, 0, 10, 10), (6, 101, 100, 10, 10), (7, 300, 300, 10, 10)])
    assert [row[0] for row in kept] == [5, 7]  # the one on the far, unlabelled person is neither right nor wrong
    score = mot.score(truth, {1: kept}, [1])
    assert (score.false_positives, score.misses) == (1, 0)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("1,2,3\n", r"gt.txt:1: 3 columns; MOTChallenge ground truth has at least 7"),
    ("1,1,10,10,20,40,1\nframe,id,left,top,w,h,conf\n", r"gt.txt:2: not numbers"),
    ("0,1,10,10,20,40,1\n", r"gt.txt:1: frame 0; MOTChallenge frames count from 1"),
    ("1,1,10,10,0,40,1\n", r"gt.txt:1: box 0.0x40.0"),
])
def test_ground_truth_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        mot.read_ground_truth(write(tmp_path / "gt.txt", text))


def test_cli_errors_are_one_line_without_a_traceback(tmp_path):
    video = tmp_path / "clip.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    beyond = write(tmp_path / "beyond.txt", "1,1,10,10,20,30,1\n9,1,10,10,20,30,1\n")
    done = run_cli(video, "--gt", beyond)
    assert done.returncode == 2
    assert "names frame 9, but" in done.stderr and "has 5 frames" in done.stderr
    assert "Traceback" not in done.stderr
    empty = write(tmp_path / "empty.txt", "\n")
    done = run_cli(video, "--gt", empty)
    assert done.returncode == 2 and "is empty" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(tmp_path / "missing.mp4", "--gt", beyond)
    assert done.returncode == 2 and "not found" in done.stderr
    done = run_cli(video, "--gt", beyond, "--every", "0")
    assert done.returncode == 2 and "--every 0: must be 1 or more" in done.stderr


@pytest.mark.parametrize("width, height, fps", [(1280, 720, 15), (640, 360, 6)])
def test_a_clip_of_real_photos_gives_one_event_per_object_at_other_sizes_and_rates(tmp_path, width, height, fps):
    """Two people crossing, one in front of the other, and a parked car: each one 'entered', whatever the size
    and the frame rate (the defaults are in seconds, not tuned to PETS)."""
    import crossing_scene

    coco = shared_path("datasets", "coco-train128", "images")
    video, gt = crossing_scene.build(tmp_path, coco, width, height, fps)
    done = run_cli(video, "--gt", gt, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["identities"] == 2 and report["entered"] == 2, report
    assert report["false_events"] == 0 and report["id_switches"] == 0, report
    assert report["other_entered"].get("car") == 1, report
    assert report["idf1"] > 0.7, report
