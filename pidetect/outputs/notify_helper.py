"""The notification helper: a small process that sends messages through Apprise for the daemon.

Why a process of its own: Apprise adds about 15 MB of resident memory when imported and 17 MB more once a URL
is added (it loads every service's plugin) — a quarter of the daemon. The daemon starts this helper when a
message is due and closes it after a quiet minute, so a Pi that is rarely notified pays for it rarely, and a
service that hangs or crashes takes only the helper with it.

Protocol: one JSON object a line on stdin, one answer a line on stdout.
    {"id": 1, "check": ["url", ...]}                        -> {"id": 1, "results": [{"ok": true|false, "error": ""}]}
    {"id": 2, "send": ["url", ...], "title": "...", "body": "...", "attach": "/path.jpg" | null}
                                                            -> {"id": 2, "results": [{"ok": ..., "error": ...}, ...]}
URLs carry secrets (tokens, passwords): they come on stdin, never the command line, and are never printed.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import List


class _Reasons(logging.Handler):
    """Apprise says why a delivery failed in its log: keep the last line (URLs are privacy-masked there)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()[:300]


def _one(apprise, url: str, reasons: _Reasons, send: bool, title: str = "", body: str = "", attach=None) -> dict:
    reasons.last = ""
    target = apprise.Apprise()
    if not target.add(url):
        return {"ok": False, "error": reasons.last or "not a URL Apprise knows (see its list of services)"}
    if not send:
        return {"ok": True, "error": ""}
    try:
        ok = target.notify(title=title, body=body, attach=attach)
    except Exception as exc:  # a plugin's own failure must not end the helper
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": bool(ok), "error": "" if ok else (reasons.last or "the service refused or did not answer")}


def main() -> int:
    import apprise

    reasons = _Reasons()
    logging.getLogger("apprise").addHandler(reasons)
    logging.getLogger("apprise").setLevel(logging.WARNING)
    logging.getLogger("apprise").propagate = False
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        results: List[dict] = []
        if "check" in request:
            results = [_one(apprise, url, reasons, False) for url in request["check"]]
        elif "send" in request:
            attach = request.get("attach")
            results = [_one(apprise, url, reasons, True, request.get("title", ""), request.get("body", ""), attach)
                       for url in request["send"]]
        sys.stdout.write(json.dumps({"id": request.get("id"), "results": results}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
