"""MOTChallenge files and scores: read ground truth, write results, score a tracker with py-motmetrics.

The text format (`frame,id,left,top,width,height,conf,x,y,z`, frames counted from 1) is the benchmark's; the
metrics are py-motmetrics' own (MOTA, IDF1, ID switches, false positives, misses) — never computed here. What
is added is what a camera owner feels: how many 'entered' events each real object caused, and how many events
matched no labelled object at all.

MOT15 rule: a ground-truth row with conf 0 is "don't care" (far away, cut by the frame's edge). It is dropped,
and so is every prediction that matches it (IoU >= 0.5) and no scored object, before scoring.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from ..errors import UsageError

MATCH_IOU = 0.5

Row = Tuple[int, float, float, float, float]  # id, left, top, width, height


@dataclass
class MotFile:
    """Boxes by frame (from 1): the scored ones and the don't-care ones."""

    scored: Dict[int, List[Row]] = field(default_factory=lambda: defaultdict(list))
    ignored: Dict[int, List[Row]] = field(default_factory=lambda: defaultdict(list))

    @property
    def last_frame(self) -> int:
        return max(list(self.scored) + list(self.ignored), default=0)

    @property
    def identities(self) -> int:
        return len({row[0] for rows in self.scored.values() for row in rows})


def read_ground_truth(path: Path) -> MotFile:
    """A MOTChallenge ground-truth file; every malformed line is an error naming the file and the line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"ground truth {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read ground truth {path}: {getattr(exc, 'strerror', None) or exc}") from None
    truth = MotFile()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        where = f"{path}:{number}"
        if len(cells) < 7:
            raise UsageError(f"{where}: {len(cells)} columns; MOTChallenge ground truth has at least 7: "
                             "frame,id,left,top,width,height,conf[,x,y,z]")
        try:
            frame, ident = int(float(cells[0])), int(float(cells[1]))
            left, top, width, height, conf = (float(cell) for cell in cells[2:7])
        except ValueError:
            raise UsageError(f"{where}: not numbers ({line.strip()[:80]!r}); expected "
                             "frame,id,left,top,width,height,conf,...") from None
        if frame < 1:
            raise UsageError(f"{where}: frame {frame}; MOTChallenge frames count from 1")
        if not (width > 0 and height > 0):
            raise UsageError(f"{where}: box {width}x{height}; width and height must be more than 0")
        (truth.scored if conf != 0 else truth.ignored)[frame].append((ident, left, top, width, height))
    if not truth.scored and not truth.ignored:
        raise UsageError(f"ground truth {path} is empty: no boxes to score against")
    return truth


def write_results(path: Path, rows: Iterable[Tuple[int, int, float, float, float, float, float]]) -> None:
    """MOTChallenge results (frame, id, left, top, width, height, score, -1, -1, -1), for TrackEval."""
    lines = [f"{f},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{s:.4f},-1,-1,-1" for f, i, x, y, w, h, s in rows]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")


def _motmetrics():
    """py-motmetrics 1.4 calls np.asfarray, which numpy 2 removed: put it back before importing it."""
    if not hasattr(np, "asfarray"):
        np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]
    import motmetrics

    return motmetrics


def _xywh_iou(a: Sequence[Row], b: Sequence[Row]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    a_xyxy = np.array([[r[1], r[2], r[1] + r[3], r[2] + r[4]] for r in a])
    b_xyxy = np.array([[r[1], r[2], r[1] + r[3], r[2] + r[4]] for r in b])
    from ..boxes import iou_matrix

    return iou_matrix(a_xyxy, b_xyxy)


def drop_dont_care(truth: MotFile, frame: int, predicted: Sequence[Row]) -> List[Row]:
    """The predictions left once those that match a don't-care box (and no scored one) are dropped: matched
    one to one, scored boxes first, as the benchmark's own code does."""
    from ..tracking.association import assign

    ignored = truth.ignored.get(frame, [])
    if not ignored or not predicted:
        return list(predicted)
    scored = truth.scored.get(frame, [])
    free = list(range(len(predicted)))
    if scored:
        overlap = _xywh_iou(scored, predicted)
        taken = {j for _i, j in assign(1.0 - overlap, 1.0 - MATCH_IOU + 1e-9)}
        free = [j for j in free if j not in taken]
    if free:
        overlap = _xywh_iou(ignored, [predicted[j] for j in free])
        dropped = {free[j] for _i, j in assign(1.0 - overlap, 1.0 - MATCH_IOU + 1e-9)}
    else:
        dropped = set()
    return [row for j, row in enumerate(predicted) if j not in dropped]


@dataclass(frozen=True)
class TrackScore:
    mota: float
    idf1: float
    id_switches: int
    false_positives: int
    misses: int
    objects: int  # labelled identities in the frames scored
    tracks: int  # identities the tracker reported
    mostly_tracked: int
    mostly_lost: int
    frames: int

    def as_dict(self) -> dict:
        return {key: (round(value, 4) if isinstance(value, float) else value)
                for key, value in self.__dict__.items()}


def score(truth: MotFile, predicted: Dict[int, List[Row]], frames: Sequence[int]) -> TrackScore:
    """py-motmetrics over `frames` (the frames the run delivered, so a shorter video is scored on its own
    length): predictions on don't-care boxes dropped first."""
    mm = _motmetrics()
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in frames:
        scored = truth.scored.get(frame, [])
        kept = drop_dont_care(truth, frame, predicted.get(frame, []))
        distances = mm.distances.iou_matrix([r[1:] for r in scored], [r[1:] for r in kept], max_iou=MATCH_IOU) \
            if scored and kept else np.empty((len(scored), len(kept)))
        accumulator.update([r[0] for r in scored], [r[0] for r in kept], distances, frameid=frame)
    names = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_unique_objects",
             "mostly_tracked", "mostly_lost"]
    summary = mm.metrics.create().compute(accumulator, metrics=names, name="run")
    value = summary.loc["run"]
    tracks = len({row[0] for f in frames for row in predicted.get(f, [])})
    return TrackScore(float(value["mota"]), float(value["idf1"]), int(value["num_switches"]),
                      int(value["num_false_positives"]), int(value["num_misses"]),
                      int(value["num_unique_objects"]), tracks, int(value["mostly_tracked"]),
                      int(value["mostly_lost"]), len(frames))


def false_tracks(truth: MotFile, predicted: Dict[int, List[Row]]) -> List[int]:
    """Track ids that never matched a labelled box (scored or don't-care) in any frame: events about nothing."""
    matched, every = set(), set()
    for frame, rows in predicted.items():
        labelled = truth.scored.get(frame, []) + truth.ignored.get(frame, [])
        every.update(row[0] for row in rows)
        if labelled and rows:
            overlap = _xywh_iou(labelled, rows)
            matched.update(rows[j][0] for j in np.nonzero((overlap >= MATCH_IOU).any(axis=0))[0])
    return sorted(every - matched)
