"""The offline commands beside the daemon: bench, eval, track-eval, notify-test, quantize, models."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List

from ..config import DEFAULT_CONFIG_PATH, FLAG_FIELDS, build_config
from ..errors import UsageError
from .options import accelerator_settings


def bench_command(args: argparse.Namespace) -> int:
    import os

    from ..tools.bench import check_targets, format_table, run_bench
    from ..inference.edgetpu import is_edgetpu_model
    from ..inference.model_paths import resolve_model_paths

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
                       accelerator=accelerator_settings(args), model_named=args.model, labels_named=args.labels)
    if args.check:
        report["targets"] = check_targets(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        for target in report.get("targets", []):
            print(f"{'PASS' if target['pass'] else 'FAIL'}  {target['description']}: {target['value']}")
    return 1 if any(not t["pass"] for t in report.get("targets", [])) else 0


def eval_command(args: argparse.Namespace) -> int:
    from ..inference.model_paths import resolve_model_paths
    from ..models.datasets import load_dataset
    from ..models.eval_report import format_table, json_lines, plot
    from ..models.evaluate import coco_library, evaluate_model

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
    accelerator = accelerator_settings(args)
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


def track_eval_command(args: argparse.Namespace) -> int:
    from ..models.track_eval import track_eval

    overrides = {name: getattr(args, name) for name in FLAG_FIELDS if name != "source"}
    if args.config is not None:
        build_config(args.config, {}, path_required=True)  # its errors now, not from the child
    flags = {"config": str(args.config)} if args.config is not None else {}
    report = track_eval(args.video, args.gt, args.label, args.every, {**flags, **overrides}, args.save_mot)
    print(json.dumps(report.as_dict()) if args.json else report.text(), flush=True)
    return 0


def notify_test_command(args: argparse.Namespace) -> int:
    import tempfile

    import cv2

    from ..outputs.notify import Helper, check_urls, read_targets, redacted
    from ..tools.demo import load_photo

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


def check_budget_arguments(args: argparse.Namespace) -> None:
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


def quantize_command(args: argparse.Namespace) -> int:
    from ..models.calibration import dataset_images, frames_from_source, images_from_folder
    from ..models.quantize import check_output, check_source, model_input_size, quantize_model

    if args.calibration and args.calibration_source:
        raise UsageError("give --calibration DIR or --calibration-source SPEC, not both")
    if args.frame_spacing <= 0:
        raise UsageError(f"--frame-spacing {args.frame_spacing}: must be more than 0")
    check_source(args.model)
    check_output(args.model, args.output, args.force)
    if args.max_drop is not None:
        check_budget_arguments(args)
    input_size = model_input_size(args.model)
    dataset = None
    if args.eval_dataset:
        from ..models.datasets import load_dataset

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
        from ..models.budget_cli import quantize_within_budget

        return quantize_within_budget(args, calibration, dataset, say)
    verification = calibration[:: max(1, len(calibration) // 32)][:32] if calibration else []
    if dataset is not None:  # labelled images show objects: the surest thing to verify on
        verification = verification + dataset_images(dataset, 32, input_size)
    if not verification:
        verification = bundled_photos(say)
    outcome = quantize_model(args.model, args.output, args.labels, calibration, verification, args.force, say)
    print(f"{args.model} ({outcome.source_format}) -> {outcome.output}: {outcome.method}")
    for note in outcome.notes:
        print(f"  {note}")
    print(f"  verified: {outcome.agreement.describe()}")
    print(f"  size {args.model.stat().st_size / 2**20:.2f} MB -> {outcome.output.stat().st_size / 2**20:.2f} MB")
    if dataset is not None:
        from ..models.eval_report import format_table
        from ..models.evaluate import evaluate_model

        say(dataset.summary())
        reports = [evaluate_model(dataset, path, args.labels, 0.5) for path in (args.model, outcome.output)]
        print(format_table(reports))
    return 0


def bundled_photos(say) -> list:
    """scikit-image's photos, when nothing else was given to verify on."""
    from ..errors import UnavailableError
    from ..tools.demo import SCENES, load_photo

    try:
        return [load_photo(name) for name, _label in SCENES]
    except UnavailableError:
        raise UsageError("nothing to verify the result on: pass --calibration DIR with a few photos like the "
                         "camera's (or install scikit-image for its bundled photos)") from None


def models_command(args: argparse.Namespace) -> int:
    from ..errors import ModelError
    from ..inference.model_paths import default_model_dir, load_manifest
    from ..models.fetch import derive_models, fetch_models, folder_source, sources_from_manifest, verify_models

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
