"""`systemctl reload` that fails when the new config is refused, and waits for the daemon's own verdict.

Why: `ExecReload=kill -HUP` returned 0 whatever the daemon thought of the new file; a zone the daemon refused kept
the old pipeline running (a reload never ends the service) and the owner learnt of it at the next boot, when the
service would not start (exit 78, kept down by RestartPreventExitStatus). Now the unit runs `pidetect reload`:
1. the new file is checked with the daemon's own rules (build_config, preflight, the model's labels) — refused:
   the error, exit 78, and the running daemon is not even signalled;
2. SIGHUP; the daemon writes its verdict (`VERDICT_FILE` in its runtime folder, else its state_dir);
3. the command waits for that verdict and exits 0 (reloaded) or 1 (the daemon kept its running configuration).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Optional, Tuple

VERDICT_FILE = "reload-verdict.json"


def verdict_path(state_dir: str) -> Path:
    """Where the daemon writes its verdict: /run/pidetect (RUNTIME_DIRECTORY, in RAM) under systemd — the ExecReload
    command gets the same variable — else state_dir."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or os.path.expanduser(state_dir)) / VERDICT_FILE


def write_verdict(path: Path, number: int, ok: bool, detail: str) -> None:
    """Written whole (a temporary file renamed): the waiting command never reads half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"pid": os.getpid(), "reload": number, "ok": ok, "detail": detail}))
        os.replace(temporary, path)
    except OSError:
        pass  # no place to say it: `pidetect reload` times out and says so; the journal has the verdict


def read_verdict(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ask_daemon(pid: int, path: Path, wait: float) -> Tuple[Optional[bool], str]:
    """SIGHUP to `pid`, then its verdict: (True, detail) reloaded, (False, why) kept the running configuration,
    (None, why) no verdict within `wait` seconds."""
    before = read_verdict(path)
    before_number = before["reload"] if before and before.get("pid") == pid else -1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None, f"no process {pid}: is the daemon running?"
    except PermissionError:
        return None, f"not allowed to signal process {pid} (run as root or as the daemon's user)"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        verdict = read_verdict(path)
        if verdict and verdict.get("pid") == pid and verdict.get("reload", -1) > before_number:
            return bool(verdict["ok"]), str(verdict.get("detail", ""))
        time.sleep(0.1)
    return None, f"the daemon gave no verdict within {wait:g} s (see its journal)"
