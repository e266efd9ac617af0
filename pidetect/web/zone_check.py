"""A polygon drawn in the zone editor, checked with the daemon's own rules before the page offers its TOML.

Why: the page used to write TOML itself; it offered self-crossing polygons (points clicked out of order), repeated
points (a double click), labels the model lacks, names already in the file and non-BMP labels as invalid TOML
escapes. Pasted and reloaded, the file kept the service from starting at the next boot. Here the draft becomes
TOML exactly as it would be written, and that TOML is parsed back by the config's own readers
(`config_tables.parse_zones` / `parse_masks`, the model's labels): what the page shows is what the daemon takes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..config_tables import ZONE_NAME, check_table_labels, parse_masks, parse_zones
from ..errors import ConfigError
from .zone_editor import ZoneLayout, free_name, points_toml

KINDS = ("zone", "object_mask", "motion_mask")
MAX_LABELS = 50


def toml_string(text: str) -> str:
    """A TOML basic string for any text: JSON's escapes are TOML's, and non-BMP characters (emoji) are written as
    themselves — `json.dumps`' default turns them into surrogate pairs, which TOML rejects."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


@dataclass(frozen=True)
class Draft:
    kind: str
    name: str
    points: Tuple[Tuple[float, float], ...]  # fractions of the frame, as written
    objects: Tuple[str, ...]


def read_draft(value: object, frame_size: Optional[Tuple[int, int]]) -> Draft:
    """The page's JSON ({kind, name, points in the frame's pixels, objects}) as a Draft; ValueError in words."""
    if not isinstance(value, dict):
        raise ValueError("send a JSON object: {kind, name, points, objects}")
    kind = value.get("kind", "zone")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    points = value.get("points")
    if not isinstance(points, list) or len(points) > 1000 or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in p) for p in points):
        raise ValueError("points must be a list of [x, y] pixel positions")
    if frame_size:  # the page works in pixels; the file gets fractions (the same zone at any resolution)
        width, height = frame_size
        points = [(round(x / width, 4), round(y / height, 4)) for x, y in points]
    objects = value.get("objects", [])
    if not isinstance(objects, list) or len(objects) > MAX_LABELS or not all(isinstance(o, str) for o in objects):
        raise ValueError(f"objects must be a list of at most {MAX_LABELS} labels")
    name = value.get("name", "")
    if not isinstance(name, str):
        raise ValueError("name must be text")
    return Draft(kind, name.strip(), tuple(tuple(p) for p in points),
                 tuple(o.strip() for o in objects if o.strip()))


def draft_toml(draft: Draft, layout: ZoneLayout) -> str:
    """The lines to put in the config file for this draft (a mask keeps the masks already there)."""
    polygon = "[" + ", ".join(f"[{_number(x)}, {_number(y)}]" for x, y in draft.points) + "]"
    if draft.kind == "zone":
        lines = [f"[zones.{draft.name}]", f"points = {polygon}"]
        if draft.objects:
            lines.append("objects = [" + ", ".join(toml_string(label) for label in draft.objects) + "]")
        lines.append("inertia = 3")
        return "\n".join(lines) + "\n"
    kept = [points_toml(p) for p in (layout.object_mask if draft.kind == "object_mask" else layout.motion_mask)]
    return f"{draft.kind} = [" + ", ".join(kept + [polygon]) + "]\n"


def check_draft(draft: Draft, layout: ZoneLayout, labels: Sequence[str]) -> List[str]:
    """What the daemon would refuse in this draft (empty: it starts with it)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    if draft.kind == "zone":
        if not ZONE_NAME.fullmatch(draft.name):
            return ["a zone name is 1 to 64 letters, digits, _ and -"]
        if draft.name in {zone.name for zone in layout.zones}:
            return [f"a zone named {draft.name} is already in the config file; choose another name "
                    f"(e.g. {free_name(draft.name, layout)})"]
    if len(draft.points) < 3:
        return [f"click {3 - len(draft.points)} more point(s) on the picture (at least 3)"]
    text = draft_toml(draft, layout)
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a bug here, never the owner's: said rather than offered
        return [f"the TOML would not parse: {exc}"]
    try:
        if draft.kind == "zone":
            zones = parse_zones(table["zones"], text, "the drawn zone")
            check_table_labels(zones, (), labels)
        else:
            parse_masks(table[draft.kind], draft.kind, "the drawn mask")
    except ConfigError as exc:
        return [re.sub(r"^the drawn (zone|mask)(:\d+)?: ", "", str(exc))]
    return []


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"

