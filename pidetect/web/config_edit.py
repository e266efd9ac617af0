"""Zones and masks saved from the web UI into the config file, keeping the owner's comments and layout.

Why tomlkit (not tomllib + a writer): the file is the owner's — comments, blank lines, the order of keys, the
commented defaults the installer wrote — and a save must change only the zone or mask it is about. tomlkit edits
the parsed document in place and writes the rest back byte for byte.

A save is checked before anything is written: the new text is read by the daemon's own `build_config` and the
zones' labels against the model's (`check_table_labels`). Then the previous file is kept as `NAME.bak` (one
backup: the last good file before this save), the new one written to a temporary file beside it, flushed and
renamed over it — a power cut leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..config_tables import check_table_labels
from ..errors import ConfigError
from .zone_check import Draft

MAX_CONFIG_BYTES = 1 << 20


class EditError(Exception):
    """What is wrong with a save, in words for the page (nothing was written)."""


@dataclass(frozen=True)
class Saved:
    path: Path
    backup: Path


def read_document(path: Path):
    import tomlkit

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise EditError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; edit it by hand")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EditError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return tomlkit.parse(text)
    except Exception as exc:  # tomlkit's parse errors have no common base worth naming
        raise EditError(f"{path} is not valid TOML ({exc}); fix it by hand first") from None


def with_zone(document, draft: Draft, replacing: Optional[str] = None):
    """The document with the drafted zone (replacing the zone named `replacing`, which may be its old name)."""
    import tomlkit

    zones = document.get("zones")
    if zones is None:
        zones = tomlkit.table(is_super_table=True)
        document["zones"] = zones
    if replacing is not None and replacing not in zones:
        raise EditError(f"there is no zone {replacing} in the config file any more (reload the page)")
    if draft.name in zones and draft.name != replacing:
        raise EditError(f"a zone named {draft.name} is already in the config file; choose another name")
    table = tomlkit.table()
    old = zones[replacing] if replacing is not None else None
    table["points"] = [list(point) for point in draft.points]
    if draft.objects:
        table["objects"] = list(draft.objects)
    for key in ("inertia", "loiter_seconds"):  # kept from the zone being edited, else the default
        if old is not None and key in old:
            table[key] = old[key]
    if "inertia" not in table:
        table["inertia"] = 3
    if replacing is not None:
        del zones[replacing]
    zones[draft.name] = table
    return document


def without_zone(document, name: str):
    zones = document.get("zones")
    if zones is None or name not in zones:
        raise EditError(f"there is no zone {name} in the config file (reload the page)")
    del zones[name]
    return document


def with_mask(document, kind: str, points: Optional[Sequence[Sequence[float]]], index: Optional[int] = None):
    """Add a mask polygon (index None), replace polygon `index`, or remove it (points None)."""
    raw = document.get(kind, [])
    one = bool(raw) and bool(raw[0]) and isinstance(raw[0][0], (int, float))  # one polygon, without outer brackets
    masks = [[list(point) for point in polygon] for polygon in ([raw] if one else raw)]
    if index is not None and not 0 <= index < len(masks):
        raise EditError(f"there is no {kind} polygon {index + 1} in the config file (reload the page)")
    if points is None:
        del masks[index]
    elif index is None:
        masks.append([list(p) for p in points])
    else:
        masks[index] = [list(p) for p in points]
    if masks:
        document[kind] = masks
    elif kind in document:
        del document[kind]
    return document


def check_text(text: str, labels: Sequence[str]) -> None:
    """EditError if the daemon would refuse this text (its own reader, its model's labels)."""
    from ..config import build_config

    with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8", delete=False) as scratch:
        scratch.write(text)
    try:
        config = build_config(Path(scratch.name), {}, path_required=True)
        if labels:
            check_table_labels(config.zones, config.filters, labels, config.notify)
    except ConfigError as exc:
        raise EditError(str(exc).replace(scratch.name, "the config file")) from None
    finally:
        os.unlink(scratch.name)


def save(path: Path, document, labels: Sequence[str]) -> Saved:
    """Check, keep the previous file as NAME.bak, write the new one whole, rename it over the old one."""
    import tomlkit

    text = tomlkit.dumps(document)
    check_text(text, labels)
    backup = path.with_name(path.name + ".bak")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        old = path.read_bytes()
        _write_whole(backup, old, path)
        _write_whole(temporary, text.encode("utf-8"), path)
        os.replace(temporary, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            temporary.unlink()
        except OSError:
            pass
        raise EditError(f"cannot write {path}: {exc.strerror or exc} (the service may write its config folder "
                        "only when installed by this version's installer)") from None
    return Saved(path, backup)


def _write_whole(target: Path, data: bytes, like: Path) -> None:
    """`data` into `target`, flushed, with the permissions of `like` (the config file's)."""
    mode = like.stat().st_mode & 0o777
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(target, mode)
