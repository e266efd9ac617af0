"""Command line: `pidetect run | detect | eval | track-eval | notify-test | quantize | bench | models | check`.

Every user mistake surfaces as a PidetectError whose message is printed on one line (no
traceback) and whose exit code follows ARCHITECTURE.md: 2 usage, 78 config/model, 69 unavailable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

# OpenCV's own "[ WARN:0@1.2] global loadsave.cpp…" lines went straight to stderr, around the log's format and
# the journal's fields; pidetect says what failed itself (sources.py). Read by OpenCV when it loads: set before.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

from . import __version__
from .config import DEFAULT_CONFIG_PATH
from .errors import EX_USAGE, PidetectError
from .commands.daemon import check_command, reload_command, run_command
from .commands.detect import detect_command
from .commands.offline import (bench_command, eval_command, models_command, notify_test_command, quantize_command,
                               track_eval_command)
from .commands.options import accelerator_args, config_args, model_args


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this only makes the message say what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        usage = self.format_usage()
        # a one-line usage, not twenty lines of options burying the error (--help lists them)
        sys.stderr.write(usage if usage.count("\n") <= 2 else f"usage: {self.prog} [OPTION ...]\n")
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pidetect", description="Object detection for the Raspberry Pi camera: "
                     "quantized SSD MobileNetV2 (int8) or your own YOLO on LiteRT, only when something moves; "
                     "live overlay on HDMI, events to the journal and MQTT / Home Assistant.")
    parser.add_argument("--version", action="version", version=f"pidetect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    detect = commands.add_parser("detect", help="detect objects in image files (one-shot)")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="image files, folders of images, or quoted patterns such as 'shots/*.jpg'")
    model_args(detect)
    detect.add_argument("--json", action="store_true", help="one JSON object per image per line")
    detect.add_argument("--save", type=Path, metavar="OUT", help="write each photo with its boxes drawn into the "
                        "folder OUT (made if missing; nothing there is overwritten)")
    detect.add_argument("--tiles", action="store_true", help="also run the model on overlapping tiles at its own "
                        "scale and merge (small objects in large photos; one inference per tile)")
    detect.set_defaults(handler=detect_command)

    run = commands.add_parser("run", help="the daemon: camera -> detector -> events, metrics, displays",
                              usage="pidetect run [--config FILE] [OPTION ...]",
                              description="Run the detection daemon. Every option is also a key of the "
                              "config file (dashes become underscores); the command line wins.")
    config_args(run)
    run.set_defaults(handler=run_command)

    check = commands.add_parser("check", help="environment doctor: backend, model, camera, display, MQTT, journal",
                                usage="pidetect check [--config FILE] [any option of run ...]",
                                description="Check that everything the configured daemon needs works; one line "
                                "per check; exit 0 when all needed parts work. Takes the same options as run.")
    config_args(check)
    check.set_defaults(handler=check_command)

    reload = commands.add_parser("reload", usage="pidetect reload [--config FILE] [--pid PID] [any option of run]",
                                 help="check a changed config with the daemon's own rules, then reload "
                                 "the running daemon and wait for its verdict (the unit's ExecReload)",
                                 description="Check the config file as `run` would start with it (the same rules, "
                                 "the model's labels); refused: say why, exit 78, leave the daemon alone. Else send "
                                 "it SIGHUP (--pid) and wait for its verdict: exit 0 reloaded, 1 kept the running "
                                 "configuration. Takes the same options as run.")
    config_args(reload)
    reload.add_argument("--pid", type=int, help="the running daemon's process id (systemd: $MAINPID); without it "
                        "the file is only checked")
    reload.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the daemon's verdict (60)")
    reload.set_defaults(handler=reload_command)

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
    accelerator_args(bench)
    bench.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    bench.add_argument("--check", action="store_true",
                       help="also judge the performance targets (docs/performance.md); exit 1 if one is missed")
    bench.set_defaults(handler=bench_command)

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
    accelerator_args(evaluate)
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model per line")
    evaluate.add_argument("--plot", type=Path, metavar="PNG",
                          help="write accuracy-vs-latency and precision-recall curves (needs pidetect[plot])")
    evaluate.set_defaults(handler=eval_command)

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
    config_args(track)
    track.set_defaults(handler=track_eval_command)

    notify = commands.add_parser("notify-test", help="send one test message with a picture to the [notify.…] "
                                 "targets of the config and say per URL what happened",
                                 description="Send a test notification (a photo attached) to every [notify.NAME] "
                                 "target of the config, or only NAME; one line per URL (its scheme only: URLs hold "
                                 "secrets). Exit 0 when every URL took the message, 1 when one did not.")
    notify.add_argument("name", nargs="?", help="only this [notify.NAME] target")
    notify.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH})")
    notify.set_defaults(handler=notify_test_command)

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
    quantize.set_defaults(handler=quantize_command)

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
        sub.set_defaults(handler=models_command)
    return parser


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
