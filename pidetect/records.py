"""The record vocabulary every stage speaks: syslog priorities and the free-text record.

It lives below every stage so that capture, inference and outputs can describe what happened
without importing the daemon that writes records out (daemon/logs.py).
"""

from __future__ import annotations

from typing import Any, Dict

# syslog priorities
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7


def log_record(level: str, logger: str, message: str) -> Dict[str, Any]:
    """A free-text record (event=log) for what has no record type of its own."""
    return {"event": "log", "level": level, "logger": logger, "message": message}
