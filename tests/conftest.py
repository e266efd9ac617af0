"""Shared test helpers.

Tests that need a tool this machine may lack (journald, nspawn, chromium, ffmpeg) skip with a reason
on a developer machine; CI sets PIDETECT_REQUIRE_ALL=1 so that any skip there is a failure.
"""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pidetect.inference.model_paths import default_model_dir, load_manifest

REPO = Path(__file__).resolve().parent.parent




@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("PIDETECT_REQUIRE_ALL") == "1" and call.excinfo is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped, but PIDETECT_REQUIRE_ALL=1 forbids skips: {call.excinfo.value}"


@pytest.fixture(scope="session")
def model_paths():
    manifest = load_manifest()
    folder = default_model_dir()
    model, labels = folder / manifest.default_model, folder / manifest.default_labels
    if not model.is_file() or not labels.is_file():
        pytest.fail(f"default model not in {folder}: run 'make models' (pidetect models fetch) first")
    return model, labels


@pytest.fixture(scope="session")
def detector(model_paths):
    from pidetect.inference.detector import Detector, DetectorOptions

    return Detector(*model_paths, DetectorOptions(threshold=0.5))


def run_pidetect(*args, env=None, timeout=120, **kwargs):
    """Run the real CLI in a child process, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "pidetect", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=kwargs.pop("cwd", REPO), **kwargs)


SHARED = REPO.parent / "shared"


def shared_path(*parts):
    """A file of ../shared (models and datasets kept beside the project, never in it), or a skip that says so.

    CI has ../shared and sets PIDETECT_REQUIRE_ALL=1, so there the skip is a failure."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not here: the test models and datasets live in ../shared beside the project "
                    "(the team's checkout and CI), not in a user's clone")
    return path


@contextlib.contextmanager
def small_tmpfs(folder, size):
    """A tmpfs of `size` (e.g. "512k") mounted on `folder` for the test: a card that fills up (needs root)."""
    folder.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def interruptible():
    """preexec_fn for a child the test will Ctrl-C: SIGINT back to its default. A shell starting a job in the
    background (`… &`) leaves SIGINT ignored in it and in everything it starts, and Python keeps an ignored SIGINT
    ignored, so the child would never see the Ctrl-C (the test then failed as if the command ignored it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
