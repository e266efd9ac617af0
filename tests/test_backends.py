"""The fallback backends: tflite-runtime 2.14 (numpy<2, its own venv made by `make test`) and a
backend asked for by name that is not installed."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_pidetect
from pidetect.tools.demo import skimage_data_dir

TFLITE_PYTHON = os.environ.get("PIDETECT_TFLITE_PYTHON", "")


@pytest.mark.skipif(not (TFLITE_PYTHON and Path(TFLITE_PYTHON).exists()),
                    reason="no tflite-runtime venv (make test builds .venv-tflite; PIDETECT_TFLITE_PYTHON)")
def test_tflite_runtime_backend_finds_the_same_cat(model_paths):
    photo = skimage_data_dir() / "chelsea.png"
    done = subprocess.run([TFLITE_PYTHON, "-m", "pidetect", "detect", "--backend", "tflite_runtime", "--json",
                           "--model", str(model_paths[0]), "--labels", str(model_paths[1]), str(photo)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    fallback = json.loads(done.stdout)["detections"]
    reference = json.loads(run_pidetect("detect", "--json", photo).stdout)["detections"]
    assert fallback[0]["label"] == reference[0]["label"] == "cat"
    assert abs(fallback[0]["score"] - reference[0]["score"]) < 0.02
    assert all(abs(a - b) <= 3 for a, b in zip(fallback[0]["box"], reference[0]["box"]))
    version = subprocess.run([TFLITE_PYTHON, "-c", "import numpy, tflite_runtime; print(numpy.__version__, "
                              "tflite_runtime.__version__)"], capture_output=True, text=True, cwd=REPO).stdout
    assert version.startswith("1.") and version.split()[1].startswith("2.14")


def test_named_backend_not_installed_is_unavailable(model_paths):
    done = run_pidetect("detect", "--backend", "tensorflow.lite", skimage_data_dir() / "chelsea.png")
    assert done.returncode == 69
    assert "backend tensorflow.lite is not installed" in done.stderr
    assert "installed: ai_edge_litert (use --backend auto" in done.stderr  # not "no backend installed"
