"""A labelled clip built from real photos, for the tracker: two people crossing (one passes in front of the
other), and a parked car, over a real background, at any size and frame rate, with MOTChallenge ground truth.

The people are COCO crops (000000000431 and 000000000474), the car COCO 000000000247, the background
scikit-image's `grass`; sizes scale with the frame's height, motion is in seconds (the same walk at 6 or 15
fps). Written losslessly (FFV1), so a run is repeatable.
"""

from pathlib import Path
from typing import Tuple

import cv2

from scene_parts import crop, paste

SECONDS = 8.0


def build(folder: Path, coco_images: Path, width: int, height: int, fps: float, object_scale: float = 1.0
          ) -> Tuple[Path, Path]:
    """(video, ground truth) in folder. `object_scale` < 1: the same scene seen from further away (small
    objects in a large frame)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    scale = height / 540 * object_scale
    grass = data.grass()
    background = cv2.resize(cv2.cvtColor(grass, cv2.COLOR_GRAY2BGR) if grass.ndim == 2 else grass, (width, height))
    car = crop(coco_images, "000000000247.jpg", (56, 186, 86, 36), int(90 * scale))
    walker = crop(coco_images, "000000000431.jpg", (154, 67, 157, 252), int(220 * scale))
    other = crop(coco_images, "000000000474.jpg", (3, 43, 329, 429), int(230 * scale))
    video = folder / f"crossing-{width}x{height}-{fps:g}fps-x{object_scale:g}.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    rows = []
    frames = int(SECONDS * fps)
    for number in range(frames):
        t = number / fps
        canvas = background.copy()
        car_box = (int(width * 0.08), int(height * 0.35) - car.shape[0], car.shape[1], car.shape[0])
        paste(canvas, car, car_box[0], car_box[1])
        # walker: left to right, 1.5 s in, across in 6 s; other: right to left, in front of the walker
        a_left = int(-walker.shape[1] + (width + walker.shape[1]) * (t - 1.0) / 6.0)
        b_left = int(width - (width + other.shape[1]) * (t - 1.0) / 6.0)
        a_top = int(height * 0.95) - walker.shape[0]
        b_top = int(height * 0.97) - other.shape[0]
        for ident, image, left, top in ((1, walker, a_left, a_top), (2, other, b_left, b_top)):
            if t >= 1.0 and left < width and left + image.shape[1] > 0:
                paste(canvas, image, left, top)
                x1, x2 = max(left, 0), min(left + image.shape[1], width)
                visible = (x2 - x1) / image.shape[1]
                rows.append(f"{number + 1},{ident},{x1},{top},{x2 - x1},{image.shape[0]},"
                            f"{1 if visible > 0.6 else 0},-1,-1,-1")
        writer.write(canvas)
    writer.release()
    gt = folder / "gt.txt"
    gt.write_text("\n".join(rows) + "\n")
    return video, gt
