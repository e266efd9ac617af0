"""The Coral Edge TPU path, against LiteRT itself, with a stand-in for libedgetpu.so.1 (no Coral here).

tests/edgetpu_standin.c is built with cc: a real external delegate LiteRT loads through load_delegate. It
records the options it was given, matches the device names libedgetpu knows, returns NULL when no
"device" matches, claims the Edge TPU's custom op (so an Edge TPU build loads and runs, its accelerated
part computing nothing) and leaves every other op to the CPU (so a CPU model through it gives exactly
the CPU's detections). It can be unplugged (a devices file) or hung mid-run.
"""

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_pidetect
from daemon import Daemon, of, run_daemon
from test_notify_journal import NotifySocket
from pidetect.capture.image_files import read_image
from pidetect.inference.accelerator import AcceleratorSettings, open_detector
from pidetect.inference.backends import resolve_backend
from pidetect.inference.detector import Detector, DetectorOptions
from pidetect.inference.edgetpu import EdgeTpuMismatch, explain_load_failure, load_delegate
from pidetect.tools.bench_model import accelerator_ceiling
from pidetect.tools.demo import skimage_data_dir, write_scene_video

SOURCE = Path(__file__).parent / "edgetpu_standin.c"
PHOTOS = ("chelsea.png", "astronaut.png", "coffee.png", "motorcycle_left.png")
EDGETPU_DEFAULT = "mobilenet_ssd_v2_coco_quant_postprocess_edgetpu.tflite"


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in delegate: apt-get install gcc")
    library = tmp_path_factory.mktemp("standin") / "libedgetpu.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(library), str(SOURCE)],
                   check=True)
    return library


@pytest.fixture
def tpu(standin, tmp_path, monkeypatch):
    """The stand-in as this process's and its children's libedgetpu, one USB device plugged in; its log."""
    log = tmp_path / "standin.log"
    devices = tmp_path / "devices"
    devices.write_text("usb:0")
    env = {"PIDETECT_EDGETPU_LIBRARY": str(standin), "PIDETECT_STANDIN_LOG": str(log),
           "PIDETECT_STANDIN_DEVICES_FILE": str(devices)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    class Tpu:
        def lines(self):
            return log.read_text().splitlines() if log.exists() else []

        def plug(self, what):
            devices.write_text(what)

    tpu = Tpu()
    tpu.env, tpu.devices = env, devices
    return tpu


def no_traceback(done):
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def photo(name):
    return read_image(skimage_data_dir() / name)


# --- loading: what each failure says, with its own exit code --------------------------------------
def test_library_missing_is_72_on_every_command(model_paths, tmp_path):
    env = {"PIDETECT_EDGETPU_LIBRARY": str(tmp_path / "libedgetpu.so.1")}
    image = skimage_data_dir() / "chelsea.png"
    for command in (("detect", image), ("check", "--source", image), ("run", "--source", image)):
        done = run_pidetect(*command, "--accelerator", "edgetpu", env=env)
        assert done.returncode == 72, (command, done.stderr)
        text = done.stderr + done.stdout
        assert f"the Edge TPU runtime {tmp_path / 'libedgetpu.so.1'} cannot be loaded" in text
        assert "install.sh --coral" in text and "accelerator = cpu" in text
        no_traceback(done)
    check = run_pidetect("check", "--source", image, "--accelerator", "edgetpu", env=env)
    assert "FAIL accelerator" in check.stdout


def test_no_device_is_69_and_names_the_device(tpu, model_paths):
    image = skimage_data_dir() / "chelsea.png"
    tpu.plug("")
    done = run_pidetect("detect", image, "--accelerator", "edgetpu")
    assert done.returncode == 69, done.stderr
    assert "no Edge TPU answers on USB or PCIe" in done.stderr and "lsusb" in done.stderr
    no_traceback(done)
    tpu.plug("usb:0")
    done = run_pidetect("detect", image, "--accelerator", "edgetpu", "--edgetpu-device", "pci")
    assert done.returncode == 69 and "no Edge TPU answers as 'pci'" in done.stderr
    assert "leave edgetpu_device empty" in done.stderr
    assert "create device=pci" in tpu.lines()


def test_model_and_accelerator_that_do_not_go_together_are_78(tpu, model_paths):
    image = skimage_data_dir() / "chelsea.png"
    done = run_pidetect("detect", image, "--accelerator", "edgetpu", "--model", model_paths[0])
    assert done.returncode == 78
    assert "is not compiled for the Edge TPU" in done.stderr and "it would run 0 ops" in done.stderr
    edgetpu = model_paths[0].parent / EDGETPU_DEFAULT
    done = run_pidetect("detect", image, "--accelerator", "cpu", "--model", edgetpu)
    assert done.returncode == 78 and "accelerator = cpu cannot run" in done.stderr
    assert not [line for line in tpu.lines() if line.startswith("create")], "nothing to load on a refused pair"


def test_edgetpu_model_without_an_edgetpu_is_69(tpu, model_paths):
    tpu.plug("")
    done = run_pidetect("detect", skimage_data_dir() / "chelsea.png",
                        "--model", model_paths[0].parent / EDGETPU_DEFAULT)  # accelerator auto
    assert done.returncode == 69
    assert "compiled for the Edge TPU and there is none to run it" in done.stderr


def test_bad_device_name_is_a_usage_error(model_paths):
    done = run_pidetect("detect", skimage_data_dir() / "chelsea.png", "--edgetpu-device", "usb0")
    assert done.returncode == 2 and "--edgetpu-device 'usb0': must be empty" in done.stderr
    done = run_pidetect("check", "--edgetpu-device", "usb0")
    assert done.returncode == 2 and "usb:N" in done.stderr
    done = run_pidetect("run", "--accelerator", "edgetpu", "--interpreters", "2")
    assert done.returncode == 2 and "must be 1 with accelerator = edgetpu" in done.stderr


def test_a_libedgetpu_built_for_another_tflite_is_told_apart():
    """The messages real mismatched builds print (google-coral/edgetpu#44, #126, libedgetpu#53)."""
    for message in ("Internal: Unsupported data type in custom op handler: -1342003056 Node number 1 "
                    "(EdgeTpuDelegateForCustomOp) failed to prepare.",
                    "Encountered unresolved custom op: edgetpu-custom-op."):
        error = explain_load_failure(Path("m_edgetpu.tflite"), message)
        assert isinstance(error, EdgeTpuMismatch) and error.exit_code == 72
        assert "accelerator = cpu" in str(error) and message in str(error)


# --- working: options passed, detections identical ------------------------------------------------
def test_options_are_passed_as_configured(tpu, model_paths):
    tpu.plug("usb:0,usb:1,pci:0")
    for device, said in (("", "create"), ("usb:1", "create device=usb:1"), ("pci:0", "create device=pci:0"),
                         (":2", "create device=:2")):
        detector = open_detector(None, None, DetectorOptions(), AcceleratorSettings("edgetpu", device))
        assert detector.accelerator == f"edgetpu ({device or 'first device'})"
        assert tpu.lines()[-2:] == [said, "claimed 1"], tpu.lines()
        del detector
    assert tpu.lines().count("destroy") == 4, "each delegate is destroyed with its interpreter"


def test_cpu_model_through_the_delegate_detects_exactly_what_the_cpu_does(tpu, model_paths):
    backend = resolve_backend()
    cpu = Detector(model_paths[0], model_paths[1], DetectorOptions(threshold=0.3))
    delegated = Detector(model_paths[0], model_paths[1], DetectorOptions(threshold=0.3), backend,
                         load_delegate(backend, "usb:0"))
    assert delegated.accelerator == "edgetpu (usb:0)" and "claimed 0" in tpu.lines()
    found = 0
    for name in PHOTOS:
        image = photo(name)
        expected, got = cpu.detect_image(image).detections, delegated.detect_image(image).detections
        assert got == expected, name
        found += len(expected)
    assert found >= 4, "the photos hold objects: an empty comparison would prove nothing"


def test_the_default_models_edgetpu_build_runs_on_the_delegate(tpu, model_paths):
    detector = open_detector(None, None, DetectorOptions(), AcceleratorSettings("auto"))
    assert detector.model_path.name == EDGETPU_DEFAULT and detector.accelerator == "edgetpu (first device)"
    assert detector.accelerator_note == ""
    before = tpu.lines().count("claimed 1")
    assert before == 1
    result = detector.detect_image(photo("chelsea.png"))
    assert result.detections == ()  # the stand-in computes nothing: only that the TPU's op was run is checked
    row = accelerator_ceiling(None, None, AcceleratorSettings("edgetpu"), runs=20)
    assert row["ran"] == "edgetpu (first device)" and row["inferences_per_s"] > 0
    assert Path(row["model"]).name == EDGETPU_DEFAULT


def test_auto_falls_back_with_one_log_line(tpu, model_paths, tmp_path):
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    cases = {"no library": ({"PIDETECT_EDGETPU_LIBRARY": str(tmp_path / "none.so")},
                            "the Edge TPU runtime (libedgetpu.so.1) is not installed"),
             "no device": ({"PIDETECT_STANDIN_DEVICES_FILE": str(tmp_path / "unplugged")}, "no Edge TPU answers"),
             "CPU model": ({}, "is not compiled for the Edge TPU")}
    for case, (env, said) in cases.items():
        extra = ["--model", model_paths[0]] if case == "CPU model" else []
        # the owner asked for a Coral (the installer's --coral writes accelerator = "auto")
        code, records, stderr = run_daemon("--source", clip, "--accelerator", "auto", *extra, env=env)
        assert code == 0, stderr
        loaded = of(records, "lifecycle", state="model_loaded")[0]
        assert loaded["accelerator"] == "cpu" and loaded["model"].endswith("_int8.tflite"), case
        notes = [r for r in records if "accelerator auto" in r.get("message", "")]
        assert len(notes) == 1 and said in notes[0]["message"], (case, notes)
        assert of(records, "detection", state="entered"), case
    # a Pi without a Coral whose owner never asked for one: no word about Edge TPUs (issue 34: it read as a fault)
    code, records, stderr = run_daemon("--source", clip, env=cases["no library"][0])
    assert code == 0 and of(records, "lifecycle", state="model_loaded")[0]["accelerator"] == "cpu", stderr
    assert not [r for r in records if "Edge TPU" in r.get("message", "")]
    code, records, stderr = run_daemon("--source", clip)
    loaded = of(records, "lifecycle", state="model_loaded")[0]
    assert code == 0 and loaded["accelerator"] == "edgetpu (first device)", stderr
    assert loaded["model"].endswith(EDGETPU_DEFAULT)
    assert not [r for r in records if "accelerator auto" in r.get("message", "")]


def test_check_says_which_accelerator_runs(tpu, model_paths, tmp_path):
    image = skimage_data_dir() / "chelsea.png"
    done = run_pidetect("check", "--source", image)
    assert done.returncode == 0, done.stdout
    assert "ok   accelerator    edgetpu (first device)" in done.stdout and EDGETPU_DEFAULT in done.stdout
    tpu.plug("")
    done = run_pidetect("check", "--source", image)
    assert done.returncode == 0
    assert "ok   accelerator    cpu (accelerator auto: no Edge TPU answers; the model runs on the CPU)" in done.stdout
    done = run_pidetect("check", "--source", image, "--accelerator", "edgetpu")
    assert done.returncode == 69 and "FAIL accelerator    no Edge TPU answers" in done.stdout


# --- lost while running ---------------------------------------------------------------------------
def test_lost_edgetpu_with_auto_goes_on_on_the_cpu(tpu, model_paths, tmp_path, monkeypatch):
    clip = tmp_path / "clip.avi"
    timeline = write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    monkeypatch.setenv("PIDETECT_STANDIN_FAIL_AFTER", "5")
    code, records, stderr = run_daemon("--source", clip)
    assert code == 0, stderr
    assert of(records, "lifecycle", state="model_loaded")[0]["accelerator"] == "edgetpu (first device)"
    lost = of(records, "accelerator", state="lost")
    assert len(lost) == 1 and "lost its device" in lost[0]["error"]
    fallback = of(records, "accelerator", state="fallback")
    assert len(fallback) == 1 and fallback[0]["model"].endswith("_int8.tflite")
    # the CPU model finds what the stand-in could not, and the frame that failed is inferred again: none is lost
    assert of(records, "detection", state="entered")
    assert of(records, "lifecycle", state="stopped")[0]["frames"] == sum(segment.frames for segment in timeline)


def test_lost_edgetpu_is_retried_with_backoff_and_recovers(tpu, model_paths, tmp_path):
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon("--source", clip, "--realtime", "--loop", "--accelerator", "edgetpu", "--reconnect-max-delay",
                    "2", env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    try:
        daemon.wait_for(lambda r: r.get("event") == "lifecycle" and r.get("state") == "ready", what="ready")
        time.sleep(1.0)
        tpu.plug("")  # unplugged: the next invoke fails, and creating a delegate finds no device
        daemon.wait_for(lambda r: r.get("event") == "accelerator" and r.get("state") == "retrying"
                        and r.get("attempt") == 3, timeout=30, what="three retries")
        retries = of(daemon.records, "accelerator", state="retrying")
        assert [r["retry_in_s"] for r in retries[:3]] == [1.0, 2.0, 2.0]  # doubling, capped at reconnect_max_delay
        assert "no Edge TPU answers" in retries[0]["error"]
        waiting_since = time.monotonic()
        time.sleep(2.0)
        assert notify.times("WATCHDOG=1") and max(notify.times("WATCHDOG=1")) > waiting_since, \
            "waiting for the device is not a hang: the watchdog is still fed"
        tpu.plug("usb:0")
        recovered = daemon.wait_for(lambda r: r.get("event") == "accelerator" and r.get("state") == "recovered",
                                    timeout=15, what="recovered")[0]
        assert recovered["accelerator"] == "edgetpu (first device)"
        invokes = tpu.lines().count("invoke failed")
        assert invokes >= 1
        code, _elapsed = daemon.stop()
    finally:
        daemon.kill()
        notify.close()
    assert code == 0
    assert not [r for r in daemon.records if "watchdog pings withheld" in r.get("message", "")]
    assert not of(daemon.records, "accelerator", state="fallback")


def test_hung_edgetpu_invoke_reaches_the_watchdog(tpu, model_paths, tmp_path, monkeypatch):
    """A device that stops answering inside an invoke: the heartbeat stops, so do the watchdog pings."""
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon("--source", clip, "--realtime", "--loop", "--accelerator", "edgetpu",
                    env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "PIDETECT_STANDIN_HANG_AFTER": "10"})
    try:
        daemon.wait_for(lambda r: "watchdog pings withheld" in r.get("message", ""), timeout=30,
                        what="the stall to be seen")
        assert "invoke hangs" in tpu.lines()
        hung_at = time.monotonic()
        time.sleep(2.0)
        assert not [t for t in notify.times("WATCHDOG=1") if t > hung_at], "pings go on during a hang"
        stop_sent = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(10)
        elapsed = time.monotonic() - stop_sent
        daemon._reader.join(5)
    finally:
        daemon.kill()
        notify.close()
    assert code == 0 and elapsed < 5.0  # SIGTERM still ends it although a worker is stuck in C
    assert [r for r in daemon.records if r.get("message") == "threads still running at exit: pidetect-inference-0"]


def test_lost_edgetpu_with_only_an_edgetpu_model_waits_for_the_tpu(tpu, model_paths, tmp_path, monkeypatch):
    """auto with a model that is an Edge TPU build and nothing else: the CPU cannot take over, so it is retried."""
    clip = tmp_path / "clip.avi"
    write_scene_video(clip, 320, 240, frames_per_scene=4, blank_frames=2)
    monkeypatch.setenv("PIDETECT_STANDIN_FAIL_AFTER", "3")  # every delegate made fails after 3 invokes
    daemon = Daemon("--source", clip, "--realtime", "--loop", "--model", model_paths[0].parent / EDGETPU_DEFAULT,
                    "--labels", model_paths[1])
    try:
        daemon.wait_for(lambda r: "cannot go on on the CPU" in r.get("message", "")
                        and "accelerator = cpu cannot run" in r["message"], what="the CPU refused")
        daemon.wait_for(lambda r: r.get("event") == "accelerator" and r.get("state") == "recovered",
                        what="the Edge TPU taken again")
        code, _elapsed = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert not of(daemon.records, "accelerator", state="fallback")
