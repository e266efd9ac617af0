"""Command line: `pidetect run | detect | bench | models | check`.

Every user mistake surfaces as a PidetectError whose message is printed on one line (no
traceback) and whose exit code follows ARCHITECTURE.md: 2 usage, 78 config/model, 69 unavailable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .config import DEFAULT_CONFIG_PATH, FIELDS, HELP, build_config
from .errors import EX_USAGE, PidetectError, UsageError
from .records import log_record

log = logging.getLogger("pidetect")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this only makes the message say what to do."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"pidetect: error: {message} (see '{self.prog} --help')\n")


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="TFLite SSD model (default: the fetched Coral SSD MobileNetV2)")
    parser.add_argument("--labels", type=Path, help="labels file (default: coco_labels.txt beside the default model)")
    parser.add_argument("--threshold", type=float, help="minimum score, 0..1 (default 0.5)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    parser.add_argument("--backend", choices=["auto", "ai_edge_litert", "tflite_runtime", "tensorflow.lite"],
                        help="inference backend (default auto: the first installed, in that order)")


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH} if it exists)")
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=HELP[name])
        else:
            kind = str(field.type)
            metavar = "A,B" if kind.startswith("Tuple") else {"str": "TEXT", "int": "N", "float": "X"}.get(kind, "V")
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=HELP[name])


def _config_from_args(args: argparse.Namespace):
    overrides = {name: getattr(args, name) for name in FIELDS}
    path = args.config or DEFAULT_CONFIG_PATH
    return build_config(path, overrides, path_required=args.config is not None), path, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pidetect", description="Object detection for the Raspberry Pi camera: "
                     "quantized SSD MobileNetV2 on LiteRT, live overlay on HDMI, events to the journal.")
    parser.add_argument("--version", action="version", version=f"pidetect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    detect = commands.add_parser("detect", help="detect objects in image files (one-shot)")
    detect.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    _model_args(detect)
    detect.add_argument("--json", action="store_true", help="one JSON object per image per line")
    detect.set_defaults(handler=_cmd_detect)

    run = commands.add_parser("run", help="the daemon: camera -> detector -> events, metrics, displays",
                              description="Run the detection daemon. Every option is also a key of the "
                              "config file (dashes become underscores); the command line wins.")
    _config_args(run)
    run.set_defaults(handler=_cmd_run)

    check = commands.add_parser("check", help="environment doctor: backend, model, camera, display, journal",
                                description="Check that everything the configured daemon needs works; one line "
                                "per check; exit 0 when all needed parts work. Takes the same options as run.")
    _config_args(check)
    check.set_defaults(handler=_cmd_check)

    bench = commands.add_parser("bench", help="measure: interpreter ceiling, stages, serial loop, pipeline, RSS",
                                description="Benchmark the model and the pipeline on a video (default: a generated "
                                "1280x720 clip of scikit-image's photos). Prints a table, or JSON with --json.")
    bench.add_argument("--model", type=Path, help="TFLite SSD model (default: the fetched Coral SSD MobileNetV2)")
    bench.add_argument("--labels", type=Path, help="labels file (default: coco_labels.txt beside the model)")
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
    bench.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    bench.add_argument("--check", action="store_true",
                       help="also judge the README's performance targets; exit 1 if one is missed")
    bench.set_defaults(handler=_cmd_bench)

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
    from .inference.detector import Detector, DetectorOptions
    from .inference.model_paths import resolve_model_paths

    model, labels = resolve_model_paths(args.model, args.labels)
    threshold = 0.5 if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: must be between 0 and 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be 1 or more")
    options = DetectorOptions(threshold=threshold, num_threads=args.threads, backend=args.backend or "auto")
    return Detector(model, labels, options)


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
        result = detector.detect_image(image)
        if args.json:
            print(json.dumps({"image": str(path), "detections": [d.as_dict() for d in result.detections],
                              "inference_ms": round(result.inference_ms, 2)}), flush=True)
        else:
            height, width = image.shape[:2]
            print(f"{path} ({width}x{height}): {len(result.detections)} object(s), "
                  f"{result.inference_ms:.1f} ms")
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
    early_signals: List[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: early_signals.append(signum))

    from .daemon.logs import Notifier, open_record_log, route_python_logging
    from .daemon.service import Service

    config, path, overrides = _config_from_args(args)
    records = open_record_log(config.log_format)
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
    from .inference.model_paths import resolve_model_paths

    model, labels = resolve_model_paths(args.model, args.labels)
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
                       args.process_seconds, say, rounds=args.rounds, other_pythons=args.also_python)
    if args.check:
        report["targets"] = check_targets(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        for target in report.get("targets", []):
            print(f"{'PASS' if target['pass'] else 'FAIL'}  {target['description']}: {target['value']}")
    return 1 if any(not t["pass"] for t in report.get("targets", [])) else 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .errors import ModelError
    from .inference.model_paths import default_model_dir, load_manifest
    from .models.fetch import fetch_models, folder_source, sources_from_manifest, verify_models

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
        return 0
    states = verify_models(dest, manifest)
    for (name, state), entry in zip(states, manifest.files):
        if args.models_command == "list":
            print(f"{name:<58} {state:<8} {entry.size:>9} B  {entry.what}")
        else:
            print(f"{state if state == 'ok' else 'FAIL':<5} {dest / name}" + ("" if state == "ok" else f": {state}"))
    if args.models_command == "verify":
        bad = [name for name, state in states if state != "ok"]
        if bad:
            raise ModelError(f"{len(bad)} model file(s) in {dest} missing or corrupt; run 'pidetect models fetch'")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
