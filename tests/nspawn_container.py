"""Helpers of the tests that boot a throw-away container with systemd as PID 1 (tests/tools/nspawn-boot.sh)."""

import subprocess
from pathlib import Path

from conftest import REPO
from pidetect.tools.demo import write_scene_video

TOOLS = REPO / "tests" / "tools"


def media_with_clip(tmp_path: Path, width: int, height: int, fps: int, frames_per_scene: int, blank_frames: int):
    """(out, media): the folder the container writes to, and one it reads, holding a cat-then-person clip
    readable by the service's own user."""
    out = tmp_path / "out"
    out.mkdir()
    media = tmp_path / "media"
    media.mkdir()
    write_scene_video(media / "clip.avi", width, height, fps=fps, frames_per_scene=frames_per_scene,
                      blank_frames=blank_frames, scenes=[("chelsea.png", "cat"), ("astronaut.png", "person")])
    media.chmod(0o755)
    (media / "clip.avi").chmod(0o644)
    return out, media


def boot(units: str, out: Path, binds, env, timeout: int):
    """Boot the container on the units folder `tests/<units>`, REPO at /src; returns the finished process."""
    args = [str(TOOLS / "nspawn-boot.sh"), str(REPO / "tests" / units), str(out), "--bind-ro", f"{REPO}:/src"]
    for bind in binds:
        args += ["--bind-ro", bind]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


def passed_checks(out: Path, done) -> set:
    """The names of the checks that passed; fails the test (with the log's tail) when any failed."""
    results = (out / "results").read_text() if (out / "results").exists() else ""
    log_tail = (out / "log").read_text()[-6000:] if (out / "log").exists() else done.stdout[-3000:] + done.stderr
    failed = [line for line in results.splitlines() if line.startswith("FAIL")]
    assert results and not failed and done.returncode == 0, f"{failed}\n--- results\n{results}\n--- log\n{log_tail}"
    return {line.split()[1] for line in results.splitlines() if line.startswith("PASS")}
