"""Helpers to run `pidetect run` as a child process and read its JSON records."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO


def parse_records(text):
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def of(records, event, **match):
    return [r for r in records if r.get("event") == event and all(r.get(k) == v for k, v in match.items())]


def assert_no_thread_left(records):
    """The daemon says so when a pipeline thread outlives the service; that is always a bug."""
    left = [r["message"] for r in records if "threads still running at exit" in r.get("message", "")]
    assert not left, left


# The test scenes show each photo for under a second with a fraction of a second of empty frames between (short
# clips keep the suite fast), so the daemon runs them with lifetimes that fit: entered after 0.1 s, left after
# 0.5 s unseen (the old defaults' 2 and 5 frames at 10 fps). The default lifetimes are measured on real clips
# in test_track_eval.py and test_tracker.py. A test that passes its own keeps them (flags given later win).
SCENE_LIFETIMES = ("--enter-seconds", "0.1", "--max-disappeared", "0.5")


def run_daemon(*args, timeout=120, env=None):
    """Run to completion; returns (returncode, records, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    done = subprocess.run([sys.executable, "-m", "pidetect", "run", "--log-format", "json", *SCENE_LIFETIMES,
                           *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)
    records = parse_records(done.stdout)
    assert_no_thread_left(records)
    return done.returncode, records, done.stderr


class Daemon:
    """A daemon running in the background; records are read live from its stdout."""

    def __init__(self, *args, env=None, log_format="json"):
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "pidetect", "run", "--log-format", log_format,
                                      *SCENE_LIFETIMES, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=full_env, cwd=REPO, start_new_session=True)
        self.records = []
        import threading

        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def wait_for(self, predicate, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in list(self.records) if predicate(r)]
            if found:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)
                found = [r for r in list(self.records) if predicate(r)]
                if found:
                    return found
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before {what}: "
                                     f"{self.proc.stderr.read()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last records: {self.records[-5:]}")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - started
        self._reader.join(5)
        assert_no_thread_left(self.records)
        return code, elapsed

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
