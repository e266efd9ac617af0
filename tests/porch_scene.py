"""A porch scene built from real photos, for the zones acceptance test (and to look at).

960x540, a grass background (scikit-image), a car parked inside the porch zone (COCO photo
000000000247), a person (COCO 000000000431) walking in from the left into the zone and back out
of the picture, a cat (scikit-image's chelsea) sitting top right, outside the zone, and a small
person at the top-left edge that flickers (two frames on, one off): the low-score, one-frame false positive
that `min_area` (or `threshold`) must remove. Written as lossless PNG frames, so a run is repeatable.
"""

from pathlib import Path

import cv2

from scene_parts import crop, paste

WIDTH, HEIGHT = 960, 540
FRAMES = 84
PERSON_STEP = 12  # pixels per frame
# the zone of the test config, as fractions of the frame: a trapezoid over the bottom half
PORCH = [[0.30, 0.55], [0.85, 0.55], [0.90, 1.0], [0.26, 1.0]]
CAR_AT = (620, 520)  # left, bottom
CAT_AT = (670, 10)  # left, top
SMALL_AT = (6, 12)  # left, top


def person_left(frame: int) -> int:
    """x of the walking person's box: in from the left for 35 frames, back out to the left after."""
    return PERSON_STEP * frame if frame <= 34 else PERSON_STEP * 34 - PERSON_STEP * (frame - 34)


def build(folder: Path, coco_images: Path) -> Path:
    """Write the frames as folder/frame_0000.png …; return the source spec (an image sequence)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    grass = data.grass()
    background = cv2.resize(cv2.cvtColor(grass, cv2.COLOR_GRAY2BGR) if grass.ndim == 2 else grass, (WIDTH, HEIGHT))
    car = crop(coco_images, "000000000247.jpg", (56, 186, 86, 36), 90)
    person = crop(coco_images, "000000000431.jpg", (154, 67, 157, 252), 220)
    small = crop(coco_images, "000000000474.jpg", (3, 43, 329, 429), 80)
    cat = cv2.resize(cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR), (280, 211))

    for frame in range(FRAMES):
        canvas = background.copy()
        paste(canvas, car, CAR_AT[0], CAR_AT[1] - car.shape[0])
        paste(canvas, cat, *CAT_AT)
        if frame % 3 != 2:  # two frames on, one off
            paste(canvas, small, *SMALL_AT)
        left = person_left(frame)
        if left > -person.shape[1]:
            paste(canvas, person, left, 530 - person.shape[0])
        cv2.imwrite(str(folder / f"frame_{frame:04d}.png"), canvas)
    return folder / "frame_%04d.png"
