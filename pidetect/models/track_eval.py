"""`pidetect track-eval`: the daemon itself, run over a labelled video, scored as a multi-object tracker.

Why the daemon and not a re-implementation: the figures must be those of what a camera owner runs — the
model, the motion gate (with --realtime --motion on, as a live camera), filters, masks and the tracker — so
`pidetect run` is started as a child with `--per-frame` JSON records, whose detections carry the object each
was given to. Scoring is py-motmetrics' (mot.py). Added: the events a user reads, per labelled object.

`every` looks at every Nth frame only (a camera N times slower, or a Pi that keeps up with 1 frame in N):
the frames are written to a lossless temporary video at the lower rate, and the ground truth renumbered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import PidetectError, UsageError
from . import mot

DAY_SECONDS = "86400"


@dataclass
class DaemonRun:
    """What the daemon said about one video."""

    frames_looked: List[int] = field(default_factory=list)  # frame numbers the model looked at
    objects: Dict[int, List[mot.Row]] = field(default_factory=lambda: defaultdict(list))  # of the label scored
    entered: Dict[str, List[int]] = field(default_factory=lambda: defaultdict(list))  # label -> track ids


@dataclass(frozen=True)
class TrackEvalReport:
    video: str
    label: str
    every: int
    score: mot.TrackScore
    identities: int  # labelled objects in the ground truth (its scored rows)
    entered: int  # 'entered' events of the label
    false_events: int  # of those, objects that never lay on a labelled box
    other_entered: Dict[str, int]  # 'entered' events of other labels (parked cars ...)

    @property
    def events_per_object(self) -> float:
        return self.entered / self.identities if self.identities else 0.0

    def as_dict(self) -> dict:
        return {"video": self.video, "label": self.label, "every": self.every, **self.score.as_dict(),
                "identities": self.identities, "entered": self.entered,
                "events_per_object": round(self.events_per_object, 3), "false_events": self.false_events,
                "other_entered": self.other_entered}

    def text(self) -> str:
        s = self.score
        others = ", ".join(f"{label} {count}" for label, count in sorted(self.other_entered.items())) or "none"
        return "\n".join([
            f"track-eval {self.video} ({self.label}, {s.frames} frames looked at"
            + (f", every {self.every}th frame" if self.every > 1 else "") + ")",
            f"  MOTA {s.mota:.3f}  IDF1 {s.idf1:.3f}  ID switches {s.id_switches}  false positives "
            f"{s.false_positives}  misses {s.misses}",
            f"  labelled objects {self.identities}, tracks {s.tracks} (mostly tracked {s.mostly_tracked}, mostly "
            f"lost {s.mostly_lost})",
            f"  '{self.label} entered' events {self.entered}: {self.events_per_object:.2f} per object, "
            f"{self.false_events} about nothing labelled",
            f"  other labels entered: {others}",
        ])


def video_frames(video: Path) -> Tuple[int, float]:
    """(frames, frames a second) of a video file, as OpenCV reads it."""
    import cv2

    if not video.is_file():
        raise UsageError(f"video {video} not found")
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise UsageError(f"{video}: OpenCV cannot read it as a video")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return count, fps


def check_frames(truth: mot.MotFile, gt_path: Path, video: Path, count: int) -> None:
    if count and truth.last_frame > count:
        raise UsageError(f"{gt_path} names frame {truth.last_frame}, but {video} has {count} frames: is it the "
                         "ground truth of this video (frames count from 1)?")


def every_nth(video: Path, every: int, fps: float, folder: Path) -> Path:
    """Every `every`th frame of the video (1, 1+every, ...) as a lossless video at fps / every."""
    import cv2

    out = folder / f"every{every}.mkv"
    capture = cv2.VideoCapture(str(video))
    writer = None
    try:
        number = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if number % every == 0:
                if writer is None:
                    height, width = image.shape[:2]
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), (fps or 25.0) / every,
                                             (width, height))
                    if not writer.isOpened():
                        raise PidetectError(f"cannot write the every-{every} video {out} (FFV1 needs OpenCV with "
                                            "FFmpeg)")
                writer.write(image)
            number += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return out


def renumbered(truth: mot.MotFile, every: int) -> mot.MotFile:
    """The ground truth of frames 1, 1+every, ... numbered 1, 2, ..."""
    thinned = mot.MotFile()
    for source, target in ((truth.scored, thinned.scored), (truth.ignored, thinned.ignored)):
        for frame, rows in source.items():
            if (frame - 1) % every == 0:
                target[(frame - 1) // every + 1] = list(rows)
    return thinned


def run_flags(overrides: Dict[str, object]) -> List[str]:
    """`pidetect run` flags for the options given to track-eval (the daemon's own keys)."""
    flags: List[str] = []
    for name, value in overrides.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            flags += [flag, ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    return flags


def run_daemon(video: Path, label: str, flags: Sequence[str], workdir: Path) -> DaemonRun:
    """`pidetect run` over the video with per-frame records; its own state, snapshots and clips under workdir
    (never the owner's), no MQTT, no display."""
    command = [sys.executable, "-m", "pidetect", "run", *flags, "--source", str(video), "--per-frame",
               "--log-format", "json", "--log-level", "debug", "--display", "none", "--metrics-interval",
               DAY_SECONDS, "--no-loop", "--max-frames", "0", "--duration", "0", "--mqtt-host", "",
               "--no-snapshots", "--no-record", "--state-dir", str(workdir / "state"),
               "--snapshot-dir", str(workdir / "snapshots"), "--record-dir", str(workdir / "clips")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        error = PidetectError(f"the daemon stopped on {video}: {reason.removeprefix('pidetect: error: ')}")
        error.exit_code = done.returncode if done.returncode > 0 else 1
        raise error
    result = DaemonRun()
    for line in done.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = record.get("event")
        if kind == "frame":
            frame = int(record["frame_seq"])
            result.frames_looked.append(frame)
            for found in record.get("detections", []) + record.get("continued", []):
                if found.get("track_id") and found["label"] == label:
                    x1, y1, x2, y2 = found["box"]
                    result.objects[frame].append((int(found["track_id"]), x1, y1, x2 - x1, y2 - y1))
        elif kind == "detection" and record.get("state") == "entered":
            result.entered[record["label"]].append(int(record["track_id"]))
    return result


def track_eval(video: Path, gt_path: Path, label: str = "person", every: int = 1,
               overrides: Optional[Dict[str, object]] = None, save_mot: Optional[Path] = None) -> TrackEvalReport:
    if every < 1:
        raise UsageError(f"--every {every}: must be 1 or more")
    if save_mot is not None and save_mot.exists() and not save_mot.is_file():
        raise UsageError(f"--save-mot {save_mot}: is a folder; name the results file to write")
    truth = mot.read_ground_truth(gt_path)
    count, fps = video_frames(video)
    check_frames(truth, gt_path, video, count)
    with tempfile.TemporaryDirectory(prefix="pidetect-track-eval-") as folder:
        workdir = Path(folder)
        source = video
        if every > 1:
            source = every_nth(video, every, fps, workdir)
            truth = renumbered(truth, every)
        run = run_daemon(source, label, run_flags(overrides or {}), workdir)
    if not run.frames_looked:
        raise PidetectError(f"the daemon looked at no frame of {video}")
    if count == 0 and truth.last_frame > max(run.frames_looked) * every:  # a video that does not say its length
        raise UsageError(f"{gt_path} names frame {truth.last_frame}, but the daemon read about "
                         f"{max(run.frames_looked) * every} frames of {video}: is it the ground truth of this video?")
    frames = sorted(set(run.frames_looked))
    score = mot.score(truth, run.objects, frames)
    false = set(mot.false_tracks(truth, run.objects))
    entered = run.entered.get(label, [])
    if save_mot is not None:
        rows = [(frame, ident, x, y, w, h, 1.0) for frame in frames for ident, x, y, w, h in run.objects.get(frame, [])]
        mot.write_results(save_mot, rows)
    return TrackEvalReport(str(video), label, every, score, truth.identities, len(entered),
                           len([t for t in entered if t in false]),
                           {name: len(ids) for name, ids in run.entered.items() if name != label})
