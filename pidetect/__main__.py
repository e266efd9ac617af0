"""`python -m pidetect`. For `run`, stop signals are caught before anything else is imported: a
SIGTERM while Python and OpenCV load is kept and handed to the service (a clean stop, exit 0)."""

import signal
import sys

early_signals = []
if sys.argv[1:2] == ["run"]:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: early_signals.append(signum))

from .cli import main  # noqa: E402  (after the handlers, on purpose)

sys.exit(main(early_signals=early_signals))
