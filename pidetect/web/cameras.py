"""The other cameras of this Pi, for the header's camera menu: each camera's app links to the others, so the owner
bookmarks one address.

The cameras are the config files beside this one (`/etc/pidetect/pidetect.toml` and `NAME.toml`, the template
instances `pidetect@NAME` run): each with the web UI on (`display` with mjpeg) is listed with its port, and as up
when something answers there on this Pi.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import List, Optional

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

MAX_CAMERAS = 32


def cameras_here(config_path: Optional[Path], own_port: int, own_name: str) -> List[dict]:
    """This camera and the others, in name order (this Pi's main camera first)."""
    found = [{"name": own_name or "main", "port": own_port, "up": True, "this": True}]
    if config_path is None:
        return found
    try:
        files = sorted(Path(config_path).parent.glob("*.toml"))[:MAX_CAMERAS]
    except OSError:
        return found
    for path in files:
        if path.resolve() == Path(config_path).resolve():
            continue
        try:
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        display = config.get("display", "none")
        display = display if isinstance(display, list) else str(display).split(",")
        port = config.get("mjpeg_port", 8080)
        if "mjpeg" not in display or not isinstance(port, int) or port == own_port:
            continue
        name = config.get("camera_name") or ("main" if path.stem == "pidetect" else path.stem)
        found.append({"name": str(name), "port": port, "up": _answers(port), "this": False})
    return sorted(found, key=lambda camera: (camera["name"] != "main", camera["name"]))


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
