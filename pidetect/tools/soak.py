"""Soak test: run `pidetect run` for a long time and show that its memory does not grow.

    python -m pidetect.tools.soak --minutes 10 [--display fb] [--interpreters 1] [--motion on] [--mqtt]

Runs the daemon as a child on a looping 1280x720 clip paced like a camera (the display writes to
a stand-in framebuffer file), samples its RSS every few seconds, and compares the median of the
first and last minute after warm-up. Exit 1 when it grew by more than --max-growth-mb (default 2).
With --mqtt a local mosquitto broker (apt: mosquitto, mosquitto-clients) receives the events, and the
messages that reached a subscriber are counted.
A script, not a unit test: it takes minutes and measures, it does not check behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import psutil

from .measure import clip_cache_dir, fake_framebuffer, make_clip


def start_broker(workdir: Path) -> Tuple[List[subprocess.Popen], int, Path]:
    """mosquitto on a free loopback port, and a subscriber writing every event message to a file."""
    import shutil

    from .measure import free_port

    if not (shutil.which("mosquitto") and shutil.which("mosquitto_sub")):
        raise SystemExit("soak --mqtt needs mosquitto and mosquitto_sub (apt-get install mosquitto mosquitto-clients)")
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    received = workdir / "events.txt"
    with received.open("wb") as output:  # the subscriber keeps its own copy of the descriptor
        subscriber = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "soak/events"],
                                      stdout=output, stderr=subprocess.DEVNULL)
    return [subscriber, broker], port, received


def soak(minutes: float, display: str, interpreters: int, sample_s: float, warmup_s: float,
         say=print, motion: str = "auto", mqtt: bool = False) -> Tuple[List[Tuple[float, float]], int, Optional[int]]:
    with tempfile.TemporaryDirectory(prefix="pidetect-soak-") as tmp:
        workdir = Path(tmp)
        clip = make_clip(clip_cache_dir(), 1280, 720, 300)
        args = [sys.executable, "-m", "pidetect", "run", "--source", str(clip), "--realtime", "--loop",
                "--duration", str(minutes * 60), "--log-format", "json", "--metrics-interval", "60",
                "--interpreters", str(interpreters), "--motion", motion]
        helpers: List[subprocess.Popen] = []
        received = None
        if mqtt:
            helpers, port, received = start_broker(workdir)
            args += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(port), "--mqtt-topic-prefix", "soak"]
        env = dict(os.environ)
        if display == "fb":
            fb, sysfs = fake_framebuffer(workdir, 1920, 1080)
            env["PIDETECT_SYSFS"] = str(sysfs)
            args += ["--display", "fb", "--fb-device", str(fb), "--fb-tty", ""]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        child = psutil.Process(proc.pid)
        samples: List[Tuple[float, float]] = []
        started = time.monotonic()
        next_report = started + 60
        while proc.poll() is None:
            try:
                # anonymous memory only: a stand-in framebuffer file's page cache is not the daemon's growth
                info = child.memory_full_info()
                samples.append((time.monotonic() - started, (info.rss - getattr(info, "shared", 0)) / 2**20))
            except psutil.Error:
                break
            if time.monotonic() >= next_report:
                say(f"soak: {samples[-1][0] / 60:4.1f} min, rss (private) {samples[-1][1]:.1f} MB")
                next_report += 60
            time.sleep(sample_s)
        code = proc.wait()
        for helper in helpers:
            helper.terminate()
            helper.wait(10)
        messages = len(received.read_bytes().splitlines()) if received is not None else None
        return [s for s in samples if s[0] >= warmup_s], code, messages


def growth(samples: List[Tuple[float, float]], window_s: float = 60.0) -> Optional[Tuple[float, float, float]]:
    if not samples:
        return None
    end = samples[-1][0]
    first = [mb for t, mb in samples if t <= samples[0][0] + window_s]
    last = [mb for t, mb in samples if t >= end - window_s]
    start_mb, end_mb = statistics.median(first), statistics.median(last)
    return start_mb, end_mb, end_mb - start_mb


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--display", choices=["none", "fb"], default="fb")
    parser.add_argument("--interpreters", type=int, default=1)
    parser.add_argument("--motion", choices=["auto", "on", "off"], default="auto",
                        help="the motion gate (auto: off for the file, as the daemon does; on: as for a camera)")
    parser.add_argument("--mqtt", action="store_true", help="publish to a local mosquitto broker and count messages")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=30.0)
    parser.add_argument("--max-growth-mb", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    samples, code, messages = soak(args.minutes, args.display, args.interpreters, args.sample_seconds,
                                   args.warmup_seconds, say=lambda line: print(line, file=sys.stderr, flush=True),
                                   motion=args.motion, mqtt=args.mqtt)
    result = growth(samples)
    if code != 0 or result is None:
        print(f"soak: the daemon exited {code} or gave no samples", file=sys.stderr)
        return 1
    start_mb, end_mb, grew = result
    ok = grew <= args.max_growth_mb
    report = {"minutes": args.minutes, "display": args.display, "interpreters": args.interpreters,
              "motion": args.motion, "mqtt_event_messages": messages,
              "rss_private_first_minute_mb": round(start_mb, 1), "rss_private_last_minute_mb": round(end_mb, 1),
              "growth_mb": round(grew, 2), "max_growth_mb": args.max_growth_mb, "pass": ok}
    print(json.dumps(report) if args.json else summary(report))
    return 0 if ok else 1


def summary(report: dict) -> str:
    """The report as one line for a terminal."""
    messages = report["mqtt_event_messages"]
    return (f"soak {report['minutes']:g} min, display {report['display']}, motion {report['motion']}"
            + (f", {messages} MQTT event messages received" if messages is not None else "")
            + f": private RSS {report['rss_private_first_minute_mb']:.1f} MB -> "
            f"{report['rss_private_last_minute_mb']:.1f} MB ({report['growth_mb']:+.2f} MB; limit "
            f"{report['max_growth_mb']:g}) {'PASS' if report['pass'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
