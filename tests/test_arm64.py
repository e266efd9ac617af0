"""The Pi's own architecture: pidetect installed and run in a Debian 12 arm64 root under qemu-user.

Raspberry Pi OS Bookworm 64-bit is Debian 12 arm64. Its root is built once by debootstrap
(tests/arm64/make-root.sh, cached outside the clone in $PIDETECT_ARM64_CACHE, default
/var/cache/pidetect-tests) and every test runs on an overlay of it, so the cache stays as built:
- the project installs from its wheel with aarch64 wheels only (a dependency without one fails, named);
- `models fetch --from` derives the int8 default with the SHA-256 recorded in the manifest;
- `detect` and `run` give the x86 results, once as a Pi 4 (Cortex-A72, no dot product) and once as a
  Pi 5 (Cortex-A76, dot product): an ARM /proc/cpuinfo and QEMU_CPU pick XNNPACK's kernels as there;
- every optional extra the README offers on a Pi resolves to aarch64 wheels;
- the installer and the service under a real systemd PID 1 in the arm64 root (systemd-nspawn).
Emulated time says nothing about a Pi's speed: nothing here is timed against a target.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from nspawn_container import boot, media_with_clip, passed_checks
from pidetect.inference.model_paths import load_manifest
from pidetect.tools.demo import SCENES, load_photo, write_scene_video

ARM64 = REPO / "tests" / "arm64"
CACHE = Path(os.environ.get("PIDETECT_ARM64_CACHE", "/var/cache/pidetect-tests"))
ROOT = CACHE / "arm64-bookworm"
BOARDS = {"pi4": ("cortex-a72", ARM64 / "cpuinfo-pi4"), "pi5": ("cortex-a76", ARM64 / "cpuinfo-pi5")}
# Boxes: the SSD sees a 300x300 picture, so one input pixel is up to 640/300 = 2.1 frame pixels here;
# ARM and x86 kernels round int8 sums differently, which moves a box by at most an input pixel or so.
BOX_PIXELS = 4
# Scores: the kernels' different rounding moves an int8 class logit by at most one step of its scale
# (0.33 for the default model), which moves a score by at most scale/4 (the logistic's steepest slope):
# 0.083. Measured: 0.0195 at most, on both boards (5 steps of the scores' own 1/256 output scale).
SCORE_STEPS = 1


def missing_prerequisite() -> str:
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mounts)"
    for tool in ("qemu-aarch64-static", "debootstrap", "update-binfmts", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install qemu-user-static debootstrap binfmt-support"
    return ""


def run(args, timeout=1200, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def arm64_root():
    reason = missing_prerequisite()
    if reason:
        pytest.skip(f"arm64 under emulation: {reason}")
    cached = (ROOT / ".pidetect-arm64-root").exists()
    started = time.monotonic()
    done = run([ARM64 / "make-root.sh", ROOT], timeout=1800)
    if done.returncode == 3:  # a prerequisite this machine lacks (binfmt_misc, the tools)
        pytest.skip(f"arm64 under emulation: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    print(f"arm64 root: {'cached' if cached else 'built'} in {time.monotonic() - started:.0f} s at {ROOT}")
    return ROOT


class Arm64:
    """The project installed in an overlay of the arm64 root; commands run there as a Pi 4 or a Pi 5."""

    def __init__(self, root: Path, state: Path, media: Path):
        self.root, self.state, self.media = root, state, media

    def run(self, board, *command, timeout=900):
        cpu, cpuinfo = BOARDS[board]
        return run([ARM64 / "in-root.sh", self.root, self.state, cpuinfo, "--bind", f"{self.media}:/media",
                    "--", *command], timeout=timeout, env=dict(os.environ, QEMU_CPU=cpu))


@pytest.fixture(scope="module")
def pidetect_wheel(tmp_path_factory) -> Path:
    """pidetect as the wheel pip would install on a Pi (pure Python: built here, installed there)."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    done = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheel_dir, REPO], timeout=600)
    assert done.returncode == 0, done.stderr
    return next(wheel_dir.glob("pidetect-*.whl"))


@pytest.fixture(scope="module")
def arm64(arm64_root, pidetect_wheel, tmp_path_factory):
    media = tmp_path_factory.mktemp("arm64-media")
    (media / "wheels").mkdir()
    shutil.copy(pidetect_wheel, media / "wheels")
    wheel = pidetect_wheel.name
    manifest = load_manifest()
    (media / "models").mkdir()
    for entry in manifest.files:  # what a download gives; the int8 default is derived on the Pi itself
        shutil.copy(REPO / "models" / entry.name, media / "models" / entry.name)
    (media / "x86").mkdir()  # the int8 default as made on x86: both sides run the very same file
    shutil.copy(REPO / "models" / manifest.derived[0].name, media / "x86" / manifest.derived[0].name)
    env = Arm64(arm64_root, tmp_path_factory.mktemp("arm64-state"), media)
    started = time.monotonic()
    done = env.run("pi4", "sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                   "python3-venv >/dev/null && python3 -m venv /opt/venv")
    assert done.returncode == 0, done.stderr[-3000:]
    # aarch64 wheels only: a dependency that would have to be compiled on the Pi fails here, by name
    done = env.run("pi4", "/opt/venv/bin/pip", "install", "--quiet", "--only-binary=:all:", f"/media/wheels/{wheel}")
    if done.returncode != 0:
        names = re.findall(r"(?:No matching distribution found for|requirement) (\S+)", done.stderr)
        pytest.fail(f"pip install on arm64 failed; without an aarch64 wheel: {sorted(set(names)) or '?'}\n"
                    f"{done.stderr[-3000:]}")
    print(f"arm64: apt python3-venv + pip install of pidetect in {time.monotonic() - started:.0f} s (emulated)")
    return env


def test_the_derived_int8_default_has_the_recorded_sha256_on_arm64(arm64):
    manifest = load_manifest()
    done = arm64.run("pi4", "/opt/venv/bin/pidetect", "models", "fetch", "--from", "/media/models",
                     "--dest", "/opt/models")
    assert done.returncode == 0, done.stdout + done.stderr
    derived = manifest.derived[0]
    made = arm64.state / "upper" / "opt" / "models" / derived.name
    assert hashlib.sha256(made.read_bytes()).hexdigest() == derived.sha256
    assert made.read_bytes() == (REPO / "models" / derived.name).read_bytes()  # byte for byte the x86 one


def score_step(model: Path) -> float:
    """How far one int8 step of the class logits moves a score at most: scale / 4 (logistic' <= 1/4)."""
    from pidetect.inference.detector import Detector

    detector = Detector(model)
    details = detector.interpreter.get_tensor_details()
    logits = [d for d in details if d["dtype"].__name__ == "int8" and len(d["shape"]) == 3
              and int(d["shape"][-1]) == 91 and d["quantization"][0]]
    assert logits, "no int8 class-logit tensor [1, N, 91] in the model"
    return max(d["quantization"][0] for d in logits) / 4


@pytest.fixture(scope="module")
def photos(arm64):
    folder = arm64.media / "photos"
    folder.mkdir()
    import cv2

    names = [name for name, _label in SCENES] + ["coffee.png"]
    for name in dict.fromkeys(names):
        cv2.imwrite(str(folder / name), load_photo(name))
    return sorted(folder.iterdir())


def detections(stdout: str) -> dict:
    return {Path(line["image"]).name: line["detections"] for line in map(json.loads, stdout.splitlines())}


@pytest.mark.parametrize("board", ["pi4", "pi5"])
def test_detect_on_arm64_matches_x86(arm64, photos, board, model_paths):
    model = REPO / "models" / load_manifest().derived[0].name
    host = run([sys.executable, "-m", "pidetect", "detect", "--json", "--threshold", "0.3", "--model", model,
                "--labels", model_paths[1], *photos], cwd=REPO)
    assert host.returncode == 0, host.stderr
    done = arm64.run(board, "/opt/venv/bin/pidetect", "detect", "--json", "--threshold", "0.3", "--model",
                     f"/media/x86/{model.name}", "--labels", f"/media/models/{model_paths[1].name}",
                     *[f"/media/photos/{p.name}" for p in photos])
    assert done.returncode == 0, done.stderr[-3000:]
    step = score_step(model)
    x86, arm = detections(host.stdout), detections(done.stdout)
    assert set(x86) == set(arm) == {p.name for p in photos}
    worst_box = worst_score = 0.0
    for image in x86:
        # every detection clearly above 0.5 on one side is on the other: same label, box and score close
        for side, other in ((x86[image], arm[image]), (arm[image], x86[image])):
            for found in side:
                if found["score"] < 0.5 + SCORE_STEPS * step:
                    continue
                twins = [d for d in other if d["label"] == found["label"]]
                assert twins, (board, image, found, other)
                twin = min(twins, key=lambda d: max(abs(a - b) for a, b in zip(d["box"], found["box"])))
                worst_box = max(worst_box, max(abs(a - b) for a, b in zip(twin["box"], found["box"])))
                worst_score = max(worst_score, abs(twin["score"] - found["score"]))
    print(f"{board}: worst box difference {worst_box:.0f} px, worst score difference {worst_score:.4f} "
          f"({worst_score / step:.2f} logit steps of {step:.4f})")
    assert worst_box <= BOX_PIXELS
    assert worst_score <= SCORE_STEPS * step + 1e-4


@pytest.fixture(scope="module")
def short_clip(arm64):
    path = arm64.media / "clip.avi"
    write_scene_video(path, 320, 240, fps=10, frames_per_scene=8, blank_frames=6,
                      scenes=[("chelsea.png", "cat"), ("astronaut.png", "person"), ("coffee.png", "cup")])
    return path


def entered(stdout: str):
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [(r["label"], r["frame_seq"]) for r in records if r.get("event") == "detection" and r["state"] == "entered"]


@pytest.mark.parametrize("board", ["pi4", "pi5"])
def test_the_daemon_on_arm64_logs_the_x86_events(arm64, short_clip, board, model_paths):
    name = load_manifest().derived[0].name
    host = run([sys.executable, "-m", "pidetect", "run", "--source", short_clip, "--log-format", "json",
                "--model", REPO / "models" / name, "--labels", model_paths[1]], cwd=REPO)
    assert host.returncode == 0, host.stderr
    done = arm64.run(board, "/opt/venv/bin/pidetect", "run", "--source", "/media/clip.avi", "--log-format", "json",
                     "--model", f"/media/x86/{name}", "--labels", f"/media/models/{model_paths[1].name}")
    assert done.returncode == 0, done.stderr[-3000:]
    x86, arm = entered(host.stdout), entered(done.stdout)
    assert [label for label, _ in x86] == [label for label, _ in arm], (x86, arm)
    assert all(abs(a - b) <= 1 for (_, a), (_, b) in zip(x86, arm)), (x86, arm)  # the same frame, or the next
    assert {"cat", "person", "cup"} <= {label for label, _ in arm}


def aarch64_platforms():
    """Debian 12 has glibc 2.36: every manylinux tag up to it."""
    return [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64"]


@pytest.mark.parametrize("extras", ["eval,plot,quantize,demo,track,notify", "tflite"])
def test_every_extra_offered_on_a_pi_has_aarch64_wheels(arm64_root, pidetect_wheel, extras):
    # resolved for Debian 12 arm64 (CPython 3.11, glibc 2.36) without building anything; the journal extra
    # is apt's python3-systemd on a Pi (the installer's; tested in the service test below)
    wheels = CACHE / "wheels-aarch64"
    wheel = pidetect_wheel
    platforms = [arg for tag in aarch64_platforms() for arg in ("--platform", tag)]
    done = run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *platforms,
                "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                "--abi", "none", "-d", wheels, f"{wheel}[{extras}]"], timeout=1200)
    names = re.findall(r"No matching distribution found for (\S+)", done.stderr)
    assert done.returncode == 0, f"no aarch64 wheel for {names or '?'}: {done.stderr[-3000:]}"


def test_installer_and_service_on_arm64_under_systemd(arm64_root, tmp_path, model_paths):
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("needs systemd-nspawn (apt-get install systemd-container)")
    out, media = media_with_clip(tmp_path, 320, 240, fps=5, frames_per_scene=10, blank_frames=6)
    env = dict(os.environ, NSPAWN_ROOT=str(arm64_root), NSPAWN_TIMEOUT="1700", NSPAWN_SETENV="QEMU_CPU=cortex-a72")
    started = time.monotonic()
    done = boot("nspawn-arm64", out, [f"{media}:/media", f"{BOARDS['pi4'][1]}:/opt/cpuinfo"], env, timeout=1800)
    passed = passed_checks(out, done)
    expected = {"arch", "cpuinfo", "install", "python3-systemd", "venv-aarch64", "model-int8", "started", "notify",
                "journal-cat", "journal-person", "status-fps", "watchdog-armed", "watchdog-pinged", "no-restarts",
                "stop-clean", "stop-status", "stop-fast", "journal-stopped"}
    assert expected <= passed, expected - passed
    print(f"arm64 nspawn: {time.monotonic() - started:.0f} s in all, installer "
          f"{(out / 'install_seconds').read_text().strip()} s; {(out / 'ready_time').read_text().strip()}")
