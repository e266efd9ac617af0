"""`pidetect quantize MODEL -o OUT --calibration DIR --eval DATASET --max-drop 0.01`: the search, its report, OUT.

Every candidate is measured by `pidetect eval`'s own code on DATASET (COCO mAP50-95 by pycocotools, the
latency of each image through the detector: preprocessing, invoke, decoding), never on the calibration
images. OUT is written (temporary name, then renamed) only at the end: Ctrl-C at any moment leaves nothing.
The budget unreachable: said, the most accurate candidate is kept, exit 1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ..errors import PidetectError, UsageError
from ..files import replaced_when_done
from .budget import BudgetSearch, Score
from .budget_report import format_report, plot_tradeoff, report_rows
from .quantize import appended_archive, calibration_samples, check_source, dequantize_weights, keep_outputs_float
from .requantize import describe_quantization


class BudgetMissed(PidetectError):
    """No candidate within the budget; the most accurate one was kept (exit 1)."""

    exit_code = 1


def quantize_within_budget(args, calibration: List[np.ndarray], dataset, say: Callable[[str], None]) -> int:
    from .evaluate import evaluate_model

    source, output, labels = Path(args.model), Path(args.output), args.labels
    data = check_source(source)
    kind = describe_quantization(data)
    if kind == "dynamic-range":
        say("the source is dynamic-range (int8 weights, float activations): its weights are dequantized and the "
            "float model searched")
        data = dequantize_weights(data)
    elif kind not in ("float32", "float16"):
        raise UsageError(f"--max-drop searches which ops of a float model to keep float; {source} is {kind}. "
                         "Give the float model it came from, or drop --max-drop (a uint8 or int8 per-tensor model "
                         "is requantized without data and keeps its accuracy)")
    say(dataset.summary())
    archive = appended_archive(source)

    def measure(path: Path) -> Score:
        report = evaluate_model(dataset, path, labels, 0.5)
        return Score(report.map, report.latency_ms_p50, {"map50": report.map50,
                                                        "latency_ms_p95": report.latency_ms_p95})

    float_data, signature, samples = calibration_samples(data, source, labels, calibration)
    search = BudgetSearch(float_data + archive, signature, samples, measure, args.max_drop, args.max_trials,
                          args.time_limit * 60, say, finish=lambda quantized: keep_outputs_float(quantized) + archive)
    started = time.monotonic()
    try:
        result = search.run()
        if result.best is None:
            raise BudgetMissed("no candidate could be measured; nothing was written")
        with replaced_when_done(output) as temporary:
            temporary.write_bytes(result.best.data)
        schemes = search.other_schemes()
    finally:
        search.close()
    seconds = time.monotonic() - started
    speed = interleaved_speed({"float32": source, "budget": output}, labels, calibration[0] if calibration else None)
    rows = report_rows(result, schemes, source.stat().st_size, args.max_drop)
    if args.plot is not None:
        plot_tradeoff(rows, args.plot, f"{source.name}: every scheme on {Path(args.eval_dataset).name} "
                                       f"({len(dataset.images)} images), budget {args.max_drop:g}")
        say(f"plot written to {args.plot}")
    best = result.best
    drop = result.reference.accuracy - best.score.accuracy
    if args.json:
        print(json.dumps({"model": str(source), "output": str(output), "max_drop": args.max_drop,
                          "within_budget": result.within_budget, "drop": round(drop, 4),
                          "float_ops": [result.ops[i].label for i in best.float_ops],
                          "trials": len(result.trials), "seconds": round(seconds, 1), "stopped": result.stopped,
                          "calibration_images": len(samples), "eval_images": len(dataset.images),
                          "interleaved_ms": speed, "speedup": _speedup(speed),
                          "schemes": [row.as_json() for row in rows]}))
    else:
        print(format_report(rows, args.max_drop))
        print(f"{source} -> {output}: {best.name}, mAP {best.score.accuracy:.4f} (float {result.reference.accuracy:.4f}, "
              f"drop {drop:+.4f}, budget {args.max_drop:g}), {best.score.latency_ms:.1f} ms vs "
              f"{result.reference.latency_ms:.1f} ms float; {len(result.trials)} candidates in {seconds / 60:.1f} min"
              + (f"; {result.stopped}" if result.stopped else ""))
        if speed:
            print(f"speed, one interleaved run (median ms per image): float32 {speed['float32']:.1f}, budget "
                  f"{speed['budget']:.1f}: {_speedup(speed):.2f}x")
    if not result.within_budget:
        raise BudgetMissed(f"no candidate within {args.max_drop:g} mAP of the float model "
                           f"({result.reference.accuracy:.4f}) in {len(result.trials)} tries"
                           + (f" ({result.stopped})" if result.stopped else "")
                           + f"; kept the most accurate, {best.name} (drop {drop:+.4f}), in {output}; raise "
                           "--max-trials or --time-limit, or accept a larger --max-drop")
    return 0


def interleaved_speed(models: dict, labels, image: Optional[np.ndarray], rounds: int = 5, runs: int = 10) -> dict:
    """Median ms per detection of each model, their runs interleaved round by round so that both see the same
    machine (this VM's speed drifts by several per cent within minutes)."""
    from ..inference.detector import Detector, DetectorOptions

    if image is None:
        return {}
    from ..frames import Frame

    detectors = {name: Detector(path, labels, DetectorOptions()) for name, path in models.items()}
    frame = Frame(image, 1, time.time())
    times: dict = {name: [] for name in detectors}
    for detector in detectors.values():
        detector.detect(frame)  # warm-up
    for _round in range(rounds):
        for name, detector in detectors.items():
            for _run in range(runs):
                started = time.perf_counter()
                detector.detect(frame)
                times[name].append((time.perf_counter() - started) * 1000)
    return {name: round(float(np.median(values)), 2) for name, values in times.items()}


def _speedup(speed: dict) -> Optional[float]:
    if not speed or not speed.get("budget"):
        return None
    return round(speed["float32"] / speed["budget"], 2)
