"""What the live page says beside the picture: the camera's state, what is in view now, the latest figures.

A record sink (it is fed every record, like the journal and MQTT, and only keeps a few values under a lock): the
web server reads it and never reaches into the pipeline's threads. `source` records say whether the camera
delivers (opened) or not (lost, retrying, eof) and since when; `detection` records say which objects are in view
(entered, stationary, left); `metrics` records the rates. The page polls `/api/live` and shows "stream stopped"
instead of freezing on the last picture.
"""

from __future__ import annotations

import threading
import time
import collections
from typing import Deque, Dict

MAX_IN_VIEW = 200  # objects listed at once: a busy street, not a leak
RECENT_PROBLEMS = 30  # warnings and errors the status page lists


class LiveState:
    name = "live state"

    def __init__(self, camera_name: str = "", clock=time.time, model: Dict[str, object] = None):
        self.camera_name, self.clock = camera_name, clock
        self._lock = threading.Lock()
        self.started = clock()
        self.source: Dict[str, object] = {"state": "starting", "since": self.started, "detail": ""}
        self._in_view: Dict[int, dict] = {}  # track id -> what the page lists
        self._metrics: Dict[str, object] = {}
        self._model: Dict[str, object] = dict(model or {})  # model, backend, accelerator (model_loaded)
        self._mqtt: Dict[str, object] = {}  # the last mqtt record: connected, lost, retrying, error
        self._problems: Deque[dict] = collections.deque(maxlen=RECENT_PROBLEMS)

    def publish_record(self, record: dict) -> None:
        event, state = record.get("event"), record.get("state")
        now = record.get("ts", self.clock())
        with self._lock:
            if event == "source" and state:
                if state != self.source["state"] or state != "retrying":
                    self.source = {"state": state, "since": now, "detail": record.get("detail", "")}
                else:
                    self.source["detail"] = record.get("detail", "")
            elif event == "detection" and "track_id" in record:
                track = record["track_id"]
                if state == "entered" and len(self._in_view) < MAX_IN_VIEW:
                    self._in_view[track] = {"track_id": track, "label": record.get("label"),
                                            "score": record.get("score"), "since": now, "stationary": False,
                                            "zones": list(record.get("zones") or ())}
                elif state == "stationary" and track in self._in_view:
                    self._in_view[track]["stationary"] = True
                elif state == "left":
                    self._in_view.pop(track, None)
            elif event == "zone" and "track_id" in record and record.get("track_id") in self._in_view:
                zones = self._in_view[record["track_id"]]["zones"]
                if state == "entered" and record.get("zone") not in zones:
                    zones.append(record.get("zone"))
                elif state == "left" and record.get("zone") in zones:
                    zones.remove(record.get("zone"))
            elif event == "metrics":
                self._metrics = {key: value for key, value in record.items() if key not in ("event", "ts")}
                self._metrics["at"] = now
            elif event == "lifecycle" and state == "model_loaded":
                self._model = {key: record.get(key) for key in ("model", "backend", "backend_version",
                                                                "accelerator", "interpreters", "threads")}
            elif event == "mqtt" and state:
                self._mqtt = {"state": state, "since": now, "broker": record.get("broker"),
                              "detail": record.get("detail", "")}
            self._keep_problem(record, now)

    def _keep_problem(self, record: dict, now: float) -> None:
        """Warnings and errors as the log says them (the status page's "recent problems")."""
        event, state = record.get("event"), record.get("state")
        if event == "log" and record.get("level") in ("warning", "error"):
            self._problems.append({"at": now, "level": record["level"], "text": record.get("message", "")})
        elif (event, state) in (("source", "lost"), ("source", "retrying"), ("mqtt", "lost"), ("mqtt", "error"),
                                ("mqtt", "retrying"), ("accelerator", "lost"), ("mqtt", "dropping")):
            text = f"{event} {state}" + (f": {record.get('detail') or record.get('error') or ''}")
            if not (self._problems and self._problems[-1]["text"] == text):
                self._problems.append({"at": now, "level": "warning", "text": text})

    def metrics_fields(self) -> dict:
        return {}

    def snapshot(self) -> dict:
        """For /api/live: everything as plain JSON values."""
        with self._lock:
            return {"camera": self.camera_name, "now": self.clock(), "started": self.started,
                    "source": dict(self.source), "in_view": sorted(self._in_view.values(), key=lambda o: o["since"]),
                    "metrics": dict(self._metrics), "model": dict(self._model), "mqtt": dict(self._mqtt),
                    "problems": list(self._problems)}

    def close(self) -> None:
        """Nothing to release."""

