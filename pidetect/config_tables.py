"""The config file's tables: `[zones.NAME]`, `[filters.LABEL]` and the mask lists, read into typed specs.

The flat keys stay flat (each is also a CLI flag); what cannot be one flag — named polygons and
per-label filters — is written as TOML tables after them, and as two top-level lists of polygons:

    object_mask = [[[0.80, 0.10], [0.95, 0.10], [0.95, 0.35], [0.80, 0.35]]]
    motion_mask = [[[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [0.0, 0.2]]]

    [zones.porch]
    points = [[0.10, 0.55], [0.62, 0.50], [0.70, 1.0], [0.05, 1.0]]
    objects = ["person"]
    inertia = 3
    loiter_seconds = 0

    [filters.car]
    min_area = 0.02
    threshold = 0.6

Every problem is a ConfigError naming the file, the line and what to write instead. Labels are
checked against the model later (`check_table_labels`), once the model is loaded.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .errors import ConfigError
from .geometry import Polygon, mixes_fractions_and_pixels, polygon_problem

log = logging.getLogger(__name__)
TABLE_KEYS = ("zones", "filters", "object_mask", "motion_mask", "notify")
ZONE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ZoneSpec:
    """A named area; an object counts in it when its bottom centre has been inside for `inertia` looks in a
    row (and `loiter_seconds`), and stops counting after `inertia` looks outside."""

    name: str
    polygon: Polygon
    objects: Tuple[str, ...] = ()  # labels that count here; empty: every label
    inertia: int = 3
    loiter_seconds: float = 0.0
    where: str = field(default="", compare=False)  # "file:line" of its objects (or table), for label errors

    def counts(self, label: str) -> bool:
        return not self.objects or label in self.objects


@dataclass(frozen=True)
class FilterSpec:
    """Per-label filters. Areas below 1 are shares of the frame, from 1 up pixels; ratio = width / height."""

    label: str
    min_area: float = 0.0
    max_area: float = math.inf
    min_ratio: float = 0.0
    max_ratio: float = math.inf
    min_score: float = 0.0
    threshold: float = 0.0  # median of the recent scores a track must reach to become an event
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class NotifySpec:
    """A notification target: Apprise URLs (or a file of them: they hold secrets) and what to tell them about."""

    name: str
    urls: Tuple[str, ...] = ()
    urls_file: str = ""
    labels: Tuple[str, ...] = ()  # empty: every label
    zones: Tuple[str, ...] = ()  # empty: anywhere (on entering the picture); else on entering one of these zones
    min_score: float = 0.0
    cooldown: float = 60.0  # seconds between messages of the same label and zone
    attach: str = "snapshot"  # snapshot | none
    where: str = field(default="", compare=False)


NOTIFY_KEYS = {"urls", "urls_file", "labels", "zones", "min_score", "cooldown", "attach"}
ZONE_KEYS = {"points", "objects", "inertia", "loiter_seconds"}
FILTER_RANGES = {"min_area": (0, 1e9), "max_area": (0, 1e9), "min_ratio": (0, 1e6), "max_ratio": (0, 1e6),
                 "min_score": (0, 1), "threshold": (0, 1)}  # areas: a share below 1, pixels from 1 up
FILTER_KEYS = set(FILTER_RANGES)


def line_of_table(text: str, table: str, name: str) -> Optional[int]:
    """The line of `[table.name]` (bare or quoted name)."""
    pattern = re.compile(rf"\s*\[\s*{re.escape(table)}\s*\.\s*(\"{re.escape(name)}\"|'{re.escape(name)}'|"
                         rf"{re.escape(name)})\s*\]")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def line_of_key_in_table(text: str, table_line: Optional[int], key: str) -> Optional[int]:
    """The line of `key =` after a table's header and before the next header."""
    if table_line is None:
        return None
    lines = text.splitlines()
    for number in range(table_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if re.match(r"\s*\[", line):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return table_line


def _polygon(value: Any, where: str, what: str) -> Polygon:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {what} must be a list of [x, y] points, e.g. [[0.1, 0.5], [0.6, 0.5], "
                          "[0.7, 1.0]]")
    problem = polygon_problem(value)
    if problem:
        raise ConfigError(f"{where}: {what}: {problem}")
    if mixes_fractions_and_pixels(value):
        log.warning("%s: %s mixes fractions (0..1) and pixels; it is read as pixels, so its fractions mean the "
                    "picture's top-left corner: write every point one way", where, what)
    return Polygon(tuple((float(x), float(y)) for x, y in value))


def _number(value: Any, where: str, key: str, low: float, high: float, whole: bool = False) -> float:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} = {value!r}: must be {kind}")
    if not low <= value <= high:  # NaN fails too
        raise ConfigError(f"{where}: {key} = {value!r}: must be between {low:g} and {high:g}")
    return value


def _labels(value: Any, where: str, key: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: {key} must be a list of labels, e.g. [\"person\", \"dog\"] ([] = every label)")
    return tuple(v.strip() for v in value)


def parse_masks(raw: Any, key: str, where: str) -> Tuple[Polygon, ...]:
    """`object_mask` / `motion_mask`: a list of polygons (a single polygon is accepted as a list of one)."""
    if isinstance(raw, list) and raw and all(isinstance(p, list) and len(p) == 2 and
                                             all(isinstance(v, (int, float)) for v in p) for p in raw):
        raw = [raw]  # one polygon written without the outer brackets
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: {key} must be a list of polygons, e.g. [[[0.8, 0.1], [0.95, 0.1], "
                          "[0.95, 0.35], [0.8, 0.35]]]")
    return tuple(_polygon(polygon, where, f"{key} polygon {number}") for number, polygon in enumerate(raw, 1))


def _unknown_key(where: str, key: str, kind: str, allowed, top_level) -> ConfigError:
    if key in top_level:
        return ConfigError(f"{where}: '{key}' is a top-level key, but written after a [table] header TOML puts it "
                           "inside that table; move it above the first [zones.…] or [filters.…] table")
    return ConfigError(f"{where}: unknown key '{key}'; a {kind} has " + ", ".join(sorted(allowed)))


@dataclass(frozen=True)
class TablePlace:
    """Where one [table.name] of the file is, to name the line of each of its keys in errors."""

    text: str
    origin: str
    table: str
    name: str

    @property
    def header(self) -> Optional[int]:
        return line_of_table(self.text, self.table, self.name)

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.header or '?'}"

    def line(self, key: str) -> str:
        """'file:line' of `key =` in this table."""
        return f"{self.origin}:{line_of_key_in_table(self.text, self.header, key) or '?'}"

    def at(self, key: str) -> str:
        return f"{self.line(key)}: {self.table}.{self.name}"

    def check_keys(self, table: dict, allowed, kind: str, top_level) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{self.where}: {self.table}.{self.name} must be a table: [{self.table}.{self.name}] "
                              f"with {'points = [[x, y], …]' if kind == 'zone' else 'min_area = …'}")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise _unknown_key(self.at(unknown[0]), unknown[0], kind, allowed, top_level)


def parse_zones(raw: Any, text: str, origin: str, top_level=frozenset()) -> Tuple[ZoneSpec, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: zones must be tables, one per zone: [zones.porch] with points = [[x, y], …]")
    specs = []
    for name, table in raw.items():
        place = TablePlace(text, origin, "zones", name)
        where, at = place.where, place.at
        if not ZONE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: zone name '{name}': use letters, digits, '_' and '-' only (at most 64); "
                              "it becomes a journal value, an MQTT topic and a Home Assistant id")
        place.check_keys(table, ZONE_KEYS, "zone", top_level)
        if "points" not in table:
            raise ConfigError(f"{where}: zones.{name} has no points; add points = [[x, y], …] (at least 3)")
        specs.append(ZoneSpec(
            name=name, polygon=_polygon(table["points"], at("points"), "points"),
            objects=_labels(table.get("objects", []), at("objects"), "objects"),
            inertia=int(_number(table.get("inertia", 3), at("inertia"), "inertia", 1, 1000, whole=True)),
            loiter_seconds=float(_number(table.get("loiter_seconds", 0), at("loiter_seconds"), "loiter_seconds",
                                         0, 86400)),
            where=place.line("objects") if "objects" in table else where))
    return tuple(specs)


def parse_filters(raw: Any, text: str, origin: str, top_level=frozenset()) -> Tuple[FilterSpec, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: filters must be tables, one per label: [filters.person] with min_score = …")
    specs = []
    for label, table in raw.items():
        place = TablePlace(text, origin, "filters", label)
        where, at = place.where, place.at
        place.check_keys(table, FILTER_KEYS, "filter", top_level)
        values: Dict[str, float] = {key: float(_number(table[key], at(key), key, *FILTER_RANGES[key]))
                                    for key in FILTER_KEYS if key in table}
        spec = FilterSpec(label=label, where=where, **values)
        if "min_area" in table and "max_area" in table and (spec.min_area < 1) == (spec.max_area < 1) \
                and spec.min_area > spec.max_area:
            raise ConfigError(f"{at('max_area')}: max_area {spec.max_area:g} is below min_area {spec.min_area:g}: "
                              "no object could pass")
        if spec.min_ratio > spec.max_ratio:
            raise ConfigError(f"{at('max_ratio')}: max_ratio {spec.max_ratio:g} is below min_ratio "
                              f"{spec.min_ratio:g}: no object could pass")
        specs.append(spec)
    return tuple(specs)


def parse_notify(raw: Any, text: str, origin: str, top_level=frozenset()) -> Tuple[NotifySpec, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: notify must be tables, one per target: [notify.phone] with urls = [\"ntfy://…\"]")
    specs = []
    for name, table in raw.items():
        place = TablePlace(text, origin, "notify", name)
        where, at = place.where, place.at
        if not ZONE_NAME.fullmatch(name):
            raise ConfigError(f"{where}: notify name '{name}': use letters, digits, '_' and '-' only (at most 64)")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: notify.{name} must be a table: [notify.{name}] with urls = [\"ntfy://…\"]")
        place.check_keys(table, NOTIFY_KEYS, "notify target", top_level)
        urls = table.get("urls", [])
        if not isinstance(urls, list) or not all(isinstance(u, str) and "://" in u for u in urls):
            raise ConfigError(f"{at('urls')}: urls must be a list of Apprise URLs, e.g. [\"ntfy://ntfy.sh/my-topic\"]")
        urls_file = table.get("urls_file", "")
        if not isinstance(urls_file, str):
            raise ConfigError(f"{at('urls_file')}: urls_file must be a file name, e.g. \"/etc/pidetect/notify.urls\"")
        if bool(urls) == bool(urls_file.strip()):
            raise ConfigError(f"{where}: notify.{name} needs urls = [...] or urls_file = \"...\" (one of them; a file "
                              "keeps the URLs' secrets out of the config)")
        attach = table.get("attach", "snapshot")
        if attach not in ("snapshot", "none"):
            raise ConfigError(f"{at('attach')}: attach = {attach!r}: must be snapshot or none")
        specs.append(NotifySpec(
            name=name, urls=tuple(u.strip() for u in urls), urls_file=urls_file.strip(),
            labels=_labels(table.get("labels", []), at("labels"), "labels"),
            zones=_labels(table.get("zones", []), at("zones"), "zones"),
            min_score=float(_number(table.get("min_score", 0.0), at("min_score"), "min_score", 0, 1)),
            cooldown=float(_number(table.get("cooldown", 60), at("cooldown"), "cooldown", 0, 86400)),
            attach=attach, where=where))
    return tuple(specs)


def check_notify_zones(specs: Tuple[NotifySpec, ...], zones: Tuple[ZoneSpec, ...]) -> None:
    names = {zone.name for zone in zones}
    for spec in specs:
        missing = [zone for zone in spec.zones if zone not in names]
        if missing:
            have = ", ".join(sorted(names)) or "none"
            raise ConfigError(f"{spec.where}: notify.{spec.name} zones names a zone that is not configured: "
                              f"{', '.join(missing)} (zones: {have})")


def check_required_zones(required: Tuple[str, ...], zones: Tuple[ZoneSpec, ...], where: str) -> None:
    names = {zone.name for zone in zones}
    missing = [name for name in required if name not in names]
    if missing:
        have = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"{where}: required_zones names a zone that is not configured: {', '.join(missing)} "
                          f"(zones: {have}); add a [zones.{missing[0]}] table or fix the name")


def check_table_labels(zones: Tuple[ZoneSpec, ...], filters: Tuple[FilterSpec, ...], known,
                       notify: Tuple[NotifySpec, ...] = ()) -> None:
    """Labels in zones' `objects` and `[filters.LABEL]` must be the model's: a typo would be a zone that never
    fills or a filter that never applies."""
    from .inference.labels import unknown_label

    known = set(known)

    def refuse(where: str, what: str, name: str) -> None:
        raise ConfigError(f"{where}: {what}: the model has no label {unknown_label(name, known)}; write labels as "
                          "the labels file does, e.g. person, car, cat, dog")

    for zone in zones:
        for label in zone.objects:
            if label not in known:
                refuse(zone.where, f"zones.{zone.name} objects", label)
    for spec in filters:
        if spec.label not in known:
            refuse(spec.where, f"[filters.{spec.label}]", spec.label)
    for target in notify:
        for label in target.labels:
            if label not in known:
                refuse(target.where, f"notify.{target.name} labels", label)
