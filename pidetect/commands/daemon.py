"""`pidetect run` (the daemon), `reload` (the unit's ExecReload) and `check` (the environment doctor)."""

from __future__ import annotations

import argparse
import sys
from typing import List

from ..errors import PidetectError
from ..records import log_record
from .options import config_from_args


def run_command(args: argparse.Namespace) -> int:
    import signal

    # Signals that arrive while the heavy modules load and the model is read are kept and handed to
    # the service: a SIGTERM in the first 0.1 s is a clean stop (exit 0), not a kill (143).
    # (`python -m pidetect` installs the same catch even earlier, before this module is imported.)
    early_signals: List[int] = args.early_signals
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: early_signals.append(signum))

    from ..daemon.logs import Notifier, open_record_log, route_python_logging
    from ..daemon.service import Service

    config, path, overrides = config_from_args(args)
    records = open_record_log(config.log_format, config.camera_name)
    route_python_logging(records, config.log_level)
    service = Service(config, records, config_path=path if path.exists() else None, overrides=overrides,
                      notifier=Notifier())
    service.install_signal_handlers(early_signals)
    try:
        code = service.run()
    except PidetectError as exc:
        records.emit({"event": "lifecycle", "state": "failed", "error": str(exc), "exit_code": exc.exit_code}, 3)
        raise
    return exit_now(code, records)


def reload_command(args: argparse.Namespace) -> int:
    from ..reload_verdict import ask_daemon, verdict_path
    from ..daemon.service import check_model_labels, make_detector, preflight

    try:
        config, path, _overrides = config_from_args(args)
        preflight(config, writer_pid=args.pid)
        try:
            labels = make_detector(config, "cpu").labels.values()
        except PidetectError as exc:
            if "Edge TPU" not in str(exc):
                raise
            labels = None  # a model only the Edge TPU runs (which the daemon holds): the daemon checks its labels
        if labels is not None:
            check_model_labels(config, labels)
    except PidetectError as exc:
        print(f"pidetect: error: reload refused, the running configuration is kept: {exc}", file=sys.stderr)
        return 78
    if args.pid is None:
        print(f"{path}: the daemon would start with it (no --pid: nothing reloaded)")
        return 0
    ok, detail = ask_daemon(args.pid, verdict_path(config.state_dir), args.wait)
    print(("pidetect: " if ok else "pidetect: error: ") + detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def exit_now(code: int, records) -> int:
    """End the daemon without Python's interpreter finalization.

    Why: a daemon thread still inside an OpenCV call (a camera read that blocks beyond the join
    timeout) would be killed by finalization with a forced unwind that OpenCV's catch-all turns
    into abort() ("FATAL: exception not rethrown"), so a clean stop would end in SIGABRT. The
    service has already stopped its threads, emitted its last records and sent STOPPING=1.
    """
    import os
    import threading

    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if left:
        records.emit(log_record("warning", "pidetect.cli", "threads still running at exit: " + ", ".join(left)), 4)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def check_command(args: argparse.Namespace) -> int:
    from ..tools.check import exit_code_for, format_check, run_checks
    from ..daemon.service import make_detector

    config, _path, _overrides = config_from_args(args)
    checks = run_checks(config, make_detector)
    for check in checks:
        print(format_check(check), flush=True)
    code = exit_code_for(checks)
    print("all needed parts work" if code == 0 else "some needed parts do not work (FAIL lines above)")
    return code
