"""How `pidetect eval` shows its figures: a table, JSON lines, and a PNG a person would rather read.

matplotlib is an optional extra (`pidetect[plot]`); only --plot needs it, and says so when missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from ..errors import UnavailableError
from ..files import replaced_when_done
from .evaluate import ModelReport


def _num(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(reports: Sequence[ModelReport]) -> str:
    threshold = reports[0].threshold if reports else 0.5
    header = (f"{'model':<40} {'format':<28} {'family':<7} {'input':>8} {'MB':>6} {'mAP50-95':>8} {'mAP50':>6} "
              f"{'APs':>6} "
              f"{'P@' + format(threshold, '.2f'):>6} {'R@' + format(threshold, '.2f'):>6} "
              f"{'detect ms p50/p95':>17} {'invoke ms p50/p95':>17}")
    lines = [header, "-" * len(header)]
    for r in reports:
        lines.append(f"{Path(r.model).name[:40]:<40} {r.format[:28]:<28} {r.family:<7} "
                     f"{r.input_size[0]}x{r.input_size[1]:<4} {r.size_bytes / 2**20:6.2f} {_num(r.map):>8} "
                     f"{_num(r.map50):>6} {_num(r.map_small):>6} {_num(r.precision, 2):>6} {_num(r.recall, 2):>6} "
                     f"{r.latency_ms_p50:8.1f}/{r.latency_ms_p95:<8.1f} {r.invoke_ms_p50:8.1f}/{r.invoke_ms_p95:<8.1f}")
    left_out = sorted({name for r in reports for name in r.classes_left_out})
    if left_out:
        lines.append(f"dataset classes no model can predict (left out of the mean): {', '.join(left_out)}")
    if reports:
        if any(r.tiled for r in reports):
            lines.append("tiled: each image also on overlapping tiles at the model's own scale, merged (--tiles)")
        lines.append(f"backend {reports[0].backend}; mAP by pycocotools (score floor 0.001, up to 300 boxes an "
                     f"image); P/R at IoU 0.5 and score >= {threshold:g}")
    return "\n".join(lines)


def json_lines(reports: Sequence[ModelReport]) -> str:
    return "\n".join(json.dumps(r.as_json()) for r in reports)


def plot(reports: Sequence[ModelReport], path: Path, title: str) -> None:
    """Accuracy against latency for the models compared, and their precision-recall curves."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UnavailableError("--plot needs matplotlib: pip install \"pidetect[plot]\"") from None
    figure, (speed, curves) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100)
    for number, r in enumerate(reports):
        name = Path(r.model).stem
        speed.scatter([r.latency_ms_p50], [r.map], s=40 + r.size_bytes / 2**17, alpha=0.8,
                      label=f"{name} ({r.format}, {r.size_bytes / 2**20:.1f} MB)")
        speed.annotate(name, (r.latency_ms_p50, r.map), textcoords="offset points", fontsize=8,
                       xytext=(6, 6 - 12 * (number % 3)))
        if r.pr_recall:
            curves.plot(r.pr_recall, r.pr_precision, label=f"{name} (mAP50 {_num(r.map50)})")
            if not math.isnan(r.recall):
                curves.scatter([r.recall], [r.precision], marker="o", s=30, zorder=3)
    speed.set_xlabel("detect latency, median ms (preprocess + invoke + decode)")
    speed.set_ylabel("mAP50-95 (COCO)")
    speed.set_title("accuracy against speed (up and left is better; dot area: file size)")
    speed.grid(alpha=0.3)
    speed.set_xlim(0, 1.25 * max((r.latency_ms_p50 for r in reports), default=1))
    speed.set_ylim(0, min(1.0, 1.2 * max((r.map for r in reports), default=0.5)) or 1.0)
    speed.legend(fontsize=7, loc="lower right")
    curves.set_xlabel("recall")
    curves.set_ylabel("precision")
    threshold = reports[0].threshold if reports else 0.5
    curves.set_title(f"precision-recall at IoU 0.5, all classes pooled (dots: at score {threshold:g})")
    curves.set_xlim(0, 1)
    curves.set_ylim(0, 1.02)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7, loc="lower left")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    try:
        with replaced_when_done(Path(path), suffix=".tmp.png") as temporary:  # savefig goes by the extension
            figure.savefig(temporary)
    finally:
        plt.close(figure)
