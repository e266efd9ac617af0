"""Command line: `pidetect run | detect | eval | track-eval | notify-test | quantize | bench | models | check`.

Every user mistake surfaces as a PidetectError whose message is printed on one line (no
traceback) and whose exit code follows ARCHITECTURE.md: 2 usage, 78 config/model, 69 unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

# OpenCV's own "[ WARN:0@1.2] global loadsave.cpp…" lines went straight to stderr, around the log's format and
# the journal's fields; pidetect says what failed itself (sources.py). Read by OpenCV when it loads: set before.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

from . import __version__
from .config import ACCELERATORS, DEFAULT_CONFIG_PATH, FLAG_FIELDS, HELP, build_config
from .errors import EX_USAGE, PidetectError, UsageError
from .records import log_record

log = logging.getLogger("pidetect")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this only makes the message say what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"pidetect: error: {message} (see '{self.prog} --help')\n")


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[argparse.ArgumentParser]:
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices.get(getattr(args, "command", None) or "")


def _flag_hint(command: Optional[argparse.ArgumentParser], extra: List[str]) -> str:
    """'; did you mean --threshold?' for a misspelled option of the command given."""
    import difflib

    if command is None:
        return ""
    options = [option for option in command._option_string_actions if option.startswith("--")]
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="TFLite detection model, SSD or Ultralytics YOLO (default: the "
                        "fetched Coral SSD MobileNetV2)")
    parser.add_argument("--labels", type=Path, help="labels file (default: the labels the model carries, else "
                        "coco_labels.txt beside the model)")
    parser.add_argument("--threshold", type=float, help="minimum score, 0..1 (default 0.5)")
    parser.add_argument("--max-results", type=int, help="at most this many detections per image (default 10)")
    parser.add_argument("--nms-iou", type=float, help="NMS overlap for YOLO models, 0..1 (default 0.45)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    parser.add_argument("--backend", choices=["auto", "ai_edge_litert", "tflite_runtime", "tensorflow.lite"],
                        help="inference backend (default auto: the first installed, in that order)")
    _accelerator_args(parser)


def _accelerator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto", help=HELP["accelerator"])
    parser.add_argument("--edgetpu-device", default="", metavar="DEVICE", help=HELP["edgetpu_device"])


def _accelerator_settings(args: argparse.Namespace):
    from .config import EDGETPU_DEVICE, EDGETPU_DEVICE_RULE
    from .inference.accelerator import AcceleratorSettings

    if not EDGETPU_DEVICE.fullmatch(args.edgetpu_device):
        raise UsageError(f"--edgetpu-device {args.edgetpu_device!r}: {EDGETPU_DEVICE_RULE}")
    return AcceleratorSettings(args.accelerator, args.edgetpu_device)


def _config_args(parser: argparse.ArgumentParser) -> None:
    """Every config key as an option, in the groups of the configuration reference, each with its default and
    what it takes."""
    from .config import CHOICES, GROUPS, allowed_text, default_text

    parser.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH} if it exists)")
    for title, keys in GROUPS:
        group = parser.add_argument_group(title)
        for name in keys:
            field = FLAG_FIELDS[name]
            flag = "--" + name.replace("_", "-")
            allowed = allowed_text(name)
            text = HELP[name] + f" [default {default_text(name)}" + (f"; {allowed}]" if allowed and
                                                                     name not in CHOICES else "]")
            text = text.replace("%", "%%")
            if field.type in ("bool", bool):
                group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
                continue
            kind = str(field.type)
            if name in CHOICES:
                metavar = "{" + ",".join(map(str, CHOICES[name])) + "}" + (",…" if kind.startswith("Tuple") else "")
            else:
                metavar = "A,B" if kind.startswith("Tuple") else {"str": "TEXT", "int": "N", "float": "X"}.get(kind, "V")
            group.add_argument(flag, dest=name, default=None, metavar=metavar, help=text)


def _config_from_args(args: argparse.Namespace):
    overrides = {name: getattr(args, name) for name in FLAG_FIELDS}
    path = args.config or DEFAULT_CONFIG_PATH
    return build_config(path, overrides, path_required=args.config is not None), path, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pidetect", description="Object detection for the Raspberry Pi camera: "
                     "quantized SSD MobileNetV2 (int8) or your own YOLO on LiteRT, only when something moves; "
                     "live overlay on HDMI, events to the journal and MQTT / Home Assistant.")
    parser.add_argument("--version", action="version", version=f"pidetect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    detect = commands.add_parser("detect", help="detect objects in image files (one-shot)")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    _model_args(detect)
    detect.add_argument("--json", action="store_true", help="one JSON object per image per line")
    detect.add_argument("--tiles", action="store_true", help="also run the model on overlapping tiles at its own "
                        "scale and merge (small objects in large photos; one inference per tile)")
    detect.set_defaults(handler=_cmd_detect)

    run = commands.add_parser("run", help="the daemon: camera -> detector -> events, metrics, displays",
                              usage="pidetect run [--config FILE] [OPTION ...]",
                              description="Run the detection daemon. Every option is also a key of the "
                              "config file (dashes become underscores); the command line wins.")
    _config_args(run)
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check", help="environment doctor: backend, model, camera, display, MQTT, journal",
                                usage="pidetect check [--config FILE] [any option of run ...]",
                                description="Check that everything the configured daemon needs works; one line "
                                "per check; exit 0 when all needed parts work. Takes the same options as run.")
    _config_args(check)
    check.set_defaults(handler=_cmd_check)

    reload = commands.add_parser("reload", usage="pidetect reload [--config FILE] [--pid PID] [any option of run]",
                                 help="check a changed config with the daemon's own rules, then reload "
                                 "the running daemon and wait for its verdict (the unit's ExecReload)",
                                 description="Check the config file as `run` would start with it (the same rules, "
                                 "the model's labels); refused: say why, exit 78, leave the daemon alone. Else send "
                                 "it SIGHUP (--pid) and wait for its verdict: exit 0 reloaded, 1 kept the running "
                                 "configuration. Takes the same options as run.")
    _config_args(reload)
    reload.add_argument("--pid", type=int, help="the running daemon's process id (systemd: $MAINPID); without it "
                        "the file is only checked")
    reload.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the daemon's verdict (60)")
    reload.set_defaults(handler=_cmd_reload)

    bench = commands.add_parser("bench", help="measure: interpreter ceiling, stages, serial loop, pipeline, RSS",
                                description="Benchmark the model and the pipeline on a video (default: a generated "
                                "1280x720 clip of scikit-image's photos). Prints a table, or JSON with --json.")
    bench.add_argument("--model", type=Path, help="TFLite detection model, SSD or Ultralytics YOLO (default: the "
                       "fetched Coral SSD MobileNetV2)")
    bench.add_argument("--labels", type=Path, help="labels file (default: the model's own, else coco_labels.txt "
                       "beside it)")
    bench.add_argument("--source", type=Path, help="video file to measure on (default: generated clip)")
    bench.add_argument("--size", default="1280x720", help="size of the generated clip (default 1280x720)")
    bench.add_argument("--frames", type=int, default=300, help="frames per end-to-end measurement (default 300)")
    bench.add_argument("--runs", type=int, default=200, help="invokes per ceiling measurement (default 200)")
    bench.add_argument("--threads", default=None, help="thread counts for the ceiling, e.g. 1,2,4 (default 1..cores)")
    bench.add_argument("--also-python", type=Path, action="append", default=[], metavar="PYTHON",
                       help="another Python with pidetect and another backend installed (e.g. "
                       ".venv-tflite/bin/python for tflite-runtime, which needs numpy<2): its rate is compared too")
    bench.add_argument("--rounds", type=int, default=3,
                       help="interleaved rounds of ceiling, serial loop and pipelines; medians are reported "
                       "(default 3)")
    bench.add_argument("--process-seconds", type=float, default=8.0,
                       help="how long the child `pidetect run` runs for RSS/CPU (default 8)")
    _accelerator_args(bench)
    bench.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    bench.add_argument("--check", action="store_true",
                       help="also judge the README's performance targets; exit 1 if one is missed")
    bench.set_defaults(handler=_cmd_bench)

    evaluate = commands.add_parser("eval", help="accuracy (COCO mAP) and speed of models on labelled images",
                                   description="Measure models on a labelled dataset (COCO JSON, YOLO or Pascal "
                                   "VOC, detected from the folder): COCO mAP50-95 and mAP50 by pycocotools, "
                                   "precision and recall at the threshold, latency, size and numeric format, "
                                   "all models on the same images in one run.")
    evaluate.add_argument("dataset", type=Path, metavar="DATASET",
                          help="dataset folder, or a file in it (instances_*.json, data.yaml)")
    evaluate.add_argument("--model", type=Path, action="append", default=[],
                          help="a model to measure (repeat to compare; default: the default model)")
    evaluate.add_argument("--labels", type=Path, action="append", default=[],
                          help="labels file: once for every model, or once per --model in the same order "
                          "(default: the labels each model carries, else coco_labels.txt beside it)")
    evaluate.add_argument("--threshold", type=float, default=0.5,
                          help="score at which precision and recall are reported, as the daemon's threshold "
                          "(default 0.5; the mAP uses every box down to 0.001)")
    evaluate.add_argument("--map", dest="class_map", action="append", default=[], metavar="DATASET=MODEL",
                          help="join a dataset class to a model label by hand, e.g. --map person_walking=person")
    evaluate.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    evaluate.add_argument("--skip", type=int, default=0, help="leave out the first N images (e.g. those a model "
                          "was calibrated on)")
    evaluate.add_argument("--limit", type=int, help="only the first N images (after --skip)")
    evaluate.add_argument("--split", help="the split of a YOLO data.yaml to evaluate: train, val or test (default "
                          "val when data.yaml names one)")
    evaluate.add_argument("--tiles", action="store_true", help="run each model on overlapping tiles of each image "
                          "at its own scale plus the whole image, merged (as detect --tiles)")
    evaluate.add_argument("--skip-missing", action="store_true",
                          help="go on when images listed in the labels are missing on disk (they are counted)")
    _accelerator_args(evaluate)
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model per line")
    evaluate.add_argument("--plot", type=Path, metavar="PNG",
                          help="write accuracy-vs-latency and precision-recall curves (needs pidetect[plot])")
    evaluate.set_defaults(handler=_cmd_eval)

    track = commands.add_parser("track-eval", help="score the daemon as a tracker on a video with MOTChallenge "
                                "ground truth (MOTA, IDF1, events per object)",
                                description="Run the daemon (model, motion gate, filters, tracker) over VIDEO and "
                                "score its objects against MOTChallenge ground truth with py-motmetrics. Takes "
                                "run's options too (--model, --threshold, --realtime --motion on, ...).")
    track.add_argument("video", type=Path, metavar="VIDEO")
    track.add_argument("--gt", type=Path, required=True, metavar="GT.txt",
                       help="MOTChallenge ground truth: frame,id,left,top,width,height,conf,... (frames from 1)")
    track.add_argument("--label", default="person", help="the model's label the ground truth marks (person)")
    track.add_argument("--every", type=int, default=1, metavar="N",
                       help="look at every Nth frame only, as a camera N times slower would (1: every frame)")
    track.add_argument("--save-mot", type=Path, metavar="OUT.txt", help="write the results in MOTChallenge text "
                       "(for TrackEval)")
    track.add_argument("--json", action="store_true", help="one JSON object instead of the summary")
    _config_args(track)
    track.set_defaults(handler=_cmd_track_eval)

    notify = commands.add_parser("notify-test", help="send one test message with a picture to the [notify.…] "
                                 "targets of the config and say per URL what happened",
                                 description="Send a test notification (a photo attached) to every [notify.NAME] "
                                 "target of the config, or only NAME; one line per URL (its scheme only: URLs hold "
                                 "secrets). Exit 0 when every URL took the message, 1 when one did not.")
    notify.add_argument("name", nargs="?", help="only this [notify.NAME] target")
    notify.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH})")
    notify.set_defaults(handler=_cmd_notify_test)

    quantize = commands.add_parser("quantize", help="make an int8 model (about 2x faster on XNNPACK), verified",
                                   description="Quantize a model to int8 with per-channel weights. uint8 and int8 "
                                   "per-tensor models (TF1/Coral) need no data: they carry their activation "
                                   "ranges. Float and dynamic-range models are calibrated on images "
                                   "(pidetect[quantize]). The result is compared with the source before it is "
                                   "kept.")
    quantize.add_argument("model", type=Path, metavar="MODEL", help="the .tflite to quantize")
    quantize.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="the int8 .tflite to write")
    quantize.add_argument("--labels", type=Path, help="labels file, if the model carries none")
    quantize.add_argument("--calibration", type=Path, metavar="DIR",
                          help="folder of images like the camera's (50-200), to calibrate and verify")
    quantize.add_argument("--calibration-source", metavar="SPEC",
                          help="take calibration frames from a camera, stream or video file instead "
                          "(auto, /dev/video0, rtsp://…, clip.mp4), spread over time")
    quantize.add_argument("--frames", type=int, default=100, help="frames to take from --calibration-source "
                          "(default 100)")
    quantize.add_argument("--frame-spacing", type=float, default=1.0,
                          help="seconds between frames taken from a live source (default 1)")
    quantize.add_argument("--eval", dest="eval_dataset", type=Path, metavar="DATASET",
                          help="also measure source and result with pidetect eval on this labelled dataset")
    quantize.add_argument("--force", action="store_true", help="replace OUT if it exists")
    budget = quantize.add_argument_group("accuracy budget (a float model, --calibration and --eval)")
    budget.add_argument("--max-drop", type=float, metavar="MAP",
                        help="find the fastest model whose mAP50-95 on --eval is at most MAP below the float model's "
                             "(e.g. 0.01), keeping the ops float that int8 hurts most; prints the trade-off of every "
                             "scheme")
    budget.add_argument("--calibration-limit", type=int, default=0, metavar="N",
                        help="only the first N images of --calibration (sorted by name)")
    budget.add_argument("--eval-skip", type=int, default=0, metavar="N",
                        help="leave out the first N images of --eval (e.g. the calibration images)")
    budget.add_argument("--eval-limit", type=int, default=0, metavar="N", help="only N images of --eval")
    budget.add_argument("--max-trials", type=int, default=24, metavar="N",
                        help="candidates to measure at most (default 24)")
    budget.add_argument("--time-limit", type=float, default=15.0, metavar="MIN",
                        help="minutes the search may take at most (default 15); the best model found is kept")
    budget.add_argument("--json", action="store_true", help="the trade-off report as JSON (one document)")
    budget.add_argument("--plot", type=Path, metavar="PNG",
                        help="accuracy against latency of every scheme, the Pareto front marked (pidetect[plot])")
    quantize.set_defaults(handler=_cmd_quantize)

    models = commands.add_parser("models", help="fetch, list or verify the default model files")
    models_cmd = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    models_cmd.required = True
    for name, text in (("fetch", "download and verify the default model and labels"),
                       ("list", "show the model files and whether they are present"),
                       ("verify", "check SHA256 of the model files; exit 78 if any is missing or corrupt")):
        sub = models_cmd.add_parser(name, help=text)
        sub.add_argument("--dest", type=Path, help="model folder (default: $PIDETECT_MODEL_DIR, ./models in "
                                                   "a checkout, /opt/pidetect/models when installed)")
        if name == "fetch":
            sub.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                             help="copy from this folder first (offline install); files are verified all the same")
        sub.set_defaults(handler=_cmd_models)
    return parser


def _detector_from_args(args: argparse.Namespace):
    from .inference.accelerator import open_detector
    from .inference.detector import DetectorOptions

    threshold = 0.5 if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: must be between 0 and 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be 1 or more")
    max_results = 10 if args.max_results is None else args.max_results
    if max_results < 1:
        raise UsageError(f"--max-results {max_results}: must be 1 or more")
    nms_iou = 0.45 if args.nms_iou is None else args.nms_iou
    if not 0.0 < nms_iou <= 1.0:
        raise UsageError(f"--nms-iou {nms_iou}: must be more than 0 and at most 1")
    options = DetectorOptions(threshold=threshold, num_threads=args.threads, backend=args.backend or "auto",
                              max_results=max_results, nms_iou=nms_iou)
    return open_detector(args.model, args.labels, options, _accelerator_settings(args))


def _cmd_detect(args: argparse.Namespace) -> int:
    from .capture.image_files import ImageFileError, read_image

    detector = _detector_from_args(args)
    unreadable = []
    for path in args.images:
        try:
            image = read_image(path)
        except ImageFileError as exc:
            print(f"pidetect: cannot read image {exc}", file=sys.stderr)
            unreadable.append(path)
            continue
        result = detector.detect_image(image, tiled=args.tiles)
        if args.json:
            found = {"image": str(path), "detections": [d.as_dict() for d in result.detections],
                     "inference_ms": round(result.inference_ms, 2)}
            if args.tiles:
                found["model_calls"] = result.model_calls
            print(json.dumps(found), flush=True)
        else:
            height, width = image.shape[:2]
            calls = f" in {result.model_calls} tiles" if result.model_calls > 1 else ""
            print(f"{path} ({width}x{height}): {len(result.detections)} object(s), "
                  f"{result.inference_ms:.1f} ms{calls}")
            for d in result.detections:
                x1, y1, x2, y2 = d.box
                print(f"  {d.label:<16} {d.score:5.2f}  box x1={x1} y1={y1} x2={x2} y2={y2}")
    if unreadable:
        raise UsageError(f"{len(unreadable)} of {len(args.images)} image(s) could not be read "
                         "(see above); give paths to JPEG/PNG/BMP files")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import signal

    # Signals that arrive while the heavy modules load and the model is read are kept and handed to
    # the service: a SIGTERM in the first 0.1 s is a clean stop (exit 0), not a kill (143).
    # (`python -m pidetect` installs the same catch even earlier, before this module is imported.)
    early_signals: List[int] = args.early_signals
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: early_signals.append(signum))

    from .daemon.logs import Notifier, open_record_log, route_python_logging
    from .daemon.service import Service

    config, path, overrides = _config_from_args(args)
    records = open_record_log(config.log_format, config.camera_name)
    route_python_logging(records, config.log_level)
    service = Service(config, records, config_path=path if path.exists() else None, overrides=overrides,
                      notifier=Notifier())
    service.install_signal_handlers(early_signals)
    try:
        code = service.run()
    except PidetectError as exc:
        records.emit({"event": "lifecycle", "state": "failed", "error": str(exc), "exit_code": exc.exit_code}, 3)
        raise
    return _exit_now(code, records)


def _cmd_reload(args: argparse.Namespace) -> int:
    from .daemon.reload_verdict import ask_daemon, verdict_path
    from .daemon.service import check_model_labels, make_detector, preflight

    try:
        config, path, _overrides = _config_from_args(args)
        preflight(config, writer_pid=args.pid)
        try:
            labels = make_detector(config, "cpu").labels.values()
        except PidetectError as exc:
            if "Edge TPU" not in str(exc):
                raise
            labels = None  # a model only the Edge TPU runs (which the daemon holds): the daemon checks its labels
        if labels is not None:
            check_model_labels(config, labels)
    except PidetectError as exc:
        print(f"pidetect: error: reload refused, the running configuration is kept: {exc}", file=sys.stderr)
        return 78
    if args.pid is None:
        print(f"{path}: the daemon would start with it (no --pid: nothing reloaded)")
        return 0
    ok, detail = ask_daemon(args.pid, verdict_path(config.state_dir), args.wait)
    print(("pidetect: " if ok else "pidetect: error: ") + detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _exit_now(code: int, records) -> int:
    """End the daemon without Python's interpreter finalization.

    Why: a daemon thread still inside an OpenCV call (a camera read that blocks beyond the join
    timeout) would be killed by finalization with a forced unwind that OpenCV's catch-all turns
    into abort() ("FATAL: exception not rethrown"), so a clean stop would end in SIGABRT. The
    service has already stopped its threads, emitted its last records and sent STOPPING=1.
    """
    import os
    import threading

    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if left:
        records.emit(log_record("warning", "pidetect.cli", "threads still running at exit: " + ", ".join(left)), 4)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _cmd_check(args: argparse.Namespace) -> int:
    from .tools.check import exit_code_for, format_check, run_checks
    from .daemon.service import make_detector

    config, _path, _overrides = _config_from_args(args)
    checks = run_checks(config, make_detector)
    for check in checks:
        print(format_check(check), flush=True)
    code = exit_code_for(checks)
    print("all needed parts work" if code == 0 else "some needed parts do not work (FAIL lines above)")
    return code


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    from .tools.bench import check_targets, format_table, run_bench
    from .inference.edgetpu import is_edgetpu_model
    from .inference.model_paths import resolve_model_paths

    model, labels = resolve_model_paths(args.model, args.labels)
    if is_edgetpu_model(model):
        raise UsageError(f"--model {model}: bench measures the CPU on a CPU model; name the model it was compiled "
                         "from (its _edgetpu.tflite beside it is measured on the accelerator, with --accelerator "
                         "auto or edgetpu)")
    if args.source is not None:
        import cv2

        capture = cv2.VideoCapture(str(args.source))
        readable = args.source.is_file() and capture.isOpened() and capture.read()[0]
        capture.release()
        if not readable:
            raise UsageError(f"--source {args.source}: not a video file OpenCV can read")
    size = args.size.lower().split("x")
    if len(size) != 2 or not all(v.isdigit() and int(v) >= 16 for v in size):
        raise UsageError(f"--size {args.size!r}: give WIDTHxHEIGHT, e.g. 1280x720")
    if args.frames < 10 or args.runs < 10:
        raise UsageError("--frames and --runs must be at least 10")
    if args.rounds < 1:
        raise UsageError("--rounds must be at least 1")
    for python in args.also_python:
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise UsageError(f"--also-python {python}: not an executable Python")
    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else list(range(1, (os.cpu_count() or 1) + 1))
    except ValueError:
        raise UsageError(f"--threads {args.threads!r}: give numbers like 1,2,4") from None
    say = (lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    report = run_bench(model, labels, args.source, args.frames, threads, args.runs, args.size,
                       args.process_seconds, say, rounds=args.rounds, other_pythons=args.also_python,
                       accelerator=_accelerator_settings(args), model_named=args.model, labels_named=args.labels)
    if args.check:
        report["targets"] = check_targets(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        for target in report.get("targets", []):
            print(f"{'PASS' if target['pass'] else 'FAIL'}  {target['description']}: {target['value']}")
    return 1 if any(not t["pass"] for t in report.get("targets", [])) else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .inference.model_paths import resolve_model_paths
    from .models.datasets import load_dataset
    from .models.eval_report import format_table, json_lines, plot
    from .models.evaluate import coco_library, evaluate_model

    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold {args.threshold}: must be between 0 and 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be 1 or more")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be 1 or more")
    models = args.model or [None]
    if len(args.labels) not in (0, 1, len(models)):
        raise UsageError(f"--labels given {len(args.labels)} times for {len(models)} model(s): give it once for "
                         "all, or once per --model")
    by_hand = {}
    for item in args.class_map:
        dataset_name, sep, model_name = item.partition("=")
        if not sep or not dataset_name.strip() or not model_name.strip():
            raise UsageError(f"--map {item!r}: write DATASET_CLASS=MODEL_LABEL, e.g. --map tvmonitor=tv")
        by_hand[dataset_name.strip()] = model_name.strip()
    if args.plot is not None:
        check_plot_path(args.plot)  # before the eval runs, not after
    coco_library()  # say now, not after the first model ran, that the extra is missing
    accelerator = _accelerator_settings(args)
    dataset = load_dataset(args.dataset, skip_missing=args.skip_missing, split=args.split)
    if args.skip < 0:
        raise UsageError(f"--skip {args.skip}: must be 0 or more")
    if args.skip:
        if args.skip >= len(dataset.images):
            raise UsageError(f"--skip {args.skip}: the dataset has only {len(dataset.images)} images")
        dataset = dataset.skipped(args.skip)
    if args.limit:
        dataset = dataset.limited(args.limit)
    say = (lambda text: print(text, file=sys.stderr, flush=True))
    say(dataset.summary())
    interactive = sys.stderr.isatty()
    reports = []
    for number, model in enumerate(models):
        labels = args.labels[number] if len(args.labels) == len(models) else (args.labels[0] if args.labels else None)
        model_path, labels_path = resolve_model_paths(model, labels)
        started = time.monotonic()

        def progress(done: int, total: int, name=model_path.name) -> None:
            if interactive:
                bar = "#" * (30 * done // total)
                print(f"\reval {name}: [{bar:<30}] {done}/{total} images", end="", file=sys.stderr, flush=True)

        report = evaluate_model(dataset, model, labels_path, args.threshold, args.threads, by_hand, progress,
                                accelerator, tiled=args.tiles)
        model_path = Path(report.model)  # the Edge TPU build, where the accelerator picked it
        if interactive:
            print(file=sys.stderr)
        say(f"eval {model_path.name}: mAP50-95 {report.map:.3f}, mAP50 {report.map50:.3f} on {report.images} "
            f"images in {time.monotonic() - started:.1f} s")
        for line in match_fates(report):
            say(f"  class {line}")
        reports.append(report)
    print(json_lines(reports) if args.json else format_table(reports), flush=True)
    if args.plot is not None:
        plot(reports, args.plot, dataset.summary())
        say(f"plot written to {args.plot}")
    return 0


def _cmd_track_eval(args: argparse.Namespace) -> int:
    from .models.track_eval import track_eval

    overrides = {name: getattr(args, name) for name in FLAG_FIELDS if name != "source"}
    if args.config is not None:
        build_config(args.config, {}, path_required=True)  # its errors now, not from the child
    flags = {"config": str(args.config)} if args.config is not None else {}
    report = track_eval(args.video, args.gt, args.label, args.every, {**flags, **overrides}, args.save_mot)
    print(json.dumps(report.as_dict()) if args.json else report.text(), flush=True)
    return 0


def _cmd_notify_test(args: argparse.Namespace) -> int:
    import tempfile

    import cv2

    from .outputs.notify import Helper, check_urls, read_targets, redacted
    from .tools.demo import load_photo

    config = build_config(args.config or DEFAULT_CONFIG_PATH, {}, path_required=args.config is not None)
    specs = [spec for spec in config.notify if args.name in (None, spec.name)]
    if not specs:
        names = ", ".join(spec.name for spec in config.notify) or "none"
        raise UsageError(f"no [notify.{args.name or '…'}] target in the config (targets: {names}); add one, e.g. "
                         "[notify.phone] with urls = [\"ntfy://ntfy.sh/my-topic\"]")
    targets = read_targets(specs)
    check_urls(targets)
    helper = Helper()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="pidetect-notify-") as folder:
        picture = Path(folder) / "pidetect-test.jpg"
        cv2.imwrite(str(picture), load_photo("chelsea.png"))
        try:
            for target in targets:
                results = helper.ask({"send": list(target.urls), "title": "pidetect test",
                                      "body": "A test message from pidetect notify-test, with a picture.",
                                      "attach": str(picture)}, timeout=60.0)
                for url, result in zip(target.urls, results):
                    failed += not result["ok"]
                    state = "sent" if result["ok"] else "FAILED: " + result["error"].replace(url, redacted(url))
                    print(f"{target.name}: {redacted(url)} {state}", flush=True)
        finally:
            helper.close()
    return 1 if failed else 0


def check_plot_path(path: Path) -> None:
    """--plot must be a .png we can write: a folder, a missing folder or a read-only place is said first."""
    import os

    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: give a .png file name")
    if path.is_dir():
        raise UsageError(f"--plot {path} is a folder; give a .png file name in it")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--plot {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--plot {path}: cannot write in {folder} (permission denied or read-only)")


def match_fates(report) -> List[str]:
    """Every dataset class not scored under its own name, and why."""
    lines = [f"{name}: scored as {into} (both meet one model label)" for name, into in
             sorted(report.classes_merged.items())]
    return lines + [f"{name}: left out (the model has no such label; --map {name}=LABEL joins it)"
                    for name in report.classes_left_out]


def _check_budget_arguments(args: argparse.Namespace) -> None:
    """The budget search's flags, checked before any image is read."""
    if not 0 <= args.max_drop < 1:
        raise UsageError(f"--max-drop {args.max_drop}: an mAP difference from 0 to 1, e.g. 0.01")
    if not args.eval_dataset:
        raise UsageError("--max-drop needs --eval DATASET: labelled images (COCO, YOLO or VOC) to measure mAP on; "
                         "keep them apart from the calibration images (--eval-skip)")
    if not args.calibration:
        raise UsageError("--max-drop needs --calibration DIR: images to calibrate the int8 ranges on")
    for name in ("calibration_limit", "eval_skip", "eval_limit"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 0 or more")
    if args.max_trials < 1:
        raise UsageError(f"--max-trials {args.max_trials}: must be 1 or more")
    if not args.time_limit > 0:
        raise UsageError(f"--time-limit {args.time_limit}: minutes, more than 0")
    if args.plot is not None:
        check_plot_path(args.plot)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .models.calibration import dataset_images, frames_from_source, images_from_folder
    from .models.quantize import check_output, check_source, model_input_size, quantize_model

    if args.calibration and args.calibration_source:
        raise UsageError("give --calibration DIR or --calibration-source SPEC, not both")
    if args.frame_spacing <= 0:
        raise UsageError(f"--frame-spacing {args.frame_spacing}: must be more than 0")
    check_source(args.model)
    check_output(args.model, args.output, args.force)
    if args.max_drop is not None:
        _check_budget_arguments(args)
    input_size = model_input_size(args.model)
    dataset = None
    if args.eval_dataset:
        from .models.datasets import load_dataset

        dataset = load_dataset(args.eval_dataset, skip_missing=True)  # a bad dataset is said before any work
        if args.eval_skip:
            dataset = dataset.skipped(args.eval_skip)
        if args.eval_limit:
            dataset = dataset.limited(args.eval_limit)
    say = (lambda text: print(text, file=sys.stderr, flush=True))
    calibration = []
    if args.calibration:
        calibration = images_from_folder(args.calibration, limit=args.calibration_limit, input_size=input_size)
        say(f"{len(calibration)} calibration image(s) from {args.calibration}")
    elif args.calibration_source:
        calibration = frames_from_source(args.calibration_source, args.frames, args.frame_spacing,
                                         input_size=input_size)
        say(f"{len(calibration)} calibration frame(s) from {args.calibration_source}")
    if args.max_drop is not None:
        from .models.budget_cli import quantize_within_budget

        return quantize_within_budget(args, calibration, dataset, say)
    verification = calibration[:: max(1, len(calibration) // 32)][:32] if calibration else []
    if dataset is not None:  # labelled images show objects: the surest thing to verify on
        verification = verification + dataset_images(dataset, 32, input_size)
    if not verification:
        verification = _bundled_photos(say)
    outcome = quantize_model(args.model, args.output, args.labels, calibration, verification, args.force, say)
    print(f"{args.model} ({outcome.source_format}) -> {outcome.output}: {outcome.method}")
    for note in outcome.notes:
        print(f"  {note}")
    print(f"  verified: {outcome.agreement.describe()}")
    print(f"  size {args.model.stat().st_size / 2**20:.2f} MB -> {outcome.output.stat().st_size / 2**20:.2f} MB")
    if dataset is not None:
        from .models.eval_report import format_table
        from .models.evaluate import evaluate_model

        say(dataset.summary())
        reports = [evaluate_model(dataset, path, args.labels, 0.5) for path in (args.model, outcome.output)]
        print(format_table(reports))
    return 0


def _bundled_photos(say) -> list:
    """scikit-image's photos, when nothing else was given to verify on."""
    from .errors import UnavailableError
    from .tools.demo import SCENES, load_photo

    try:
        return [load_photo(name) for name, _label in SCENES]
    except UnavailableError:
        raise UsageError("nothing to verify the result on: pass --calibration DIR with a few photos like the "
                         "camera's (or install scikit-image for its bundled photos)") from None


def _cmd_models(args: argparse.Namespace) -> int:
    from .errors import ModelError
    from .inference.model_paths import default_model_dir, load_manifest
    from .models.fetch import derive_models, fetch_models, folder_source, sources_from_manifest, verify_models

    manifest = load_manifest()
    dest = args.dest or default_model_dir()
    if args.models_command == "fetch":
        # --from DIR is an offline install: the folder or nothing, never a silent download instead
        sources = ([(f"folder {args.from_dir}", folder_source(args.from_dir))] if args.from_dir
                   else sources_from_manifest(manifest))
        report = fetch_models(dest, manifest, sources, say=print)
        if report.source:
            print(f"fetched from {report.source}" + (f" after {len(report.failures)} failed source(s)"
                                                      if report.failures else ""))
        derive_models(dest, manifest, say=print)
        return 0
    states = verify_models(dest, manifest)
    for (name, state), entry in zip(states, [*manifest.files, *manifest.derived]):
        if args.models_command == "list":
            print(f"{name:<58} {state:<8} {entry.size:>9} B  {entry.what}")
        else:
            print(f"{state if state == 'ok' else 'FAIL':<5} {dest / name}" + ("" if state == "ok" else f": {state}"))
    if args.models_command == "verify":
        bad = [name for name, state in states if state != "ok"]
        if bad:
            raise ModelError(f"{len(bad)} model file(s) in {dest} missing or corrupt; run 'pidetect models fetch'")
    return 0


def main(argv: Optional[List[str]] = None, early_signals: Optional[List[int]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = _command_parser(parser, args)
        (command or parser).error(f"unrecognized arguments: {' '.join(extra)}{_flag_hint(command, extra)}")
    args.early_signals = early_signals if early_signals is not None else []
    logging.basicConfig(level=logging.WARNING, format="pidetect: %(message)s")
    try:
        return args.handler(args)
    except PidetectError as exc:
        print(f"pidetect: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`pidetect detect --json … | head -1`): stop quietly as Unix tools do,
        # with the status a shell reports for a tool ended by SIGPIPE.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
