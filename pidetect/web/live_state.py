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
from typing import Dict

MAX_IN_VIEW = 200  # objects listed at once: a busy street, not a leak


class LiveState:
    name = "live state"

    def __init__(self, camera_name: str = "", clock=time.time):
        self.camera_name, self.clock = camera_name, clock
        self._lock = threading.Lock()
        self.started = clock()
        self.source: Dict[str, object] = {"state": "starting", "since": self.started, "detail": ""}
        self._in_view: Dict[int, dict] = {}  # track id -> what the page lists
        self._metrics: Dict[str, object] = {}

    def publish_record(self, record: dict) -> None:
        event, state = record.get("event"), record.get("state")
        now = record.get("ts", self.clock())
        with self._lock:
            if event == "source" and state:
                if state != self.source["state"] or state != "retrying":
                    self.source = {"state": state, "since": now, "detail": record.get("detail", "")}
                else:
                    self.source["detail"] = record.get("detail", "")
                if state in ("lost", "eof"):
                    self._in_view.clear()
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
                self._metrics = {key: record.get(key) for key in (
                    "capture_fps", "inference_fps", "inference_ms_p50", "cpu_percent", "rss_mb", "temp_c",
                    "throttled", "frames_dropped") if key in record}
                self._metrics["at"] = now

    def metrics_fields(self) -> dict:
        return {}

    def snapshot(self) -> dict:
        """For /api/live: everything as plain JSON values."""
        with self._lock:
            return {"camera": self.camera_name, "now": self.clock(), "started": self.started,
                    "source": dict(self.source), "in_view": sorted(self._in_view.values(), key=lambda o: o["since"]),
                    "metrics": dict(self._metrics)}

    def close(self) -> None:
        """Nothing to release."""

