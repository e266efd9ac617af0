"""Builds the output sinks a config asks for: displays (fb, mjpeg, window) and snapshots."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from .config import Config


def build_outputs(config: Config, emit: Callable) -> Tuple[List, Optional[object]]:
    outputs: List = []
    snapshots = None
    return outputs, snapshots
