"""`pidetect bench`: where the time goes, and how close the pipeline gets to the physical limit.

Measured side by side in one run, on the same frames:
  ceiling   interpreter-only throughput (invoke on a prepared input) per thread count, and two
            1-thread interpreters in parallel;
  stages    per-frame cost of capture/decode, preprocess, invoke, postprocess, tracking, overlay,
            display encode (JPEG for MJPEG, RGB565 pack for the framebuffer), median and p95;
  serial    the tutorial loop users start from (read -> resize -> invoke -> parse -> draw, one
            thread of control, same model and backend);
  pipeline  the daemon's own pipeline (capture thread + latest-frame slot + inference worker) on
            the same file, display off and on, as frames/s and as a ratio to the ceiling;
  process   `pidetect run` as a child: start to READY (a real sd_notify socket), CPU %, peak RSS.

The ceiling, the serial loop and the pipelines are measured in interleaved rounds and reported as
medians of per-round figures: on a shared machine the speed drifts by several percent within a
minute, and a ratio of two figures taken minutes apart would measure the drift. End-to-end rates
are steady rates (first to last result), so start-up and shutdown do not count against them.
Targets are judged by `pidetect bench --check`, never by unit tests.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence


from ..inference.backends import resolve_backend
from .regions_bench import regions_cost
from .video_frames import read_frames
from .tracker_bench import tracker_costs
from .zone_bench import zone_cost
from .bench_model import (accelerator_ceiling, ceiling, compare_backends, compare_models, parallel_ceiling, serial_loop,
                          stages)
from .bench_pipeline import daemon_process, gated_pipeline, pipeline
from .measure import clip_cache_dir, machine_info, make_clip


def run_bench(model: Path, labels: Path, source: Optional[Path], frames: int, threads_list: List[int],
              runs: int, size: str, process_seconds: float, say: Callable[[str], None],
              rounds: int = 3, other_pythons: Sequence[Path] = (), accelerator=None,
              model_named: Optional[Path] = None, labels_named: Optional[Path] = None) -> Dict[str, object]:
    cores = os.cpu_count() or 1
    backend = resolve_backend()
    report: Dict[str, object] = {"machine": machine_info(),
                                 "backend": {"name": backend.name, "version": backend.version},
                                 "model": {"path": str(model), "bytes": model.stat().st_size}}
    with tempfile.TemporaryDirectory(prefix="pidetect-bench-") as tmp:
        workdir = Path(tmp)
        width, height = (int(v) for v in size.lower().split("x"))
        clip = source or make_clip(clip_cache_dir(), width, height, frames)
        report["source"] = {"path": str(clip), "frames": frames,
                            "size": "x".join(map(str, read_frames(clip, 1)[0].shape[1::-1]))}
        if accelerator is not None:
            say(f"accelerator: {accelerator.accelerator}")
            report["accelerator"] = accelerator_ceiling(model_named, labels_named, accelerator, runs)
        say(f"ceiling: interpreter only, {runs} runs after warm-up")
        report["ceiling"] = [ceiling(model, labels, t, runs) for t in threads_list]
        if cores >= 2:
            report["ceiling_parallel"] = parallel_ceiling(model, labels, 2, runs // 2)
        say("backends and models")
        report["backends"] = compare_backends(model, labels, cores, max(20, runs // 4), other_pythons)
        report["models"] = compare_models(model, labels, cores, max(20, runs // 4))
        say("stages per frame")
        report["stages"] = stages(model, labels, clip, frames, cores, workdir)
        say("zones and filters: 10 zones, 20 objects")
        report["zones"] = zone_cost()
        say("tracker: 5, 20 and 50 objects in view")
        report["tracker"] = tracker_costs()
        say("regions: the clip placed in a 1920x1080 frame, looked at whole and through regions")
        report["regions"] = regions_cost(model, labels, read_frames(clip, frames), cores)
        say(f"end to end: {rounds} interleaved round(s) of ceiling, serial loop and pipelines")
        configs = [(interpreters, display) for interpreters in sorted({1, min(2, cores)})
                   for display in ("none", "fb", "mjpeg")]
        rounds_done = []
        for number in range(rounds):
            before = ceiling(model, labels, cores, runs, repeats=1)["inferences_per_s"]
            this_round = {"serial": serial_loop(model, labels, clip, frames, cores),
                          "pipeline": [pipeline(model, labels, clip, frames, i, d, workdir) for i, d in configs]}
            after = ceiling(model, labels, cores, runs, repeats=1)["inferences_per_s"]
            this_round["ceiling_per_s"] = round((before + after) / 2, 2)  # bracket the round: drift averages out
            this_round["ceiling_before_after"] = [before, after]
            rounds_done.append(this_round)
            say(f"  round {number + 1}: ceiling {this_round['ceiling_per_s']:.1f}/s, serial "
                f"{this_round['serial']['frames_per_s']:.1f}, pipelines "
                + ", ".join(f"{p['frames_per_s']:.1f}" for p in this_round["pipeline"]))
        report["rounds"] = rounds_done
        say("motion gate: the clip paced like a camera, with and without the gate")
        report["gate"] = gated_pipeline(model, labels, clip)
        say("daemon process: start to READY, CPU, peak RSS")
        report["process"] = [daemon_process(clip, model, labels, display, workdir, process_seconds, interpreters)
                             for interpreters in sorted({1, min(2, cores)}) for display in ("none", "fb", "mjpeg")]
        say("daemon process with everything on: the web UI with the review page open and /metrics scraped, "
            "snapshots, the event store, zones and filters (and once more with the HDMI screen too)")
        report["process"] += [daemon_process(clip, model, labels, display, workdir, process_seconds, 1)
                              for display in ("all", "all+fb", "all+notify")]
    report.update(summarize_rounds(report["rounds"]))
    steady = {p["display"]: p["steady_rss_mb"] for p in report["process"] if p["interpreters"] == 1}
    if steady.get("all") and steady.get("none"):
        report["web_ui_mb"] = round(steady["all"] - steady["none"], 1)
    report["bench_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


def _accelerator_lines(report: Dict[str, object]) -> List[str]:
    row = report.get("accelerator")
    if not row:
        return []
    rate = (f": {row['inferences_per_s']:.1f} inferences/s ({row['ms']:.1f} ms), {Path(row['model']).name}"
            if "inferences_per_s" in row else "")
    note = f" — {row['note']}" if row.get("note") else ""
    return [f"accelerator {row['asked']}: ran {row['ran']}{rate}{note}", ""]


def summarize_rounds(rounds: List[Dict[str, object]]) -> Dict[str, object]:
    """Medians over the rounds: rates, and ratios taken within each round (so drift cancels out).

    `serial_headroom` = ceiling / serial loop is the most a pipeline with one interpreter can gain over
    the serial loop here: it cannot run faster than that interpreter alone. Two one-thread
    interpreters are bounded by the parallel ceiling instead, which can be higher.
    """
    def median(values) -> float:
        return round(statistics.median(values), 3)

    pipelines = []
    for index, config in enumerate(rounds[0]["pipeline"]):
        runs = [r["pipeline"][index] for r in rounds]
        shown = [p["display_shown"] for p in runs if p.get("display_shown") is not None]
        pipelines.append({"interpreters": config["interpreters"], "display": config["display"],
                          "frames": config["frames"], "frames_per_s": median([p["frames_per_s"] for p in runs]),
                          "cpu_percent": median([p["cpu_percent"] for p in runs]),
                          "display_shown": median(shown) if shown else None})
    ratios: Dict[str, float] = {
        "ceiling_all_cores_per_s": median([r["ceiling_per_s"] for r in rounds]),
        "serial_to_ceiling": median([r["serial"]["frames_per_s"] / r["ceiling_per_s"] for r in rounds]),
        "serial_headroom": median([r["ceiling_per_s"] / r["serial"]["frames_per_s"] for r in rounds]),
    }
    for index, p in enumerate(pipelines):
        name = f"pipeline_{p['interpreters']}x_{p['display']}"
        ratios[f"{name}_to_ceiling"] = median([r["pipeline"][index]["frames_per_s"] / r["ceiling_per_s"]
                                               for r in rounds])
        if p["display"] == "none":
            ratios[f"pipeline_{p['interpreters']}x_over_serial"] = median(
                [r["pipeline"][index]["frames_per_s"] / r["serial"]["frames_per_s"] for r in rounds])
    return {"serial": {"frames_per_s": median([r["serial"]["frames_per_s"] for r in rounds])},
            "pipeline": pipelines, "ratios": ratios}


def format_table(report: Dict[str, object]) -> str:
    m = report["machine"]
    lines = [f"pidetect bench — {m['cpu']} ({m['machine']}, {m['cores']} cores), {report['backend']['name']} "
             f"{report['backend']['version']}, Python {m['python']}, OpenCV {m['opencv']}, numpy {m['numpy']}",
             f"model {Path(report['model']['path']).name} ({report['model']['bytes'] / 2**20:.1f} MB); "
             f"source {report['source']['size']}, {report['source']['frames']} frames", "",
             *_accelerator_lines(report), "ceiling (interpreter only, CPU)"]
    for c in report["ceiling"]:
        lines.append(f"  {c['threads']} thread(s)           {c['inferences_per_s']:8.1f} inferences/s  ({c['ms']:.1f} ms)")
    if "ceiling_parallel" in report:
        p = report["ceiling_parallel"]
        lines.append(f"  {p['interpreters']} x 1-thread parallel  {p['inferences_per_s']:8.1f} inferences/s")
    lines += ["", f"backends (interpreter only, {m['cores']} threads)"]
    for b in report.get("backends", []):
        where = f"{b['interpreter']} (Python {b.get('python', '?')}, numpy {b.get('numpy', '?')})"
        if b.get("available"):
            lines.append(f"  {b['backend']:<16}{b['version']:<9}{b['inferences_per_s']:8.1f} inferences/s "
                         f"({b['ms']:.1f} ms)  {where}")
        elif b["backend"] != "?":
            lines.append(f"  {b['backend']:<16}not installed  {where}")
        else:
            lines.append(f"  {b['interpreter']}: failed: {b['detail']}")
    lines += ["", "models beside the model file"]
    for row in report.get("models", []):
        if row["runs"]:
            lines.append(f"  {row['model']:<58} {row['mb']:5.1f} MB {row['inferences_per_s']:8.1f} inferences/s")
        else:
            lines.append(f"  {row['model']:<58} {row['mb']:5.1f} MB  does not run here: {row['detail']}")
    lines += ["", "stages per frame              median      p95"]
    for name, s in report["stages"].items():
        lines.append(f"  {name:<26}{s['median_ms']:8.2f} ms{s['p95_ms']:8.2f} ms")
    if "zones" in report:
        z = report["zones"]
        lines.append(f"  zones + filters ({z['zones']} zones, {z['objects']} objects) {z['median_ms']:.3f} ms "
                     f"(tracking stage {z['stage_median_ms']:.3f} ms, tracker alone {z['tracker_median_ms']:.3f} ms)")
    if "regions" in report:
        g = report["regions"]
        lines.append(f"  regions (1920x1080)      {g['regions_ms_mean']:8.2f} ms  {g['model_calls_per_frame']} calls a frame, "
                     f"{g['ratio']:.2f}x the whole frame ({g['whole_ms_mean']:.2f} ms)")
    for row in report.get("tracker", []):
        lines.append(f"  tracker, {row['objects']:>2} objects in view  {row['median_ms']:8.3f} ms{row['p95_ms']:8.3f} ms")
    r = report["ratios"]
    lines += ["", f"end to end, median of {len(report['rounds'])} interleaved round(s)   frames/s   vs ceiling",
              f"  ceiling, 1 interpreter, {m['cores']} thread(s)  {r['ceiling_all_cores_per_s']:9.1f}        1.00",
              f"  serial tutorial loop        {report['serial']['frames_per_s']:9.1f}   {r['serial_to_ceiling']:9.2f}"]
    for p in report["pipeline"]:
        key = f"pipeline_{p['interpreters']}x_{p['display']}_to_ceiling"
        shown = f", screen showed {p['display_shown']:.0f} of {p['frames']} results" if p.get("display_shown") else ""
        lines.append(f"  pipeline {p['interpreters']} interp., {p['display']:<6}{p['frames_per_s']:9.1f}   "
                     f"{r[key]:9.2f}   (CPU {p['cpu_percent']:.0f}%{shown})")
    for name, value in r.items():
        if name.endswith("_over_serial"):
            lines.append(f"  {name.replace('_', ' ')}: {value:.2f}x")
    lines.append(f"  upper bound with one interpreter (ceiling / serial): {r['serial_headroom']:.2f}x")
    gate = report.get("gate")
    if gate:
        lines += ["", "motion gate (the clip paced like a camera)"]
        for motion in ("off", "on"):
            g = gate[f"motion_{motion}"]
            extra = (f", {g['frames_gated']} gated ({g['frames_skipped']} not decoded), motion in "
                     f"{g['motion_share']:.0%} of frames looked at") if motion == "on" else ""
            lines.append(f"  motion {motion:<3}  {g['inferences']:5d} inferences of {g['frames']} frames, "
                         f"{g['cpu_seconds']:.2f} CPU-s in {g['seconds']:.1f} s{extra}")
        if gate.get("cpu_ratio") is not None:
            lines.append(f"  CPU with the gate / without: {gate['cpu_ratio']:.2f}")
    models = report.get("models") or []
    rates = {m["model"]: m.get("inferences_per_s") for m in models if m.get("runs")}
    int8 = [name for name in rates if name.endswith("_int8.tflite")]
    for name in int8:
        source = name.replace("_int8.tflite", ".tflite")
        if source in rates and rates[source]:
            lines.append(f"  {name} / {source}: {rates[name] / rates[source]:.2f}x the inferences per second")
    lines += ["", "pidetect run (child process, 1280x720 at its own pace; all = the web UI with everything on)"]
    for p in report["process"]:
        stand_in = f" (of which the fb stand-in file {p['fb_standin_rss_mb']} MB)" if p.get("fb_standin_rss_mb") else ""
        lines.append(f"  {p['interpreters']} interp., display {p['display']:<6} start→READY {p['start_to_ready_s']} s, "
                     f"CPU {p['cpu_percent']:.0f}%, peak RSS {p['peak_rss_mb']} MB{stand_in}, "
                     f"steady RSS {p['steady_rss_mb']} MB (peak anon {p.get('peak_anon_mb')} MB, "
                     f"file-backed {p.get('peak_file_mb')} MB)")
    if "web_ui_mb" in report:
        lines.append(f"  the web UI with everything on (viewer, review page, /metrics, store, snapshots, zones) costs "
                     f"{report['web_ui_mb']} MB of steady RSS over display none")
    return "\n".join(lines)


def display_peak(report: Dict[str, object], display: str) -> float:
    return next(p["peak_rss_mb"] for p in report["process"] if p["display"] == display and p["interpreters"] == 1)


TARGETS = (  # (name, description, function of the report -> (value, ok))
    ("pipeline_display_off", "pipeline (1 interpreter, display off) >= 0.85 x ceiling",
     lambda r: (r["ratios"]["pipeline_1x_none_to_ceiling"], r["ratios"]["pipeline_1x_none_to_ceiling"] >= 0.85)),
    ("pipeline_display_on", "pipeline (1 interpreter) with fb and with mjpeg >= 0.80 x ceiling",
     lambda r: (min(r["ratios"]["pipeline_1x_fb_to_ceiling"], r["ratios"]["pipeline_1x_mjpeg_to_ceiling"]),
                min(r["ratios"]["pipeline_1x_fb_to_ceiling"], r["ratios"]["pipeline_1x_mjpeg_to_ceiling"]) >= 0.80)),
    ("over_serial", "best pipeline configuration >= 1.12 x the serial tutorial loop",
     lambda r: (max(v for k, v in r["ratios"].items() if k.endswith("_over_serial")),
                max(v for k, v in r["ratios"].items() if k.endswith("_over_serial")) >= 1.12)),
    ("rss_display_on", "peak RSS of pidetect run (1 interpreter) with the fb and with the mjpeg display <= 120 MB",
     lambda r: (max(display_peak(r, "fb"), display_peak(r, "mjpeg")),
                max(display_peak(r, "fb"), display_peak(r, "mjpeg")) <= 120)),
    ("rss_everything", "peak RSS of pidetect run with everything on (web UI with a viewer, the review page open "
     "and /metrics scraped, snapshots, event store, zones) <= 135 MB",
     lambda r: (display_peak(r, "all"), display_peak(r, "all") <= 135)),
    ("rss_notify", "peak RSS of pidetect run with everything on and one notification target <= 135 MB (Apprise runs "
     "in its own helper process)", lambda r: (display_peak(r, "all+notify"), display_peak(r, "all+notify") <= 135)),
    ("start_to_ready", "start to READY <= 2 s with the model present",
     lambda r: (max(p["start_to_ready_s"] or 99 for p in r["process"]),
                max(p["start_to_ready_s"] or 99 for p in r["process"]) <= 2.0)),
    ("motion_stage", "motion detector <= 1 ms per frame (median, at the clip's size)",
     lambda r: (r["stages"]["motion"]["median_ms"], r["stages"]["motion"]["median_ms"] <= 1.0)),
    ("zones_filters_10x20", "zones + filters with 10 zones and 20 objects add < 0.2 ms per frame (median)",
     lambda r: (r["zones"]["median_ms"], r["zones"]["median_ms"] < 0.2)),
    ("tracker_50", "the tracker with 50 objects in view < 1 ms per frame (median)",
     lambda r: (r["tracker"][-1]["median_ms"], r["tracker"][-1]["median_ms"] < 1.0)),
    ("regions_calls", "regions on a 1080p frame: <= 3 model calls a frame (mean)",
     lambda r: (r["regions"]["model_calls_per_frame"], r["regions"]["model_calls_per_frame"] <= 3.0)),
    ("regions_cost", "regions on a 1080p frame cost <= 3.5 x the whole-frame look (mean time a frame)",
     lambda r: (r["regions"]["ratio"], r["regions"]["ratio"] <= 3.5)),
    ("decode_stage", "decode (+ NMS) <= 1 ms at the daemon's threshold and <= 5 ms at eval's 0.001",
     lambda r: ((r["stages"]["postprocess"]["median_ms"], r["stages"]["postprocess_eval"]["median_ms"]),
                r["stages"]["postprocess"]["median_ms"] <= 1.0 and r["stages"]["postprocess_eval"]["median_ms"] <= 5.0)),
)


def check_targets(report: Dict[str, object]) -> List[Dict[str, object]]:
    results = []
    for name, text, judge in TARGETS:
        value, ok = judge(report)
        results.append({"target": name, "description": text, "value": value, "pass": bool(ok)})
    return results
