"""The zone editor's data: the configured zones and masks as JSON for the page, and as TOML to paste.

Nobody can guess relative coordinates, so the live view serves /zones: the camera's picture with
today's zones and masks drawn, where clicks add points to a new polygon and the page shows the TOML
for it (zones.html does the drawing; this module only says what is configured). The TOML of what
is configured is written here, in the same format config_tables reads, so copying it back changes
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..config_tables import ZONE_NAME, ZoneSpec
from ..geometry import Polygon

PAGE = Path(__file__).with_name("zones.html")


@dataclass(frozen=True)
class ZoneLayout:
    """What the config draws on the picture."""

    zones: Tuple[ZoneSpec, ...] = ()
    object_mask: Tuple[Polygon, ...] = ()
    motion_mask: Tuple[Polygon, ...] = ()


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"


def points_toml(polygon: Polygon) -> str:
    return "[" + ", ".join(f"[{_number(x)}, {_number(y)}]" for x, y in polygon.points) + "]"


def layout_toml(layout: ZoneLayout) -> str:
    """The configured masks and zones as config-file TOML (masks first: they are top-level keys)."""
    lines = []
    for key, polygons in (("object_mask", layout.object_mask), ("motion_mask", layout.motion_mask)):
        if polygons:
            lines.append(f"{key} = [" + ", ".join(points_toml(p) for p in polygons) + "]")
    for zone in layout.zones:
        if lines:
            lines.append("")
        lines.append(f"[zones.{zone.name}]")
        lines.append(f"points = {points_toml(zone.polygon)}")
        if zone.objects:
            # as TOML strings: json.dumps' \ud83d\udc08 surrogate escapes are not TOML
            lines.append("objects = [" + ", ".join(json.dumps(label, ensure_ascii=False).replace("\x7f", "\\u007f")
                                                   for label in zone.objects) + "]")
        lines.append(f"inertia = {zone.inertia}")
        if zone.loiter_seconds:
            lines.append(f"loiter_seconds = {zone.loiter_seconds:g}")
    return "\n".join(lines) + ("\n" if lines else "")


def free_name(wanted: str, layout: ZoneLayout) -> str:
    """A name not yet in the file: the one asked for with a number, or zone1, zone2…"""
    taken = {zone.name for zone in layout.zones}
    base = wanted if ZONE_NAME.fullmatch(wanted or "") else "zone"
    if base not in taken:
        return base
    number = 2
    while f"{base}{number}" in taken:
        number += 1
    return f"{base}{number}"


def layout_json(layout: ZoneLayout, frame_size: Optional[Tuple[int, int]]) -> dict:
    """For the page: every polygon as configured and, once a frame was seen, in the frame's pixels."""

    def shape(polygon: Polygon) -> dict:
        pixels = polygon.to_pixels(*frame_size) if frame_size else None
        return {"points": [list(p) for p in polygon.points], "relative": polygon.relative,
                "pixels": [list(p) for p in pixels] if pixels else None}

    def masks(polygons: Sequence[Polygon]) -> list:
        return [shape(polygon) for polygon in polygons]

    return {"frame": {"width": frame_size[0], "height": frame_size[1]} if frame_size else None,
            "zones": [{"name": zone.name, "objects": list(zone.objects), "inertia": zone.inertia,
                       "loiter_seconds": zone.loiter_seconds, **shape(zone.polygon)} for zone in layout.zones],
            "object_mask": masks(layout.object_mask), "motion_mask": masks(layout.motion_mask),
            "toml": layout_toml(layout), "free_name": free_name("porch", layout)}


def page() -> bytes:
    return PAGE.read_bytes()
