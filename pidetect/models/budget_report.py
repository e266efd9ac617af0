"""The trade-off report of `quantize --max-drop`: every scheme measured on the user's images, one table.

Rows: float32, every other scheme the quantizer offers (float16 weights, dynamic-range, int8 per-tensor,
int8 per-channel, int16 activations) and the budget model, each with mAP50-95, mAP50, latency (median,
p95), size, and which ops stayed float and why. `--json` gives the same rows; `--plot` draws accuracy
against latency with the Pareto front (no other row is both faster and more accurate) marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from .budget import SearchResult, Trial


@dataclass
class ReportRow:
    scheme: str
    map: float
    map50: Optional[float]
    latency_ms_p50: float
    latency_ms_p95: Optional[float]
    size_bytes: int
    float_ops: List[str]
    why: str
    within_budget: Optional[bool] = None
    pareto: bool = False

    def as_json(self) -> dict:
        return {"scheme": self.scheme, "map": round(self.map, 4),
                "map50": None if self.map50 is None else round(self.map50, 4),
                "latency_ms_p50": round(self.latency_ms_p50, 2),
                "latency_ms_p95": None if self.latency_ms_p95 is None else round(self.latency_ms_p95, 2),
                "size_bytes": self.size_bytes, "float_ops": self.float_ops, "why": self.why,
                "within_budget": self.within_budget, "pareto": self.pareto}


def report_rows(result: SearchResult, schemes: Sequence[Trial], float_size: int, max_drop: float) -> List[ReportRow]:
    reference = result.reference

    def row(name: str, trial: Optional[Trial], why: str) -> ReportRow:
        score = reference if trial is None else trial.score
        ops = [] if trial is None else [result.ops[i].label for i in trial.float_ops]
        drop = reference.accuracy - score.accuracy
        return ReportRow(name, score.accuracy, score.extra.get("map50"), score.latency_ms,
                         score.extra.get("latency_ms_p95"), float_size if trial is None else len(trial.data), ops,
                         why, drop <= max_drop + 1e-9)

    all_int8 = next((t for t in result.trials if not t.float_ops), None)
    rows = [row("float32", None, "the reference")]
    rows += [row(t.name, t, "") for t in schemes]
    if all_int8 is not None:
        rows.append(row("int8 per-channel", all_int8, "every op int8"))
    if result.best is not None and result.best.float_ops:
        why = f"kept float to stay within {max_drop:g} mAP of float32 ({len(result.trials)} candidates measured)"
        rows.append(row("budget: " + result.best.name, result.best, why))
    for candidate in rows:
        candidate.pareto = not any(other is not candidate and other.map >= candidate.map and
                                   other.latency_ms_p50 < candidate.latency_ms_p50 for other in rows)
    return rows


def format_report(rows: Sequence[ReportRow], max_drop: float) -> str:
    lines = [f"{'scheme':<34} {'mAP':>6} {'mAP50':>6} {'p50 ms':>7} {'p95 ms':>7} {'MB':>6}  within {max_drop:g}  "
             "float ops"]
    for row in rows:
        within = "yes" if row.within_budget else "no"
        front = " *" if row.pareto else "  "
        ops = (f"{len(row.float_ops)}: " + ", ".join(row.float_ops[:4]) + (" …" if len(row.float_ops) > 4 else "")
               if row.float_ops else "-")
        lines.append(f"{row.scheme[:34]:<34} {row.map:6.3f} {_num(row.map50):>6} {row.latency_ms_p50:7.1f} "
                     f"{_num(row.latency_ms_p95, 1):>7} {row.size_bytes / 2**20:6.2f}  {within:>6}{front}   {ops}")
    lines.append("* on the Pareto front: no other scheme is both faster and at least as accurate")
    return "\n".join(lines)


def _num(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_tradeoff(rows: Sequence[ReportRow], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import UnavailableError

        raise UnavailableError("--plot needs matplotlib: pip install \"pidetect[plot]\"") from None
    figure, axes = plt.subplots(figsize=(7.5, 5))
    for number, row in enumerate(rows):
        axes.scatter(row.latency_ms_p50, row.map, s=60, marker="o" if row.pareto else "x",
                     color="tab:red" if row.scheme.startswith("budget") else "tab:blue")
        # labels alternate above and below their point: schemes of about the same speed and accuracy stay readable
        axes.annotate(row.scheme, (row.latency_ms_p50, row.map), textcoords="offset points",
                      xytext=(6, 6 if number % 2 == 0 else -12), fontsize=8)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.latency_ms_p50)
    axes.plot([r.latency_ms_p50 for r in front], [r.map for r in front], "--", color="tab:gray", label="Pareto front")
    axes.set_xlabel("latency per image, median (ms, this machine)")
    axes.set_ylabel("COCO mAP50-95")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
