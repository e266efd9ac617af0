"""Prometheus's text exposition format (version 0.0.4), written from plain figures.

Why not prometheus_client: importing it imports http.server, urllib.request and ssl, 9.4 MB of the daemon's
resident memory (measured: VmRSS after importing numpy and cv2, then the package), and with everything on the
daemon is measured against a 135 MB ceiling. What /metrics needs is a dozen families of numbers, and the format
is small and fixed: `# HELP`, `# TYPE`, one line per sample, label values escaped. The output is byte-for-byte
what prometheus_client 0.26's `generate_latest` writes for the same families (tests compare the two and parse
ours with the library's parser), so scrapers see no difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

KINDS = ("gauge", "counter", "histogram")


@dataclass
class Sample:
    suffix: str  # after the family's name: "", "_total", "_bucket", "_count", "_sum"
    labels: Dict[str, str]
    value: float


@dataclass
class Family:
    """One metric: its name (without `_total` for a counter), help text, kind and samples."""

    name: str
    help: str
    kind: str
    samples: List[Sample] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append(Sample(suffix, labels, value))


def gauge(name: str, help: str, value: float) -> Family:
    return Family(name, help, "gauge", [Sample("", {}, value)])


def counter(name: str, help: str, value: float) -> Family:
    return Family(name, help, "counter", [Sample("_total", {}, value)])


def histogram(name: str, help: str, buckets: List[Tuple[str, float]], total: float) -> Family:
    """`buckets`: (upper bound as written, cumulative count), the last one "+Inf"."""
    family = Family(name, help, "histogram")
    for bound, count in buckets:
        family.add(count, "_bucket", le=bound)
    family.add(buckets[-1][1], "_count")
    family.add(total, "_sum")
    return family


def go_float(value: float) -> str:
    """A number as Prometheus (Go) writes it: +Inf, -Inf, NaN, and exponents from 1e+07 up."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _help_text(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def exposition(families: List[Family]) -> bytes:
    """The page: each family's HELP and TYPE lines, then its samples (labels sorted by name)."""
    lines = []
    for family in families:
        if family.kind not in KINDS:
            raise ValueError(f"unknown metric kind {family.kind!r}")
        name = family.name + ("_total" if family.kind == "counter" else "")
        lines.append(f"# HELP {name} {_help_text(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{key}="{_label_value(value)}"' for key, value in sorted(sample.labels.items()))
            lines.append(f"{family.name}{sample.suffix}{'{' + labels + '}' if labels else ''} {go_float(sample.value)}")
    return ("".join(line + "\n" for line in lines)).encode("utf-8")
