"""Demo material built from scikit-image's bundled photos: sample images and a scene clip.

Why generated, not committed: the photos ship inside scikit-image (installed by the `demo`/`test`
extras), so the repository carries no binaries and the clip can be made at any resolution
(the tests use small clips, the benchmark a 1280x720 one).

    python -m pidetect.tools.demo DIR   # writes DIR/<name>.png samples and DIR/demo.avi
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..errors import UnavailableError
from ..outputs.letterbox import letterbox

# photo file in skimage/data -> the COCO label a person would say is in it
SCENES: Tuple[Tuple[str, str], ...] = (
    ("chelsea.png", "cat"),
    ("astronaut.png", "person"),
    ("coffee.png", "cup"),
    ("motorcycle_left.png", "motorcycle"),
    ("horse.png", "horse"),
)
BACKGROUND = 114  # mid grey: nothing for the detector to see


def skimage_data_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise UnavailableError("the demo and tests use scikit-image's bundled photos: "
                               "pip install 'pidetect[demo]' (or scikit-image)") from None
    return Path(skimage.data.__file__).parent


def load_photo(name: str) -> np.ndarray:
    """A bundled photo as a BGR uint8 array (as a camera would deliver it)."""
    path = skimage_data_dir() / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnavailableError(f"scikit-image photo missing: {path}")
    return image


@dataclass(frozen=True)
class Segment:
    """A run of identical frames in a clip: a photo (with its expected label) or empty background."""

    label: str  # "" for an empty frame
    first_frame: int
    frames: int


def write_scene_video(path: Path, width: int = 640, height: int = 480, fps: float = 10.0,
                      frames_per_scene: int = 8, blank_frames: int = 6,
                      scenes: Sequence[Tuple[str, str]] = SCENES, repeat: int = 1,
                      trailing_blank: bool = True) -> List[Segment]:
    """Write an MJPG .avi (or mp4v .mp4) of photos separated by empty frames; return the timeline."""
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if str(path).endswith(".mp4") else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise UnavailableError(f"OpenCV cannot write video {path}")
    blank = np.full((height, width, 3), BACKGROUND, np.uint8)
    timeline: List[Segment] = []
    canvas = np.empty_like(blank)
    index = 0

    def emit(image: np.ndarray, label: str, count: int) -> None:
        nonlocal index
        for _ in range(count):
            writer.write(image)
        timeline.append(Segment(label, index, count))
        index += count

    try:
        for _ in range(repeat):
            for name, label in scenes:
                emit(blank, "", blank_frames)
                letterbox(load_photo(name), width, height, out=canvas, pad_value=BACKGROUND)
                emit(canvas, label, frames_per_scene)
        if trailing_blank:
            emit(blank, "", blank_frames)
    finally:
        writer.release()
    return timeline


def write_samples(folder: Path) -> Dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, _label in SCENES:
        target = folder / name
        if not target.exists():
            cv2.imwrite(str(target), load_photo(name))
        written[name] = target
    return written


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pidetect.tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", default="640x480", help="clip size WxH (default 640x480)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    write_samples(args.folder)
    clip = args.folder / "demo.avi"
    if not clip.exists():
        # 2 s of each photo, 3.5 s of empty scene after it: longer than max_disappeared (3 s), so each object has
        # left before the next one enters, as people passing a real camera would
        write_scene_video(clip, width, height, fps=10, frames_per_scene=20, blank_frames=35)
    print(clip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
