"""How fast a notification reaches the phone, and what it costs the daemon: measured against a local push service.

    python -m pidetect.tools.notify_check [--seconds 60]

A local HTTP server on 127.0.0.1 stands in for the push service (Apprise's json:// sends the title, the message
and the snapshot as base64). The daemon runs the demo clip of real photos paced like a camera (--realtime,
looping), with one [notify.…] target, every label, no cooldown, the snapshot attached. Latency is from the
capture of the frame an object entered in (its `detection entered` record's ts) to the message's arrival at the
server, matched in order. The daemon's peak RSS (VmHWM) is read with the target and once more without it (with
snapshots on, as the target turns them on); the
helper process that runs Apprise is measured apart. Long and realtime on purpose: a script, not a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .measure import machine_info, status_mb
from .demo import write_scene_video
from .push_service import PushService


def _helper_peak() -> Optional[float]:
    """The Apprise helper's peak RSS, when one runs now (a child of the daemon)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"pidetect.outputs.notify_helper" in (entry / "cmdline").read_bytes():
                    return status_mb(int(entry.name)).get("VmHWM")
            except OSError:
                continue
    return None


def run(clip: Path, seconds: float, config: Optional[Path], workdir: Path, *extra: str) -> Dict[str, object]:
    command = [sys.executable, "-m", "pidetect", "run", "--source", str(clip), "--realtime", "--loop", "--duration",
               str(seconds), "--log-format", "json", "--display", "none", "--metrics-interval", "86400",
               "--state-dir", str(workdir / "state"), "--snapshot-dir", str(workdir / "snaps")]
    if config is not None:
        command += ["--config", str(config)]
    command += list(extra)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    peak, helper = 0.0, 0.0
    while proc.poll() is None:
        peak = max(peak, status_mb(proc.pid).get("VmHWM") or 0.0)
        helper = max(helper, _helper_peak() or 0.0)
        time.sleep(0.5)
    reader.join(5)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return {"records": records, "peak_rss_mb": round(peak, 1), "helper_peak_rss_mb": round(helper, 1) or None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.notify_check", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pidetect-notify-check-") as folder:
        workdir = Path(folder)
        clip = workdir / "scenes.avi"
        write_scene_video(clip, 640, 480, fps=10, frames_per_scene=20, blank_frames=35)
        server = PushService()
        config = workdir / "notify.toml"
        config.write_text(f'[notify.bench]\nurls = ["json://127.0.0.1:{server.port}/push"]\ncooldown = 0\n')
        notified = run(clip, args.seconds, config, workdir)
        time.sleep(1.0)
        entered = [r["ts"] for r in notified["records"] if r.get("event") == "detection" and r.get("state") == "entered"]
        count = min(len(entered), len(server.arrivals))
        latencies = [server.arrivals[i] - entered[i] for i in range(count)]
        plain = run(clip, args.seconds, None, workdir, "--snapshots")  # the same work but the message
        server.httpd.shutdown()
    report = {"machine": machine_info(), "seconds": args.seconds, "messages": len(server.arrivals),
              "entered": len(entered),
              "latency_s_p50": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
              "latency_s_p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
              "latency_s_max": round(max(latencies), 3) if latencies else None,
              "daemon_peak_rss_mb_with_notify": notified["peak_rss_mb"],
              "daemon_peak_rss_mb_without": plain["peak_rss_mb"],
              "helper_peak_rss_mb": notified["helper_peak_rss_mb"]}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['messages']} messages for {report['entered']} objects entered in {args.seconds:g} s: latency "
              f"p50 {report['latency_s_p50']} s, p95 {report['latency_s_p95']} s, max {report['latency_s_max']} s "
              f"(frame captured -> message at the local server, snapshot attached)")
        print(f"daemon peak RSS {report['daemon_peak_rss_mb_with_notify']} MB with one target, "
              f"{report['daemon_peak_rss_mb_without']} MB without; the Apprise helper process "
              f"{report['helper_peak_rss_mb']} MB of its own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
